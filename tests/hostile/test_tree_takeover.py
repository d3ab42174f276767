"""Hostile: a server that rewrites the tree's shape to make a running client seal under a key it chose.

Findings 1 and 2 of the review ("MEGA: Malleable Encryption Goes Awry", IEEE S&P 2023, is this class):

* the victim's root re-parented under a folder whose key the attacker knows (a sock puppet's share, or a
  subfolder a write-share co-writer made), with a root meta sealed under that key;
* the same against a file held open by id (as the FUSE mount holds it) while it is written;
* a node's row moved under another folder keeping its old blob, while the client had it cached.

Each test then asks what the attacker can open of everything the server stores: nothing new may open.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from support.accounts import PASSWORD, Server, make_drive, new_home
from support.evil import EvilServer, LyingProxy, leaked_keys, opened_under

from megadrive import account, crypto, format
from megadrive.api import Api
from megadrive.drive import Drive
from megadrive.errors import IntegrityError, StaleVersion
from megadrive.format import NodeMeta

SECRET = b"the victim's new private file"


def _attacker_folder(server: Server, tmp_path: Path, victim: Drive, via: str) -> tuple[str, bytes, list[Drive]]:
    """A folder whose key the attacker holds: (its node id, its key, the drives to close).

    ``sockpuppet``: an account the server made shares a folder with the victim, who even accepts it.
    ``cowriter``: the victim shares a folder with write access; the co-writer makes a subfolder in it.
    """
    if via == "sockpuppet":
        evil = make_drive(server.url, new_home(tmp_path), "mallory")
        evil.mkdir("/bait")
        evil.sharing.share("/bait", victim.session.user, "write")
        victim.sharing.accept("mallory")
        loc = evil.resolve("/bait")
        return loc.row.node_id, loc.verified().key, [evil]
    victim.mkdir("/team")
    writer = make_drive(server.url, new_home(tmp_path), "wendy")
    victim.sharing.share("/team", "wendy", "write")
    writer.sharing.accept(victim.session.user)
    writer.mkdir(f"/Shared with me/{victim.session.user}/team/sub")
    loc = writer.resolve(f"/Shared with me/{victim.session.user}/team/sub")
    victim.refresh()
    return loc.row.node_id, loc.verified().key, [writer]


def _forged_root(victim: Drive, parent_id: str, parent_key: bytes) -> tuple[bytes, bytes]:
    """A root meta the attacker chose, sealed under its folder's key: (the blob, the root key it names)."""
    chosen = crypto.random_key()
    forged = NodeMeta(name="root", kind="dir", key=chosen, mtime_ns=1, mode=0o755, rev=10**6)
    root_id = victim.session.root_node_id
    return format.seal_meta(parent_key, victim.owner, parent_id, root_id, forged), chosen


def _reparent_root(evil: EvilServer, victim: Drive, parent_id: str, parent_key: bytes) -> bytes:
    """The server sets the root's parent in its store and seals a root meta it chose under that folder's key."""
    blob, chosen = _forged_root(victim, parent_id, parent_key)
    evil.rewrite(victim.session.root_node_id, parent_id=parent_id, meta=blob)
    return chosen


def _victim(server: Server, tmp_path: Path, via: str) -> tuple[Drive, LyingProxy | None]:
    """The victim; for the co-writer variant it talks through a proxy that lies about the root (re-parenting
    the root under a folder of its own tree would make a cycle that the server's store itself refuses)."""
    if via == "sockpuppet":
        return make_drive(server.url, new_home(tmp_path), "victim"), None
    proxy = LyingProxy(server.url, EvilServer(server.data))
    return make_drive(proxy.url, new_home(tmp_path), "victim"), proxy


@pytest.mark.parametrize("via", ["sockpuppet", "cowriter"])
def test_root_reparented_under_a_folder_the_attacker_keys(server: Server, tmp_path: Path, via: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    victim, proxy = _victim(server, tmp_path, via)
    victim.write_file("/before.txt", b"written before the attack")
    folder, folder_key, others = _attacker_folder(server, tmp_path, victim, via)
    evil = EvilServer(server.data)
    if proxy is None:
        chosen = _reparent_root(evil, victim, folder, folder_key)
    else:
        blob, chosen = _forged_root(victim, folder, folder_key)
        proxy.lies[victim.session.root_node_id] = {"parent_id": folder, "meta": blob}

    with caplog.at_level(logging.ERROR):
        victim.refresh()  # a running gateway or mount pulls the feed like this
    assert any("root folder" in r.getMessage() and "parent" in r.getMessage() for r in caplog.records)
    victim.write_file("/after.txt", SECRET)
    victim.mkdir("/new-folder")
    victim.write_file("/new-folder/deep.txt", SECRET)
    assert victim.read_file("/after.txt") == SECRET and victim.read_file("/before.txt").startswith(b"written")

    # Nothing the victim sealed opens under the attacker's folder key or the root key it chose.
    reach = leaked_keys({folder_key, chosen}, evil.rows())
    mine = {m.key for m in victim.tree.cached_metas() if m.kind == "file"}
    assert mine and not reach & (mine | {victim.resolve("/new-folder").verified().key})
    assert SECRET not in evil.all_bytes()
    if proxy is None:  # a fresh device is refused outright: the root the server names has a parent
        with pytest.raises(IntegrityError, match="not this account's root"):
            account.login(Api(server.url), new_home(tmp_path), "victim", PASSWORD)
    else:
        proxy.close()
    for d in (victim, *others):
        d.close()


def test_a_file_open_by_id_is_committed_under_the_real_root_key(server: Server, tmp_path: Path) -> None:
    """Variant by id: FUSE holds a file open while the root is re-parented; its content key must not move."""
    victim = make_drive(server.url, new_home(tmp_path), "victim")
    victim.write_file("/diary.txt", b"version one")
    node = victim.stat("/diary.txt").node_id
    real = victim.resolve("/diary.txt").verified()
    folder, folder_key, others = _attacker_folder(server, tmp_path, victim, "sockpuppet")
    w = victim.open_write_id(node, journal=True)  # what the mount does at open()
    w.pwrite(0, b"version two, private")
    evil = EvilServer(server.data)
    chosen = _reparent_root(evil, victim, folder, folder_key)
    victim.refresh()
    w.commit()
    w.close()
    assert victim.read_file("/diary.txt") == b"version two, private"
    rows = evil.rows()
    reach = leaked_keys({folder_key, chosen}, rows)
    assert real.key not in reach  # every retained version stays sealed away from the attacker
    assert victim.resolve("/diary.txt").verified().key not in reach
    for d in (victim, *others):
        d.close()


def _forge_file_meta_under(evil: EvilServer, victim: Drive, node: str, folder: str, folder_key: bytes,
                           version: int) -> None:
    """The server (with the co-writer's key) seals a new meta for one of the victim's files under its folder."""
    forged = NodeMeta(name="moved.txt", kind="file", key=crypto.random_key(), file_id=crypto.random_id(),
                      size=0, version=version, rev=10**6, mtime_ns=1, mode=0o644)
    evil.rewrite(node, parent_id=folder, version=version,
                 meta=format.seal_meta(folder_key, victim.owner, folder, node, forged))


@pytest.mark.parametrize("bump", [False, True])
def test_a_file_open_by_id_swapped_into_a_cowriters_folder(server: Server, tmp_path: Path, bump: bool) -> None:
    """The server gives a file held open a new meta (other keys) inside a folder a co-writer keys.

    Same version: the commit is refused (IntegrityError). A newer version claimed: the write is kept as a
    conflicted copy, under fresh keys, in the folder it was opened in; never in the co-writer's folder.
    """
    victim = make_drive(server.url, new_home(tmp_path), "victim")
    victim.write_file("/diary.txt", b"version one")
    node = victim.stat("/diary.txt").node_id
    real = victim.resolve("/diary.txt").verified()
    folder, folder_key, others = _attacker_folder(server, tmp_path, victim, "cowriter")
    w = victim.open_write_id(node, journal=True)
    w.pwrite(0, b"my private second version")
    evil = EvilServer(server.data)
    _forge_file_meta_under(evil, victim, node, folder, folder_key, real.version + (1 if bump else 0))
    victim.refresh()
    if bump:
        with pytest.raises(StaleVersion, match="kept as"):
            w.commit()
        kept = [e for e in victim.listdir("/") if "conflicted copy" in e.name]
        assert len(kept) == 1 and victim.read_file(kept[0].path) == b"my private second version"
    else:
        with pytest.raises(IntegrityError, match="keys changed"):
            w.commit()
    w.close()
    reach = leaked_keys({folder_key}, evil.rows())
    assert real.key not in reach
    for _, m in opened_under(folder_key, evil.rows()):
        assert m.key != real.key and m.name != "diary.txt"  # neither the key nor the name went there
    for d in (victim, *others):
        d.close()


def test_a_row_moved_under_another_folder_keeps_no_cached_trust(server: Server, tmp_path: Path) -> None:
    """Finding 2: the server moves a private file's row under a shared folder, keeping its old blob.

    Before the fix the cache hit (same blob) skipped the parent check and the next chmod re-sealed the
    file's meta, content key included, under the shared folder's key.
    """
    victim = make_drive(server.url, new_home(tmp_path), "victim")
    victim.write_file("/private.txt", b"private")
    node = victim.stat("/private.txt").node_id
    real = victim.resolve("/private.txt").verified()
    folder, folder_key, others = _attacker_folder(server, tmp_path, victim, "cowriter")
    victim.stat("/private.txt")  # cached
    evil = EvilServer(server.data)
    evil.rewrite(node, parent_id=folder)  # same blob, new parent
    victim.refresh()
    for change in (lambda: victim.set_attrs_id(node, mode=0o600), lambda: victim.stat_id(node)):
        with pytest.raises(IntegrityError):
            change()
    assert node in victim.hidden("/team/sub")
    reach = leaked_keys({folder_key}, evil.rows())
    assert real.key not in reach
    for d in (victim, *others):
        d.close()


def test_a_cycle_or_a_foreign_parent_is_refused_not_followed(server: Server, tmp_path: Path) -> None:
    """Shape checks: a cycle of folders, a node claiming to be a second root, a parent of another owner."""
    victim = make_drive(server.url, new_home(tmp_path), "victim")
    victim.mkdir("/a")
    victim.mkdir("/a/b")
    victim.write_file("/a/b/f.txt", b"x")
    victim.write_file("/keep.txt", b"siblings stay readable")
    a, b = victim.stat("/a").node_id, victim.stat("/a/b").node_id
    f = victim.stat("/a/b/f.txt").node_id
    evil = EvilServer(server.data)
    evil.rewrite(a, parent_id=b)  # a -> b -> a
    victim.refresh()
    with pytest.raises(IntegrityError, match="cycle|parent"):
        victim.stat_id(f)
    assert victim.read_file("/keep.txt") == b"siblings stay readable"
    evil.rewrite(a, parent_id=None)  # a second root
    victim.refresh()
    with pytest.raises(IntegrityError, match="root"):
        victim.stat_id(a)
    assert [e.name for e in victim.listdir("/")] == ["keep.txt"]
    victim.close()


def test_a_new_device_keeps_working_after_the_root_was_verified_once(server: Server, tmp_path: Path) -> None:
    """A client that verified the root before a forgery keeps the verified root across restarts."""
    home = new_home(tmp_path)
    victim = make_drive(server.url, home, "victim")
    victim.write_file("/a.txt", b"a")
    folder, folder_key, others = _attacker_folder(server, tmp_path, victim, "sockpuppet")
    victim.close()
    _reparent_root(EvilServer(server.data), Drive.open(home, refresh=False), folder, folder_key)
    again = Drive.open(home)  # restarted gateway or mount: trusts the root verified in the earlier run
    assert again.read_file("/a.txt") == b"a"
    again.write_file("/b.txt", os.urandom(10))
    assert again.resolve("/b.txt").verified().key not in leaked_keys({folder_key}, EvilServer(server.data).rows())
    again.close()
    for d in others:
        d.close()


def test_the_root_id_is_pinned(server: Server, tmp_path: Path) -> None:
    """The login answer names the root; a client that saw the account refuses another one."""
    home = new_home(tmp_path)
    victim = make_drive(server.url, home, "victim")
    other = make_drive(server.url, new_home(tmp_path), "other")
    with EvilServer(server.data).db() as c:
        c.execute("UPDATE users SET root_node_id=? WHERE user_id=?", (other.session.root_node_id, victim.owner))
    with pytest.raises(IntegrityError, match="another root folder"):
        account.login(Api(server.url), home, "victim", PASSWORD)
    with pytest.raises(IntegrityError):  # a fresh device: the other account's root does not open
        account.login(Api(server.url), new_home(tmp_path), "victim", PASSWORD)
    victim.close()
    other.close()
