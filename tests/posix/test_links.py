"""Hard links: several names, one file (pjdfstest link/, and rename/ and unlink/ of linked files)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from support.mounts import Mount, drive_of
from support.posix import NOBODY, OTHER, errno_as


def err(fn: object, *args: object) -> int:
    with pytest.raises(OSError) as exc:
        fn(*args)  # type: ignore[operator]
    return exc.value.errno


def test_names_share_content_attributes_and_inode(here: Path) -> None:
    a, b, c = here / "a", here / "b", here / "sub" / "c"
    c.parent.mkdir()
    a.write_bytes(b"one")
    os.link(a, b)
    os.link(b, c)  # a link of a link names the file, in another folder too
    assert [os.lstat(p).st_nlink for p in (a, b, c)] == [3, 3, 3]
    assert len({os.lstat(p).st_ino for p in (a, b, c)}) == 1
    b.write_bytes(b"two, longer")  # written through one name, read through the others at once
    assert a.read_bytes() == c.read_bytes() == b"two, longer"
    os.chmod(c, 0o600)
    os.chown(a, NOBODY, OTHER)
    for p in (a, b, c):
        st = os.lstat(p)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size) == (0o600, NOBODY, OTHER, 11), p


def test_unlinking_one_name_keeps_the_others(here: Path, posix_mount: Mount) -> None:
    a, b, c = here / "a", here / "b", here / "c"
    a.write_bytes(b"kept")
    os.link(a, b)
    os.link(a, c)
    os.unlink(a)  # the first name: the file takes another name's place
    assert not a.exists() and b.read_bytes() == c.read_bytes() == b"kept"
    assert os.lstat(b).st_nlink == os.lstat(c).st_nlink == 2
    os.unlink(c)
    assert os.lstat(b).st_nlink == 1 and b.read_bytes() == b"kept"
    with drive_of(posix_mount.acct) as d:  # a second client sees one file, one name, the content
        assert [e.name for e in d.listdir(f"/{here.name}")] == ["b"]
        assert d.read_file(f"/{here.name}/b") == b"kept" and d.stat(f"/{here.name}/b").nlink == 1
    os.unlink(b)
    assert os.listdir(here) == []


def test_rename_over_and_between_names(here: Path) -> None:
    a, b, other = here / "a", here / "b", here / "other"
    a.write_bytes(b"linked")
    os.link(a, b)
    os.rename(a, b)  # two names of one file: rename does nothing (POSIX)
    assert a.exists() and b.exists() and os.lstat(a).st_nlink == 2
    other.write_bytes(b"other")
    os.rename(other, a)  # replaces one name: the file lives on under the other
    assert a.read_bytes() == b"other" and b.read_bytes() == b"linked" and os.lstat(b).st_nlink == 1
    os.link(b, here / "c")
    os.rename(b, here / "d")  # renaming a name keeps the link count
    assert os.lstat(here / "d").st_nlink == os.lstat(here / "c").st_nlink == 2


def test_link_refusals(here: Path) -> None:
    (here / "d").mkdir()
    (here / "f").write_bytes(b"x")
    (here / "f").chmod(0o666)  # (fs.protected_hardlinks: others may link a file they may read and write)
    assert err(os.link, here / "d", here / "d2") == errno.EPERM  # no hard links to folders
    assert err(os.link, here / "f", here / "d") == errno.EEXIST
    assert err(os.link, here / "missing", here / "x") == errno.ENOENT
    assert err(os.link, here / "f", here / "nope" / "x") == errno.ENOENT
    assert err(os.link, here / "f", here / ("n" * 256)) == errno.ENAMETOOLONG
    here.chmod(0o755)
    assert errno_as(NOBODY, NOBODY, "os.link('f', 'g')", here) == "EACCES"  # no write permission on the folder
    assert os.lstat(here / "f").st_nlink == 1


def test_special_files_and_symlinks_can_be_linked(here: Path) -> None:
    os.mkfifo(here / "p")
    os.symlink("target", here / "s")
    os.link(here / "p", here / "p2")
    os.link(here / "s", here / "s2", follow_symlinks=False)
    assert stat.S_ISFIFO(os.lstat(here / "p2").st_mode) and os.lstat(here / "p").st_nlink == 2
    assert os.readlink(here / "s2") == "target" and os.lstat(here / "s2").st_nlink == 2


def test_a_file_named_only_in_another_folder_lives_on_then_goes(here: Path, posix_mount: Mount) -> None:
    """Unlinking a file's first name when its links are in other folders: the file is kept without a name
    (parked at the top of the tree, hidden), its link works; unlinking the last link sends it to the trash."""
    (here / "d1").mkdir()
    (here / "d2").mkdir()
    (here / "d1" / "f").write_bytes(b"content")
    os.link(here / "d1" / "f", here / "d2" / "g")
    os.unlink(here / "d1" / "f")
    assert os.listdir(here / "d1") == [] and (here / "d2" / "g").read_bytes() == b"content"
    assert os.lstat(here / "d2" / "g").st_nlink == 1
    (here / "d2" / "g").write_bytes(b"still one file")
    assert (here / "d2" / "g").read_bytes() == b"still one file"

    def parked() -> list[str]:
        with drive_of(posix_mount.acct) as d:
            rows = d.index.children(d.session.root_node_id)
            return [r.node_id for r in rows if r.kind == "file" and d.tree.meta(r).nameless]

    assert len(parked()) == 1
    os.unlink(here / "d2" / "g")
    assert parked() == [] and os.listdir(here / "d2") == []
