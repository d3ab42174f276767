"""Hostile: attack classes from "MEGA: Malleable Encryption Goes Awry" (IEEE S&P 2023) and "End-to-End
Encrypted Cloud Storage in the Wild" (ACM CCS 2024) that no other test covered.

* folder injection: the server plants a folder (keyed by it) in the victim's tree, or lists one by id;
* a replayed change feed: older states of nodes announced as newer;
* swapped wrapped keys: wrapped master keys, identity keys and share grants exchanged between accounts
  or shares.

Each must end in a refusal (IntegrityError, or the entry hidden and reported) with nothing sealed under a
key the server holds and the victim's other files untouched.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from support.accounts import PASSWORD, Server, make_drive, new_home
from support.evil import EvilServer, leaked_keys

from megadrive import account, crypto, format
from megadrive.api import Api
from megadrive.errors import IntegrityError
from megadrive.format import NodeMeta


def test_an_injected_folder_is_hidden_and_never_written_into(server: Server, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    victim = make_drive(server.url, new_home(tmp_path), "victim")
    victim.write_file("/keep.txt", b"a sibling stays readable")
    root_id = victim.session.root_node_id
    planted_key = crypto.random_key()
    node = crypto.random_id().hex()
    # The server cannot seal under the victim's root key; its best try is a meta under a key it made up.
    meta = NodeMeta(name="Important", kind="dir", key=planted_key, mtime_ns=1, mode=0o755)
    ev = EvilServer(server.data)
    ev.insert(node, victim.owner, root_id, "dir", format.seal_meta(crypto.random_key(), victim.owner, root_id,
                                                                    node, meta))
    with caplog.at_level(logging.ERROR):
        victim.refresh()
    assert [e.name for e in victim.listdir("/")] == ["keep.txt"]
    assert victim.hidden("/") == [node]
    assert any(node[:12] in r.getMessage() for r in caplog.records)  # reported once, by node id
    with pytest.raises(IntegrityError):
        victim.stat_id(node)  # by id (as a front-end holding it open would ask)
    assert victim.read_file("/keep.txt") == b"a sibling stays readable"
    victim.close()


def test_a_folder_injected_under_a_pending_share_gets_nothing(server: Server, tmp_path: Path) -> None:
    """Injection by a share: a stranger's folder named by id is only a pending name, never a parent."""
    victim = make_drive(server.url, new_home(tmp_path), "victim")
    evil = make_drive(server.url, new_home(tmp_path), "mallory")
    evil.mkdir("/Documents")
    evil.sharing.share("/Documents", "victim", "write")
    victim.refresh()
    victim.write_file("/mine.txt", b"private")
    folder_key = evil.resolve("/Documents").verified().key
    assert not leaked_keys({folder_key}, EvilServer(server.data).rows()) & {victim.resolve("/mine.txt").verified().key}
    assert victim.index.get(evil.stat("/Documents").node_id) is None  # nothing of its tree in the index
    victim.close()
    evil.close()


def test_a_replayed_feed_entry_is_a_rollback_of_that_entry_only(server: Server, tmp_path: Path) -> None:
    victim = make_drive(server.url, new_home(tmp_path), "victim")
    victim.write_file("/doc.txt", b"version one")
    victim.write_file("/other.txt", b"unrelated")
    node = victim.stat("/doc.txt").node_id
    ev = EvilServer(server.data)
    old = ev.row(node)
    victim.write_file("/doc.txt", b"version two")
    ev.rewrite(node, meta=old.meta, version=old.version)  # the old state, announced with a new seq
    victim.refresh()
    with pytest.raises(IntegrityError, match="rolled back"):
        victim.stat_id(node)
    assert node in victim.hidden("/")
    assert victim.read_file("/other.txt") == b"unrelated"  # its sibling is untouched
    victim.write_file("/new.txt", b"the folder still takes new files")
    victim.close()


def test_a_stale_read_racing_a_commit_is_not_a_rollback(server: Server, tmp_path: Path) -> None:
    """The ordering rule: a row read before a newer state was verified is stale, not an attack."""
    victim = make_drive(server.url, new_home(tmp_path), "victim")
    victim.write_file("/doc.txt", b"one")
    stale = victim.resolve("/doc.txt").row
    victim.write_file("/doc.txt", b"two")  # verified and noted as seen
    meta = victim.verified_meta(stale)  # a reader still holding the old row: re-read, no alarm
    assert meta.version == 2
    victim.close()


def test_swapped_wrapped_master_keys(server: Server, tmp_path: Path) -> None:
    a = make_drive(server.url, new_home(tmp_path), "alice")
    b = make_drive(server.url, new_home(tmp_path), "bob")
    with EvilServer(server.data).db() as c:
        wa = c.execute("SELECT wrapped_master FROM users WHERE name='alice'").fetchone()[0]
        wb = c.execute("SELECT wrapped_master FROM users WHERE name='bob'").fetchone()[0]
        c.execute("UPDATE users SET wrapped_master=? WHERE name='alice'", (wb,))
        c.execute("UPDATE users SET wrapped_master=? WHERE name='bob'", (wa,))
    for user in ("alice", "bob"):
        with pytest.raises(IntegrityError, match="master key"):
            account.login(Api(server.url), new_home(tmp_path), user, PASSWORD)
    a.close()
    b.close()


def test_swapped_wrapped_identity_keys(server: Server, tmp_path: Path) -> None:
    a = make_drive(server.url, new_home(tmp_path), "alice")
    b = make_drive(server.url, new_home(tmp_path), "bob")
    with EvilServer(server.data).db() as c:
        cols = "wrapped_private, sign_pub, box_pub, box_sig"
        ra = c.execute(f"SELECT {cols} FROM users WHERE name='alice'").fetchone()  # noqa: S608
        rb = c.execute(f"SELECT {cols} FROM users WHERE name='bob'").fetchone()  # noqa: S608
        c.execute("UPDATE users SET wrapped_private=?, sign_pub=?, box_pub=?, box_sig=? WHERE name='alice'", rb)
        c.execute("UPDATE users SET wrapped_private=?, sign_pub=?, box_pub=?, box_sig=? WHERE name='bob'", ra)
    with pytest.raises(IntegrityError):
        account.login(Api(server.url), new_home(tmp_path), "alice", PASSWORD)
    a.close()
    b.close()


def test_swapped_grants_between_two_shares(server: Server, tmp_path: Path) -> None:
    a = make_drive(server.url, new_home(tmp_path), "alice")
    b = make_drive(server.url, new_home(tmp_path), "bob")
    a.mkdir("/one")
    a.mkdir("/two")
    s1 = a.sharing.share("/one", "bob", "read")
    s2 = a.sharing.share("/two", "bob", "write")
    b.sharing.accept("alice")
    assert len(b.sharing.incoming) == 2
    with EvilServer(server.data).db() as c:
        g1 = c.execute('SELECT "grant" FROM shares WHERE share_id=?', (s1.share_id,)).fetchone()[0]
        g2 = c.execute('SELECT "grant" FROM shares WHERE share_id=?', (s2.share_id,)).fetchone()[0]
        c.execute('UPDATE shares SET "grant"=? WHERE share_id=?', (g2, s1.share_id))
        c.execute('UPDATE shares SET "grant"=? WHERE share_id=?', (g1, s2.share_id))
    b.refresh()
    assert b.sharing.incoming == {}  # each grant is signed over its own folder and access level
    a.close()
    b.close()
