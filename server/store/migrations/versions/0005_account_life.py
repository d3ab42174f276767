"""Version 5: sessions you can list, password change, a recovery key, trash dates.

``tokens`` get the device name given at login and when the session was last
used; ``users`` get the master key wrapped under the account's recovery key
(with the salted hash of the key's authentication half); ``nodes`` get the
time a node was moved to the trash.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The baseline revision builds tables missing from very old databases from the current
    # tables.py, which has these columns already: add only what is missing.
    have = {t: {c["name"] for c in sa.inspect(op.get_bind()).get_columns(t)} for t in ("tokens", "users", "nodes")}
    wanted = {
        "tokens": [sa.Column("device", sa.Text), sa.Column("last_used", sa.Double)],
        "users": [sa.Column("recovery_wrap", sa.LargeBinary), sa.Column("recovery_salt", sa.LargeBinary),
                  sa.Column("recovery_hash", sa.LargeBinary)],
        "nodes": [sa.Column("trashed_at", sa.Double)],
    }
    for table, columns in wanted.items():
        missing = [c for c in columns if c.name not in have[table]]
        if missing:
            with op.batch_alter_table(table) as t:
                for column in missing:
                    t.add_column(column)
