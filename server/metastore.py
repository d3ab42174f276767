"""Metadata store: accounts, tokens, the node tree, versions, chunk ownership.

The tree and versioning rules of docs/SERVER_API.md are enforced here, inside
the transaction that applies a change, so a rule can never be checked against
one state and applied to another. :class:`MetaStore` is the contract (see
tests/server/test_server_metastore.py); :class:`SQLiteMetaStore` implements it
on one SQLite file in WAL mode with one connection per thread.

Every node change bumps the owning account's sequence counter in the same
transaction and stamps the node with it, which is what the change feed reads.
"""

# ruff: noqa: S608
# (Every statement binds values with "?"; f-strings only splice the constant
# column lists below and runs of "?" marks.)
from __future__ import annotations

import json
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import (
    Conflict,
    Exists,
    MissingChunks,
    NotFound,
    PreconditionFailed,
    QuotaExceeded,
)

# Deepest allowed node (the root is depth 0). Bounds every ancestor walk, so
# a hostile account cannot make tree checks arbitrarily slow.
MAX_DEPTH = 1024
# Tokens kept per account; older ones are revoked when a new one is issued.
MAX_TOKENS_PER_ACCOUNT = 100
# Ids per SQL statement (stays far below SQLite's variable limit).
_BATCH = 500


@dataclass(frozen=True)
class Identity:
    """An account's public keys and its wrapped private keys (all opaque)."""

    sign_pub: bytes
    box_pub: bytes
    box_sig: bytes
    wrapped_private: bytes


@dataclass(frozen=True)
class NewAccount:
    """What signup stores. ``auth_hash`` is scrypt(auth_key, auth_salt), never the key."""

    name: str
    user_id: str
    salt: bytes
    kdf: dict[str, Any]
    auth_salt: bytes
    auth_hash: bytes
    wrapped_master: bytes
    identity: Identity
    root_node_id: str
    root_meta: bytes


@dataclass(frozen=True)
class Account:
    name: str
    user_id: str
    salt: bytes
    kdf: dict[str, Any]
    auth_salt: bytes
    auth_hash: bytes
    wrapped_master: bytes
    identity: Identity
    root_node_id: str
    seq: int
    used: int
    created: float


@dataclass(frozen=True)
class Node:
    """A node as the API shows it; ``meta`` is the client's encrypted blob."""

    node_id: str
    owner: str
    parent_id: str | None
    kind: str
    meta: bytes
    version: int
    size: int
    trashed: bool
    gone: bool
    seq: int


@dataclass(frozen=True)
class VersionInfo:
    version: int
    size: int
    created: float


@dataclass
class GarbageReport:
    """What one collection pass removed."""

    refs_removed: int = 0  # (owner, chunk) ownership rows dropped
    bytes_released: int = 0  # quota bytes given back to accounts
    chunks_deleted: int = 0  # chunk blobs removed from the chunk store
    bytes_freed: int = 0  # their size on disk
    extra: dict[str, int] = field(default_factory=dict)


BlobDeleter = Callable[[str], "int | None"]
"""Deletes one chunk blob, returning the bytes freed, or None if it was already absent."""


class MetaStore(ABC):
    """Contract of a metadata store. Methods raising ServerError enforce API rules."""

    # -- accounts and tokens -------------------------------------------------
    @abstractmethod
    def create_account(self, account: NewAccount, now: float) -> None:
        """Create the account and its root folder. ``Exists`` if name, user id or root id is taken."""

    @abstractmethod
    def account_by_name(self, name: str) -> Account | None: ...

    @abstractmethod
    def account_by_id(self, user_id: str) -> Account | None: ...

    @abstractmethod
    def add_token(self, token_hash: str, user_id: str, now: float, expires: float) -> None:
        """Store a token's hash; keeps at most MAX_TOKENS_PER_ACCOUNT per account."""

    @abstractmethod
    def user_for_token(self, token_hash: str, now: float) -> str | None:
        """The user id of a valid, unexpired token."""

    @abstractmethod
    def revoke_token(self, token_hash: str) -> None: ...

    @abstractmethod
    def purge_expired_tokens(self, now: float) -> int: ...

    # -- nodes -----------------------------------------------------------------
    @abstractmethod
    def create_node(self, owner: str, node_id: str, parent_id: str, kind: str, meta: bytes) -> Node:
        """``Exists`` if the id is taken, ``NotFound`` for an unknown parent, ``Conflict``
        if the parent is a file or (inside) the trash."""

    @abstractmethod
    def get_node(self, owner: str, node_id: str) -> Node:
        """A live (not purged) node of ``owner``; ``NotFound`` otherwise."""

    @abstractmethod
    def update_node(
        self, owner: str, node_id: str, meta: bytes, parent_id: str | None = None, replace: str | None = None
    ) -> Node:
        """Rename/re-encrypt, optionally move under ``parent_id`` and trash ``replace``, atomically."""

    @abstractmethod
    def trash_node(self, owner: str, node_id: str) -> Node: ...

    @abstractmethod
    def restore_node(self, owner: str, node_id: str) -> Node: ...

    @abstractmethod
    def purge_node(self, owner: str, node_id: str, recursive: bool) -> int:
        """Delete the node, its subtree and their versions; tombstones stay. Returns nodes purged."""

    @abstractmethod
    def changes(self, owner: str, since: int, limit: int) -> tuple[list[Node], bool]:
        """Nodes whose seq > since, in seq order, at most ``limit``; and whether more follow."""

    # -- versions --------------------------------------------------------------
    @abstractmethod
    def commit_version(
        self,
        owner: str,
        node_id: str,
        expected_version: int,
        manifest: bytes,
        chunk_ids: Sequence[str],
        meta: bytes | None,
        keep: int,
        now: float,
    ) -> Node:
        """All-or-nothing commit of version expected+1 (see POST /v1/nodes/{id}/versions)."""

    @abstractmethod
    def list_versions(self, owner: str, node_id: str) -> list[VersionInfo]:
        """Retained versions, newest first."""

    @abstractmethod
    def get_manifest(self, owner: str, node_id: str, version: int | None = None) -> tuple[int, bytes]:
        """(version, manifest) of the given or current version; ``NotFound`` if none."""

    # -- chunks ----------------------------------------------------------------
    @abstractmethod
    def missing_chunks(self, owner: str, ids: Sequence[str], now: float) -> list[str]:
        """Ids ``owner`` does not store (first-seen order, no repeats). The ones it does
        store are touched so the collector leaves them alone for another grace period."""

    @abstractmethod
    def owns_chunk(self, owner: str, chunk_id: str) -> bool: ...

    @abstractmethod
    def add_chunk(
        self, owner: str, chunk_id: str, size: int, quota: int, now: float, ensure_stored: Callable[[], None]
    ) -> bool:
        """Record that ``owner`` stores the chunk, True if new. Refuses with ``QuotaExceeded``.

        ``ensure_stored`` runs inside the transaction, after the quota check; it
        must make sure the blob exists (the collector deletes blobs only while
        holding the same write lock, so the two cannot interleave).
        """

    @abstractmethod
    def usage(self, owner: str) -> int:
        """Bytes of the chunks ``owner`` stores."""

    # -- garbage collection ----------------------------------------------------
    @abstractmethod
    def collect_garbage(self, cutoff: float, delete_blob: BlobDeleter) -> GarbageReport:
        """Drop ownership of chunks no version of the owner references and untouched since
        ``cutoff``; blobs nobody owns any more are deleted through ``delete_blob`` under
        the write lock."""

    @abstractmethod
    def delete_unowned(self, ids: Sequence[str], delete_blob: BlobDeleter) -> tuple[int, int]:
        """Delete the blobs among ``ids`` that no account owns: (count, bytes)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id         TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    salt            BLOB NOT NULL,
    kdf             TEXT NOT NULL,
    auth_salt       BLOB NOT NULL,
    auth_hash       BLOB NOT NULL,
    wrapped_master  BLOB NOT NULL,
    sign_pub        BLOB NOT NULL,
    box_pub         BLOB NOT NULL,
    box_sig         BLOB NOT NULL,
    wrapped_private BLOB NOT NULL,
    root_node_id    TEXT NOT NULL,
    seq             INTEGER NOT NULL DEFAULT 0,
    used            INTEGER NOT NULL DEFAULT 0,
    created         REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(user_id),
    created    REAL NOT NULL,
    expires    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tokens_by_user ON tokens(user_id, created);
CREATE INDEX IF NOT EXISTS tokens_by_expiry ON tokens(expires);
CREATE TABLE IF NOT EXISTS nodes (
    node_id   TEXT PRIMARY KEY,
    owner     TEXT NOT NULL REFERENCES users(user_id),
    parent_id TEXT,
    kind      TEXT NOT NULL CHECK (kind IN ('dir', 'file')),
    meta      BLOB NOT NULL,
    version   INTEGER NOT NULL DEFAULT 0,
    size      INTEGER NOT NULL DEFAULT 0,
    trashed   INTEGER NOT NULL DEFAULT 0,
    gone      INTEGER NOT NULL DEFAULT 0,
    seq       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS nodes_by_parent ON nodes(parent_id);
CREATE UNIQUE INDEX IF NOT EXISTS nodes_by_seq ON nodes(owner, seq);
CREATE TABLE IF NOT EXISTS versions (
    node_id  TEXT NOT NULL REFERENCES nodes(node_id),
    version  INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    created  REAL NOT NULL,
    manifest BLOB NOT NULL,
    PRIMARY KEY (node_id, version)
);
CREATE TABLE IF NOT EXISTS version_chunks (
    node_id  TEXT NOT NULL,
    version  INTEGER NOT NULL,
    chunk_id TEXT NOT NULL,
    PRIMARY KEY (node_id, version, chunk_id),
    FOREIGN KEY (node_id, version) REFERENCES versions(node_id, version)
);
CREATE INDEX IF NOT EXISTS version_chunks_by_chunk ON version_chunks(chunk_id);
CREATE TABLE IF NOT EXISTS chunks (
    owner    TEXT NOT NULL REFERENCES users(user_id),
    chunk_id TEXT NOT NULL,
    size     INTEGER NOT NULL,
    created  REAL NOT NULL,
    touched  REAL NOT NULL,
    PRIMARY KEY (owner, chunk_id)
);
CREATE INDEX IF NOT EXISTS chunks_by_id ON chunks(chunk_id);
"""
SCHEMA_VERSION = 1

_NODE_COLS = "node_id, owner, parent_id, kind, meta, version, size, trashed, gone, seq"
_ACCOUNT_COLS = (
    "name, user_id, salt, kdf, auth_salt, auth_hash, wrapped_master, sign_pub, box_pub, box_sig,"
    " wrapped_private, root_node_id, seq, used, created"
)


def _node(row: Sequence[Any]) -> Node:
    return Node(
        node_id=row[0],
        owner=row[1],
        parent_id=row[2],
        kind=row[3],
        meta=bytes(row[4]),
        version=row[5],
        size=row[6],
        trashed=bool(row[7]),
        gone=bool(row[8]),
        seq=row[9],
    )


def _account(row: Sequence[Any]) -> Account:
    return Account(
        name=row[0],
        user_id=row[1],
        salt=bytes(row[2]),
        kdf=json.loads(row[3]),
        auth_salt=bytes(row[4]),
        auth_hash=bytes(row[5]),
        wrapped_master=bytes(row[6]),
        identity=Identity(bytes(row[7]), bytes(row[8]), bytes(row[9]), bytes(row[10])),
        root_node_id=row[11],
        seq=row[12],
        used=row[13],
        created=row[14],
    )


def _batches(items: Sequence[str], size: int = _BATCH) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class SQLiteMetaStore(MetaStore):
    """SQLite in WAL mode: readers never block the writer, writes serialise.

    Each thread gets its own connection (sqlite3 connections are not safe to
    share). Every mutation runs in ``BEGIN IMMEDIATE`` so it holds the write
    lock from its first read: checks and changes see the same state, across
    threads and across processes (e.g. an offline ``gc`` next to a live
    server).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        # Create the file owner-only before SQLite does (its -wal and -shm
        # files inherit these permissions).
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        (current,) = conn.execute("PRAGMA user_version").fetchone()
        if current > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: schema version {current} is newer than this server")
        with self._write() as c:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- plumbing ----------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._conns_lock:
                if self._closed:
                    raise RuntimeError("metadata store is closed")
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
                conn.execute("PRAGMA busy_timeout=30000")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA trusted_schema=OFF")
                self._conns.append(conn)
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A snapshot for reads spanning several statements."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def close(self) -> None:
        with self._conns_lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    @staticmethod
    def _bump(conn: sqlite3.Connection, owner: str) -> int:
        conn.execute("UPDATE users SET seq = seq + 1 WHERE user_id = ?", (owner,))
        row = conn.execute("SELECT seq FROM users WHERE user_id = ?", (owner,)).fetchone()
        if row is None:
            raise NotFound("account not found")
        return int(row[0])

    @staticmethod
    def _live(conn: sqlite3.Connection, owner: str, node_id: str, what: str = "node") -> Node:
        """A node that exists, belongs to ``owner`` and is not purged.

        Another account's node answers exactly like an unknown one, so ids
        cannot be probed across accounts.
        """
        row = conn.execute(
            f"SELECT {_NODE_COLS} FROM nodes WHERE node_id = ? AND owner = ? AND gone = 0",
            (node_id, owner),
        ).fetchone()
        if row is None:
            raise NotFound(f"{what} not found")
        return _node(row)

    @staticmethod
    def _ancestry(conn: sqlite3.Connection, node_id: str) -> list[tuple[str, bool]]:
        """(id, trashed) from ``node_id`` up to the root, inclusive.

        Refuses (409) a chain that does not reach a root within MAX_DEPTH,
        which also guarantees every caller sees the complete chain.
        """
        rows = conn.execute(
            """
            WITH RECURSIVE anc(node_id, parent_id, trashed, depth) AS (
                SELECT node_id, parent_id, trashed, 0 FROM nodes WHERE node_id = ?
                UNION ALL
                SELECT n.node_id, n.parent_id, n.trashed, anc.depth + 1
                FROM nodes n JOIN anc ON n.node_id = anc.parent_id
                WHERE anc.depth < ?
            )
            SELECT node_id, parent_id, trashed FROM anc ORDER BY depth
            """,
            (node_id, MAX_DEPTH + 1),
        ).fetchall()
        if not rows or rows[-1][1] is not None:
            raise Conflict("folder tree too deep")
        return [(r[0], bool(r[2])) for r in rows]

    @staticmethod
    def _subtree(conn: sqlite3.Connection, node_id: str) -> list[tuple[str, int]]:
        """(id, depth below node_id) of the node and its live descendants."""
        rows = conn.execute(
            """
            WITH RECURSIVE sub(node_id, depth) AS (
                SELECT ?, 0
                UNION ALL
                SELECT n.node_id, sub.depth + 1
                FROM nodes n JOIN sub ON n.parent_id = sub.node_id
                WHERE n.gone = 0 AND sub.depth < ?
            )
            SELECT node_id, depth FROM sub
            """,
            (node_id, MAX_DEPTH + 1),
        ).fetchall()
        return [(r[0], int(r[1])) for r in rows]

    @staticmethod
    def _has_children(conn: sqlite3.Connection, node_id: str, *, include_trashed: bool) -> bool:
        sql = "SELECT 1 FROM nodes WHERE parent_id = ? AND gone = 0"
        if not include_trashed:
            sql += " AND trashed = 0"
        return conn.execute(sql + " LIMIT 1", (node_id,)).fetchone() is not None

    def _fetch_node(self, conn: sqlite3.Connection, node_id: str) -> Node:
        row = conn.execute(f"SELECT {_NODE_COLS} FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
        return _node(row)

    # -- accounts and tokens -----------------------------------------------------
    def create_account(self, account: NewAccount, now: float) -> None:
        ident = account.identity
        with self._write() as c:
            taken = c.execute(
                "SELECT 1 FROM users WHERE user_id = ? OR name = ?", (account.user_id, account.name)
            ).fetchone()
            if taken is not None:
                raise Exists("user name or user id already taken")
            if c.execute("SELECT 1 FROM nodes WHERE node_id = ?", (account.root_node_id,)).fetchone():
                raise Exists("node id already taken")
            c.execute(
                f"INSERT INTO users ({_ACCOUNT_COLS}) VALUES ({_marks(15)})",
                (
                    account.name,
                    account.user_id,
                    account.salt,
                    json.dumps(account.kdf, sort_keys=True),
                    account.auth_salt,
                    account.auth_hash,
                    account.wrapped_master,
                    ident.sign_pub,
                    ident.box_pub,
                    ident.box_sig,
                    ident.wrapped_private,
                    account.root_node_id,
                    1,
                    0,
                    now,
                ),
            )
            c.execute(
                "INSERT INTO nodes (node_id, owner, parent_id, kind, meta, seq) VALUES (?, ?, NULL, 'dir', ?, 1)",
                (account.root_node_id, account.user_id, account.root_meta),
            )

    def account_by_name(self, name: str) -> Account | None:
        row = self._conn().execute(f"SELECT {_ACCOUNT_COLS} FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else _account(row)

    def account_by_id(self, user_id: str) -> Account | None:
        row = self._conn().execute(f"SELECT {_ACCOUNT_COLS} FROM users WHERE user_id = ?", (user_id,)).fetchone()
        return None if row is None else _account(row)

    def add_token(self, token_hash: str, user_id: str, now: float, expires: float) -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO tokens (token_hash, user_id, created, expires) VALUES (?, ?, ?, ?)",
                (token_hash, user_id, now, expires),
            )
            c.execute(
                """
                DELETE FROM tokens WHERE user_id = ? AND token_hash NOT IN (
                    SELECT token_hash FROM tokens WHERE user_id = ?
                    ORDER BY created DESC, rowid DESC LIMIT ?)
                """,
                (user_id, user_id, MAX_TOKENS_PER_ACCOUNT),
            )

    def user_for_token(self, token_hash: str, now: float) -> str | None:
        row = (
            self._conn()
            .execute("SELECT user_id FROM tokens WHERE token_hash = ? AND expires > ?", (token_hash, now))
            .fetchone()
        )
        return None if row is None else str(row[0])

    def revoke_token(self, token_hash: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM tokens WHERE token_hash = ?", (token_hash,))

    def purge_expired_tokens(self, now: float) -> int:
        with self._write() as c:
            return c.execute("DELETE FROM tokens WHERE expires <= ?", (now,)).rowcount

    # -- nodes -------------------------------------------------------------------
    def create_node(self, owner: str, node_id: str, parent_id: str, kind: str, meta: bytes) -> Node:
        if kind not in ("dir", "file"):
            raise ValueError("kind must be 'dir' or 'file'")
        with self._write() as c:
            if c.execute("SELECT 1 FROM nodes WHERE node_id = ?", (node_id,)).fetchone():
                raise Exists("node id already taken")
            parent = self._live(c, owner, parent_id, "parent")
            if parent.kind != "dir":
                raise Conflict("parent is not a folder")
            chain = self._ancestry(c, parent_id)
            if any(trashed for _, trashed in chain):
                raise Conflict("parent is in the trash")
            if len(chain) > MAX_DEPTH:
                raise Conflict("folder tree too deep")
            seq = self._bump(c, owner)
            c.execute(
                "INSERT INTO nodes (node_id, owner, parent_id, kind, meta, seq) VALUES (?, ?, ?, ?, ?, ?)",
                (node_id, owner, parent_id, kind, meta, seq),
            )
            return self._fetch_node(c, node_id)

    def get_node(self, owner: str, node_id: str) -> Node:
        return self._live(self._conn(), owner, node_id)

    def update_node(
        self, owner: str, node_id: str, meta: bytes, parent_id: str | None = None, replace: str | None = None
    ) -> Node:
        with self._write() as c:
            node = self._live(c, owner, node_id)
            dest = node.parent_id
            if parent_id is not None and parent_id != node.parent_id:
                if node.parent_id is None:
                    raise Conflict("the root cannot be moved")
                dest = parent_id
                parent = self._live(c, owner, parent_id, "parent")
                if parent.kind != "dir":
                    raise Conflict("parent is not a folder")
                chain = self._ancestry(c, parent.node_id)
                if any(nid == node_id for nid, _ in chain):
                    raise Conflict("cannot move a node into its own subtree")
                if any(trashed for _, trashed in chain):
                    raise Conflict("parent is in the trash")
                height = max(depth for _, depth in self._subtree(c, node_id))
                if len(chain) + height > MAX_DEPTH:
                    raise Conflict("folder tree too deep")
            if replace is not None:
                if replace == node_id:
                    raise Conflict("a node cannot replace itself")
                target = self._live(c, owner, replace, "replaced node")
                if target.parent_id is None or target.parent_id != dest:
                    raise Conflict("the replaced node is not in the destination folder")
                # A replaced folder goes to the trash with its whole subtree, as DELETE does; whether
                # a non-empty folder may be replaced (WebDAV MOVE: yes, POSIX rename: no) is the client's rule.
                if not target.trashed:
                    seq = self._bump(c, owner)
                    c.execute("UPDATE nodes SET trashed = 1, seq = ? WHERE node_id = ?", (seq, target.node_id))
            seq = self._bump(c, owner)
            c.execute("UPDATE nodes SET parent_id = ?, meta = ?, seq = ? WHERE node_id = ?", (dest, meta, seq, node_id))
            return self._fetch_node(c, node_id)

    def trash_node(self, owner: str, node_id: str) -> Node:
        with self._write() as c:
            node = self._live(c, owner, node_id)
            if node.parent_id is None:
                raise Conflict("the root cannot be deleted")
            if not node.trashed:
                seq = self._bump(c, owner)
                c.execute("UPDATE nodes SET trashed = 1, seq = ? WHERE node_id = ?", (seq, node_id))
            return self._fetch_node(c, node_id)

    def restore_node(self, owner: str, node_id: str) -> Node:
        with self._write() as c:
            node = self._live(c, owner, node_id)
            if node.trashed:
                assert node.parent_id is not None  # the root is never trashed
                if any(trashed for _, trashed in self._ancestry(c, node.parent_id)):
                    raise Conflict("the parent folder is in the trash")
                seq = self._bump(c, owner)
                c.execute("UPDATE nodes SET trashed = 0, seq = ? WHERE node_id = ?", (seq, node_id))
            return self._fetch_node(c, node_id)

    def purge_node(self, owner: str, node_id: str, recursive: bool) -> int:
        with self._write() as c:
            node = self._live(c, owner, node_id)
            if node.parent_id is None:
                raise Conflict("the root cannot be deleted")
            subtree = self._subtree(c, node_id)
            if len(subtree) > 1 and not recursive:
                raise Conflict("folder not empty; purge with recursive=1")
            # Deepest first, so a folder's tombstone follows its children's
            # in the change feed.
            subtree.sort(key=lambda item: -item[1])
            for nid, _ in subtree:
                c.execute("DELETE FROM version_chunks WHERE node_id = ?", (nid,))
                c.execute("DELETE FROM versions WHERE node_id = ?", (nid,))
                seq = self._bump(c, owner)
                c.execute(
                    "UPDATE nodes SET gone = 1, meta = x'', version = 0, size = 0, seq = ? WHERE node_id = ?",
                    (seq, nid),
                )
            return len(subtree)

    def changes(self, owner: str, since: int, limit: int) -> tuple[list[Node], bool]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {_NODE_COLS} FROM nodes WHERE owner = ? AND seq > ? ORDER BY seq LIMIT ?",
                (owner, since, limit + 1),
            )
            .fetchall()
        )
        return [_node(r) for r in rows[:limit]], len(rows) > limit

    # -- versions ----------------------------------------------------------------
    def commit_version(
        self,
        owner: str,
        node_id: str,
        expected_version: int,
        manifest: bytes,
        chunk_ids: Sequence[str],
        meta: bytes | None,
        keep: int,
        now: float,
    ) -> Node:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        distinct = _unique(chunk_ids)
        with self._write() as c:
            node = self._live(c, owner, node_id)
            if node.kind != "file":
                raise Conflict("versions can only be committed to files")
            if node.version != expected_version:
                raise PreconditionFailed(node.version)
            sizes: dict[str, int] = {}
            for batch in _batches(distinct):
                rows = c.execute(
                    f"SELECT chunk_id, size FROM chunks WHERE owner = ? AND chunk_id IN ({_marks(len(batch))})",
                    (owner, *batch),
                ).fetchall()
                sizes.update((r[0], int(r[1])) for r in rows)
            missing = [cid for cid in distinct if cid not in sizes]
            if missing:
                raise MissingChunks(missing)
            size = sum(sizes[cid] for cid in chunk_ids)
            version = node.version + 1
            c.execute(
                "INSERT INTO versions (node_id, version, size, created, manifest) VALUES (?, ?, ?, ?, ?)",
                (node_id, version, size, now, manifest),
            )
            c.executemany(
                "INSERT INTO version_chunks (node_id, version, chunk_id) VALUES (?, ?, ?)",
                ((node_id, version, cid) for cid in distinct),
            )
            oldest_kept = version - keep + 1
            c.execute("DELETE FROM version_chunks WHERE node_id = ? AND version < ?", (node_id, oldest_kept))
            c.execute("DELETE FROM versions WHERE node_id = ? AND version < ?", (node_id, oldest_kept))
            seq = self._bump(c, owner)
            c.execute(
                "UPDATE nodes SET version = ?, size = ?, meta = COALESCE(?, meta), seq = ? WHERE node_id = ?",
                (version, size, meta, seq, node_id),
            )
            return self._fetch_node(c, node_id)

    def list_versions(self, owner: str, node_id: str) -> list[VersionInfo]:
        with self._read() as c:
            self._live(c, owner, node_id)
            rows = c.execute(
                "SELECT version, size, created FROM versions WHERE node_id = ? ORDER BY version DESC", (node_id,)
            ).fetchall()
        return [VersionInfo(int(r[0]), int(r[1]), float(r[2])) for r in rows]

    def get_manifest(self, owner: str, node_id: str, version: int | None = None) -> tuple[int, bytes]:
        with self._read() as c:
            node = self._live(c, owner, node_id)
            wanted = node.version if version is None else version
            row = c.execute(
                "SELECT manifest FROM versions WHERE node_id = ? AND version = ?", (node_id, wanted)
            ).fetchone()
        if row is None:
            raise NotFound("no such version")
        return wanted, bytes(row[0])

    # -- chunks ------------------------------------------------------------------
    def missing_chunks(self, owner: str, ids: Sequence[str], now: float) -> list[str]:
        distinct = _unique(ids)
        owned: set[str] = set()
        with self._write() as c:
            for batch in _batches(distinct):
                marks = _marks(len(batch))
                rows = c.execute(
                    f"SELECT chunk_id FROM chunks WHERE owner = ? AND chunk_id IN ({marks})",
                    (owner, *batch),
                ).fetchall()
                found = [r[0] for r in rows]
                owned.update(found)
                if found:
                    c.execute(
                        f"UPDATE chunks SET touched = ? WHERE owner = ? AND chunk_id IN ({_marks(len(found))})",
                        (now, owner, *found),
                    )
        return [cid for cid in distinct if cid not in owned]

    def owns_chunk(self, owner: str, chunk_id: str) -> bool:
        row = (
            self._conn().execute("SELECT 1 FROM chunks WHERE owner = ? AND chunk_id = ?", (owner, chunk_id)).fetchone()
        )
        return row is not None

    def add_chunk(
        self, owner: str, chunk_id: str, size: int, quota: int, now: float, ensure_stored: Callable[[], None]
    ) -> bool:
        with self._write() as c:
            if c.execute("SELECT 1 FROM chunks WHERE owner = ? AND chunk_id = ?", (owner, chunk_id)).fetchone():
                ensure_stored()
                c.execute("UPDATE chunks SET touched = ? WHERE owner = ? AND chunk_id = ?", (now, owner, chunk_id))
                return False
            row = c.execute("SELECT used FROM users WHERE user_id = ?", (owner,)).fetchone()
            if row is None:
                raise NotFound("account not found")
            used = int(row[0])
            if used + size > quota:
                raise QuotaExceeded(quota=quota, used=used)
            ensure_stored()
            c.execute(
                "INSERT INTO chunks (owner, chunk_id, size, created, touched) VALUES (?, ?, ?, ?, ?)",
                (owner, chunk_id, size, now, now),
            )
            c.execute("UPDATE users SET used = used + ? WHERE user_id = ?", (size, owner))
            return True

    def usage(self, owner: str) -> int:
        row = self._conn().execute("SELECT used FROM users WHERE user_id = ?", (owner,)).fetchone()
        if row is None:
            raise NotFound("account not found")
        return int(row[0])

    # -- garbage collection ------------------------------------------------------
    def collect_garbage(self, cutoff: float, delete_blob: BlobDeleter) -> GarbageReport:
        report = GarbageReport()
        last_rowid = 0
        while True:
            with self._write() as c:
                rows = c.execute(
                    """
                    SELECT rowid, owner, chunk_id, size, touched FROM chunks
                    WHERE rowid > ? ORDER BY rowid LIMIT ?
                    """,
                    (last_rowid, _BATCH),
                ).fetchall()
                if not rows:
                    return report
                last_rowid = rows[-1][0]
                for rowid, owner, cid, size, touched in rows:
                    if touched >= cutoff:
                        continue
                    referenced = c.execute(
                        """
                        SELECT 1 FROM version_chunks vc JOIN nodes n ON n.node_id = vc.node_id
                        WHERE vc.chunk_id = ? AND n.owner = ? LIMIT 1
                        """,
                        (cid, owner),
                    ).fetchone()
                    if referenced is not None:
                        continue
                    c.execute("DELETE FROM chunks WHERE rowid = ?", (rowid,))
                    c.execute("UPDATE users SET used = used - ? WHERE user_id = ?", (size, owner))
                    report.refs_removed += 1
                    report.bytes_released += int(size)
                    if c.execute("SELECT 1 FROM chunks WHERE chunk_id = ? LIMIT 1", (cid,)).fetchone() is None:
                        freed = delete_blob(cid)
                        if freed is not None:
                            report.chunks_deleted += 1
                            report.bytes_freed += freed

    def delete_unowned(self, ids: Sequence[str], delete_blob: BlobDeleter) -> tuple[int, int]:
        count = freed = 0
        for batch in _batches(_unique(ids)):
            with self._write() as c:
                rows = c.execute(
                    f"SELECT DISTINCT chunk_id FROM chunks WHERE chunk_id IN ({_marks(len(batch))})",
                    tuple(batch),
                ).fetchall()
                owned = {r[0] for r in rows}
                for cid in batch:
                    if cid not in owned:
                        size = delete_blob(cid)
                        if size is not None:
                            count += 1
                            freed += size
        return count, freed
