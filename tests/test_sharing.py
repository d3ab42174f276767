"""Sharing between two real accounts on one real server; public links; takedown."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.accounts import Server, make_drive, megadrive, new_home, ok, one_line_error

from megadrive import crypto, format
from megadrive.drive import Drive
from megadrive.errors import CrossDevice, IntegrityError, NotFound, PermissionDenied
from megadrive.mount import gateway
from megadrive.sharing import KeyChanged

MiB = 1 << 20


HOMES: dict[int, Path] = {}


@pytest.fixture
def pair(server: Server, tmp_path: Path) -> Iterator[tuple[Drive, Drive]]:
    ha, hb = new_home(tmp_path), new_home(tmp_path)
    a = make_drive(server.url, ha, "alice")
    b = make_drive(server.url, hb, "bob")
    HOMES[id(a)], HOMES[id(b)] = ha, hb
    yield a, b
    a.close()
    b.close()


def _shared(b: Drive, name: str = "proj") -> str:
    return f"/Shared with me/alice/{name}"


def test_read_share_through_drive_and_webdav(pair: tuple[Drive, Drive]) -> None:
    a, b = pair
    a.mkdir("/proj")
    a.mkdir("/proj/sub")
    a.write_file("/proj/a.txt", b"hello bob")
    a.write_file("/proj/sub/deep.bin", os.urandom(MiB + 5))
    a.write_file("/private.txt", b"not for bob")
    a.sharing.share("/proj", "bob", "read")
    b.refresh()
    assert b.listdir("/Shared with me/alice")[0].name == "proj (pending)"  # first contact: bob decides
    b.sharing.accept("alice")
    assert [e.name for e in b.listdir("/")] == ["Shared with me"]
    assert [e.name for e in b.listdir("/Shared with me")] == ["alice"]
    assert [e.name for e in b.listdir(_shared(b))] == ["a.txt", "sub"]
    assert b.read_file(_shared(b) + "/a.txt") == b"hello bob"
    assert b.read_file(_shared(b) + "/sub/deep.bin") == a.read_file("/proj/sub/deep.bin")
    # The server itself refuses writes to a read-only share.
    with pytest.raises(PermissionDenied):
        b.write_file(_shared(b) + "/new.txt", b"x")
    with pytest.raises(PermissionDenied):
        b.mkdir(_shared(b) + "/newdir")
    with pytest.raises(PermissionDenied):
        b.delete(_shared(b) + "/a.txt")
    with pytest.raises(PermissionDenied):  # straight to the API, bypassing the client's own checks
        b.api.trash_node(a.stat("/proj/a.txt").node_id)
    assert a.read_file("/proj/a.txt") == b"hello bob"
    with pytest.raises(NotFound):  # nothing outside the shared folder: not even that it exists (404, as unknown)
        b.api.get_node(a.stat("/private.txt").node_id)
    # Through bob's WebDAV gateway: read works, a write is 403.
    gw = gateway.start(b, "127.0.0.1", 0)
    try:
        with httpx.Client(base_url=gw.url, timeout=30, auth=gw.auth) as c:
            r = c.get("/Shared%20with%20me/alice/proj/a.txt")
            assert r.status_code == 200 and r.content == b"hello bob"
            assert c.put("/Shared%20with%20me/alice/proj/evil.txt", content=b"x").status_code == 403
            assert c.put("/Shared%20with%20me/alice/proj/a.txt", content=b"x").status_code == 403
            # A's new file reaches B's running gateway through the change feed, without a restart.
            a.write_file("/proj/later.txt", b"arrived")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                r = c.get("/Shared%20with%20me/alice/proj/later.txt")
                if r.status_code == 200:
                    break
                time.sleep(0.3)
            assert r.status_code == 200 and r.content == b"arrived"
    finally:
        gw.stop()


def test_write_share_counts_against_owner(pair: tuple[Drive, Drive]) -> None:
    a, b = pair
    a.mkdir("/team")
    a.write_file("/team/doc.txt", b"v1 by alice")
    a.sharing.share("/team", "bob", "write")
    b.sharing.accept("alice")
    a_used, b_used = a.quota(max_age=0).used, b.quota(max_age=0).used
    data = os.urandom(2 * MiB)
    b.write_file(_shared(b, "team") + "/from-bob.bin", data)
    b.write_file(_shared(b, "team") + "/doc.txt", b"v2 by bob")
    b.mkdir(_shared(b, "team") + "/bobs-folder")
    b.rename(_shared(b, "team") + "/from-bob.bin", _shared(b, "team") + "/bobs-folder/moved.bin")
    a.refresh()
    assert a.read_file("/team/doc.txt") == b"v2 by bob"
    assert a.read_file("/team/bobs-folder/moved.bin") == data
    assert a.quota(max_age=0).used >= a_used + 2 * MiB
    assert b.quota(max_age=0).used == b_used
    b.delete(_shared(b, "team") + "/bobs-folder/moved.bin")
    a.refresh()
    assert not a.exists("/team/bobs-folder/moved.bin")


def test_substituted_public_key_is_caught_before_sealing(pair: tuple[Drive, Drive], server: Server) -> None:
    a, b = pair
    a.mkdir("/first")
    a.mkdir("/second")
    a.sharing.share("/first", "bob", "read")  # pins bob's identity key on first use
    # The server now hands out an attacker's keys for bob: a valid, self-consistent identity.
    evil = crypto.generate_identity()
    conn = sqlite3.connect(server.data / "meta.sqlite3", isolation_level=None, timeout=10)
    conn.execute("UPDATE users SET sign_pub=?, box_pub=?, box_sig=? WHERE name='bob'",
                 (evil.sign_pub, evil.box_pub, evil.sign(crypto.box_key_statement(b.owner, evil.box_pub))))
    conn.close()
    before = a.api.shares()["outgoing"]
    with pytest.raises(KeyChanged, match="DIFFERENT identity key"):
        a.sharing.share("/second", "bob", "read")
    assert a.api.shares()["outgoing"] == before  # nothing was sealed or sent


def test_unsigned_box_key_is_refused_even_on_first_contact(pair: tuple[Drive, Drive], server: Server) -> None:
    a, b = pair
    a.mkdir("/f")
    conn = sqlite3.connect(server.data / "meta.sqlite3", isolation_level=None, timeout=10)
    conn.execute("UPDATE users SET box_pub=? WHERE name='bob'", (crypto.generate_identity().box_pub,))
    conn.close()
    with pytest.raises(IntegrityError, match="signature"):
        a.sharing.share("/f", "bob", "read")
    assert a.api.shares()["outgoing"] == []


def test_contacts_fingerprint_and_verify(pair: tuple[Drive, Drive]) -> None:
    a, b = pair
    c = a.sharing.contact("bob")
    assert c.fingerprint == crypto.fingerprint(bytes.fromhex(b.session.sign_pub_hex))
    assert not c.verified
    assert a.sharing.verify_contact("bob").verified
    assert [x.user for x in a.sharing.contacts() if x.verified] == ["bob"]


def test_unshare_cuts_access_and_rekeys(pair: tuple[Drive, Drive], server: Server) -> None:
    a, b = pair
    a.mkdir("/proj")
    a.mkdir("/proj/sub")
    a.write_file("/proj/old.txt", b"old content bob may keep")
    a.write_file("/proj/sub/old2.txt", b"old2")
    a.sharing.share("/proj", "bob", "write")
    b.sharing.accept("alice")
    assert b.read_file(_shared(b) + "/sub/old2.txt") == b"old2"
    # Every key bob ever held: the grant's folder key and every key his client decrypted.
    held = {s.folder_key for s in b.sharing.incoming.values()}
    held |= {m.key for m in b.tree.cached_metas()}
    a.sharing.unshare("/proj", "bob")
    a.write_file("/proj/after.txt", b"written after the revocation")
    a.write_file("/proj/sub/after2.txt", b"also after")
    a.write_file("/proj/old.txt", b"a new version of an old file")
    # Bob's access is gone at once.
    with pytest.raises(PermissionDenied, match="revoked"):  # a folder bob could see: 403, not 404
        b.api.get_node(a.stat("/proj/after.txt").node_id)
    with pytest.raises(PermissionDenied, match="no active share"):
        b.api.changes(0, owner=a.owner)
    b.refresh()
    assert b.listdir("/") == []
    # Nothing written afterwards opens with any key bob held (as if the server handed him the bytes).
    for path in ("/proj/after.txt", "/proj/sub/after2.txt", "/proj/old.txt"):
        loc = a.resolve(path)
        row, meta = loc.row, loc.verified()
        assert meta.key not in held
        _, mblob = a.api.get_manifest(row.node_id)
        for k in held:
            with pytest.raises(IntegrityError):
                format.open_meta(k, a.owner, row.parent_id or "", row.node_id, row.meta)
            with pytest.raises(IntegrityError):
                format.open_manifest(k, a.owner, row.node_id, meta.version, meta.file_id, mblob)
    assert a.read_file("/proj/old.txt") == b"a new version of an old file"
    assert a.read_file("/proj/sub/old2.txt") == b"old2"  # re-keying loses nothing for the owner


# -- public links -------------------------------------------------------------------------------------


def _server_bytes(server: Server) -> bytes:
    return b"".join(p.read_bytes() for p in server.data.rglob("*") if p.is_file())


def test_link_works_without_an_account(server: Server, tmp_path: Path) -> None:
    home = Path(os.environ["MEGADRIVE_HOME"])
    ok(megadrive("signup", "--server", server.url, "--user", "alice"))
    src = tmp_path / "report.pdf"
    src.write_bytes(os.urandom(MiB + 17))
    ok(megadrive("put", str(src), "/report.pdf"))
    url = ok(megadrive("link", "/report.pdf")).strip()
    assert "/l/" in url and "#" in url
    key = url.split("#", 1)[1]
    anon = {"MEGADRIVE_HOME": str(new_home(tmp_path)), "MEGADRIVE_PASSWORD": ""}
    out = tmp_path / "dl"
    out.mkdir()
    ok(megadrive("get", url, str(out), env=anon))
    assert (out / "report.pdf").read_bytes() == src.read_bytes()
    # A wrong key fails clearly and writes nothing.
    bad = url.split("#")[0] + "#" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    line = one_line_error(megadrive("get", bad, str(tmp_path / "bad.bin"), env=anon))
    assert "wrong link key or password" in line
    assert not (tmp_path / "bad.bin").exists()
    # The key never reached the server: not in its storage.
    raw_key = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    stored = _server_bytes(server)
    for form in (raw_key, key.encode(), base64.b64encode(raw_key), raw_key.hex().encode()):
        assert form not in stored
    ok(megadrive("unlink", "/report.pdf"))
    gone = megadrive("get", url, str(tmp_path / "gone.bin"), env=anon)
    one_line_error(gone)
    assert gone.returncode == 4  # not found
    assert home.exists()


def test_password_link(server: Server, tmp_path: Path) -> None:
    ok(megadrive("signup", "--server", server.url, "--user", "alice"))
    src = tmp_path / "secret.txt"
    src.write_bytes(b"for the password holder")
    ok(megadrive("put", str(src), "/secret.txt"))
    url = ok(megadrive("link", "/secret.txt", "--password", "--expires", "1d",
                       env={"MEGADRIVE_LINK_PASSWORD": "tulip-orbit-42"})).strip()
    assert url.endswith("#p")
    anon = {"MEGADRIVE_HOME": str(new_home(tmp_path)), "MEGADRIVE_PASSWORD": ""}
    line = one_line_error(megadrive("get", url, str(tmp_path / "x"), env={**anon, "MEGADRIVE_LINK_PASSWORD": "nope"}))
    assert "wrong link key or password" in line
    ok(megadrive("get", url, str(tmp_path / "ok.txt"), env={**anon, "MEGADRIVE_LINK_PASSWORD": "tulip-orbit-42"}))
    assert (tmp_path / "ok.txt").read_bytes() == b"for the password holder"
    assert b"tulip-orbit-42" not in _server_bytes(server)


def test_takedown(server: Server, tmp_path: Path) -> None:
    ok(megadrive("signup", "--server", server.url, "--user", "alice"))
    src = tmp_path / "bad.bin"
    src.write_bytes(os.urandom(2 * MiB + 3))
    ok(megadrive("put", str(src), "/bad.bin"))
    url = ok(megadrive("link", "/bad.bin")).strip()
    d = Drive.open(Path(os.environ["MEGADRIVE_HOME"]))
    chunks = d.manifest("/bad.bin").chunk_ids()  # type: ignore[union-attr]
    node_id = d.stat("/bad.bin").node_id
    d.close()
    assert all(any((server.data / "chunks").rglob(c)) for c in chunks)
    # Anyone can report; the #key part of a pasted URL is dropped before the server keeps anything.
    r = httpx.post(server.url + "/v1/abuse", json={"link": url, "reason": "illegal content"}, timeout=30)
    assert r.status_code == 202
    assert url.split("#")[1].encode() not in _server_bytes(server)
    ok(megadrive("server", "takedown", url, "--data", str(server.data), "--reason", "court order 42",
                 "--operator", "ops-anna"))
    assert not any(any((server.data / "chunks").rglob(c)) for c in chunks)
    entry = json.loads((server.data / "audit.log").read_text().splitlines()[-1])
    assert entry["action"] == "takedown" and entry["operator"] == "ops-anna"
    assert entry["reason"] == "court order 42" and entry["node_id"] == node_id
    assert entry["chunks_deleted"] == len(chunks)
    anon = {"MEGADRIVE_HOME": str(new_home(tmp_path)), "MEGADRIVE_PASSWORD": ""}
    r2 = megadrive("get", url, str(tmp_path / "x"), env=anon)
    assert "removed" in one_line_error(r2) and r2.returncode == 14
    assert httpx.get(url.split("#")[0].replace("/l/", "/v1/l/"), timeout=30).status_code == 451
    # The owner sees the file as removed for a takedown.
    listing = ok(megadrive("ls", "/"))
    assert "bad.bin" in listing and "removed after an abuse notice" in listing
    line = one_line_error(megadrive("get", "/bad.bin", str(tmp_path / "y")))
    assert "abuse notice" in line


def test_link_key_never_in_server_logs(tmp_path: Path) -> None:
    """Run a server with debug logging and check its whole log (and storage) for the link key."""
    from support.server import ServerProcess

    srv = ServerProcess(tmp_path / "srv", extra_args=["--log-level", "DEBUG"])
    try:
        ok(megadrive("signup", "--server", srv.url, "--user", "alice"))
        f = tmp_path / "f.txt"
        f.write_bytes(b"linked")
        ok(megadrive("put", str(f), "/f.txt"))
        url = ok(megadrive("link", "/f.txt")).strip()
        key = url.split("#", 1)[1]
        anon = {"MEGADRIVE_HOME": str(new_home(tmp_path)), "MEGADRIVE_PASSWORD": ""}
        ok(megadrive("get", url, str(tmp_path / "out.txt"), env=anon))
        httpx.post(srv.url + "/v1/abuse", json={"link": url, "reason": "test"}, timeout=30)
        raw_key = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        log = srv.stderr()
        for form in (key, raw_key.hex(), base64.b64encode(raw_key).decode()):
            assert form not in log
        stored = b"".join(p.read_bytes() for p in (tmp_path / "srv").rglob("*") if p.is_file())
        assert raw_key not in stored and key.encode() not in stored
    finally:
        srv.stop()


def test_incoming_share_in_the_fuse_mount(pair: tuple[Drive, Drive], tmp_path: Path) -> None:
    import errno
    import subprocess

    a, b = pair
    a.mkdir("/photos")
    a.write_file("/photos/cat.jpg", b"meow")
    a.sharing.share("/photos", "bob", "read")
    b.sharing.accept("alice")
    mnt = tmp_path / "bob-mnt"
    env = {"MEGADRIVE_HOME": str(HOMES[id(b)])}
    ok(megadrive("mount", str(mnt), env=env))
    try:
        shared = mnt / "Shared with me" / "alice" / "photos"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not shared.exists():
            time.sleep(0.3)
        assert (shared / "cat.jpg").read_bytes() == b"meow"
        with pytest.raises(OSError) as ei:
            (shared / "dog.jpg").write_bytes(b"woof")
        assert ei.value.errno in (errno.EACCES, errno.EROFS, errno.EPERM)
        with pytest.raises(OSError) as ei:
            (mnt / "Shared with me" / "mine").mkdir()
        assert ei.value.errno in (errno.EACCES, errno.EROFS, errno.EPERM)
        assert a.listdir("/photos")[0].name == "cat.jpg" and len(a.listdir("/photos")) == 1
    finally:
        r = megadrive("unmount", str(mnt), env=env)
        if r.returncode != 0:
            subprocess.run(["fusermount", "-uz", str(mnt)], check=False)


def test_recipient_reaches_only_chunks_of_files_it_may_read(pair: tuple[Drive, Drive]) -> None:
    a, b = pair
    a.mkdir("/p1")
    a.mkdir("/p2")
    a.write_file("/p1/one.bin", os.urandom(MiB + 1))
    a.write_file("/p2/two.bin", os.urandom(10))
    a.write_file("/private.bin", os.urandom(10))

    def chunks(path: str) -> list[str]:
        m = a.manifest(path)
        assert m is not None
        return m.chunk_ids()

    a.sharing.share("/p1", "bob", "read")
    a.sharing.share("/p2", "bob", "read")
    b.sharing.accept("alice")
    assert b.api.get_chunk(chunks("/p1/one.bin")[0])  # inside an active share: served
    with pytest.raises(NotFound):  # never shared, though alice shares other things: 404, as unknown
        b.api.get_chunk(chunks("/private.bin")[0])
    a.sharing.unshare("/p1", "bob")
    with pytest.raises(PermissionDenied, match="revoked"):  # revoked: not even chunks of unchanged files
        b.api.get_chunk(chunks("/p1/one.bin")[0])
    assert b.api.get_chunk(chunks("/p2/two.bin")[0])  # the other share still works


def test_a_fake_share_of_our_own_folder_is_refused(pair: tuple[Drive, Drive], server: Server,
                                                   tmp_path: Path) -> None:
    """A server inventing a 'share' naming the victim's own root must not swap the victim's keys."""
    a, b = pair
    evil = make_drive(server.url, new_home(tmp_path), "mallory")
    evil.mkdir("/bait")
    s = evil.sharing.share("/bait", "alice", "write")
    bait_key = crypto.random_key()  # the key the attacker wants alice to seal under
    # A validly signed grant from the server's sock puppet, naming alice's own root folder.
    alice = evil.sharing.contact("alice")
    forged = format.seal_grant(format.Grant(evil.owner, a.owner, a.session.root_node_id, "write", "bait", bait_key),
                               evil.sharing.identity(), alice.box_pub)
    conn = sqlite3.connect(server.data / "meta.sqlite3", isolation_level=None, timeout=10)
    conn.execute("UPDATE shares SET node_id=?, grant=? WHERE share_id=?",
                 (a.session.root_node_id, forged, s.share_id))
    conn.close()
    a.refresh()
    assert a.sharing.incoming == {}
    a.write_file("/diary.txt", b"my private diary")
    row = a.resolve("/diary.txt").row
    format.open_meta(a.resolve("/").verified().key, a.owner, a.session.root_node_id, row.node_id, row.meta)
    with pytest.raises(IntegrityError):
        format.open_meta(bait_key, a.owner, a.session.root_node_id, row.node_id, row.meta)
    assert a.read_file("/diary.txt") == b"my private diary"
    evil.close()


def test_a_link_cannot_name_a_path_outside_the_download_folder(server: Server, tmp_path: Path) -> None:
    a = make_drive(server.url, new_home(tmp_path), "alice")
    a.write_file("/f.txt", b"payload")
    loc = a.resolve("/f.txt")
    row, meta = loc.row, loc.verified()
    key = crypto.random_key()
    record = format.LinkRecord(a.owner, row.node_id, "../escaped.txt", meta.key, meta.file_id)
    link = a.api.create_link(row.node_id, format.seal_link(key, record), None, None, None)
    url = f"{server.url}/l/{link['link_id']}#" + base64.urlsafe_b64encode(key).decode().rstrip("=")
    dl = tmp_path / "downloads"
    dl.mkdir()
    anon = {"MEGADRIVE_HOME": str(new_home(tmp_path)), "MEGADRIVE_PASSWORD": ""}
    assert "invalid name" in one_line_error(megadrive("get", url, str(dl), env=anon))
    assert not (tmp_path / "escaped.txt").exists() and list(dl.iterdir()) == []
    a.close()


def test_unshare_keeps_other_recipients_working(server: Server, tmp_path: Path) -> None:
    a = make_drive(server.url, new_home(tmp_path), "alice")
    b = make_drive(server.url, new_home(tmp_path), "bob")
    c = make_drive(server.url, new_home(tmp_path), "carol")
    a.mkdir("/team")
    a.write_file("/team/old.txt", b"old")
    a.sharing.share("/team", "bob", "read")
    a.sharing.share("/team", "carol", "write")
    c.sharing.accept("alice")
    a.sharing.unshare("/team", "bob")
    a.write_file("/team/new.txt", b"new")
    c.refresh()
    assert c.read_file("/Shared with me/alice/team/old.txt") == b"old"
    assert c.read_file("/Shared with me/alice/team/new.txt") == b"new"
    c.write_file("/Shared with me/alice/team/from-carol.txt", b"carol's")
    a.refresh()
    assert a.read_file("/team/from-carol.txt") == b"carol's"  # sealed under the new key, readable by alice
    for d in (a, b, c):
        d.close()


def test_a_second_share_from_the_same_owner_appears(pair: tuple[Drive, Drive]) -> None:
    a, b = pair
    a.mkdir("/older")
    a.write_file("/older/x.txt", b"x")  # older sequence numbers than what bob sees first
    a.mkdir("/first")
    a.sharing.share("/first", "bob", "read")
    b.sharing.accept("alice")
    a.sharing.share("/older", "bob", "read")
    b.refresh()
    assert b.read_file("/Shared with me/alice/older/x.txt") == b"x"


def _same_chunks_copy(a: Drive, path: str, name: str) -> str:
    """A second node naming the same chunks under the same keys, as clients did before copies were re-encrypted."""
    src = a.resolve(path).verified()
    root_id, root_key = a.session.root_node_id, a.resolve("/").verified().key
    m = a.manifest(path)
    assert m is not None
    node_id = crypto.random_id().hex()
    meta = dataclasses.replace(src, name=name, version=0, size=0, rev=0)
    a.api.create_node(node_id, root_id, "file", format.seal_meta(root_key, a.owner, root_id, node_id, meta))
    copy = format.Manifest(node_id, src.file_id, 1, m.size, list(m.chunks), m.commitment)
    final = dataclasses.replace(meta, version=1, size=m.size, rev=1)
    a.api.commit_version(node_id, 0, format.seal_manifest(src.key, a.owner, copy), copy.chunk_ids(),
                         meta=format.seal_meta(root_key, a.owner, root_id, node_id, final))
    return node_id


def test_takedown_also_marks_files_with_the_same_ciphertext(server: Server, tmp_path: Path) -> None:
    a = make_drive(server.url, Path(os.environ["MEGADRIVE_HOME"]), "alice")
    a.write_file("/orig.bin", os.urandom(MiB + 9))
    copy_id = _same_chunks_copy(a, "/orig.bin", "copy.bin")
    ok(megadrive("server", "takedown", a.stat("/orig.bin").node_id, "--data", str(server.data), "--reason", "r"))
    entry = json.loads((server.data / "audit.log").read_text().splitlines()[-1])
    assert [n["node_id"] for n in entry["same_content_nodes"]] == [copy_id]
    a.refresh()
    assert a.stat("/copy.bin").removed  # marked, not silently broken
    a.close()


def test_a_replayed_outdated_grant_is_refused(server: Server, tmp_path: Path) -> None:
    a = make_drive(server.url, new_home(tmp_path), "alice")
    b = make_drive(server.url, new_home(tmp_path), "bob")
    c = make_drive(server.url, new_home(tmp_path), "carol")
    a.mkdir("/team")
    a.sharing.share("/team", "bob", "read")
    s = a.sharing.share("/team", "carol", "write")
    c.sharing.accept("alice")
    conn = sqlite3.connect(server.data / "meta.sqlite3", isolation_level=None, timeout=10)
    (old_grant,) = conn.execute("SELECT grant FROM shares WHERE share_id=?", (s.share_id,)).fetchone()
    a.sharing.unshare("/team", "bob")  # re-keys /team and re-issues carol's grant
    c.refresh()
    new_key = c.sharing.incoming[a.stat("/team").node_id].folder_key
    conn.execute("UPDATE shares SET grant=? WHERE share_id=?", (old_grant, s.share_id))  # the server replays
    conn.close()
    c.refresh()
    assert c.sharing.incoming == {}  # refused, rather than sealing new files under the key bob still holds
    assert new_key == a.resolve("/team").verified().key
    for d in (a, b, c):
        d.close()


def test_hard_links_survive_a_revocation_and_the_folder_of_their_file(pair: tuple[Drive, Drive]) -> None:
    """A file re-keyed after a revoked share (a fresh content key at its next write) keeps its hard links
    (their proofs are re-derived); trashing the folder of a linked file keeps the file for its link."""
    a, b = pair
    a.mkdir("/proj")
    a.write_file("/proj/f.txt", b"before")
    a.link("/proj/f.txt", "/f-link.txt")
    a.sharing.share("/proj", "bob", "write")
    b.sharing.accept("alice")
    held = {s.folder_key for s in b.sharing.incoming.values()}
    a.sharing.unshare("/proj", "bob")
    old_key = a.resolve("/proj/f.txt").verified().key
    a.write_file("/f-link.txt", b"after the revocation")  # through the link: the file gets a fresh key
    meta = a.resolve("/proj/f.txt").verified()
    assert not crypto.ct_equal(meta.key, old_key) and meta.key not in held
    assert a.read_file("/f-link.txt") == a.read_file("/proj/f.txt") == b"after the revocation"
    assert a.stat("/f-link.txt").nlink == 2
    file_id = a.stat("/proj/f.txt").node_id
    a.delete("/proj")
    assert a.read_file("/f-link.txt") == b"after the revocation"
    assert a.stat("/f-link.txt").nlink == 1
    assert a.stat("/f-link.txt").node_id == file_id  # the file lives on (parked, nameless), named by its link
    assert [e.name for e in a.listdir("/")] == ["f-link.txt"]


def test_a_move_across_accounts_trees_is_a_cross_device_move(pair: tuple[Drive, Drive]) -> None:
    """Into or out of a folder shared with us is another account's tree: the Drive says so (EXDEV for the
    mount, so mv copies and deletes), WebDAV's MOVE does the copy and the delete itself."""
    a, b = pair
    a.mkdir("/proj")
    a.sharing.share("/proj", "bob", "write")
    b.sharing.accept("alice")
    b.write_file("/mine.txt", b"bob's file")
    with pytest.raises(CrossDevice):
        b.rename("/mine.txt", _shared(b) + "/mine.txt")
    with pytest.raises(PermissionDenied, match="root of a share"):
        b.rename(_shared(b), "/p2")
    gw = gateway.start(b, "127.0.0.1", 0)
    try:
        with httpx.Client(base_url=gw.url, timeout=30, auth=gw.auth) as c:
            r = c.request("MOVE", "/mine.txt", headers={"Destination": "/Shared%20with%20me/alice/proj/mine.txt"})
            assert r.status_code == 201, r.text
            r = c.request("MOVE", "/Shared%20with%20me/alice/proj/mine.txt", headers={"Destination": "/back.txt"})
            assert r.status_code == 201, r.text
    finally:
        gw.stop()
    assert b.read_file("/back.txt") == b"bob's file" and not b.exists("/mine.txt")
    a.refresh()
    assert a.listdir("/proj") == []
