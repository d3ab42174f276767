"""Hostile: hard links forged by someone who holds a folder's key (a co-writer of a shared folder, with the
server's help) but not the key of the file they want to reach.

A hard link's meta names its file by id; it counts only with a proof derived from that file's content key
(format.hard_link_proof). So a forged link is hidden and reported, never read or written through, and a
forged list of links on a file the attacker may write can never make the victim move that file over (or
trash) a node of theirs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from support.accounts import Server, make_drive, new_home
from support.evil import EvilServer, leaked_keys

from megadrive import crypto, format
from megadrive.errors import IntegrityError, NotFound
from megadrive.format import NodeMeta


def test_a_link_without_the_files_key_is_hidden(server: Server, tmp_path: Path) -> None:
    victim = make_drive(server.url, new_home(tmp_path), "victim")
    victim.write_file("/private.txt", b"only mine")
    victim.mkdir("/shared")
    victim.write_file("/shared/notes.txt", b"shared notes")
    target = victim.stat("/private.txt").node_id
    folder = victim.stat("/shared").node_id
    folder_key = victim.resolve("/shared").verified().key  # what a co-writer holds
    node = crypto.random_id().hex()
    forged = NodeMeta(name="innocent.txt", kind="file", key=crypto.random_key(), file_id=crypto.random_id(),
                      mtime_ns=1, link_to=target)
    EvilServer(server.data).insert(node, victim.owner, folder, "file",
                                   format.seal_meta(folder_key, victim.owner, folder, node, forged))
    victim.refresh()
    assert [e.name for e in victim.listdir("/shared")] == ["notes.txt"]
    with pytest.raises(IntegrityError, match="hard link"):
        victim.stat("/shared/innocent.txt")
    with pytest.raises((IntegrityError, NotFound)):
        victim.read_file("/shared/innocent.txt")
    assert victim.stat("/private.txt").nlink == 1  # the file's own meta lists no link
    assert victim.read_file("/private.txt") == b"only mine"
    victim.close()


def test_a_forged_link_list_cannot_move_a_file_over_the_victims(server: Server, tmp_path: Path) -> None:
    victim = make_drive(server.url, new_home(tmp_path), "victim")
    victim.write_file("/private.txt", b"only mine")
    victim.mkdir("/shared")
    victim.write_file("/shared/g.txt", b"shared file")
    private = victim.stat("/private.txt").node_id
    loc = victim.resolve("/shared/g.txt")
    meta, folder = loc.verified(), victim.stat("/shared").node_id
    folder_key = victim.resolve("/shared").verified().key
    # The co-writer rewrites g.txt's meta (sealed under the folder key it holds) to list the victim's file.
    forged = dataclasses.replace(meta, hard_links=[private], rev=meta.rev + 1)
    EvilServer(server.data).rewrite(loc.row.node_id, meta=format.seal_meta(folder_key, victim.owner, folder,
                                                                           loc.row.node_id, forged))
    victim.refresh()
    victim.remove("/shared/g.txt")  # unlinking "the first name" looks for a link to take its place
    assert victim.read_file("/private.txt") == b"only mine"
    assert victim.stat("/private.txt").node_id == private
    assert [e.name for e in victim.listdir("/shared")] == []
    assert [e.name for e in victim.listdir("/")] == ["private.txt", "shared"]
    victim.close()


def test_unlinking_a_private_name_never_moves_the_file_into_a_share(server: Server, tmp_path: Path) -> None:
    """A co-writer links a shared file; the owner moves the file out of the share (it is re-keyed at its
    next write) and then removes its private name: the file lives on for the co-writer's link name, but its
    key is never sealed where the co-writer can open it (it is parked, nameless, at the top of the tree)."""
    alice = make_drive(server.url, new_home(tmp_path), "alice")
    mallory = make_drive(server.url, new_home(tmp_path), "mallory")
    alice.mkdir("/proj")
    alice.mkdir("/private")
    alice.write_file("/proj/f.txt", b"shared at first")
    alice.sharing.share("/proj", "mallory", "write")
    mallory.sharing.accept("alice")
    mallory.link("/Shared with me/alice/proj/f.txt", "/Shared with me/alice/proj/l.txt")
    alice.refresh()
    assert alice.stat("/proj/l.txt").nlink == 2
    alice.rename("/proj/f.txt", "/private/f.txt")  # leaves the share: re-keyed at its next write
    alice.write_file("/private/f.txt", b"written after it left the share")
    alice.remove("/private/f.txt")
    assert alice.read_file("/proj/l.txt") == b"written after it left the share"  # its other name
    assert [e.name for e in alice.listdir("/")] == ["private", "proj"]  # parked without a name
    new_key = alice.resolve("/proj/l.txt")
    file_key = alice.ns.content_node(new_key.row, new_key.verified())[1].key
    held = {s.folder_key for s in mallory.sharing.incoming.values()} | {m.key for m in mallory.tree.cached_metas()}
    assert file_key not in held
    assert not leaked_keys(held, EvilServer(server.data).rows()) & {file_key}
    mallory.refresh()
    with pytest.raises((IntegrityError, NotFound)):
        mallory.read_file("/Shared with me/alice/proj/l.txt")
    alice.close()
    mallory.close()


def test_a_link_its_file_does_not_list_is_not_honoured(server: Server, tmp_path: Path) -> None:
    """Someone who kept a file's old content key (it was shared once) can compute a valid proof; the link
    still does not count unless the file's own meta lists it, so writes to it never reach the file."""
    victim = make_drive(server.url, new_home(tmp_path), "victim")
    victim.write_file("/private.txt", b"only mine")
    victim.mkdir("/shared")
    target = victim.resolve("/private.txt")
    tkey, folder = target.verified().key, victim.stat("/shared").node_id
    node = crypto.random_id().hex()
    forged = NodeMeta(name="notes.txt", kind="file", key=format.hard_link_proof(tkey, node),
                      file_id=crypto.random_id(), mtime_ns=1, link_to=target.row.node_id)
    EvilServer(server.data).insert(node, victim.owner, folder, "file", format.seal_meta(
        victim.resolve("/shared").verified().key, victim.owner, folder, node, forged))
    victim.refresh()
    assert victim.listdir("/shared") == []
    with pytest.raises(IntegrityError, match="hard link"):
        victim.write_file("/shared/notes.txt", b"meant for the shared folder")
    assert victim.read_file("/private.txt") == b"only mine"
    victim.close()


def test_a_forged_link_cannot_make_the_victim_rewrite_another_node(server: Server, tmp_path: Path) -> None:
    """Trashing a folder (or unlinking a name) that holds a forged link touches nothing the link names."""
    victim = make_drive(server.url, new_home(tmp_path), "victim")
    victim.write_file("/private.txt", b"only mine")
    victim.mkdir("/shared")
    private = victim.stat("/private.txt").node_id
    folder = victim.stat("/shared").node_id
    node = crypto.random_id().hex()
    forged = NodeMeta(name="bait.txt", kind="file", key=crypto.random_key(), file_id=crypto.random_id(),
                      mtime_ns=1, link_to=private)
    ev = EvilServer(server.data)
    ev.insert(node, victim.owner, folder, "file", format.seal_meta(
        victim.resolve("/shared").verified().key, victim.owner, folder, node, forged))
    victim.refresh()
    seq_before = ev.row(private)
    victim.delete("/shared")
    assert ev.row(private) == seq_before  # not re-sealed, not touched
    assert [e.name for e in victim.listdir("/")] == ["private.txt"]
    victim.close()
