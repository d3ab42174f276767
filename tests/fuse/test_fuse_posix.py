"""POSIX semantics of the mount, checked through the kernel with ordinary system calls.

One mount per module (each test in its own folder); a second client of the
same account (the "peer", another MEGADRIVE_HOME) checks what really reached
the server. Tests that need a small quota, a tampered server or a remount
have their own server, account or mount.
"""

from __future__ import annotations

import errno
import os
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.mounts import (
    CHUNK,
    UTIME_NOW,
    UTIME_OMIT,
    Account,
    Mount,
    drive_of,
    errno_of,
    hidden_files,
    login,
    server_names,
    server_read,
    settle,
    signup,
    utimensat,
)
from support.server import ServerProcess

MiB = 1 << 20
T2001 = 978_307_200  # 2001-01-01T00:00:00Z


def rel(mount: Mount, p: Path) -> str:
    return "/" + str(p.relative_to(mount.path))


# -- create, O_TRUNC, O_APPEND -------------------------------------------------------------------


def test_create_then_read_back(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    p = folder / "new.txt"
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
    assert p.exists(), "a created file is visible before close"
    assert os.write(fd, b"hello") == 5
    os.close(fd)
    assert p.read_bytes() == b"hello"
    st = os.stat(p)
    assert st.st_size == 5 and (st.st_mode & 0o777) == 0o640
    assert server_read(module_peer, rel(module_mount, p)) == b"hello"


def test_open_trunc(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    p = folder / "t.txt"
    p.write_bytes(b"0123456789" * 1000)
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    assert os.fstat(fd).st_size == 0
    os.write(fd, b"short")
    os.close(fd)
    assert p.read_bytes() == b"short"
    os.close(os.open(p, os.O_RDWR | os.O_TRUNC))  # O_TRUNC and nothing written: empty
    assert p.read_bytes() == b"" and os.stat(p).st_size == 0
    assert server_read(module_peer, rel(module_mount, p)) == b""


def test_open_append(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    p = folder / "log.txt"
    p.write_bytes(b"abc")
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"def")
    os.lseek(fd, 0, os.SEEK_SET)  # O_APPEND ignores the file offset
    os.write(fd, b"ghi")
    os.close(fd)
    with open(p, "ab") as f:
        f.write(b"jkl")
    assert p.read_bytes() == b"abcdefghijkl"
    assert server_read(module_peer, rel(module_mount, p)) == b"abcdefghijkl"


# -- random access, holes, truncate ---------------------------------------------------------------


def test_random_access_reads_and_writes(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    rng = random.Random(1234)
    p = folder / "r.bin"
    model = bytearray(rng.randbytes(3 * MiB + 777))
    p.write_bytes(model)
    fd = os.open(p, os.O_RDWR)
    try:
        for _ in range(60):
            # At most 4 chunks, so that nothing is sealed and sent while the file is open (that race is
            # test_rewrite_chunks_sealed_while_open's).
            n = rng.choice([1, 17, 4096, 65_537, CHUNK + 3])
            off = rng.randrange(0, 4 * CHUNK - n)
            if off > len(model):
                model.extend(bytes(off - len(model)))
            data = rng.randbytes(n)
            assert os.pwrite(fd, data, off) == n
            model[off:off + n] = data
            roff = rng.randrange(0, len(model))
            assert os.pread(fd, 70_000, roff) == bytes(model[roff:roff + 70_000])
        # a chunk boundary, read and written across
        os.pwrite(fd, b"X" * 10, CHUNK - 5)
        model[CHUNK - 5:CHUNK + 5] = b"X" * 10
        assert os.pread(fd, 20, CHUNK - 10) == bytes(model[CHUNK - 10:CHUNK + 10])
        assert os.fstat(fd).st_size == len(model)
    finally:
        os.close(fd)
    assert p.read_bytes() == model
    assert server_read(module_peer, rel(module_mount, p)) == model


def test_rewrite_chunks_sealed_while_open(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    """A big file written and patched through one descriptor (a database, a VM image, a linker's output).

    Past a few dirty chunks the writer seals and uploads full ones in the background; touching such a chunk
    again right away must work from what the writer holds, not wait for (or race) the upload.
    """
    rng = random.Random(99)
    failures = []
    for rnd in range(3):
        p = folder / f"db{rnd}"
        model = bytearray()
        fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
        try:
            for c in range(8):
                block = rng.randbytes(CHUNK)
                os.pwrite(fd, block, c * CHUNK)
                model[c * CHUNK:] = block
                for k in reversed(range(c)):  # patch every earlier chunk, newest first
                    off = k * CHUNK + 10 + c
                    try:
                        os.pwrite(fd, bytes([c]), off)
                        model[off] = c
                    except OSError as e:
                        failures.append((rnd, c, k, errno.errorcode.get(e.errno or 0)))
            if not failures:
                assert os.pread(fd, len(model), 0) == model
        finally:
            os.close(fd)
        if not failures:
            assert p.read_bytes() == model
            assert server_read(module_peer, rel(module_mount, p)) == model
    assert failures == [], f"{len(failures)} writes failed: {failures[:5]}"


def test_seek_past_end_and_write_leaves_a_hole_of_zeros(folder: Path, module_mount: Mount,
                                                        module_peer: Account) -> None:
    p = folder / "hole.bin"
    p.write_bytes(b"head")
    fd = os.open(p, os.O_WRONLY)
    os.lseek(fd, 2 * MiB + 100, os.SEEK_SET)  # the hole spans whole chunks
    os.write(fd, b"tail")
    os.close(fd)
    expect = b"head" + bytes(2 * MiB + 96) + b"tail"
    assert os.stat(p).st_size == len(expect)
    assert p.read_bytes() == expect
    with open(p, "rb") as f:
        f.seek(MiB + 5)
        assert f.read(4096) == bytes(4096)
    assert server_read(module_peer, rel(module_mount, p)) == expect


def test_truncate_shrink_and_grow(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    rng = random.Random(7)
    p = folder / "tr.bin"
    data = rng.randbytes(2 * MiB + 500)
    p.write_bytes(data)
    os.truncate(p, MiB + 3)  # shrink across a chunk boundary
    assert os.stat(p).st_size == MiB + 3
    assert p.read_bytes() == data[:MiB + 3]
    os.truncate(p, 3 * MiB)  # grow: zeros, also where bytes used to be
    assert p.read_bytes() == data[:MiB + 3] + bytes(3 * MiB - MiB - 3)
    os.truncate(p, 10)
    assert p.read_bytes() == data[:10]
    assert server_read(module_peer, rel(module_mount, p)) == data[:10]


def test_ftruncate_shrink_and_grow(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    p = folder / "ftr.bin"
    p.write_bytes(b"abcdefghij")
    fd = os.open(p, os.O_RDWR)
    try:
        os.ftruncate(fd, 4)
        assert os.fstat(fd).st_size == 4
        assert os.pread(fd, 100, 0) == b"abcd"
        os.ftruncate(fd, 8)
        assert os.pread(fd, 100, 0) == b"abcd" + bytes(4)
        os.pwrite(fd, b"Z", 6)
        os.ftruncate(fd, MiB + 1)  # grow into a second chunk
        assert os.fstat(fd).st_size == MiB + 1
        assert os.pread(fd, 10, MiB - 2) == bytes(3)
    finally:
        os.close(fd)
    expect = b"abcd\0\0Z\0" + bytes(MiB + 1 - 8)
    assert p.read_bytes() == expect
    assert server_read(module_peer, rel(module_mount, p)) == expect


# -- rename and unlink of open files -------------------------------------------------------------


def test_rename_over_existing_file(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    a, b = folder / "a", folder / "b"
    a.write_bytes(b"AAA")
    b.write_bytes(b"BBB")
    os.rename(a, b)
    assert not a.exists()
    assert b.read_bytes() == b"AAA"
    assert sorted(os.listdir(folder)) == ["b"]
    assert server_names(module_peer, rel(module_mount, folder)) == ["b"]
    assert server_read(module_peer, rel(module_mount, b)) == b"AAA"


def test_rename_while_source_is_open(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    a, b = folder / "a", folder / "b"
    a.write_bytes(b"AAAA")
    b.write_bytes(b"BBBB")
    fd = os.open(a, os.O_RDWR)
    try:
        os.rename(a, b)
        assert os.pread(fd, 100, 0) == b"AAAA"  # the descriptor follows its file
        os.pwrite(fd, b"++", 4)  # and writes land in it under its new name
        assert os.fstat(fd).st_size == 6
    finally:
        os.close(fd)
    assert b.read_bytes() == b"AAAA++"
    names = sorted(os.listdir(folder))
    assert names == ["b"], names
    assert server_names(module_peer, rel(module_mount, folder)) == ["b"]
    assert server_read(module_peer, rel(module_mount, b)) == b"AAAA++"


def test_rename_while_target_is_open(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    a, b = folder / "a", folder / "b"
    a.write_bytes(b"new content")
    b.write_bytes(b"old content")
    fd = os.open(b, os.O_RDONLY)
    try:
        os.rename(a, b)
        assert os.pread(fd, 100, 0) == b"old content"  # the replaced file lives on in its descriptor
        assert b.read_bytes() == b"new content"
    finally:
        os.close(fd)
    names = os.listdir(folder)
    assert names == ["b"] and not hidden_files(names), names
    assert b.read_bytes() == b"new content"
    assert server_names(module_peer, rel(module_mount, folder)) == ["b"]
    assert server_read(module_peer, rel(module_mount, b)) == b"new content"


def test_rename_target_open_for_writing(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    """Writes through a descriptor of a file replaced by rename must not resurrect it nor clobber the new one."""
    a, b = folder / "a", folder / "b"
    a.write_bytes(b"winner")
    b.write_bytes(b"loser")
    fd = os.open(b, os.O_RDWR)
    try:
        os.rename(a, b)
        os.pwrite(fd, b"LOSER!", 0)
        assert os.pread(fd, 100, 0) == b"LOSER!"
    finally:
        os.close(fd)
    assert b.read_bytes() == b"winner"
    assert sorted(os.listdir(folder)) == ["b"]
    assert server_names(module_peer, rel(module_mount, folder)) == ["b"]
    assert server_read(module_peer, rel(module_mount, b)) == b"winner"


def test_unlink_open_file(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    p = folder / "doomed"
    p.write_bytes(b"still here")
    keep = folder / "keep"
    keep.write_bytes(b"k")
    fd = os.open(p, os.O_RDWR)
    try:
        os.unlink(p)
        assert not p.exists()
        names = os.listdir(folder)
        assert names == ["keep"], names  # no .fuse_hidden* stand-in
        assert os.pread(fd, 100, 0) == b"still here"
        assert os.pwrite(fd, b"!", 10) == 1
        assert os.pread(fd, 100, 0) == b"still here!"
        assert os.fstat(fd).st_size == 11
        os.fsync(fd)
        assert os.listdir(folder) == ["keep"]
    finally:
        os.close(fd)
    names = os.listdir(folder)
    assert names == ["keep"] and not hidden_files(names), names
    on_server = server_names(module_peer, rel(module_mount, folder))
    assert on_server == ["keep"], on_server
    assert errno_of(lambda: os.stat(p)) == "ENOENT"


def test_unlink_file_open_by_two_descriptors_then_recreate(folder: Path, module_mount: Mount,
                                                          module_peer: Account) -> None:
    p = folder / "f"
    p.write_bytes(b"first")
    fd1 = os.open(p, os.O_RDONLY)
    fd2 = os.open(p, os.O_RDWR)
    try:
        os.unlink(p)
        p.write_bytes(b"second")  # a new file under the same name
        os.pwrite(fd2, b"FIRST", 0)
        assert os.pread(fd1, 100, 0) == b"FIRST"  # both descriptors share the unlinked file
        assert p.read_bytes() == b"second"
    finally:
        os.close(fd1)
        os.close(fd2)
    assert p.read_bytes() == b"second"
    assert os.listdir(folder) == ["f"]
    assert server_names(module_peer, rel(module_mount, folder)) == ["f"]
    assert server_read(module_peer, rel(module_mount, p)) == b"second"


# -- folders ---------------------------------------------------------------------------------------


def test_mkdir_rmdir(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    d = folder / "d"
    os.mkdir(d)
    assert d.is_dir() and os.listdir(d) == []
    (d / "x").write_bytes(b"x")
    with pytest.raises(OSError) as ei:
        os.rmdir(d)
    assert ei.value.errno == errno.ENOTEMPTY
    assert (d / "x").read_bytes() == b"x"
    os.unlink(d / "x")
    os.rmdir(d)
    assert not d.exists()
    assert server_names(module_peer, rel(module_mount, folder)) == []
    os.makedirs(folder / "p" / "q" / "r")
    assert (folder / "p" / "q" / "r").is_dir()
    assert server_names(module_peer, rel(module_mount, folder / "p" / "q")) == ["r"]


# -- timestamps and modes --------------------------------------------------------------------------


def test_utimens_ns(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    p = folder / "u"
    p.write_bytes(b"u")
    mt = T2001 * 10**9 + 123_456_789
    os.utime(p, ns=(T2001 * 10**9, mt))
    assert os.stat(p).st_mtime_ns == mt
    with open(p, "rb") as f:
        assert os.fstat(f.fileno()).st_mtime_ns == mt
    with drive_of(module_peer) as d:
        assert d.stat(rel(module_mount, p)).mtime_ns == mt


def test_utimens_omit_and_now(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    p = folder / "u"
    p.write_bytes(b"u")
    # mtime only, atime UTIME_OMIT: the mtime must take effect
    utimensat(p, (0, UTIME_OMIT), (T2001, 5))
    assert os.stat(p).st_mtime_ns == T2001 * 10**9 + 5
    # mtime UTIME_OMIT: the mtime stays
    utimensat(p, (T2001 + 100, 0), (0, UTIME_OMIT))
    assert os.stat(p).st_mtime_ns == T2001 * 10**9 + 5
    # both omitted: nothing changes
    utimensat(p, (0, UTIME_OMIT), (0, UTIME_OMIT))
    assert os.stat(p).st_mtime_ns == T2001 * 10**9 + 5
    # UTIME_NOW
    before = time.time_ns()
    utimensat(p, (0, UTIME_OMIT), (0, UTIME_NOW))
    after = time.time_ns()
    got = os.stat(p).st_mtime_ns
    assert before - 10**9 <= got <= after + 10**9, (before, got, after)
    # os.utime(p) with no times is utimensat(NULL): now
    os.utime(p, ns=(T2001 * 10**9, T2001 * 10**9))
    os.utime(p)
    assert abs(os.stat(p).st_mtime_ns - time.time_ns()) < 5 * 10**9
    with drive_of(module_peer) as d:
        assert abs(d.stat(rel(module_mount, p)).mtime_ns - got) < 5 * 10**9


def test_utimens_on_open_file_survives_close(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    """touch -d on a file being written (tar, cp -p, rsync do this before close) is kept by the commit."""
    p = folder / "w"
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"data")
        os.utime(fd, ns=(T2001 * 10**9, T2001 * 10**9 + 42))
    finally:
        os.close(fd)
    assert os.stat(p).st_mtime_ns == T2001 * 10**9 + 42
    with drive_of(module_peer) as d:
        e = d.stat(rel(module_mount, p))
        assert e.mtime_ns == T2001 * 10**9 + 42 and d.read_file(rel(module_mount, p)) == b"data"


def test_chmod_kept_across_remount(fuse_server: ServerProcess, tmp_path: Path,
                                   mounts: Callable[[Account, Path], Mount]) -> None:
    acct = signup(fuse_server.url, tmp_path)
    m = mounts(acct, tmp_path / "mnt").mount()
    f = m.path / "script.sh"
    f.write_bytes(b"#!/bin/sh\n")
    os.chmod(f, 0o751)
    os.mkdir(m.path / "private")
    os.chmod(m.path / "private", 0o700)
    assert os.stat(f).st_mode & 0o7777 == 0o751
    m.unmount()
    m.mount()
    assert os.stat(m.path / "script.sh").st_mode & 0o7777 == 0o751
    assert os.stat(m.path / "private").st_mode & 0o7777 == 0o700
    peer = login(acct, tmp_path)
    with drive_of(peer) as d:
        assert d.stat("/script.sh").mode == 0o751


# -- fsync and statfs ------------------------------------------------------------------------------


def test_fsync_commits_to_the_server(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    p = folder / "synced"
    p.write_bytes(b"v1")
    data = random.Random(3).randbytes(MiB + 12345)
    fd = os.open(p, os.O_RDWR | os.O_TRUNC)
    try:
        os.write(fd, data)
        os.fsync(fd)
        # a second client, who knows only what the server has, reads it while the file is still open
        assert server_read(module_peer, rel(module_mount, p)) == data
        os.write(fd, b"more")
        os.fdatasync(fd)
        assert server_read(module_peer, rel(module_mount, p)) == data + b"more"
    finally:
        os.close(fd)


def test_statfs_reports_the_quota(folder: Path, module_mount: Mount, module_account: Account) -> None:
    (folder / "some").write_bytes(os.urandom(MiB + 1))
    acct = module_account.server_account()
    quota, used = int(acct["quota"]), int(acct["used"])
    assert used > MiB
    st = os.statvfs(module_mount.path)
    size = st.f_blocks * st.f_frsize
    avail = st.f_bavail * st.f_frsize
    assert abs(size - quota) < st.f_frsize, (size, quota)
    assert abs(avail - (quota - used)) < st.f_frsize, (avail, quota - used)
    assert st.f_bfree * st.f_frsize == avail
    out = subprocess.run(["df", "-B1", "--output=size,avail", str(module_mount.path)], capture_output=True,
                         text=True, check=True).stdout.split()
    df_size, df_avail = int(out[-2]), int(out[-1])
    assert abs(df_size - quota) < st.f_frsize and abs(df_avail - (quota - used)) < st.f_frsize, out


# -- errno -----------------------------------------------------------------------------------------


def test_errno_values(folder: Path) -> None:
    f = folder / "file"
    f.write_bytes(b"x")
    d = folder / "dir"
    d.mkdir()
    (d / "inner").write_bytes(b"i")
    empty = folder / "empty"
    empty.mkdir()
    missing = folder / "missing"
    got = {
        "stat missing": errno_of(lambda: os.stat(missing)),
        "open missing": errno_of(lambda: os.open(missing, os.O_RDONLY)),
        "unlink missing": errno_of(lambda: os.unlink(missing)),
        "rmdir missing": errno_of(lambda: os.rmdir(missing)),
        "rename missing": errno_of(lambda: os.rename(missing, folder / "m2")),
        "create in missing folder": errno_of(lambda: os.open(missing / "x", os.O_CREAT | os.O_WRONLY)),
        "mkdir existing": errno_of(lambda: os.mkdir(d)),
        "mkdir over file": errno_of(lambda: os.mkdir(f)),
        "O_EXCL existing": errno_of(lambda: os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY)),
        "stat under file": errno_of(lambda: os.stat(f / "x")),
        "create under file": errno_of(lambda: os.open(f / "x", os.O_CREAT | os.O_WRONLY)),
        "rmdir file": errno_of(lambda: os.rmdir(f)),
        "listdir file": errno_of(lambda: os.listdir(f)),
        "open dir for writing": errno_of(lambda: os.open(d, os.O_WRONLY)),
        "unlink dir": errno_of(lambda: os.unlink(d)),
        "rename file over dir": errno_of(lambda: os.rename(f, empty)),
        "rename dir over file": errno_of(lambda: os.rename(empty, f)),
        "rmdir non-empty": errno_of(lambda: os.rmdir(d)),
        "rename dir over non-empty dir": errno_of(lambda: os.rename(empty, d)),
        "rename dir into itself": errno_of(lambda: os.rename(d, d / "sub")),
    }
    expect = {
        "stat missing": "ENOENT", "open missing": "ENOENT", "unlink missing": "ENOENT", "rmdir missing": "ENOENT",
        "rename missing": "ENOENT", "create in missing folder": "ENOENT",
        "mkdir existing": "EEXIST", "mkdir over file": "EEXIST", "O_EXCL existing": "EEXIST",
        "stat under file": "ENOTDIR", "create under file": "ENOTDIR", "rmdir file": "ENOTDIR",
        "listdir file": "ENOTDIR",
        "open dir for writing": "EISDIR", "unlink dir": "EISDIR", "rename file over dir": "EISDIR",
        "rename dir over file": "ENOTDIR",
        "rmdir non-empty": "ENOTEMPTY", "rename dir over non-empty dir": "ENOTEMPTY",
        "rename dir into itself": "EINVAL",
    }
    assert got == expect
    # nothing above changed anything
    assert sorted(os.listdir(folder)) == ["dir", "empty", "file"]
    assert f.read_bytes() == b"x" and os.listdir(d) == ["inner"]


def test_enospc_over_quota_keeps_previous_content(small_quota_server: ServerProcess, tmp_path: Path,
                                                  mounts: Callable[[Account, Path], Mount]) -> None:
    acct = signup(small_quota_server.url, tmp_path)
    m = mounts(acct, tmp_path / "mnt").mount()
    p = m.path / "big"
    old = os.urandom(100_000)
    p.write_bytes(old)
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    write_err = None
    try:
        for _ in range(5):
            os.write(fd, os.urandom(MiB))
    except OSError as e:  # pragma: no cover - reported below
        write_err = e
    with pytest.raises(OSError) as ei:
        os.close(fd)
    assert write_err is None, f"write() failed ({write_err}); the failure belongs to close()"
    assert ei.value.errno == errno.ENOSPC, ei.value
    assert p.read_bytes() == old
    assert os.stat(p).st_size == len(old)
    peer = login(acct, tmp_path)
    assert server_read(peer, "/big") == old
    # the mount still works, and a file that fits is stored
    (m.path / "small").write_bytes(b"fits")
    assert server_read(peer, "/small") == b"fits"


def test_eio_on_tampered_chunk(own_server: ServerProcess, tmp_path: Path,
                               mounts: Callable[[Account, Path], Mount]) -> None:
    acct = signup(own_server.url, tmp_path)
    chunks = own_server.data_dir / "chunks"
    before = set(chunks.rglob("*")) if chunks.exists() else set()
    m = mounts(acct, tmp_path / "mnt").mount()
    data = os.urandom(2 * MiB + 10)
    (m.path / "victim").write_bytes(data)
    (m.path / "bystander").write_bytes(b"fine")
    settle()  # the mount writes back: the chunks reach the server when its uploader has sent them
    new = sorted(p for p in set(chunks.rglob("*")) - before if p.is_file() and len(p.name) == 64)
    assert len(new) == 4, new  # three chunks of victim and one of bystander
    victims = [p for p in new if p.stat().st_size > MiB]  # the two full chunks of victim
    assert len(victims) == 2
    target = victims[0]
    blob = bytearray(target.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    target.write_bytes(blob)
    m.unmount()
    # a fresh client: nothing cached, every byte comes from the server
    fresh = login(acct, tmp_path)
    m2 = mounts(fresh, tmp_path / "mnt2").mount()
    with open(m2.path / "victim", "rb") as f:
        with pytest.raises(OSError) as ei:
            f.read()
    assert ei.value.errno == errno.EIO
    got = b""
    fd = os.open(m2.path / "victim", os.O_RDONLY)
    try:
        for off in range(0, len(data), 65536):  # never wrong bytes: each read gives the right ones or EIO
            try:
                piece = os.pread(fd, 65536, off)
            except OSError as e:
                assert e.errno == errno.EIO
                continue
            assert piece == data[off:off + len(piece)], off
            got += piece
    finally:
        os.close(fd)
    assert len(got) < len(data)
    assert (m2.path / "bystander").read_bytes() == b"fine"
