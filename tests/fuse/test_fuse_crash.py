"""Crashes and unmounts: what a SIGKILL of the mount process leaves, and what unmount commits.

Each test has its own account (and mount point) on the session's server; a
second client of the account checks what reached the server.
"""

from __future__ import annotations

import errno
import os
import random
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import pytest
from support.mounts import (
    Account,
    Mount,
    drive_of,
    errno_of,
    login,
    mounted,
    pid_alive,
    server_names,
    server_read,
    signup,
    wait_until,
)
from support.server import ServerProcess

MiB = 1 << 20


@pytest.fixture
def acct(fuse_server: ServerProcess, tmp_path: Path) -> Account:
    return signup(fuse_server.url, tmp_path)


@pytest.fixture
def mount(acct: Account, tmp_path: Path, mounts: Callable[[Account, Path], Mount]) -> Mount:
    return mounts(acct, tmp_path / "mnt").mount()


def wait_dead(mount: Mount) -> None:
    """Until stat says "Transport endpoint is not connected" (the kernel answers from its attribute cache for
    up to attr_timeout = 1 s after the crash; see test_dead_mount_is_detected_at_once)."""
    wait_until(lambda: errno_of(lambda: os.stat(mount.path)) == "ENOTCONN", 5, "stat never said ENOTCONN")


def test_dead_mount_is_cleaned_by_the_next_mount(mount: Mount, acct: Account) -> None:
    (mount.path / "kept").write_bytes(b"committed before the crash")
    mount.kill()
    assert not pid_alive(mount.pid)
    wait_dead(mount)
    assert mounted(mount.path)
    # no manual fusermount: `megadrive mount` notices the dead mount and replaces it
    mount.mount()
    assert mount.last is not None and "dead mount" in mount.last.stderr, mount.last.stderr
    assert (mount.path / "kept").read_bytes() == b"committed before the crash"
    (mount.path / "after").write_bytes(b"works")
    assert sorted(os.listdir(mount.path)) == ["after", "kept"]


def test_unmount_cleans_a_dead_mount(mount: Mount) -> None:
    mount.kill()
    wait_dead(mount)
    r = mount.unmount_cli()
    assert r.returncode == 0, r.stderr
    assert "dead mount" in r.stdout
    assert not mounted(mount.path)
    assert os.listdir(mount.path) == []


def test_dead_mount_is_detected_at_once(mount: Mount) -> None:
    """`megadrive mount` / `unmount` right after a crash must see the dead mount (else: 'already a mount point')."""
    from megadrive.mount.fuse import is_stale

    os.stat(mount.path)  # what any program looking at the folder just did
    mount.kill()
    assert errno_of(lambda: os.listdir(mount.path)) in ("ENOTCONN", "ECONNABORTED")  # the mount is dead ...
    assert is_stale(mount.path)  # ... and the check `megadrive mount` and `unmount` make must say so


def test_fsynced_data_survives_sigkill(mount: Mount, acct: Account, tmp_path: Path) -> None:
    rng = random.Random(11)
    synced = rng.randbytes(MiB + 4321)
    p = mount.path / "journal.db"
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, synced)
        os.fsync(fd)
        os.write(fd, b"not synced")  # may be lost, must not corrupt what was synced
        mount.kill()  # fsync made it durable here (the journal), maybe not yet on the server
    finally:
        with suppress(OSError):
            os.close(fd)
    mount.mount()  # the next start uploads what the journal holds
    assert (mount.path / "journal.db").read_bytes()[:len(synced)] == synced
    peer = login(acct, tmp_path)
    assert server_read(peer, "/journal.db")[:len(synced)] == synced
    assert server_names(peer, "/") == ["journal.db"]


def test_unmount_while_a_file_is_open(mount: Mount, acct: Account, tmp_path: Path) -> None:
    """`megadrive unmount` with a descriptor still open: either it commits it, or it says clearly it is busy."""
    p = mount.path / "open.txt"
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    closed = False
    try:
        os.write(fd, b"written, not closed")
        r = mount.unmount_cli()
        if r.returncode != 0:
            lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
            assert len(lines) == 1 and lines[0].startswith("megadrive: error:"), r.stderr
            assert "busy" in lines[0], lines[0]
            assert "Traceback" not in r.stderr
            assert mounted(mount.path)  # nothing half-done
            os.close(fd)
            closed = True
            r = mount.unmount_cli()
        assert r.returncode == 0, r.stderr
        assert not mounted(mount.path)
    finally:
        if not closed:
            with suppress(OSError):
                os.close(fd)
    peer = login(acct, tmp_path)
    assert server_read(peer, "/open.txt") == b"written, not closed"


def test_unsent_writes_are_replayed_after_sigkill(mount: Mount, acct: Account, tmp_path: Path) -> None:
    data = random.Random(12).randbytes(3 * MiB)
    p = mount.path / "big.bin"
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, data)  # staged, never closed nor fsynced
        time.sleep(3)  # the mount journals (sealed) data that rested CHECKPOINT_AFTER seconds
        mount.kill()
    finally:
        with suppress(OSError):
            os.close(fd)
    mount.mount()
    names = sorted(os.listdir(mount.path))
    conflict = [n for n in names if n != "big.bin" and "big" in n]
    committed = (mount.path / "big.bin").exists() and (mount.path / "big.bin").read_bytes() == data
    copy = any((mount.path / n).read_bytes() == data for n in conflict)
    assert committed or copy, f"the staged 3 MiB are lost: {names}"
    peer = login(acct, tmp_path)
    on_server = server_names(peer, "/")
    assert any(server_read(peer, "/" + n) == data for n in on_server), on_server


def test_errno_after_crash_is_enotconn_not_a_hang(mount: Mount) -> None:
    (mount.path / "f").write_bytes(b"x")
    fd = os.open(mount.path / "f", os.O_RDONLY)
    try:
        mount.kill()
        with pytest.raises(OSError) as ei:
            os.pread(fd, 1, 0)
        assert ei.value.errno in (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO), ei.value
    finally:
        with suppress(OSError):
            os.close(fd)


def test_conflict_at_close_keeps_the_write_as_a_conflicted_copy(mount: Mount, acct: Account,
                                                                 tmp_path: Path) -> None:
    """Another client commits while a file is open here: nothing is lost. close() returns at once (the
    version is journaled); the uploader finds the file changed and keeps this version as a conflicted copy."""
    p = mount.path / "notes.txt"
    p.write_bytes(b"base")
    peer = login(acct, tmp_path)
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, b"mine, written through the mount")
        with drive_of(peer) as d:
            d.write_file("/notes.txt", b"theirs, from another machine")
    finally:
        os.close(fd)
    names = server_names(peer, "/")
    copies = [n for n in names if n.startswith("notes (conflicted copy")]
    assert len(copies) == 1, names
    assert server_read(peer, "/notes.txt") == b"theirs, from another machine"
    assert server_read(peer, "/" + copies[0]) == b"mine, written through the mount"
