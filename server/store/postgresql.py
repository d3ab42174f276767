"""PostgreSQL (``postgresql://user@host:port/db``): several server processes on one database.

Units run at READ COMMITTED. Holding an account is a row lock on its
``users`` row (``SELECT ... FOR UPDATE``, several in ``user_id`` order), so
every decision about an account (quota, node cap, sequence, tree rules,
share checks, chunk references) and the write that follows are one unit
against every other process; each statement after the lock sees the latest
committed state. Holding a chunk id (recording it, claiming its blob for
deletion) and counting limiter attempts take transaction-scoped advisory
locks. Snapshots are REPEATABLE READ, READ ONLY. The password, if any, comes
from the URL or the environment (``PGPASSWORD``, ``~/.pgpass``), as libpq does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from . import migrate
from .records import Limits
from .sqlstore import SQLMetaStore
from .tables import users

_CHUNK_LOCKS = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(x, 1)) FROM unnest(CAST(:ids AS text[])) AS t(x)")
_INDEX_WALK = sa.text(
    "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true),"
    " set_config('enable_mergejoin', 'off', true)"
)
_KEY_LOCKS = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(x, 2)) FROM unnest(CAST(:ids AS text[])) AS t(x)")


def engine_url(url: str) -> str:
    """``postgresql://...`` with the psycopg (3) driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url}")


class PostgreSQLMetaStore(SQLMetaStore):
    def __init__(self, url: str, limits: Limits | None = None, pool_size: int = 8, max_overflow: int = 32) -> None:
        self.url = url
        # No pre-ping (a round trip per checkout): a connection the server lost fails its unit once,
        # and SQLAlchemy then empties the pool.
        engine = sa.create_engine(engine_url(url), pool_size=pool_size, max_overflow=max_overflow, pool_recycle=3600)
        super().__init__(engine, limits)
        # The reads of one method are single statements (or need no more than READ COMMITTED gives
        # each statement): no BEGIN and COMMIT round trips for them.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        with self._write() as c:
            migrate.upgrade(c)

    def _connect(self, mode: str) -> Connection:
        return (self._autocommit if mode == "read" else self.engine).connect()

    def _begin(self, conn: Connection, mode: str) -> None:
        conn.begin()
        if mode == "snapshot":
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def _hold(self, conn: Connection, user_ids: Sequence[str]) -> bool:
        conn.execute(
            sa.select(users.c.user_id).where(users.c.user_id.in_(user_ids)).order_by(users.c.user_id).with_for_update()
        ).all()
        return True

    def _hold_chunks(self, conn: Connection, chunk_ids: Sequence[str]) -> None:
        if chunk_ids:
            conn.execute(_CHUNK_LOCKS, {"ids": sorted(set(chunk_ids))}).all()

    def _hold_keys(self, c: Connection, keys: Sequence[str]) -> None:
        if keys:
            c.execute(_KEY_LOCKS, {"ids": sorted(set(keys))}).all()

    def _walk(self, conn: Connection) -> None:
        """A recursive walk takes one index lookup per step; without statistics (a young or
        small table) the planner would rather scan the whole table at every step. For the
        rest of the unit (whose statements all follow indexes), it may not."""
        if not self._local.walking:
            conn.execute(_INDEX_WALK).all()
            self._local.walking = True

    def _claimable(self, query: sa.Select[Any]) -> sa.Select[Any]:
        return query.with_for_update(skip_locked=True)

    def _insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)


__all__ = ["PostgreSQLMetaStore", "engine_url"]
