"""The SQLite schema of the metadata store and its in-place upgrades.

``SCHEMA`` creates whatever is missing (every statement is ``IF NOT
EXISTS``); :func:`upgrade` then brings an older database's existing tables
up to date. Both run in the one write transaction that opens the store, so
an upgrade is all or nothing. ``PRAGMA user_version`` records the version:

1. the node tree, versions and chunk ownership;
2. sharing, public links, abuse reports and takedowns (``nodes.removed``);
3. metadata is charged to the quota: ``users.used`` also counts node
   ``meta`` blobs, retained manifests and sealed records, and
   ``users.node_count`` counts an account's nodes (both recomputed from the
   data on upgrade); the ``records`` table.
"""

# ruff: noqa: S608
from __future__ import annotations

import sqlite3
from collections.abc import Sequence

SCHEMA = """
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
    created         REAL NOT NULL,
    node_count      INTEGER NOT NULL DEFAULT 0
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
    seq       INTEGER NOT NULL,
    removed   INTEGER NOT NULL DEFAULT 0
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
CREATE TABLE IF NOT EXISTS shares (
    share_id  TEXT PRIMARY KEY,
    node_id   TEXT NOT NULL REFERENCES nodes(node_id),
    owner     TEXT NOT NULL REFERENCES users(user_id),
    recipient TEXT NOT NULL REFERENCES users(user_id),
    access    TEXT NOT NULL CHECK (access IN ('read', 'write')),
    "grant"   BLOB NOT NULL,
    created   REAL NOT NULL,
    revoked   REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS shares_active ON shares(node_id, recipient) WHERE revoked IS NULL;
CREATE INDEX IF NOT EXISTS shares_by_recipient ON shares(recipient, owner);
CREATE INDEX IF NOT EXISTS shares_by_owner ON shares(owner, revoked);
CREATE TABLE IF NOT EXISTS share_exits (
    node_id TEXT NOT NULL,
    root_id TEXT NOT NULL,
    PRIMARY KEY (node_id, root_id)
);
CREATE INDEX IF NOT EXISTS share_exits_by_root ON share_exits(root_id);
CREATE TABLE IF NOT EXISTS links (
    link_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL REFERENCES nodes(node_id),
    owner   TEXT NOT NULL REFERENCES users(user_id),
    blob    BLOB NOT NULL,
    salt    BLOB,
    kdf     TEXT,
    expires INTEGER,
    created REAL NOT NULL,
    deleted REAL
);
CREATE INDEX IF NOT EXISTS links_by_node ON links(node_id);
CREATE INDEX IF NOT EXISTS links_by_owner ON links(owner);
CREATE TABLE IF NOT EXISTS abuse_reports (
    report_id TEXT PRIMARY KEY,
    link_id   TEXT NOT NULL,
    reason    TEXT NOT NULL,
    created   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS abuse_reports_by_link ON abuse_reports(link_id);
CREATE TABLE IF NOT EXISTS removed_chunks (
    chunk_id TEXT PRIMARY KEY,
    node_id  TEXT NOT NULL,
    created  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    owner   TEXT NOT NULL REFERENCES users(user_id),
    name    TEXT NOT NULL,
    version INTEGER NOT NULL,
    blob    BLOB NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (owner, name)
);
"""
SCHEMA_VERSION = 3


# What an account stores, counted from the data itself: chunk bytes it holds,
# the meta blob of each of its nodes that is not purged (trashed ones too),
# each retained version's manifest, and its sealed records. ``users.used`` is
# kept equal to this by every write; an upgrade (or an audit) recomputes it.
# "?" is bound to the user id four times.
STORED_BYTES_SQL = """
    COALESCE((SELECT SUM(size) FROM chunks WHERE owner = ?), 0)
    + COALESCE((SELECT SUM(length(meta)) FROM nodes WHERE owner = ? AND gone = 0), 0)
    + COALESCE((SELECT SUM(length(v.manifest)) FROM versions v JOIN nodes n ON n.node_id = v.node_id
                WHERE n.owner = ?), 0)
    + COALESCE((SELECT SUM(length(blob)) FROM records WHERE owner = ?), 0)
"""
NODE_COUNT_SQL = "SELECT COUNT(*) FROM nodes WHERE owner = ? AND gone = 0"


def create(conn: sqlite3.Connection) -> None:
    """Create every missing table and index."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def recompute_usage(conn: sqlite3.Connection, user_ids: Sequence[str] | None = None) -> None:
    """Set ``used`` and ``node_count`` of these accounts (default: every one) from what they store."""
    users = [row[0] for row in conn.execute("SELECT user_id FROM users")] if user_ids is None else user_ids
    for user_id in users:
        (used,) = conn.execute(f"SELECT {STORED_BYTES_SQL}", (user_id,) * 4).fetchone()
        (count,) = conn.execute(NODE_COUNT_SQL, (user_id,)).fetchone()
        conn.execute("UPDATE users SET used = ?, node_count = ? WHERE user_id = ?", (int(used), int(count), user_id))


def upgrade(conn: sqlite3.Connection, current: int) -> None:
    """Bring a database of schema ``current`` to SCHEMA_VERSION (inside the caller's transaction)."""
    if current > SCHEMA_VERSION:
        raise RuntimeError(f"schema version {current} is newer than this server")
    create(conn)
    nodes = {row[1] for row in conn.execute("PRAGMA table_info(nodes)")}
    if "removed" not in nodes:  # version 1 predates takedowns
        conn.execute("ALTER TABLE nodes ADD COLUMN removed INTEGER NOT NULL DEFAULT 0")
    users = {row[1] for row in conn.execute("PRAGMA table_info(users)")}
    if "node_count" not in users:  # versions 1 and 2 counted neither nodes nor metadata
        conn.execute("ALTER TABLE users ADD COLUMN node_count INTEGER NOT NULL DEFAULT 0")
    if current < 3:
        recompute_usage(conn)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
