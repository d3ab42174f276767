"""The metadata tables, defined once for every engine (SQLAlchemy Core).

The names and columns are those of schema version 3 (the SQLite database
the server has always written), so an existing database opens as it is; the
migrations in server/store/migrations/ bring it to :data:`SCHEMA_VERSION`.
Version 4 adds what several server processes must share: ``attempts`` (the
login and signup limiters), ``blob_deletions`` (the deletion queue) and
``server_state`` (the prelogin secret).

Flags (``trashed``, ``gone``, ``removed``) are integers 0/1 on every engine,
times are seconds since the epoch as double precision, blobs are bytes.
"""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA_VERSION = 5

metadata = sa.MetaData()

Text = sa.Text
Blob = sa.LargeBinary
Time = sa.Double
Int = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", Text, primary_key=True),
    sa.Column("name", Text, nullable=False, unique=True),
    sa.Column("salt", Blob, nullable=False),
    sa.Column("kdf", Text, nullable=False),
    sa.Column("auth_salt", Blob, nullable=False),
    sa.Column("auth_hash", Blob, nullable=False),
    sa.Column("wrapped_master", Blob, nullable=False),
    sa.Column("sign_pub", Blob, nullable=False),
    sa.Column("box_pub", Blob, nullable=False),
    sa.Column("box_sig", Blob, nullable=False),
    sa.Column("wrapped_private", Blob, nullable=False),
    sa.Column("root_node_id", Text, nullable=False),
    sa.Column("seq", Int, nullable=False, server_default="0"),
    sa.Column("used", Int, nullable=False, server_default="0"),
    sa.Column("created", Time, nullable=False),
    sa.Column("node_count", Int, nullable=False, server_default="0"),
    sa.Column("recovery_wrap", Blob),  # the master key sealed under the recovery key (FORMAT.md 3.5)
    sa.Column("recovery_salt", Blob),
    sa.Column("recovery_hash", Blob),  # salted hash of the recovery key's authentication half
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("token_hash", Text, primary_key=True),
    sa.Column("user_id", Text, sa.ForeignKey("users.user_id"), nullable=False),
    sa.Column("created", Time, nullable=False),
    sa.Column("expires", Time, nullable=False),
    sa.Column("device", Text),  # the device name the client gave at login
    sa.Column("last_used", Time),
    sa.Index("tokens_by_user", "user_id", "created"),
    sa.Index("tokens_by_expiry", "expires"),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("node_id", Text, primary_key=True),
    sa.Column("owner", Text, sa.ForeignKey("users.user_id"), nullable=False),
    sa.Column("parent_id", Text),
    sa.Column("kind", Text, nullable=False),
    sa.Column("meta", Blob, nullable=False),
    sa.Column("version", Int, nullable=False, server_default="0"),
    sa.Column("size", Int, nullable=False, server_default="0"),
    sa.Column("trashed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("gone", sa.Integer, nullable=False, server_default="0"),
    sa.Column("seq", Int, nullable=False),
    sa.Column("removed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("trashed_at", Time),  # when the node itself was moved to the trash
    sa.CheckConstraint("kind IN ('dir', 'file')", name="nodes_kind"),
    sa.Index("nodes_by_parent", "parent_id"),
    sa.Index("nodes_by_seq", "owner", "seq", unique=True),
)

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("node_id", Text, sa.ForeignKey("nodes.node_id"), primary_key=True),
    sa.Column("version", Int, primary_key=True),
    sa.Column("size", Int, nullable=False),
    sa.Column("created", Time, nullable=False),
    sa.Column("manifest", Blob, nullable=False),
)

version_chunks = sa.Table(
    "version_chunks",
    metadata,
    sa.Column("node_id", Text, primary_key=True),
    sa.Column("version", Int, primary_key=True),
    sa.Column("chunk_id", Text, primary_key=True),
    sa.ForeignKeyConstraint(["node_id", "version"], ["versions.node_id", "versions.version"]),
    sa.Index("version_chunks_by_chunk", "chunk_id"),
)

chunks = sa.Table(
    "chunks",
    metadata,
    sa.Column("owner", Text, sa.ForeignKey("users.user_id"), primary_key=True),
    sa.Column("chunk_id", Text, primary_key=True),
    sa.Column("size", Int, nullable=False),
    sa.Column("created", Time, nullable=False),
    sa.Column("touched", Time, nullable=False),
    sa.Index("chunks_by_id", "chunk_id"),
)

shares = sa.Table(
    "shares",
    metadata,
    sa.Column("share_id", Text, primary_key=True),
    sa.Column("node_id", Text, sa.ForeignKey("nodes.node_id"), nullable=False),
    sa.Column("owner", Text, sa.ForeignKey("users.user_id"), nullable=False),
    sa.Column("recipient", Text, sa.ForeignKey("users.user_id"), nullable=False),
    sa.Column("access", Text, nullable=False),
    sa.Column("grant", Blob, nullable=False),
    sa.Column("created", Time, nullable=False),
    sa.Column("revoked", Time),
    sa.CheckConstraint("access IN ('read', 'write')", name="shares_access"),
    sa.Index(
        "shares_active",
        "node_id",
        "recipient",
        unique=True,
        sqlite_where=sa.text("revoked IS NULL"),
        postgresql_where=sa.text("revoked IS NULL"),
    ),
    sa.Index("shares_by_recipient", "recipient", "owner"),
    sa.Index("shares_by_owner", "owner", "revoked"),
)

share_exits = sa.Table(
    "share_exits",
    metadata,
    sa.Column("node_id", Text, primary_key=True),
    sa.Column("root_id", Text, primary_key=True),
    sa.Index("share_exits_by_root", "root_id"),
)

links = sa.Table(
    "links",
    metadata,
    sa.Column("link_id", Text, primary_key=True),
    sa.Column("node_id", Text, sa.ForeignKey("nodes.node_id"), nullable=False),
    sa.Column("owner", Text, sa.ForeignKey("users.user_id"), nullable=False),
    sa.Column("blob", Blob, nullable=False),
    sa.Column("salt", Blob),
    sa.Column("kdf", Text),
    sa.Column("expires", Int),
    sa.Column("created", Time, nullable=False),
    sa.Column("deleted", Time),
    sa.Index("links_by_node", "node_id"),
    sa.Index("links_by_owner", "owner"),
)

abuse_reports = sa.Table(
    "abuse_reports",
    metadata,
    sa.Column("report_id", Text, primary_key=True),
    sa.Column("link_id", Text, nullable=False),
    sa.Column("reason", Text, nullable=False),
    sa.Column("created", Time, nullable=False),
    sa.Index("abuse_reports_by_link", "link_id"),
)

removed_chunks = sa.Table(
    "removed_chunks",
    metadata,
    sa.Column("chunk_id", Text, primary_key=True),
    sa.Column("node_id", Text, nullable=False),
    sa.Column("created", Time, nullable=False),
)

records = sa.Table(
    "records",
    metadata,
    sa.Column("owner", Text, sa.ForeignKey("users.user_id"), primary_key=True),
    sa.Column("name", Text, primary_key=True),
    sa.Column("version", Int, nullable=False),
    sa.Column("blob", Blob, nullable=False),
    sa.Column("updated", Time, nullable=False),
)

# -- version 4: what several server processes share -------------------------------------------

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("attempt", Int, primary_key=True),  # random: one attempt counts against several keys
    sa.Column("scope", Text, primary_key=True),
    sa.Column("key", Text, primary_key=True),
    sa.Column("stamp", Time, nullable=False),
    sa.Column("expires", Time, nullable=False),
    sa.Index("attempts_by_key", "scope", "key", "stamp"),
    sa.Index("attempts_by_expiry", "expires"),
)

blob_deletions = sa.Table(
    "blob_deletions",
    metadata,
    sa.Column("chunk_id", Text, primary_key=True),
    sa.Column("queued", Time, nullable=False),
    sa.Column("claimed", Time),
    sa.Column("done", Time),
)

server_state = sa.Table(
    "server_state",
    metadata,
    sa.Column("name", Text, primary_key=True),
    sa.Column("value", Blob, nullable=False),
)

VERSION_3_TABLES = (
    users, tokens, nodes, versions, version_chunks, chunks, shares, share_exits, links, abuse_reports,
    removed_chunks, records,
)  # fmt: skip
VERSION_4_TABLES = (attempts, blob_deletions, server_state)
