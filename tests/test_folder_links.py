"""Public folder links (real server, real CLI): a visitor without an account lists the folder and saves
it byte for byte; unlinking takes the keys back."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest
from support.accounts import Server, make_drive, megadrive, new_home, ok, one_line_error
from support.evil import EvilServer, leaked_keys

from megadrive.drive import Drive
from megadrive.errors import InvalidPath
from megadrive.format import CHUNK_SIZE
from megadrive.publiclink import read_public_folder

BIG = os.urandom(CHUNK_SIZE + 5)  # two chunks
TREE = {"a.txt": b"first file", "raw/big.bin": BIG, "raw/deeper/note.md": b"# note", "empty.txt": b""}


def anon_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"MEGADRIVE_HOME": str(new_home(tmp_path)), "MEGADRIVE_PASSWORD": "", **extra}


def local_tree(top: Path) -> dict[str, bytes]:
    return {p.relative_to(top).as_posix(): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


HOMES: dict[int, Path] = {}


@pytest.fixture
def album(server: Server, tmp_path: Path) -> Drive:
    home = new_home(tmp_path)
    a = make_drive(server.url, home, "alice")
    HOMES[id(a)] = home
    a.makedirs("/album/raw/deeper")
    a.mkdir("/album/emptydir")
    for rel, data in TREE.items():
        a.write_file(f"/album/{rel}", data)
    a.link("/album/a.txt", "/album/raw/a-again.txt")  # a hard link inside the folder
    a.write_file("/album/binned.txt", b"in the trash")
    a.delete("/album/binned.txt")
    a.write_file("/outside.txt", b"not linked")
    return a


def test_folder_link_lists_and_saves_the_folder(album: Drive, tmp_path: Path) -> None:
    url = album.sharing.create_link("/album")
    with read_public_folder(url) as folder:
        assert folder.record.name == "album" and folder.refused == 0
        assert [(e.path, e.is_dir) for e in folder.entries] == [
            ("a.txt", False), ("empty.txt", False), ("emptydir", True), ("raw", True), ("raw/a-again.txt", False),
            ("raw/big.bin", False), ("raw/deeper", True), ("raw/deeper/note.md", False)]
        by_path = {e.path: e for e in folder.entries}
        for rel, data in TREE.items():
            with folder.reader(by_path[rel]) as r:
                assert r.read() == data and r.size == len(data)
        with folder.reader(by_path["raw/a-again.txt"]) as r:  # a hard link reads its file
            assert r.read() == TREE["a.txt"]
        with pytest.raises(InvalidPath):
            folder.reader(by_path["raw"])
    env = anon_env(tmp_path)
    listed = ok(megadrive("ls", url, env=env)).splitlines()
    assert listed == ["album/", "a.txt", "empty.txt", "emptydir/", "raw/", "raw/a-again.txt", "raw/big.bin",
                      "raw/deeper/", "raw/deeper/note.md"]
    out = tmp_path / "downloads"
    out.mkdir()
    said = ok(megadrive("get", url, str(out), env=env))
    assert "5 file(s)" in said
    assert local_tree(out / "album") == {**TREE, "raw/a-again.txt": TREE["a.txt"]}
    assert (out / "album" / "emptydir").is_dir()
    # Saving again refuses to write over what is there, and changes nothing.
    line = one_line_error(megadrive("get", url, str(out), env=env))
    assert "already exists" in line
    assert local_tree(out / "album") == {**TREE, "raw/a-again.txt": TREE["a.txt"]}
    album.close()


def test_password_folder_link_and_refusals(album: Drive, tmp_path: Path) -> None:
    url = ok(megadrive("link", "/album", "--password", env={
        "MEGADRIVE_HOME": str(HOMES[id(album)]), "MEGADRIVE_LINK_PASSWORD": "amber-kite-7"})).strip()
    assert url.endswith("#p")
    wrong = megadrive("ls", url, env=anon_env(tmp_path, MEGADRIVE_LINK_PASSWORD="nope"))
    assert "wrong link key or password" in one_line_error(wrong)
    listed = ok(megadrive("ls", "-l", url, env=anon_env(tmp_path, MEGADRIVE_LINK_PASSWORD="amber-kite-7")))
    assert f"{len(BIG):>12} raw/big.bin" in listed.splitlines()
    with pytest.raises(InvalidPath, match="root folder cannot be linked"):
        album.sharing.create_link("/")
    album.close()


def test_unlinking_a_folder_takes_its_keys_back(album: Drive, server: Server, tmp_path: Path) -> None:
    url = album.sharing.create_link("/album")
    key = base64.urlsafe_b64decode(url.split("#", 1)[1] + "==")
    with read_public_folder(url) as folder:
        held = {folder.record.key} | {e.meta.key for e in folder.entries}
    said = ok(megadrive("unlink", "/album", env={"MEGADRIVE_HOME": str(HOMES[id(album)])}))
    assert "Removed 1 link(s)" in said
    gone = megadrive("ls", url, env=anon_env(tmp_path))
    one_line_error(gone)
    assert gone.returncode == 4  # not found
    album.refresh()
    album.write_file("/album/raw/after.txt", b"written after the unlink")
    album.write_file("/album/a.txt", b"a new version after the unlink")
    rows = EvilServer(server.data).rows()
    reach = leaked_keys(held | {key}, rows)
    for path in ("/album", "/album/raw", "/album/raw/after.txt", "/album/a.txt"):
        assert album.resolve(path).verified().key not in reach, path
    album.close()


def test_moving_out_of_a_linked_folder_re_keys(album: Drive) -> None:
    """A sibling of the share rule: a folder that leaves a linked folder keeps no key the link gave out."""
    url = album.sharing.create_link("/album")
    with read_public_folder(url) as folder:
        held = {e.meta.key for e in folder.entries if e.path == "raw/deeper"}
    album.rename("/album/raw/deeper", "/deeper")
    assert album.resolve("/deeper").verified().key not in held
    with read_public_folder(url) as folder:
        assert "raw/deeper" not in {e.path for e in folder.entries} and folder.refused == 0
    album.close()


def test_a_folder_link_lists_what_the_owner_changes(album: Drive, tmp_path: Path) -> None:
    url = album.sharing.create_link("/album")
    album.rename("/album/a.txt", "/album/renamed.txt")
    album.delete("/album/raw/deeper")
    album.write_file("/album/raw/big.bin", b"smaller now")
    with read_public_folder(url) as folder:
        paths = {e.path: e for e in folder.entries}
        assert "renamed.txt" in paths and "a.txt" not in paths and "raw/deeper" not in paths
        with folder.reader(paths["raw/big.bin"]) as r:
            assert hashlib.sha256(r.read()).digest() == hashlib.sha256(b"smaller now").digest()
    album.close()


def test_restoring_out_of_a_linked_folder_re_keys(album: Drive, server: Server) -> None:
    """A sibling of a move: a node restored from the trash to another folder leaves the link's reach."""
    url = album.sharing.create_link("/album")
    with read_public_folder(url) as folder:
        held = {folder.record.key} | {e.meta.key for e in folder.entries}
    album.mkdir("/private")
    album.delete("/album/raw/deeper")
    album.restore("/album/raw/deeper", to="/private/deeper")
    album.write_file("/private/deeper/later.txt", b"written after it left the linked folder")
    reach = leaked_keys(held, EvilServer(server.data).rows())
    for path in ("/private/deeper", "/private/deeper/later.txt"):
        assert album.resolve(path).verified().key not in reach, path
    album.close()


def test_a_re_key_deletes_the_links_inside_that_held_the_old_keys(album: Drive, tmp_path: Path) -> None:
    """Unlinking a folder re-keys everything under it; a link to a folder inside would then show every
    new entry as failing verification (a false alarm), so it is deleted, and the owner told."""
    outer = album.sharing.create_link("/album")
    inner = album.sharing.create_link("/album/raw")
    elsewhere = album.sharing.create_link("/outside.txt")
    said = ok(megadrive("unlink", "/album", env={"MEGADRIVE_HOME": str(HOMES[id(album)])}))
    assert "Removed 1 link(s) to /album; re-keyed" in said and "Also deleted 1 link(s) inside it" in said
    env = anon_env(tmp_path)
    for url in (outer, inner):
        gone = megadrive("ls", url, env=env)
        assert gone.returncode == 4, gone.stderr
    assert "outside.txt" in ok(megadrive("ls", elsewhere, env=env))
    album.close()


def test_same_names_in_one_folder_are_all_saved(album: Drive, server: Server, tmp_path: Path) -> None:
    """Two entries with one name (made at once on two devices, or an older state of one shown by the
    server) are both saved, the later as 'name (2)', a file and a folder alike; nothing is lost or crashes."""
    old_file = album.resolve("/album/a.txt").row.node_id
    old_dir = album.resolve("/album/raw/deeper").row.node_id
    evil = EvilServer(server.data)
    stale = {old_file: evil.row(old_file).meta, old_dir: evil.row(old_dir).meta}
    album.rename("/album/a.txt", "/album/b.txt")
    album.write_file("/album/a.txt", b"the new a")
    album.rename("/album/raw/deeper", "/album/raw/elsewhere")
    album.write_file("/album/raw/deeper", b"a file where the folder was")
    for node_id, meta in stale.items():  # the server shows the older names again
        evil.rewrite(node_id, meta=meta)
    url = album.sharing.create_link("/album")
    out = tmp_path / "dl"
    out.mkdir()
    r = megadrive("get", url, str(out), env=anon_env(tmp_path))
    assert r.returncode == 0, r.stderr
    got = local_tree(out / "album")
    assert sorted(v for k, v in got.items() if k.startswith("a")) == sorted([b"the new a", TREE["a.txt"]])
    assert {k for k in got if k.startswith("a")} == {"a.txt", "a (2).txt"}
    deeper = {k: v for k, v in got.items() if k.startswith("raw/deeper")}
    assert sorted(deeper) in (["raw/deeper", "raw/deeper (2)/note.md"], ["raw/deeper (2)", "raw/deeper/note.md"])
    album.close()
