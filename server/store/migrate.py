"""Schema migrations for every engine, with Alembic (server/store/migrations/).

:func:`upgrade` runs inside the unit of work that opens a store (SQLite:
under its write lock; PostgreSQL: under an advisory lock, DDL being
transactional), so two processes opening one database at once agree, and an
upgrade is all or nothing:

* an empty database is created from server/store/tables.py and stamped with
  the head revision (migrations are for existing databases only);
* a SQLite database written before Alembic (``PRAGMA user_version`` 1 to 3,
  no ``alembic_version`` table) is taken from the baseline revision, which
  recognises its version and brings it to 3, then upgraded;
* anything else is upgraded from the revision it records.

SQLite's ``PRAGMA user_version`` keeps naming the schema version for tools.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .tables import SCHEMA_VERSION, metadata

HEAD = "0005"  # the newest revision in migrations/versions (a test checks they agree)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _sqlite_version(conn: Connection) -> int:
    return int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)


def upgrade(conn: Connection) -> None:
    """Bring the database ``conn`` is in a transaction on to the head revision."""
    sqlite = conn.dialect.name == "sqlite"
    if not sqlite:
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(4242)")
    if sqlite and _sqlite_version(conn) > SCHEMA_VERSION:
        raise RuntimeError(f"schema version {_sqlite_version(conn)} is newer than this server")
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names())
    if "alembic_version" in tables:
        current = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        if current == HEAD:
            return
    elif not tables - {"alembic_version"}:
        metadata.create_all(conn)
        _run(conn, "stamp")
        if sqlite:
            conn.exec_driver_sql(f"PRAGMA user_version={SCHEMA_VERSION}")
        return
    _run(conn, "upgrade")
    if sqlite:
        conn.exec_driver_sql(f"PRAGMA user_version={SCHEMA_VERSION}")


def _run(conn: Connection, what: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    if what == "stamp":
        command.stamp(config, "head")
    else:
        command.upgrade(config, "head")


def script_head() -> str:
    """The head revision of the migration scripts (for the test that HEAD is right)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head
