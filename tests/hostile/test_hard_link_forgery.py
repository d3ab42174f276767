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
from support.evil import EvilServer

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
