"""Delta writes: a small edit inside a big file sends only the chunks it touches.

The bytes the server receives are measured as the growth of the account's
`used` (GET /v1/account): every new chunk adds its sealed size (plaintext +
41 bytes); chunks reused by hash add nothing; the new version's sealed manifest
(92 + 32 bytes per chunk + 41) is charged too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.mounts import CHUNK, CHUNK_OVERHEAD, Account, Mount, drive_of, login, md, ok, sha256_file, signup
from support.server import ServerProcess

MiB = 1 << 20
SIZE = 256 * MiB
BLOCK = 8 * MiB
MANIFEST = 92 + 32 * (SIZE // CHUNK) + CHUNK_OVERHEAD  # the new version's manifest, charged like any byte kept


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory, fuse_available: None) -> Iterator[tuple[Mount, Account, Path]]:
    """A 256 MiB file put by a second client (`megadrive put`), seen by a mount of the same account.

    The module has its own server, so that the half gigabyte it stores is deleted afterwards.
    """
    base = tmp_path_factory.mktemp("delta")
    server = ServerProcess(base / "server-data")
    m: Mount | None = None
    try:
        acct = signup(server.url, base)
        peer = login(acct, base)
        local = base / "model.bin"
        with open(local, "wb") as f:
            for _ in range(SIZE // BLOCK):
                f.write(os.urandom(BLOCK))
        t = time.monotonic()
        ok(md(peer.home, "put", str(local), "/big.bin", timeout=300))
        print(f"\nput of {SIZE >> 20} MiB: {time.monotonic() - t:.1f} s")
        m = Mount(acct, base / "mnt")
        m.mount()
        m.wait_visible("big.bin")
        yield m, peer, local
    finally:
        if m is not None:
            m.unmount()
        server.stop()
        shutil.rmtree(base / "server-data", ignore_errors=True)
        (base / "model.bin").unlink(missing_ok=True)


def patch_local(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def edit(mount: Mount, acct: Account, offset: int, data: bytes) -> int:
    """pwrite ``data`` at ``offset`` through the mount, close; returns how many bytes the server took in."""
    before = acct.used()
    t = time.monotonic()
    fd = os.open(mount.path / "big.bin", os.O_RDWR)
    try:
        assert os.pwrite(fd, data, offset) == len(data)
    finally:
        os.close(fd)
    elapsed = time.monotonic() - t
    grew = acct.used() - before
    print(f"\n{len(data)} B edit at {offset}: server received {grew} B in {elapsed:.2f} s")
    return grew


def test_small_edit_sends_at_most_the_touched_chunks(big: tuple[Mount, Account, Path]) -> None:
    m, peer, local = big
    assert os.stat(m.path / "big.bin").st_size == SIZE
    # 4 KiB across a chunk boundary: two chunks change
    off = 100 * CHUNK - 2048
    data = os.urandom(4096)
    grew = edit(m, peer, off, data)
    patch_local(local, off, data)
    assert 0 < grew <= 2 * (CHUNK + CHUNK_OVERHEAD) + MANIFEST, grew
    # 4 KiB inside one chunk: one chunk changes
    off2 = 200 * CHUNK + 12345
    data2 = os.urandom(4096)
    grew2 = edit(m, peer, off2, data2)
    patch_local(local, off2, data2)
    assert 0 < grew2 <= CHUNK + CHUNK_OVERHEAD + MANIFEST, grew2
    # the edited regions read back through the mount and from the server
    with open(m.path / "big.bin", "rb") as f:
        f.seek(off - 4096)
        around = f.read(4096 * 3)
    with open(local, "rb") as f:
        f.seek(off - 4096)
        assert around == f.read(4096 * 3)
    with drive_of(peer) as d:
        r = d.open_read("/big.bin")
        try:
            assert r.size == SIZE
            assert r.pread(off, 4096) == data
            assert r.pread(off2, 4096) == data2
        finally:
            r.close()
    # and the whole file is the local model
    t = time.monotonic()
    h = hashlib.sha256()
    with open(m.path / "big.bin", "rb") as f:
        while b := f.read(BLOCK):
            h.update(b)
    print(f"\nsha256 of {SIZE >> 20} MiB through the mount: {time.monotonic() - t:.1f} s")
    assert h.hexdigest() == sha256_file(local)
