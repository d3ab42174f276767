"""chown, chmod and the permission checks that follow from them (pjdfstest chown/, chmod/, open/, unlink/)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from support.posix import NOBODY, OTHER, as_user, errno_as


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_chown_is_stored_and_enforced(here: Path) -> None:
    f = here / "f"
    f.write_bytes(b"secret")
    f.chmod(0o600)
    os.chown(f, NOBODY, NOBODY)
    st = os.lstat(f)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    assert errno_as(NOBODY, NOBODY, "open('f').read()", here) == "secret"  # the owner reads
    assert errno_as(OTHER, OTHER, "open('f').read()", here) == "EACCES"  # others may not
    os.chown(f, -1, OTHER)  # -1 leaves the uid
    assert (os.lstat(f).st_uid, os.lstat(f).st_gid) == (NOBODY, OTHER)
    os.chown(f, 0, 0)  # back to the mounting user
    assert (os.lstat(f).st_uid, os.lstat(f).st_gid) == (0, 0)


def test_only_root_gives_files_away(here: Path) -> None:
    os.chown(here, NOBODY, NOBODY)
    assert errno_as(NOBODY, NOBODY, "open('mine', 'w').close()", here) == "0"
    st = os.lstat(here / "mine")
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)  # a new file belongs to its creator
    assert errno_as(NOBODY, NOBODY, "os.chown('mine', 65533, -1)", here) == "EPERM"
    assert errno_as(OTHER, OTHER, "os.chmod('mine', 0o777)", here) == "EPERM"
    assert errno_as(NOBODY, NOBODY, "os.chmod('mine', 0o640)", here) == "0"
    assert mode(here / "mine") == 0o640


def test_chown_clears_setuid_and_setgid(here: Path) -> None:
    f = here / "f"
    f.write_bytes(b"x")
    f.chmod(0o6755)
    assert mode(f) == 0o6755
    os.chown(f, NOBODY, NOBODY)
    assert mode(f) == 0o755


def test_write_by_a_non_owner_clears_setuid(here: Path) -> None:
    f = here / "f"
    f.write_bytes(b"x")
    f.chmod(0o4777)
    assert errno_as(NOBODY, NOBODY, "open('f', 'a').write('more')", here) == "4"
    assert mode(f) == 0o777


def test_chmod_keeps_every_bit_even_none(here: Path) -> None:
    f = here / "f"
    fd = os.open(f, os.O_CREAT | os.O_WRONLY, 0o000)  # create with mode 0, as FreeBSD's mv -f does
    os.close(fd)
    assert mode(f) == 0
    for m in (0o1777, 0o4711, 0o2750, 0o644):
        f.chmod(m)
        assert mode(f) == m


def test_sticky_folder_protects_other_users_files(here: Path) -> None:
    here.chmod(0o1777)
    os.chown(here, 0, 0)
    assert errno_as(NOBODY, NOBODY, "open('a', 'w').close()", here) == "0"
    assert errno_as(OTHER, OTHER, "os.unlink('a')", here) == "EPERM"
    assert errno_as(OTHER, OTHER, "os.rename('a', 'b')", here) == "EPERM"
    assert errno_as(NOBODY, NOBODY, "os.rename('a', 'b')", here) == "0"
    assert errno_as(NOBODY, NOBODY, "os.unlink('b')", here) == "0"


def test_setgid_folder_hands_its_group_down(here: Path) -> None:
    os.chown(here, 0, OTHER)
    here.chmod(0o2777)
    assert as_user(NOBODY, NOBODY, "print(t(os.mkdir, 'd'), t(lambda: open('f', 'w').close()))", here) == "0 0"
    for name in ("d", "f"):
        assert os.lstat(here / name).st_gid == OTHER, name
    assert mode(here / "d") & stat.S_ISGID  # a folder inherits the setgid bit too


def test_permissions_of_open_truncate_and_utimes(here: Path) -> None:
    f = here / "f"
    f.write_bytes(b"data")
    f.chmod(0o644)
    assert errno_as(NOBODY, NOBODY, "open('f', 'r+')", here) == "EACCES"
    assert errno_as(NOBODY, NOBODY, "os.truncate('f', 0)", here) == "EACCES"
    assert errno_as(NOBODY, NOBODY, "os.utime('f', (1, 1))", here) == "EPERM"  # explicit times: owner only
    assert errno_as(NOBODY, NOBODY, "os.utime('f')", here) == "EACCES"  # "now": owner or writer
    f.chmod(0o646)
    assert errno_as(NOBODY, NOBODY, "os.utime('f')", here) == "0"
    assert errno_as(NOBODY, NOBODY, "os.truncate('f', 1)", here) == "0"
    assert f.read_bytes() == b"d"


def test_ownership_is_kept_on_the_server(here: Path, posix_mount: object) -> None:
    """Owner, group and mode are in the encrypted meta: a second client sees them (not only this mount's memory)."""
    from support.mounts import drive_of

    f = here / "owned"
    f.write_bytes(b"x")
    os.chown(f, NOBODY, OTHER)
    f.chmod(0o2640)
    with drive_of(posix_mount.acct) as d:  # type: ignore[attr-defined]
        e = d.stat(f"/{here.name}/owned")
    assert (e.uid, e.gid, e.mode) == (NOBODY, OTHER, 0o2640)
    with pytest.raises(OSError) as exc:
        os.chown(here / "missing", 1, 1)
    assert exc.value.errno == errno.ENOENT
