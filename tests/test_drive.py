"""The Drive API against a real server process."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.accounts import Server, make_drive, new_home

from megadrive.drive import Drive
from megadrive.errors import (
    AlreadyExists,
    Conflict,
    IntegrityError,
    InvalidPath,
    IsADirectory,
    NameTooLong,
    NotADirectory,
    NotEmpty,
    NotFound,
    PermissionDenied,
    StaleVersion,
)
from megadrive.format import CHUNK_SIZE

MiB = 1 << 20


def test_tree_operations(drive: Drive) -> None:
    drive.mkdir("/docs")
    drive.mkdir("/docs/sub")
    drive.write_file("/docs/a.txt", b"alpha")
    assert [e.name for e in drive.listdir("/docs")] == ["a.txt", "sub"]
    e = drive.stat("/docs/a.txt")
    assert (e.kind, e.size, e.version) == ("file", 5, 1)
    with pytest.raises(AlreadyExists):
        drive.mkdir("/docs")
    with pytest.raises(NotFound):
        drive.stat("/nope")
    with pytest.raises(NotADirectory):
        drive.listdir("/docs/a.txt")
    with pytest.raises(NotADirectory):
        drive.mkdir("/docs/a.txt/x")
    with pytest.raises(IsADirectory):
        drive.read_file("/docs")
    with pytest.raises(NotEmpty):
        drive.rmdir("/docs")
    with pytest.raises(InvalidPath):
        drive.mkdir("/docs/..")
    drive.rename("/docs/a.txt", "/docs/sub/b.txt")
    assert drive.read_file("/docs/sub/b.txt") == b"alpha"
    assert not drive.exists("/docs/a.txt")
    drive.rename("/docs", "/papers")
    assert drive.read_file("/papers/sub/b.txt") == b"alpha"
    drive.delete("/papers/sub/b.txt")
    drive.rmdir("/papers/sub")
    assert drive.listdir("/papers") == []


def test_rename_is_metadata_only(drive: Drive) -> None:
    data = os.urandom(3 * MiB + 5)
    drive.write_file("/big.bin", data)
    drive.mkdir("/dir")
    before = drive.quota(max_age=0).used  # chunks, manifests and metas (a renamed meta keeps its size)
    drive.rename("/big.bin", "/dir/renamed.bin")
    assert drive.quota(max_age=0).used == before  # no chunk was uploaded again
    assert drive.read_file("/dir/renamed.bin") == data


def test_rename_overwrite_replaces_atomically(drive: Drive) -> None:
    drive.write_file("/target", b"old")
    drive.write_file("/tmp123", b"new content")
    with pytest.raises(AlreadyExists):
        drive.rename("/tmp123", "/target")
    assert drive.read_file("/target") == b"old"
    drive.rename("/tmp123", "/target", overwrite=True)
    assert drive.read_file("/target") == b"new content"
    assert [e.name for e in drive.listdir("/")] == ["target"]


def test_cannot_move_folder_into_itself(drive: Drive) -> None:
    drive.makedirs("/a/b")
    with pytest.raises(Exception, match="into itself"):
        drive.rename("/a", "/a/b/c")


def test_attributes_and_props(drive: Drive) -> None:
    drive.write_file("/f", b"x", mtime_ns=1_000_000_000)
    assert drive.stat("/f").mtime_ns == 1_000_000_000
    drive.set_attrs("/f", mtime_ns=2_000_000_000, mode=0o600, props={"{ns:}color": "blue"})
    e = drive.stat("/f")
    assert (e.mtime_ns, e.mode, e.props) == (2_000_000_000, 0o600, {"{ns:}color": "blue"})
    drive.set_attrs("/f", props={"{ns:}color": None})
    assert drive.stat("/f").props == {}
    assert drive.read_file("/f") == b"x"


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 7])
def test_roundtrip_sizes(drive: Drive, size: int) -> None:
    data = os.urandom(size)
    drive.write_file("/f.bin", data)
    assert drive.stat("/f.bin").size == size
    assert drive.read_file("/f.bin") == data


def test_random_access_reads(drive: Drive) -> None:
    data = os.urandom(3 * MiB + 100)
    drive.write_file("/f", data)
    r = drive.open_read("/f")
    for off, n in [(0, 10), (MiB - 3, 10), (2 * MiB + 17, MiB), (3 * MiB + 90, 100), (5 * MiB, 10)]:
        assert r.pread(off, n) == data[off:off + n]
    r.close()


def test_small_edit_reuses_unchanged_chunks(drive: Drive) -> None:
    data = bytearray(os.urandom(8 * MiB))
    drive.write_file("/big", bytes(data))
    w = drive.open_write("/big", truncate=False)
    w.pwrite(5 * MiB + 100, b"E" * 4096)
    w.commit()
    data[5 * MiB + 100:5 * MiB + 100 + 4096] = b"E" * 4096
    assert w.uploaded_bytes < 2 * MiB + 4096  # one chunk re-encrypted (plus the last one at most)
    assert drive.read_file("/big") == bytes(data)
    assert drive.stat("/big").version == 2


def test_truncate_and_extend(drive: Drive) -> None:
    data = os.urandom(2 * MiB + 10)
    drive.write_file("/f", data)
    drive.truncate("/f", MiB + 5)
    assert drive.read_file("/f") == data[:MiB + 5]
    drive.truncate("/f", 3 * MiB)
    assert drive.read_file("/f") == data[:MiB + 5] + bytes(3 * MiB - MiB - 5)
    drive.truncate("/f", 0)
    assert drive.read_file("/f") == b""


def test_stale_commit_is_refused_and_newer_survives(drive: Drive) -> None:
    drive.write_file("/f", b"v1")
    w1 = drive.open_write("/f")
    w2 = drive.open_write("/f")
    w1.write(b"from writer one")
    w1.commit()
    w2.write(b"from writer two")
    with pytest.raises(StaleVersion):
        w2.commit()
    assert drive.read_file("/f") == b"from writer one"


def test_uncommitted_write_changes_nothing(drive: Drive) -> None:
    drive.write_file("/f", b"original")
    w = drive.open_write("/f")
    w.write(os.urandom(3 * MiB))
    w.abort()
    assert drive.read_file("/f") == b"original"
    w = drive.open_write("/new")
    w.write(b"never committed")
    w.abort()
    assert not drive.exists("/new")


def test_reader_keeps_its_version_while_a_new_one_commits(drive: Drive) -> None:
    old = os.urandom(3 * MiB)
    new = os.urandom(3 * MiB)
    drive.write_file("/f", old)
    r = drive.open_read("/f")
    first = r.read(MiB)
    drive.write_file("/f", new)
    rest = r.read()
    assert first + rest == old
    assert drive.read_file("/f") == new


def test_concurrent_readers_see_old_or_new_never_a_mix(drive: Drive) -> None:
    a, b = os.urandom(2 * MiB + 1), os.urandom(2 * MiB + 1)
    drive.write_file("/f", a)
    seen: list[bytes] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(drive.read_file("/f"))

    t = threading.Thread(target=reader)
    t.start()
    for _ in range(3):
        drive.write_file("/f", b)
        drive.write_file("/f", a)
    stop.set()
    t.join()
    assert seen and all(s in (a, b) for s in seen)


def test_copy_is_re_encrypted_under_fresh_keys(drive: Drive) -> None:
    """No key is shared by two nodes: a copy gets its own content key, file id and chunks."""
    data = os.urandom(2 * MiB)
    drive.write_file("/src", data)
    drive.copy("/src", "/dst")
    assert drive.read_file("/dst") == data
    src, dst = drive.resolve("/src").verified(), drive.resolve("/dst").verified()
    assert src.key != dst.key and src.file_id != dst.file_id
    ms, md = drive.manifest("/src"), drive.manifest("/dst")
    assert ms is not None and md is not None and not set(ms.chunk_ids()) & set(md.chunk_ids())
    drive.write_file("/dst", b"changed")
    assert drive.read_file("/src") == data


def test_second_client_sees_changes_through_the_feed(server: Server, tmp_path: Path) -> None:
    h1 = new_home(tmp_path)
    d1 = make_drive(server.url, h1, "alice")
    h2 = new_home(tmp_path)
    d2 = make_drive(server.url, h2, "alice", signup=False)
    d1.mkdir("/shared")
    d1.write_file("/shared/x", b"hello")
    assert d2.refresh() >= 2
    assert d2.read_file("/shared/x") == b"hello"
    d2.rename("/shared/x", "/shared/y")
    d1.refresh()
    assert [e.name for e in d1.listdir("/shared")] == ["y"]
    d1.close()
    d2.close()


def test_index_answers_listing_without_round_trips(drive: Drive) -> None:
    drive.mkdir("/many")
    for i in range(50):
        drive.write_file(f"/many/f{i:03}", b"")
    calls = []
    orig = drive.api._request
    drive.api._request = lambda *a, **k: calls.append(a) or orig(*a, **k)  # type: ignore[method-assign]
    assert len(drive.listdir("/many")) == 50
    drive.stat("/many/f042")
    assert calls == []


# -- a staged writer against a plain bytearray model ---------------------------------------------

_op = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 3 * MiB), st.integers(1, 300_000)),
    st.tuples(st.just("truncate"), st.integers(0, 3 * MiB), st.just(0)),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(initial=st.integers(0, 2 * MiB + 3), ops=st.lists(_op, min_size=1, max_size=6))
def test_writer_matches_model(drive: Drive, initial: int, ops: list[tuple[str, int, int]]) -> None:
    model = bytearray(os.urandom(initial))
    drive.write_file("/m", bytes(model))
    w = drive.open_write("/m", truncate=False)
    for kind, off, n in ops:
        if kind == "write":
            data = os.urandom(n)
            w.pwrite(off, data)
            if off > len(model):
                model.extend(bytes(off - len(model)))
            model[off:off + n] = data
        else:
            w.truncate(off)
            del model[off:]
            model.extend(bytes(off - len(model)))
    w.commit()
    assert drive.stat("/m").size == len(model)
    assert drive.read_file("/m") == bytes(model)


def test_symlink_meta_is_strict_and_round_trips(drive: Drive) -> None:
    from megadrive import format
    from megadrive.errors import IntegrityError

    drive.symlink("/l", "../target with spaces")
    assert drive.stat("/l").link == "../target with spaces"
    good = format.NodeMeta("n", "file", bytes(32), bytes(16), link="t").to_json()
    assert format.NodeMeta.from_json(good).link == "t"
    for bad in ("", 5, ["t"], True):
        with pytest.raises(IntegrityError):
            format.NodeMeta.from_json(dict(good, l=bad))


def test_tampered_local_record_is_dropped_never_returned(drive: Drive) -> None:
    """Local records (WebDAV locks) are sealed with their namespace and key hash in the AAD."""
    recs = drive.local_records("webdav-lock")
    recs.put("token-a", b'{"root": "/secret path"}')
    recs.put("token-b", b'{"root": "/other"}')
    assert sorted(recs.values()) == [b'{"root": "/other"}', b'{"root": "/secret path"}']
    def rows(ns: str) -> list[tuple[str, bytes]]:  # what someone with the disk sees and edits
        return [(r[0], r[1]) for r in drive.index.query("SELECT key, blob FROM records WHERE ns=?", (ns,))]

    def put(ns: str, key: str, blob: bytes) -> None:
        drive.index.execute("INSERT OR REPLACE INTO records(ns, key, blob) VALUES (?,?,?)", (ns, key, blob))

    (h1, b1), (h2, b2) = rows("webdav-lock")
    put("webdav-lock", h1, b2)  # swap the two blobs between keys
    put("webdav-lock", h2, b1)
    assert recs.values() == []  # both fail authentication and are dropped
    assert rows("webdav-lock") == []
    other = drive.local_records("other-ns")
    recs.put("token-c", b"x")
    (h3, b3), = rows("webdav-lock")
    put("other-ns", h3, b3)  # moved to another namespace
    assert other.values() == []


def test_a_file_deleted_before_its_upload_never_reaches_the_server(drive: Drive, server: Server,
                                                                    tmp_path: Path) -> None:
    """Write-back: a file created and saved here, deleted before the uploader got to it, costs the server
    nothing (no create, no trash); one created in a folder that is then trashed is created first."""
    drive.mkdir("/d")
    drive.create_file("/d/gone.txt", local=True)
    w = drive.open_write("/d/gone.txt", journal=True)
    w.write(b"never uploaded")
    w.save()
    w.close()
    drive.create_file("/d/kept.txt", local=True)
    assert drive.pending_uploads() == 2
    gone, kept = drive.stat("/d/gone.txt").node_id, drive.stat("/d/kept.txt").node_id
    drive.remove("/d/gone.txt")
    assert drive.pending_uploads() == 1
    with pytest.raises(NotFound):
        drive.stat("/d/gone.txt")
    drive.delete("/d")  # the folder goes to the trash with what was created in it
    assert drive.pending_uploads() == 0
    assert drive.replay_journal() == []
    other = make_drive(server.url, new_home(tmp_path), drive.ctx.session.user, signup=False)
    try:
        assert [e.name for e in other.listdir("/")] == []
        with pytest.raises(NotFound):  # the server never heard of it
            other.api.get_node(gone)
        assert other.api.get_node(kept).node_id == kept  # created before its folder was trashed
    finally:
        other.close()


def test_an_uploaded_save_leaves_nothing_behind_and_logs_nothing(drive: Drive,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Settling a committed version removes its chunks itself: nothing is left for the orphan sweep
    (whose warning would claim a write was never saved)."""
    w = drive.open_write("/saved.txt", journal=True)
    w.write(b"saved, then uploaded")
    w.save()
    w.close()
    with caplog.at_level("WARNING", logger="megadrive"):
        assert drive.replay_journal() == [f"committed node {drive.stat('/saved.txt').node_id[:12]} (version 1)"]
    assert [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")] == []
    assert drive.pending_uploads() == 0
    assert drive.read_file("/saved.txt") == b"saved, then uploaded"


def test_a_save_racing_the_settle_of_what_it_replaces_lands_on_the_new_base(
        drive: Drive, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stress run's lost write: C saves on top of B, which was saved on top of A. While C's save is
    being recorded, the uploader settles A (committed), which moves B onto the new base. C must land on
    that base too, not on the old one beside the server's version (then a conflicted copy, every save
    after it too)."""
    from megadrive import format as fmt

    drive.write_file("/f.txt", b"v1")
    node = drive.stat("/f.txt").node_id
    journal = drive.ctx.journal

    def save(data: bytes) -> None:
        w = drive.open_write_id(node, truncate=True, journal=True)
        w.write(data)
        w.save()
        w.close()

    save(b"A")
    lv_a = journal.get(node)
    assert lv_a is not None and lv_a.base_version == 1
    save(b"B")  # on top of A (not uploaded yet): same base
    w = drive.open_write_id(node, truncate=True, journal=True)  # C opens on B
    w.write(b"C")
    real_seal = fmt.seal_manifest
    settler: list[threading.Thread] = []

    def seal_then_settle(*args: Any, **kw: Any) -> bytes:
        if not settler:  # the uploader settles A while C's save is under way
            settler.append(threading.Thread(target=journal.settle, args=(lv_a,)))
            settler[0].start()
            settler[0].join(0.5)  # (it must wait for C's save to be recorded)
        return real_seal(*args, **kw)

    monkeypatch.setattr(fmt, "seal_manifest", seal_then_settle)
    w.save()
    w.close()
    settler[0].join(5)
    monkeypatch.setattr(fmt, "seal_manifest", real_seal)
    lv_c = journal.get(node)
    assert lv_c is not None and lv_c.base_version == 2 and lv_c.manifest.version == 3
    assert drive.read_file("/f.txt") == b"C"


def test_a_new_file_reaches_the_server_in_one_request(drive: Drive, server: Server, tmp_path: Path) -> None:
    """Write-back of a file created here: its node and its first version are one request (the chunk went
    ahead as it was sealed, or goes when the server says it misses it), not create + missing + commit."""
    drive.mkdir("/d")
    drive.create_file("/d/new.txt", local=True)
    w = drive.open_write("/d/new.txt", journal=True)
    w.write(b"created and committed at once")
    w.save()
    w.close()
    node = drive.stat("/d/new.txt").node_id
    calls: list[tuple[str, str]] = []
    real = drive.api._request

    def counting(method: str, path: str, **kw: Any) -> Any:
        calls.append((method, path))
        return real(method, path, **kw)

    drive.api._request = counting  # type: ignore[method-assign]
    try:
        assert drive.replay_journal() == [f"created node {node[:12]} with version 1"]
    finally:
        drive.api._request = real  # type: ignore[method-assign]
    assert [c for c in calls if not c[1].startswith("/chunks/")] == [("POST", "/nodes")]
    assert drive.pending_uploads() == 0
    calls.clear()
    drive.api._request = counting  # type: ignore[method-assign]
    try:  # just uploaded from here: read back without a round trip (manifest and chunk kept, as ciphertext)
        assert drive.read_file("/d/new.txt") == b"created and committed at once"
    finally:
        drive.api._request = real  # type: ignore[method-assign]
    assert calls == []
    other = make_drive(server.url, new_home(tmp_path), drive.ctx.session.user, signup=False)
    try:
        assert other.read_file("/d/new.txt") == b"created and committed at once"
        assert other.stat("/d/new.txt").version == 1
    finally:
        other.close()


def test_a_writer_that_goes_on_after_its_save_was_uploaded_builds_on_it(drive: Drive, server: Server,
                                                                          tmp_path: Path) -> None:
    """A program writes, fsync()s (save), the uploader commits that, the program writes more and closes:
    the second save goes on top of the first (version 2), never beside it as a conflicted copy."""
    w = drive.open_write("/log.txt", journal=True)
    w.write(b"first line\n")
    w.save()
    node = drive.stat("/log.txt").node_id
    assert drive.replay_journal() == [f"committed node {node[:12]} (version 1)"]
    w.write(b"second line\n")
    w.save()
    w.close()
    assert drive.replay_journal() == [f"committed node {node[:12]} (version 2)"]
    assert [e.name for e in drive.listdir("/")] == ["log.txt"]
    other = make_drive(server.url, new_home(tmp_path), drive.ctx.session.user, signup=False)
    try:
        assert other.read_file("/log.txt") == b"first line\nsecond line\n"
        assert other.stat("/log.txt").version == 2
    finally:
        other.close()


def test_a_tampered_journal_record_is_refused_not_opened(drive: Drive) -> None:
    """The journal's per-version record (keys, parent, revision, lineage) is sealed under the master key:
    a flipped byte on disk is an IntegrityError, never a version opened with keys it was not sealed with."""
    w = drive.open_write("/local.txt", journal=True)
    w.write(b"saved here only")
    w.save()
    w.close()
    node = drive.stat("/local.txt").node_id
    (blob,) = drive.ctx.index.query("SELECT keys FROM pending WHERE node_id=?", (node,))[0]
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 1
    drive.ctx.index.execute("UPDATE pending SET keys=? WHERE node_id=?", (bytes(bad), node))
    with pytest.raises(IntegrityError):  # read from disk again (what a restart would open)
        drive.ctx.journal.get_unlocked(node)


def test_every_path_based_call_reaches_the_file_a_hard_link_names(drive: Drive) -> None:
    """What WebDAV and the CLI do by path (read, write, manifest, attributes, copy, delete) through a hard
    link is done to its file; renaming or deleting the link touches only the link."""
    drive.mkdir("/d")
    drive.write_file("/d/f", b"original")
    drive.link("/d/f", "/l")
    assert drive.read_file("/l") == b"original" and drive.stat("/l").size == 8
    drive.write_file("/l", b"written through the link")
    assert drive.read_file("/d/f") == b"written through the link"
    assert drive.manifest("/l") == drive.manifest("/d/f")
    drive.set_attrs("/l", mode=0o600, props={"{x:}tag": "t"})
    assert (drive.stat("/d/f").mode, drive.stat("/d/f").props) == (0o600, {"{x:}tag": "t"})
    drive.copy("/l", "/copy")
    assert drive.read_file("/copy") == b"written through the link" and drive.stat("/copy").nlink == 1
    drive.rename("/l", "/d/l2")
    assert drive.stat("/d/f").nlink == 2 and drive.stat("/d/l2").node_id == drive.stat("/d/f").node_id
    drive.remove("/d/l2")
    assert drive.stat("/d/f").nlink == 1 and drive.read_file("/d/f") == b"written through the link"
    with pytest.raises(NotADirectory):
        drive.link("/d/f", "/copy/x")


def test_symbolic_links_and_special_files_take_no_content(drive: Drive) -> None:
    """A PUT or a put onto a symbolic link or a fifo is refused; it does not turn them into files."""
    drive.symlink("/s", "target")
    drive.create_file("/p", special="fifo")
    for path in ("/s", "/p"):
        with pytest.raises(Conflict, match="not a regular file"):
            drive.write_file(path, b"data")
    assert (drive.stat("/s").link, drive.stat("/s").size) == ("target", 0)
    assert (drive.stat("/p").special, drive.stat("/p").size) == ("fifo", 0)
    drive.copy("/p", "/p2")  # a copy of a special file is one too (not an empty regular file)
    assert drive.stat("/p2").special == "fifo" and drive.stat("/p2").node_id != drive.stat("/p").node_id


def test_looking_up_an_over_long_name_says_so(drive: Drive) -> None:
    """No name over 255 bytes can exist, so looking one up is NameTooLong (ENAMETOOLONG, 400), not NotFound."""
    drive.mkdir("/d")
    with pytest.raises(NameTooLong):
        drive.stat("/d/" + "n" * 256)
    with pytest.raises(NameTooLong):
        drive.stat("/" + "é" * 128 + "/x")  # 256 bytes in the middle of a path
    with pytest.raises(NotFound):
        drive.stat("/d/" + "n" * 255)


def test_a_real_dot_trash_folder_hides_the_view_and_stays_usable(drive: Drive) -> None:
    """A folder named .trash at the top (made by an older client, or an app such as Obsidian) stays an
    ordinary folder: the view steps aside; a new one cannot be made while the view is there."""
    with pytest.raises(PermissionDenied):
        drive.mkdir("/.trash")
    drive.write_file("/gone.txt", b"x")
    drive.delete("/gone.txt")
    assert [e.name for e in drive.listdir("/.trash")] == ["gone.txt"]
    drive.nodes.mkdir("/.trash")  # (what an older client did)
    drive.write_file("/.trash/note.md", b"mine")
    assert [e.name for e in drive.listdir("/.trash")] == ["note.md"]
    assert drive.read_file("/.trash/note.md") == b"mine"
    drive.remove("/.trash/note.md")
    assert [e.name for e in drive.listdir("/.versions")] == [".trash"]  # the other view is still there


def test_a_file_held_open_is_not_forgotten_when_unlinked_before_its_upload(drive: Drive) -> None:
    """Write-back: a file made here and unlinked before the uploader created it on the server is
    forgotten (no round trip), unless a front-end holds it open (a descriptor, even read-only): then it
    stays reachable by id, and the uploader creates it (in the trash) once the descriptor is gone."""
    drive.create_file("/held.txt", local=True)
    node = drive.stat("/held.txt").node_id
    drive.hold_open(node)
    drive.remove("/held.txt")
    assert drive.stat_id(node).node_id == node  # the descriptor still has its file
    w = drive.open_write_id(node, journal=True)
    w.write(b"written after the unlink")
    w.save()
    w.close()
    drive.release_open(node)
    drive.replay_journal()
    assert drive.api.get_node(node).trashed
    with drive.open_read_id(node) as r:
        assert r.read() == b"written after the unlink"
