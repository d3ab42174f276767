"""A malicious server edits its own storage; the client must notice, never yield wrong bytes.

Each test tampers with the real server's SQLite database or chunk files while
it runs, then reads with a client that has never seen the file (a fresh
login: it trusts nothing cached) and, where it matters, with the original one.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.accounts import Server, make_drive, megadrive, new_home, one_line_error

from megadrive.drive import Drive
from megadrive.errors import IntegrityError, NotFound

MiB = 1 << 20


@contextmanager
def db(server: Server) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(server.data / "meta.sqlite3", isolation_level=None, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


def chunk_path(server: Server, chunk_id: str) -> Path:
    p = next((server.data / "chunks").rglob(chunk_id), None)
    assert p is not None, chunk_id
    return p


def chunks_of(d: Drive, path: str) -> list[str]:
    """The chunk ids of a file's current version, in manifest order (read by the honest client)."""
    m = d.manifest(path)
    assert m is not None
    return m.chunk_ids()


def fresh(server: Server, tmp_path: Path, user: str) -> Drive:
    return make_drive(server.url, new_home(tmp_path), user, signup=False)


def must_fail(d: Drive, path: str) -> None:
    with pytest.raises(IntegrityError):
        d.read_file(path)


def must_hide(d: Drive, path: str, node: str) -> None:
    """A node whose meta fails its checks is hidden from its folder (and reported), its siblings unharmed."""
    parent = path.rsplit("/", 1)[0] or "/"
    assert node in d.hidden(parent)
    assert all(e.node_id != node for e in d.listdir(parent))
    with pytest.raises(NotFound):
        d.read_file(path)


@pytest.fixture
def setup(server: Server, tmp_path: Path) -> Iterator[tuple[Drive, str, bytes]]:
    d = make_drive(server.url, new_home(tmp_path), "victim")
    data = os.urandom(3 * MiB + 1234)
    d.write_file("/secret.bin", data)
    yield d, d.stat("/secret.bin").node_id, data
    d.close()


def test_flipped_bit_in_a_chunk(server: Server, tmp_path: Path, setup: tuple[Drive, str, bytes]) -> None:
    d, node, _ = setup
    p = chunk_path(server, chunks_of(d, "/secret.bin")[1])
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    p.write_bytes(bytes(raw))
    must_fail(fresh(server, tmp_path, "victim"), "/secret.bin")
    must_fail(d, "/secret.bin")


def test_dropped_last_chunk(server: Server, tmp_path: Path, setup: tuple[Drive, str, bytes]) -> None:
    d, node, _ = setup
    ids = chunks_of(d, "/secret.bin")
    chunk_path(server, ids[-1]).unlink()
    f = fresh(server, tmp_path, "victim")
    must_fail(f, "/secret.bin")
    # The first chunks still decrypt: a reader that stops early gets only verified bytes.
    r = f.open_read("/secret.bin")
    assert len(r.pread(0, 10)) == 10
    with pytest.raises(IntegrityError):
        r.pread(3 * MiB, 10)


def test_swapped_chunks(server: Server, tmp_path: Path, setup: tuple[Drive, str, bytes]) -> None:
    d, node, _ = setup
    ids = chunks_of(d, "/secret.bin")
    a, b = chunk_path(server, ids[0]), chunk_path(server, ids[1])
    ra, rb = a.read_bytes(), b.read_bytes()
    a.write_bytes(rb)
    b.write_bytes(ra)
    must_fail(fresh(server, tmp_path, "victim"), "/secret.bin")


def test_reordered_manifest_references(server: Server, tmp_path: Path, setup: tuple[Drive, str, bytes]) -> None:
    """The server cannot reorder a file's chunks by editing the manifest's list of chunk ids: it is sealed.

    The two 32-byte chunk ids are swapped where they sit in the sealed blob
    (version byte, 24-byte nonce, then the 92-byte head; a stream cipher keeps
    offsets), and the server's own list of the version's chunks is swapped too.
    """
    d, node, data = setup
    with db(server) as c:
        (blob,) = c.execute("SELECT manifest FROM versions WHERE node_id=? AND version=1", (node,)).fetchone()
        raw = bytearray(blob)
        first, second = 1 + 24 + 92, 1 + 24 + 92 + 32
        raw[first:first + 32], raw[second:second + 32] = raw[second:second + 32], raw[first:first + 32]
        assert bytes(raw) != blob
        c.execute("UPDATE versions SET manifest=? WHERE node_id=? AND version=1", (bytes(raw), node))
    must_fail(fresh(server, tmp_path, "victim"), "/secret.bin")
    must_fail(d, "/secret.bin")


def test_swapped_manifests(server: Server, tmp_path: Path, setup: tuple[Drive, str, bytes]) -> None:
    d, node_a, _ = setup
    d.write_file("/other.bin", os.urandom(3 * MiB + 1234))
    node_b = d.stat("/other.bin").node_id
    with db(server) as c:
        ma = c.execute("SELECT manifest FROM versions WHERE node_id=?", (node_a,)).fetchone()[0]
        mb = c.execute("SELECT manifest FROM versions WHERE node_id=?", (node_b,)).fetchone()[0]
        c.execute("UPDATE versions SET manifest=? WHERE node_id=?", (mb, node_a))
        c.execute("UPDATE versions SET manifest=? WHERE node_id=?", (ma, node_b))
    f = fresh(server, tmp_path, "victim")
    must_fail(f, "/secret.bin")
    must_fail(f, "/other.bin")
    must_fail(d, "/secret.bin")


def test_replayed_older_manifest(server: Server, tmp_path: Path, setup: tuple[Drive, str, bytes]) -> None:
    d, node, _ = setup
    d.write_file("/secret.bin", b"version two")
    with db(server) as c:
        old = c.execute("SELECT manifest FROM versions WHERE node_id=? AND version=1", (node,)).fetchone()[0]
        c.execute("UPDATE versions SET manifest=? WHERE node_id=? AND version=2", (old, node))
    must_fail(fresh(server, tmp_path, "victim"), "/secret.bin")
    must_fail(d, "/secret.bin")


def test_rollback_of_the_whole_node_is_noticed_by_a_client_that_saw_newer(
        server: Server, tmp_path: Path, setup: tuple[Drive, str, bytes]) -> None:
    d, node, _ = setup
    with db(server) as c:
        meta_v1, seq = c.execute("SELECT meta, seq FROM nodes WHERE node_id=?", (node,)).fetchone()
    d.write_file("/secret.bin", b"version two")
    with db(server) as c:  # the server serves v1 again, consistently, and announces it in the feed
        (top,) = c.execute("SELECT max(seq) FROM nodes").fetchone()
        c.execute("UPDATE nodes SET meta=?, version=1, seq=? WHERE node_id=?", (meta_v1, top + 1, node))
        c.execute("UPDATE users SET seq=? WHERE user_id=(SELECT owner FROM nodes WHERE node_id=?)", (top + 1, node))
    d.refresh()
    with pytest.raises(IntegrityError, match="rolled back"):
        d.stat_id(node)
    must_hide(d, "/secret.bin", node)


def test_swapped_names(server: Server, tmp_path: Path, setup: tuple[Drive, str, bytes]) -> None:
    d, node_a, _ = setup
    d.write_file("/public.txt", b"harmless")
    node_b = d.stat("/public.txt").node_id
    with db(server) as c:
        ma = c.execute("SELECT meta FROM nodes WHERE node_id=?", (node_a,)).fetchone()[0]
        mb = c.execute("SELECT meta FROM nodes WHERE node_id=?", (node_b,)).fetchone()[0]
        c.execute("UPDATE nodes SET meta=? WHERE node_id=?", (mb, node_a))
        c.execute("UPDATE nodes SET meta=? WHERE node_id=?", (ma, node_b))
    f = fresh(server, tmp_path, "victim")
    must_hide(f, "/public.txt", node_b)
    must_hide(f, "/secret.bin", node_a)
    assert f.listdir("/") == []
    for node in (node_a, node_b):
        with pytest.raises(IntegrityError, match="file name and attributes"):
            f.stat_id(node)


def test_cli_get_reports_integrity_error_and_writes_nothing(server: Server, tmp_path: Path,
                                                             setup: tuple[Drive, str, bytes]) -> None:
    d, node, _ = setup
    p = chunk_path(server, chunks_of(d, "/secret.bin")[-1])
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0x80
    p.write_bytes(bytes(raw))
    home = new_home(tmp_path)
    env = {"MEGADRIVE_HOME": str(home)}
    assert megadrive("login", "--server", server.url, "--user", "victim", env=env).returncode == 0
    out = tmp_path / "out"
    out.mkdir()
    r = megadrive("get", "/secret.bin", str(out / "secret.bin"), env=env)
    line = one_line_error(r)
    assert "integrity" in line
    assert r.returncode == 3
    assert list(out.iterdir()) == []  # no partial file, no temp file


def test_sealed_invalid_name_is_refused(server: Server, tmp_path: Path, setup: tuple[Drive, str, bytes]) -> None:
    """Even a correctly sealed meta (a future co-writer holds the folder key) cannot name a node '..'."""
    from megadrive import format

    d, node, _ = setup
    meta = d.resolve("/secret.bin").verified()
    meta.name = ".."
    blob = format.seal_meta(d.resolve("/").verified().key, d.owner, d.session.root_node_id, node, meta)
    with db(server) as c:
        c.execute("UPDATE nodes SET meta=? WHERE node_id=?", (blob, node))
    f = fresh(server, tmp_path, "victim")
    assert f.listdir("/") == []
    with pytest.raises(IntegrityError, match="invalid name"):
        f.stat_id(node)
    must_hide(f, "/secret.bin", node)
