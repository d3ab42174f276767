"""The server goes away while programs write through the mount: nothing acknowledged is lost.

close() of a file written while the server is unreachable succeeds: the new version is sealed and kept
in the local journal (ciphertext only), reads through the mount see it at once, a later write builds on
it, and the mount uploads and commits it as soon as the server answers again (or the next mount does,
if this one is killed meanwhile).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.mounts import Account, Mount, drive_of, md, ok, signup, wait_until
from support.server import ServerProcess

MiB = 1 << 20


@pytest.fixture
def server_on_a_fixed_port(tmp_path: Path, fuse_available: None) -> Iterator[Callable[[], ServerProcess]]:
    """A server that can be stopped and started again on the same port and data folder."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    running: list[ServerProcess] = []

    def start() -> ServerProcess:
        srv = ServerProcess(tmp_path / "server-data", extra_args=["--listen", f"127.0.0.1:{port}"])
        running.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in running:
            srv.stop()


def _pending(acct: Account) -> str:
    return ok(md(acct.home, "status"))


def test_writes_while_the_server_is_down_are_kept_and_uploaded(
        server_on_a_fixed_port: Callable[[], ServerProcess], tmp_path: Path,
        mounts: Callable[[Account, Path], Mount]) -> None:
    srv = server_on_a_fixed_port()
    acct = signup(srv.url, tmp_path)
    m = mounts(acct, tmp_path / "mnt").mount()
    (m.path / "edited.txt").write_bytes(b"version one")
    big = os.urandom(3 * MiB + 7)
    srv.stop()  # the server is gone

    (m.path / "edited.txt").write_bytes(b"version two, written offline")  # close() succeeds
    with open(m.path / "new.bin", "wb") as f:
        f.write(big)
        f.flush()
        os.fsync(f.fileno())  # fsync() succeeds too: the version is durable in the journal
    with open(m.path / "edited.txt", "ab") as f:
        f.write(b" + appended")  # a second offline version builds on the first
    assert (m.path / "edited.txt").read_bytes() == b"version two, written offline + appended"
    assert (m.path / "new.bin").read_bytes() == big
    assert os.stat(m.path / "new.bin").st_size == len(big)

    srv = server_on_a_fixed_port()  # back on the same address
    wait_until(lambda: "pending uploads: 0" in _pending(acct), 30, "the journal was never uploaded")
    with drive_of(acct) as d:
        assert d.read_file("/edited.txt") == b"version two, written offline + appended"
        assert d.read_file("/new.bin") == big
        assert [e.name for e in d.listdir("/")] == ["edited.txt", "new.bin"]  # no conflicted copy


def test_journaled_offline_writes_survive_a_killed_mount(
        server_on_a_fixed_port: Callable[[], ServerProcess], tmp_path: Path,
        mounts: Callable[[Account, Path], Mount]) -> None:
    srv = server_on_a_fixed_port()
    acct = signup(srv.url, tmp_path)
    m = mounts(acct, tmp_path / "mnt").mount()
    srv.stop()
    data = os.urandom(2 * MiB + 1)
    (m.path / "kept.bin").write_bytes(data)
    m.kill()  # the mount dies with the version only in its journal
    subprocess.run(["fusermount", "-uz", str(m.path)], capture_output=True)
    srv = server_on_a_fixed_port()
    m.mount()  # the next mount uploads and commits it before serving
    assert (m.path / "kept.bin").read_bytes() == data
    with drive_of(acct) as d:
        assert d.read_file("/kept.bin") == data
    assert "pending uploads: 0" in _pending(acct)


def test_huge_sizes_fail_at_once_and_cost_no_memory(server_on_a_fixed_port: Callable[[], ServerProcess],
                                                    tmp_path: Path, mounts: Callable[[Account, Path], Mount]) -> None:
    """`truncate -s 999999999999999` (pjdfstest does it) once grew the mount past 20 GiB; now EFBIG at once,
    a hole past the quota ENOSPC at once, and a hole within it costs memory only for what is written."""
    import errno

    import psutil

    srv = server_on_a_fixed_port()
    acct = signup(srv.url, tmp_path)
    m = mounts(acct, tmp_path / "mnt").mount()
    f = m.path / "sparse.bin"
    f.write_bytes(b"head")
    proc = psutil.Process(m.pid)
    before = proc.memory_info().rss
    for size, code in ((999_999_999_999_999, errno.EFBIG), (60 << 30, errno.ENOSPC)):
        r = subprocess.run(["truncate", "-s", str(size), str(f)], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and os.strerror(code) in r.stderr, r.stderr
        with open(f, "r+b") as fh:
            try:
                os.pwrite(fh.fileno(), b"x", size)
                raise AssertionError("pwrite past the limit succeeded")
            except OSError as e:
                assert e.errno == code
    with open(f, "r+b") as fh:
        os.ftruncate(fh.fileno(), 64 * MiB)  # a hole within the quota: sealed chunk by chunk at close
        os.pwrite(fh.fileno(), b"tail", 64 * MiB - 4)
    assert os.stat(f).st_size == 64 * MiB
    assert proc.memory_info().rss - before < 100 * MiB
    with open(f, "rb") as fh:
        assert fh.read(4) == b"head" and os.pread(fh.fileno(), 4, 64 * MiB - 4) == b"tail"
        assert os.pread(fh.fileno(), 8, 32 * MiB) == bytes(8)
