"""Extended attributes: user.* stored encrypted beside the other attributes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from support.mounts import Mount, drive_of
from support.posix import NOBODY, errno_as

from megadrive.format import MAX_XATTR_BYTES


def err(fn: object, *args: object) -> int:
    with pytest.raises(OSError) as exc:
        fn(*args)  # type: ignore[operator]
    return exc.value.errno


def test_set_get_list_remove(here: Path, posix_mount: Mount) -> None:
    f = here / "f"
    f.write_bytes(b"x")
    os.setxattr(f, "user.tag", b"red")
    os.setxattr(here, "user.colour", b"\x00\xffbinary")
    assert os.getxattr(f, "user.tag") == b"red"
    assert os.listxattr(f) == ["user.tag"]
    assert os.getxattr(here, "user.colour") == b"\x00\xffbinary"
    with drive_of(posix_mount.acct) as d:  # on the server, in the meta
        assert d.stat(f"/{here.name}/f").xattrs == {"user.tag": b"red"}
    os.removexattr(f, "user.tag")
    assert os.listxattr(f) == []
    assert err(os.getxattr, f, "user.tag") == errno.ENODATA
    assert err(os.removexattr, f, "user.tag") == errno.ENODATA


def test_create_and_replace_flags(here: Path) -> None:
    f = here / "f"
    f.write_bytes(b"x")
    assert err(os.setxattr, f, "user.a", b"1", os.XATTR_REPLACE) == errno.ENODATA
    os.setxattr(f, "user.a", b"1", os.XATTR_CREATE)
    assert err(os.setxattr, f, "user.a", b"2", os.XATTR_CREATE) == errno.EEXIST
    os.setxattr(f, "user.a", b"2", os.XATTR_REPLACE)
    assert os.getxattr(f, "user.a") == b"2"


def test_other_namespaces_and_limits(here: Path) -> None:
    f = here / "f"
    f.write_bytes(b"x")
    assert err(os.setxattr, f, "trusted.x", b"1") == errno.EOPNOTSUPP
    assert err(os.getxattr, f, "security.capability") == errno.ENODATA
    os.setxattr(f, "user.big", b"v" * (MAX_XATTR_BYTES - 100))
    assert err(os.setxattr, f, "user.more", b"v" * 200) == errno.ENOSPC
    assert os.listxattr(f) == ["user.big"]  # the refused one left nothing behind


def test_permission_follows_the_mode(here: Path) -> None:
    f = here / "f"
    f.write_bytes(b"x")
    f.chmod(0o644)
    os.setxattr(f, "user.a", b"1")
    assert errno_as(NOBODY, NOBODY, "os.getxattr('f', 'user.a')", here) == "b'1'"
    assert errno_as(NOBODY, NOBODY, "os.setxattr('f', 'user.a', b'2')", here) == "EACCES"
