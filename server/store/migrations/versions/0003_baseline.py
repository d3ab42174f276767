"""Baseline: schema version 3, what the server wrote before Alembic (SQLite only).

A database from before Alembic has no ``alembic_version``; its ``PRAGMA
user_version`` says what it is:

1. the node tree, versions and chunk ownership;
2. sharing, public links, abuse reports and takedowns (``nodes.removed``);
3. metadata charged to the quota (``users.used`` counts node metas, retained
   manifests and sealed records; ``users.node_count``), the ``records`` table.

Versions 1 and 2 are brought to 3 here: missing tables are created, missing
columns added, and ``used`` and ``node_count`` of every account recomputed
from what it stores. A version-3 database needs nothing.

Revision ID: 0003
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from megadrive.server.store.sqlbase import node_count_query, stored_bytes_expr
from megadrive.server.store.tables import VERSION_3_TABLES, metadata, users

revision = "0003"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return  # other engines started with Alembic
    current = int(bind.exec_driver_sql("PRAGMA user_version").scalar() or 0)
    if current >= 3:
        return
    inspector = sa.inspect(bind)
    if "nodes" in inspector.get_table_names():
        if "removed" not in {c["name"] for c in inspector.get_columns("nodes")}:  # version 1 predates takedowns
            bind.exec_driver_sql("ALTER TABLE nodes ADD COLUMN removed INTEGER NOT NULL DEFAULT 0")
    if "users" in inspector.get_table_names():
        if "node_count" not in {c["name"] for c in inspector.get_columns("users")}:
            bind.exec_driver_sql("ALTER TABLE users ADD COLUMN node_count INTEGER NOT NULL DEFAULT 0")
    metadata.create_all(bind, tables=list(VERSION_3_TABLES), checkfirst=True)
    for user_id in list(bind.execute(sa.select(users.c.user_id)).scalars()):
        used = bind.execute(sa.select(stored_bytes_expr(user_id))).scalar()
        count = bind.execute(node_count_query(user_id)).scalar()
        bind.execute(
            sa.update(users).where(users.c.user_id == user_id).values(used=int(used or 0), node_count=int(count or 0))
        )
    bind.exec_driver_sql("PRAGMA user_version=3")
