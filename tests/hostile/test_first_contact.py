"""Hostile: shares from strangers and keys substituted for a device that has not met the contact yet.

* A share from an account never seen before was pinned and accepted silently (part of finding 1): a
  server's sock puppet got a folder into the victim's drive, and with it a key the victim sealed under.
  Now it stays pending (its name shown, nothing of it loaded) until `megadrive shares accept`.
* "Substituted public keys at a second device" (ACM CCS 2024, the unauthenticated-key class): pins lived
  only on the device that made them, so a second device pinned whatever key the server presented. Pins
  now travel between an account's devices in a record sealed under the master key.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from support.accounts import Server, make_drive, megadrive, new_home, ok
from support.evil import EvilServer

from megadrive import account, crypto
from megadrive.api import Api
from megadrive.drive import Drive
from megadrive.errors import IntegrityError, NotFound, PermissionDenied
from megadrive.sharing import KeyChanged
from megadrive.state import save_session


def test_a_share_from_a_stranger_stays_pending(server: Server, tmp_path: Path) -> None:
    victim = make_drive(server.url, new_home(tmp_path), "victim")
    evil = make_drive(server.url, new_home(tmp_path), "mallory")
    evil.mkdir("/free-stuff")
    evil.write_file("/free-stuff/readme.txt", b"click me")
    evil.sharing.share("/free-stuff", "victim", "write")
    victim.refresh()
    assert victim.sharing.incoming == {}  # no key of theirs is trusted
    assert [s.name for s in victim.sharing.pending.values()] == ["free-stuff"]
    shown = victim.listdir("/Shared with me/mallory")
    assert [(e.name, e.is_dir) for e in shown] == [("free-stuff (pending)", True)]
    assert victim.listdir("/Shared with me/mallory/free-stuff (pending)") == []  # nothing of its tree loaded
    with pytest.raises(NotFound):
        victim.read_file("/Shared with me/mallory/free-stuff/readme.txt")
    with pytest.raises(PermissionDenied):  # nothing can be written into it, so nothing sealed under its key
        victim.write_file("/Shared with me/mallory/free-stuff (pending)/x.txt", b"secret")
    assert victim.index.get_state(f"seq:{evil.owner}") is None  # its change feed was never pulled
    victim.sharing.accept("mallory")  # the user's decision
    assert victim.read_file("/Shared with me/mallory/free-stuff/readme.txt") == b"click me"
    victim.close()
    evil.close()


def test_shares_accept_on_the_command_line(server: Server, tmp_path: Path) -> None:
    ok(megadrive("signup", "--server", server.url, "--user", "victim"))
    evil = make_drive(server.url, new_home(tmp_path), "mallory")
    evil.mkdir("/f")
    evil.sharing.share("/f", "victim", "read")
    out = ok(megadrive("shares"))
    assert "pending" in out and "megadrive shares accept mallory" in out
    assert ok(megadrive("ls", "/Shared with me/mallory")).strip() == "f (pending)/"
    out = ok(megadrive("shares", "accept", "mallory"))
    assert "Accepted /Shared with me/mallory/f (read)" in out
    assert ok(megadrive("ls", "/Shared with me/mallory")).strip() == "f/"
    evil.close()


def _second_device(server: Server, tmp_path: Path, user: str) -> Drive:
    home = new_home(tmp_path)
    s = account.login(Api(server.url), home, user, "correct horse battery staple")
    save_session(home, s)
    return Drive.open(home)


def test_substituted_keys_are_caught_on_a_second_device(server: Server, tmp_path: Path) -> None:
    a = make_drive(server.url, new_home(tmp_path), "alice")
    b = make_drive(server.url, new_home(tmp_path), "bob")
    mallory = make_drive(server.url, new_home(tmp_path), "mallory")
    a.mkdir("/one")
    a.sharing.share("/one", "bob", "read")  # device 1 pins bob's real key
    # The server now presents keys of its own as bob's, to every device, self-consistently signed.
    fake = crypto.generate_identity()
    sig = fake.sign(crypto.box_key_statement(b.owner, fake.box_pub))
    with EvilServer(server.data).db() as c:
        c.execute("UPDATE users SET sign_pub=?, box_pub=?, box_sig=? WHERE name='bob'",
                  (fake.sign_pub, fake.box_pub, sig))
    a2 = _second_device(server, tmp_path, "alice")  # a new laptop: it never met bob itself
    a2.mkdir("/two")
    with pytest.raises(KeyChanged, match="DIFFERENT identity key"):
        a2.sharing.share("/two", "bob", "read")
    # The box key mallory holds was never used to seal anything of alice's.
    assert not any(s.recipient == "bob" and s.node_id == a2.stat("/two").node_id for s in a2.sharing.outgoing())
    for d in (a, a2, b, mallory):
        d.close()


def test_acceptance_and_grant_epochs_travel_to_a_second_device(server: Server, tmp_path: Path) -> None:
    a = make_drive(server.url, new_home(tmp_path), "alice")
    b = make_drive(server.url, new_home(tmp_path), "bob")
    c = make_drive(server.url, new_home(tmp_path), "carol")
    a.mkdir("/team")
    a.sharing.share("/team", "bob", "read")
    s = a.sharing.share("/team", "carol", "read")
    c.sharing.accept("alice")
    conn = sqlite3.connect(server.data / "meta.sqlite3", isolation_level=None, timeout=10)
    (old_grant,) = conn.execute('SELECT "grant" FROM shares WHERE share_id=?', (s.share_id,)).fetchone()
    a.sharing.unshare("/team", "bob")  # re-keys /team, re-issues carol's grant
    c.refresh()
    c2 = _second_device(server, tmp_path, "carol")
    assert set(c2.sharing.incoming) == {a.stat("/team").node_id}  # accepted on device 1: no prompt again
    conn.execute('UPDATE shares SET "grant"=? WHERE share_id=?', (old_grant, s.share_id))  # replay
    conn.close()
    c3 = _second_device(server, tmp_path, "carol")  # a device that never saw a grant itself
    assert c3.sharing.incoming == {}  # refused: device 1's newer epoch came with the record
    for d in (a, b, c, c2, c3):
        d.close()


def test_the_contact_record_is_sealed_and_cannot_be_rolled_back(server: Server, tmp_path: Path) -> None:
    a = make_drive(server.url, new_home(tmp_path), "alice")
    b = make_drive(server.url, new_home(tmp_path), "bob")
    c = make_drive(server.url, new_home(tmp_path), "carol")
    a.mkdir("/x")
    ev = EvilServer(server.data)
    with ev.db() as conn:
        table = next(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                     if "record" in r[0])
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    a.sharing.share("/x", "bob", "read")  # the record now pins bob
    with ev.db() as conn:
        older = conn.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608
    a.sharing.share("/x", "carol", "read")  # a newer version pins carol too
    with ev.db() as conn:
        newer = conn.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608
    blob = cols.index("blob")
    for row in older + newer:  # sealed: no account name or id in the clear
        assert all(x not in row[blob] for x in (b"bob", b"carol", b.owner.encode(), c.owner.encode()))
    with ev.db() as conn:  # the server serves the older record again
        conn.execute(f"DELETE FROM {table}")  # noqa: S608
        for row in older:
            conn.execute(f"INSERT INTO {table} VALUES ({','.join('?' * len(row))})", row)  # noqa: S608
    with pytest.raises(IntegrityError, match="rolled back the contact record"):
        a.sharing.book.pull()
    assert a.sharing.book.get("carol") is not None  # nothing of the older record replaced what this device knows
    for d in (a, b, c):
        d.close()


def test_a_tampered_contact_record_is_refused(server: Server, tmp_path: Path) -> None:
    a = make_drive(server.url, new_home(tmp_path), "alice")
    b = make_drive(server.url, new_home(tmp_path), "bob")
    a.mkdir("/x")
    a.sharing.share("/x", "bob", "read")
    version, blob = a.api.get_record("contacts")  # type: ignore[misc]
    flipped = bytearray(blob)
    flipped[-1] ^= 1
    a2 = _second_device(server, tmp_path, "alice")
    a2.api.put_record("contacts", bytes(flipped), version)  # the server (or anyone with the token) writes junk
    a3 = _second_device(server, tmp_path, "alice")
    assert a3.sharing.book.get("bob") is None  # nothing merged from a record that fails to open
    with pytest.raises(IntegrityError):
        a3.sharing.book.pull()
    assert crypto.fingerprint(b.sharing.identity().sign_pub) == a.sharing.book.get("bob").fingerprint  # type: ignore[union-attr]
    for d in (a, a2, a3, b):
        d.close()
