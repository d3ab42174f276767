"""Version 4: what several server processes share.

``attempts`` (the login and signup limiters), ``blob_deletions`` (blob
deletions queued in a unit of work and carried out after it commits) and
``server_state`` (the prelogin secret).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_INT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "attempts",
        sa.Column("attempt", _INT, primary_key=True),
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("stamp", sa.Double, nullable=False),
        sa.Column("expires", sa.Double, nullable=False),
    )
    op.create_index("attempts_by_key", "attempts", ["scope", "key", "stamp"])
    op.create_index("attempts_by_expiry", "attempts", ["expires"])
    op.create_table(
        "blob_deletions",
        sa.Column("chunk_id", sa.Text, primary_key=True),
        sa.Column("queued", sa.Double, nullable=False),
        sa.Column("claimed", sa.Double),
        sa.Column("done", sa.Double),
    )
    op.create_table(
        "server_state",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
    )
