"""Names, links and folders: errno values as POSIX specifies (pjdfstest link/, rename/, rmdir/, symlink/,
unlink/ and every category's ENAMETOOLONG)."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest


def err(fn: object, *args: object) -> int:
    with pytest.raises(OSError) as exc:
        fn(*args)  # type: ignore[operator]
    return exc.value.errno


def test_name_length(here: Path) -> None:
    ok, long = "n" * 255, "n" * 256
    (here / ok).write_bytes(b"x")
    os.mkdir(here / ("d" * 255))
    assert err(os.open, here / long, os.O_CREAT | os.O_WRONLY) == errno.ENAMETOOLONG
    assert err(os.mkdir, here / long) == errno.ENAMETOOLONG
    assert err(os.unlink, here / long) == errno.ENAMETOOLONG
    assert err(os.rename, here / ok, here / long) == errno.ENAMETOOLONG
    assert err(os.symlink, "t", here / long) == errno.ENAMETOOLONG
    assert err(os.mkfifo, here / long) == errno.ENAMETOOLONG
    assert err(os.chmod, here / long, 0o600) == errno.ENAMETOOLONG
    assert err(os.truncate, here / long, 0) == errno.ENAMETOOLONG
    assert err(os.utime, here / long, (1, 1)) == errno.ENAMETOOLONG
    assert (here / ok).read_bytes() == b"x"  # nothing lost on the refused rename


def test_symlink_loops_and_targets(here: Path) -> None:
    os.symlink("loop2", here / "loop1")
    os.symlink("loop1", here / "loop2")
    assert err(os.stat, here / "loop1") == errno.ELOOP
    os.symlink("x" * 4000, here / "long")  # a target up to PATH_MAX is kept whole
    assert os.readlink(here / "long") == "x" * 4000
    assert err(os.readlink, here) == errno.EINVAL


def test_rmdir_and_rename_of_folders(here: Path) -> None:
    (here / "full" / "sub").mkdir(parents=True)
    (here / "empty").mkdir()
    (here / "file").write_bytes(b"x")
    assert err(os.rmdir, here / "full") == errno.ENOTEMPTY
    assert err(os.rename, here / "empty", here / "full") == errno.ENOTEMPTY
    assert err(os.rename, here / "empty", here / "file") == errno.ENOTDIR
    assert err(os.rename, here / "file", here / "empty") == errno.EISDIR
    assert err(os.rename, here / "full", here / "full" / "sub" / "in") == errno.EINVAL
    assert err(os.rmdir, here / "file") == errno.ENOTDIR
    assert err(os.unlink, here / "empty") == errno.EISDIR
    os.rename(here / "empty", here / "full" / "sub" / "moved")  # into a folder: fine
    assert (here / "full" / "sub" / "moved").is_dir()


def test_link_counts(here: Path) -> None:
    """A folder's link count is 2 plus its subfolders (find(1) relies on it)."""
    assert os.lstat(here).st_nlink == 2
    (here / "a").mkdir()
    (here / "b").mkdir()
    (here / "f").write_bytes(b"x")
    assert os.lstat(here).st_nlink == 4
    os.rename(here / "b", here / "a" / "b")
    assert (os.lstat(here).st_nlink, os.lstat(here / "a").st_nlink) == (3, 3)
    assert os.lstat(here / "f").st_nlink == 1


def test_rm_r_and_find_see_every_entry(here: Path) -> None:
    """Directory entries carry their inode numbers and types (an entry read as inode 0 is skipped by fts:
    rm -r then failed with ENOTEMPTY), and find(1) reaches every level."""
    deep = here / "a" / "b" / "c"
    deep.mkdir(parents=True)
    for d in (here / "a", here / "a" / "b", deep):
        (d / "f").write_bytes(b"x")
    os.mkfifo(deep / "p")
    found = subprocess.run(["find", str(here / "a")], capture_output=True, text=True, check=True).stdout.split()
    assert len(found) == 7  # a, b, c and their files, and the fifo
    listing = subprocess.run(["find", str(here / "a"), "-printf", "%y %p\\n"], capture_output=True, text=True,
                             check=True).stdout
    types = dict(line.split(" ", 1)[::-1] for line in listing.splitlines())
    assert (types[str(deep)], types[str(deep / "f")], types[str(deep / "p")]) == ("d", "f", "p")
    assert {e.inode() for e in os.scandir(here / "a")} == {os.lstat(here / "a" / n).st_ino for n in ("b", "f")}
    r = subprocess.run(["rm", "-r", str(here / "a")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.listdir(here) == []
