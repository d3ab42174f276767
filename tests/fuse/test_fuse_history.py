"""The trash and the versions as read-only folders of the mount: /.trash/ and /.versions/<path>/.

Listed and read with ordinary tools, refused for writing (EROFS/EACCES), and
restored by moving an entry out (`mv`); never listed in the root, so `ls`,
`cp -r` and `du` of the mount do not see them.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from support.mounts import Mount, errno_of, settle


def test_trash_and_versions_through_the_mount(module_mount: Mount, folder: Path) -> None:
    root = module_mount.path
    rel = folder.relative_to(root)
    for text in (b"first", b"second", b"third"):
        (folder / "a.txt").write_bytes(text)
        settle()  # each close is a version once uploaded
    (folder / "b.txt").write_bytes(b"to be deleted")
    settle()
    (folder / "b.txt").unlink()
    assert ".trash" not in os.listdir(root) and ".versions" not in os.listdir(root)

    trash = root / ".trash"
    assert "b.txt" in os.listdir(trash)
    assert (trash / "b.txt").read_bytes() == b"to be deleted"
    assert errno_of(lambda: (trash / "b.txt").write_bytes(b"x")) in ("EROFS", "EACCES")
    assert errno_of(lambda: (trash / "new.txt").write_bytes(b"x")) == "EACCES"
    assert errno_of(lambda: (trash / "b.txt").unlink()) == "EACCES"
    assert trash.stat().st_mode & 0o777 == 0o500  # only the mounting user enters (with --allow-other too)
    assert (root / ".versions").stat().st_mode & 0o777 == 0o500
    for change in (lambda: os.chmod(trash / "b.txt", 0o600), lambda: os.utime(trash / "b.txt", (1, 1)),
                   lambda: os.truncate(trash / "b.txt", 0), lambda: os.setxattr(trash / "b.txt", "user.x", b"1")):
        assert errno_of(change) == "EROFS"
    with open(trash / "b.txt", "rb") as f:  # a descriptor opened in the view changes nothing either
        assert errno_of(lambda: os.fchmod(f.fileno(), 0o600)) == "EROFS"
        assert errno_of(lambda: os.utime(f.fileno(), (1, 1))) == "EROFS"
    assert (trash / "b.txt").read_bytes() == b"to be deleted"
    os.rename(trash / "b.txt", folder / "b.txt")  # mv out of the trash: restored
    assert (folder / "b.txt").read_bytes() == b"to be deleted"
    assert "b.txt" not in os.listdir(trash)

    versions = root / ".versions" / rel / "a.txt"
    assert sorted(os.listdir(versions)) == ["a v1.txt", "a v2.txt", "a v3.txt"]
    assert (versions / "a v1.txt").read_bytes() == b"first"
    assert (versions / "a v2.txt").stat().st_size == len(b"second")
    assert errno_of(lambda: (versions / "a v1.txt").write_bytes(b"x")) in ("EROFS", "EACCES")
    os.rename(versions / "a v1.txt", folder / "a.txt")  # mv onto the file: version 1 becomes its newest
    assert (folder / "a.txt").read_bytes() == b"first"
    assert sorted(os.listdir(versions)) == ["a v1.txt", "a v2.txt", "a v3.txt", "a v4.txt"]
    os.rename(versions / "a v2.txt", folder / "a-second.txt")  # mv elsewhere: a new file with it
    assert (folder / "a-second.txt").read_bytes() == b"second"
    with pytest.raises(OSError) as e:
        os.stat(root / ".versions" / rel / "nope.txt")
    assert e.value.errno == errno.ENOENT
