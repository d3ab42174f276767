"""mkfifo, mknod and sockets: attribute-only nodes (pjdfstest mkfifo/, mknod/)."""

from __future__ import annotations

import errno
import os
import socket
import stat
import threading
from pathlib import Path

import pytest
from support.mounts import Mount, drive_of


def test_fifo_carries_data_between_processes(here: Path) -> None:
    p = here / "pipe"
    os.mkfifo(p, 0o640)
    st = os.lstat(p)
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640 and st.st_size == 0
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(p.read_bytes()))
    reader.start()
    p.write_bytes(b"through the kernel")
    reader.join(10)
    assert got == [b"through the kernel"]
    with pytest.raises(FileExistsError):
        os.mkfifo(p)
    os.unlink(p)
    assert not p.exists()


def test_device_nodes_keep_their_numbers(here: Path) -> None:
    for kind, name in ((stat.S_IFCHR, "c"), (stat.S_IFBLK, "b")):
        dev = os.makedev(1, 2)
        os.mknod(here / name, kind | 0o600, dev)
        st = os.lstat(here / name)
        assert stat.S_IFMT(st.st_mode) == kind and stat.S_IMODE(st.st_mode) == 0o600
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 2)
    os.rename(here / "c", here / "c2")
    assert os.major(os.lstat(here / "c2").st_rdev) == 1


def test_unix_socket_binds_in_the_mount(here: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    try:
        os.chdir(here)  # a socket path is limited to 108 bytes; the mount's may be longer
        s.bind("sock")
    finally:
        os.chdir("/")
        s.close()
    assert stat.S_ISSOCK(os.lstat(here / "sock").st_mode)
    os.unlink(here / "sock")


def test_special_files_are_kept_on_the_server(here: Path, posix_mount: Mount) -> None:
    os.mkfifo(here / "f")
    os.mknod(here / "d", stat.S_IFCHR | 0o644, os.makedev(4, 5))
    with drive_of(posix_mount.acct) as d:
        f, dev = d.stat(f"/{here.name}/f"), d.stat(f"/{here.name}/d")
    assert (f.special, dev.special, dev.rdev) == ("fifo", "chr", os.makedev(4, 5))
    with pytest.raises(OSError) as exc:
        os.mknod(here / "nope" / "x", stat.S_IFIFO | 0o644)
    assert exc.value.errno == errno.ENOENT


def test_device_nodes_and_setuid_bits_are_inert(here: Path, posix_mount: Mount) -> None:
    """A co-writer of a shared folder writes owners, modes and device numbers: the mount is nosuid and nodev,
    so a root-owned setuid file or a device node from anyone's meta grants nothing on this machine."""
    options = next(line.split()[3].split(",") for line in Path("/proc/mounts").read_text().splitlines()
                   if line.split()[1] == str(posix_mount.path))
    assert "nosuid" in options and "nodev" in options
    os.mknod(here / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers
    with pytest.raises(PermissionError):
        open(here / "null", "rb")  # noqa: SIM115 - the open itself is refused
