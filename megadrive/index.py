"""The local index: the server's node tree, kept current through the change feed.

It stores exactly what the server holds (ids, parent, kind, version, and the
encrypted meta blob) plus a keyed hash of each name, so that resolving a path
is one indexed query per component and listing a folder needs no round trip.
No plaintext name or attribute is ever written here; with no key in memory
the file reveals no more than the server's database.

It also remembers, per node, the highest content version and meta revision
this client has seen, which is how a rollback by the server is noticed.

The schema of every table lives here, in one place; the module that owns a
table (journal, contacts, local records) reads and writes it through
:meth:`Index.execute` and :meth:`Index.query`.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import sqlite_utils


@dataclass
class IndexRow:
    node_id: str
    parent_id: str | None
    kind: str
    version: int
    size: int
    trashed: bool
    seq: int
    meta: bytes
    name_hash: str | None
    bad: bool
    owner: str = ""  # empty: the account's own tree; else the sharing owner's user id
    removed: bool = False  # taken down after an abuse notice


_COLS = "node_id, parent_id, kind, version, size, trashed, seq, meta, name_hash, bad, owner, removed"


def _row(t: tuple) -> IndexRow:  # type: ignore[type-arg]
    return IndexRow(t[0], t[1], t[2], t[3], t[4], bool(t[5]), t[6], t[7], t[8], bool(t[9]), t[10] or "",
                    bool(t[11]))


@contextmanager
def try_exclusive(f: IO[bytes], *, after: int = fcntl.LOCK_UN) -> Iterator[bool]:
    """Take ``f``'s flock exclusively without waiting: yields whether it was taken (another process
    holds it otherwise), and puts it back to ``after`` at the end of the block."""
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        yield False
        return
    try:
        yield True
    finally:
        fcntl.flock(f, after)


class Index:
    """SQLite (WAL) file per account; one connection guarded by a lock, safe across threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = None if str(path) == ":memory:" else Path(path)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self.db = sqlite_utils.Database(self._conn)
        if str(path) != ":memory:":
            self.db.enable_wal()
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._create()
        # Every process with the index open holds a shared lock on this file: who gets it exclusively
        # is alone (nobody else can be writing into the journal right now).
        self._users = None if self.path is None else open(self.path.with_name(self.path.name + ".users"), "a+b")
        if self._users is not None:
            fcntl.flock(self._users, fcntl.LOCK_SH)

    @contextmanager
    def alone(self) -> Iterator[bool]:
        """Whether no other process has this index open, held so for the block's duration."""
        if self._users is None:
            yield True
            return
        with try_exclusive(self._users, after=fcntl.LOCK_SH) as alone:
            yield alone

    def _create(self) -> None:
        db = self.db
        if "nodes" not in db.table_names():
            db.table("nodes").create({"node_id": str, "parent_id": str, "kind": str, "version": int, "size": int,
                                "trashed": int, "seq": int, "meta": bytes, "name_hash": str, "bad": int},
                               pk="node_id")
            db.table("nodes").create_index(["parent_id", "name_hash"])
        cols = {c.name for c in db.table("nodes").columns}
        if "owner" not in cols:
            self._conn.execute("ALTER TABLE nodes ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
        if "removed" not in cols:
            self._conn.execute("ALTER TABLE nodes ADD COLUMN removed INTEGER NOT NULL DEFAULT 0")
        if "seen" not in db.table_names():
            db.table("seen").create({"node_id": str, "version": int, "rev": int, "seq": int}, pk="node_id")
        if "seq" not in {c.name for c in db.table("seen").columns}:
            self._conn.execute("ALTER TABLE seen ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
        if "state" not in db.table_names():
            db.table("state").create({"key": str, "value": str}, pk="key")
        if "contacts" not in db.table_names():
            # Identity keys pinned on first use (TOFU), by account name.
            db.table("contacts").create({"user": str, "user_id": str, "sign_pub": str, "verified": int,
                                         "first_seen": float, "accepted": int}, pk="user")
        if "accepted" not in {c.name for c in db.table("contacts").columns}:
            # Contacts pinned before first contact needed acceptance start out pending again.
            self._conn.execute("ALTER TABLE contacts ADD COLUMN accepted INTEGER NOT NULL DEFAULT 0")
        if "records" not in db.table_names():
            # Small sealed records front-ends keep locally (WebDAV locks): keyed hash -> sealed blob.
            db.table("records").create({"ns": str, "key": str, "blob": bytes}, pk=("ns", "key"))
        if "journal" not in db.table_names():
            # Staged, already-encrypted chunks not yet confirmed by the server (the FUSE mount's journal).
            db.table("journal").create({"chunk_id": str, "node_id": str, "blob": bytes}, pk="chunk_id")
            db.table("journal").create_index(["node_id"])
        if "pending" not in db.table_names():
            # A version sealed and journaled but not yet committed: the base version it builds on, the
            # sealed manifest (which holds the size) and its chunk ids; replayed by the next mount.
            db.table("pending").create({"node_id": str, "base_version": int, "manifest": bytes, "chunks": str,
                                        "keys": bytes}, pk="node_id")
        if "creates" not in db.table_names():
            # Files created on this machine while the server was unreachable: the node as it will be created
            # (its meta sealed like any other), created on the server before its first version is committed.
            self._conn.execute("CREATE TABLE creates (n INTEGER PRIMARY KEY AUTOINCREMENT, node_id TEXT UNIQUE, "
                               "parent_id TEXT, kind TEXT, meta BLOB)")
        if "keys" not in {c.name for c in db.table("pending").columns}:
            # The version's keys and attributes, sealed under the master key (empty in older journals).
            self._conn.execute("ALTER TABLE pending ADD COLUMN keys BLOB")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._users is not None:
                self._users.close()
                self._users = None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> None:
        """A statement on one of the index's tables (the module that owns a table writes its SQL)."""
        with self._lock:
            self._conn.execute(sql, params)

    def data_version(self) -> int:
        """Changes when another process (a mount beside a gateway on one data folder) wrote the file."""
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    # -- state --------------------------------------------------------------------------------

    def get_state(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            r = self._conn.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return r[0] if r else default

    def set_state(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)", (key, value))

    # -- nodes --------------------------------------------------------------------------------

    def upsert(self, row: IndexRow) -> bool:
        """Store a node's state unless the index already has a newer one (higher seq).

        If the stored row has the same meta blob and parent, its computed name
        hash is kept: two threads ingesting the same change must not blank it.
        """
        with self._lock:
            cur = self._conn.execute("SELECT seq, meta, parent_id, name_hash, bad, owner FROM nodes WHERE node_id=?",
                                     (row.node_id,)).fetchone()
            name_hash, bad = row.name_hash, row.bad
            if cur is not None:
                if (cur[5] or "") != row.owner:
                    return False  # a node never changes owner: a feed claiming otherwise is lying
                if cur[0] > row.seq:
                    return False
                if cur[1] == row.meta and cur[2] == row.parent_id and (cur[3] is not None or cur[4]):
                    name_hash, bad = cur[3], bool(cur[4])
            self._conn.execute(
                f"INSERT OR REPLACE INTO nodes({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (row.node_id, row.parent_id, row.kind, row.version, row.size, int(row.trashed), row.seq,
                 row.meta, name_hash, int(bad), row.owner, int(row.removed)))
            return True

    def set_name_hash(self, node_id: str, name_hash: str | None, bad: bool) -> None:
        with self._lock:
            self._conn.execute("UPDATE nodes SET name_hash=?, bad=? WHERE node_id=?",
                               (name_hash, int(bad), node_id))

    def remove(self, node_id: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM nodes WHERE node_id=?", (node_id,))

    def get(self, node_id: str) -> IndexRow | None:
        with self._lock:
            r = self._conn.execute(f"SELECT {_COLS} FROM nodes WHERE node_id=?", (node_id,)).fetchone()
        return _row(r) if r else None

    def lookup(self, parent_id: str, name_hash: str) -> IndexRow | None:
        with self._lock:
            r = self._conn.execute(
                f"SELECT {_COLS} FROM nodes WHERE parent_id=? AND name_hash=? AND trashed=0 "
                "ORDER BY seq DESC LIMIT 1", (parent_id, name_hash)).fetchone()
        return _row(r) if r else None

    def children(self, parent_id: str) -> list[IndexRow]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLS} FROM nodes WHERE parent_id=? AND trashed=0", (parent_id,)).fetchall()
        return [_row(r) for r in rows]

    def subtree_files(self, root: str) -> list[IndexRow]:
        """Files anywhere below a folder (not in the trash)."""
        with self._lock:
            rows = self._conn.execute(
                "WITH RECURSIVE sub(id) AS (SELECT ? UNION "
                "SELECT n.node_id FROM nodes n JOIN sub ON n.parent_id = sub.id WHERE n.trashed = 0) "
                f"SELECT {_COLS} FROM nodes WHERE node_id IN (SELECT id FROM sub) AND kind = 'file' AND trashed = 0",
                (root,)).fetchall()
        return [_row(r) for r in rows]

    def count_subfolders(self, parent_id: str) -> int:
        """Folders directly in a folder that are not hidden as failing their checks (a POSIX link count)."""
        with self._lock:
            (n,) = self._conn.execute("SELECT count(*) FROM nodes WHERE parent_id=? AND kind='dir' AND trashed=0 "
                                      "AND bad=0", (parent_id,)).fetchone()
        return int(n)

    def trashed_children(self, parent_id: str) -> list[IndexRow]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLS} FROM nodes WHERE parent_id=? AND trashed=1", (parent_id,)).fetchall()
        return [_row(r) for r in rows]

    def remove_subtree(self, root: str) -> None:
        """Forget a node and everything indexed under it (a share we lost)."""
        with self._lock:
            self._conn.execute(
                "WITH RECURSIVE sub(id) AS (SELECT ? UNION "
                "SELECT n.node_id FROM nodes n JOIN sub ON n.parent_id = sub.id) "
                "DELETE FROM nodes WHERE node_id IN (SELECT id FROM sub)", (root,))

    def pending_hash(self, parent_id: str | None = None) -> list[IndexRow]:
        """Rows whose name hash is not computed yet (fresh from the change feed)."""
        with self._lock:
            if parent_id is None:
                rows = self._conn.execute(
                    f"SELECT {_COLS} FROM nodes WHERE name_hash IS NULL AND bad=0").fetchall()
            else:
                rows = self._conn.execute(
                    f"SELECT {_COLS} FROM nodes WHERE parent_id=? AND name_hash IS NULL AND bad=0",
                    (parent_id,)).fetchall()
        return [_row(r) for r in rows]

    # -- rollback memory ----------------------------------------------------------------------

    def seen(self, node_id: str) -> tuple[int, int, int]:
        """The highest (version, revision) verified for a node, and the change seq that carried them."""
        with self._lock:
            r = self._conn.execute("SELECT version, rev, seq FROM seen WHERE node_id=?", (node_id,)).fetchone()
        return (r[0], r[1], r[2]) if r else (0, 0, 0)

    def mark_seen(self, node_id: str, version: int, rev: int, seq: int) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO seen(node_id, version, rev, seq) VALUES (?,?,?,?) ON CONFLICT(node_id) DO UPDATE SET "
                "version=max(version, excluded.version), rev=max(rev, excluded.rev), seq=max(seq, excluded.seq)",
                (node_id, version, rev, seq))
