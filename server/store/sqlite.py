"""SQLite: one file in WAL mode, the embedded default (``sqlite:///path``).

Every writing unit runs in ``BEGIN IMMEDIATE``, so it holds the database's
single write lock from its first statement: units serialise across threads
and processes (an offline ``gc`` next to a live server), readers are never
blocked, and holding an account or a chunk id costs nothing more.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from ..errors import Busy
from . import migrate
from .records import Limits
from .sqlstore import SQLMetaStore

WRITER_WAIT = 30.0  # seconds, as the busy timeout below


class SQLiteMetaStore(SQLMetaStore):
    def __init__(self, path: Path | str, limits: Limits | None = None) -> None:
        self.path = Path(path)
        # Create the file owner-only before SQLite does (its -wal and -shm files inherit it).
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        engine = sa.create_engine(
            f"sqlite:///{self.path}",
            connect_args={"timeout": 30.0, "check_same_thread": False},
            poolclass=sa.pool.QueuePool,
            pool_size=8,
            max_overflow=-1,
        )
        self._writer = threading.Lock()  # this process's writing units, one at a time (see _one_writer)
        event.listen(engine, "connect", _on_connect)
        event.listen(engine, "begin", _on_begin)
        super().__init__(engine, limits)
        with self._write() as c:
            migrate.upgrade(c)

    def _one_writer(self, mode: str) -> AbstractContextManager[object]:
        # SQLite's busy handler sleeps and polls (1, 2, 5, 10 ms ...): a thread waiting there for
        # another thread of this process sleeps long after the lock is free. A lock wakes it at once.
        return self._writer_turn() if mode == "write" else nullcontext()

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """This process's turn to write, waited for as long as SQLite's busy timeout would (then 503)."""
        if not self._writer.acquire(timeout=WRITER_WAIT):
            raise Busy("the database is busy")
        try:
            yield
        finally:
            self._writer.release()

    def _begin(self, conn: Connection, mode: str) -> None:
        conn.info["md_begin"] = "BEGIN IMMEDIATE" if mode == "write" else "BEGIN"
        conn.begin()

    def _insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)


def _on_connect(dbapi_conn: Any, record: Any) -> None:
    dbapi_conn.isolation_level = None  # the "begin" listener starts every transaction itself
    for pragma in (
        "journal_mode=WAL",
        "busy_timeout=30000",
        "foreign_keys=ON",
        "synchronous=FULL",
        "trusted_schema=OFF",
    ):
        dbapi_conn.execute(f"PRAGMA {pragma}")


def _on_begin(conn: Connection) -> None:
    conn.exec_driver_sql(conn.info.get("md_begin", "BEGIN"))
