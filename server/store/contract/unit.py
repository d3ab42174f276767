"""The unit of work every part of the metadata store contract shares.

Isolation: what the store promises, whatever the engine
-------------------------------------------------------

* A unit of work (:meth:`UnitOfWork.transaction`) is atomic: all of its writes
  land, or none.
* **The account is the unit of isolation.** Every write of the store, and
  every decision a write depends on (quota and node cap, the account's change
  sequence, tree rules, chunk references, token cap, sealed-record
  compare-and-swap, shares and links the owner changes), is made while the
  unit holds the account it concerns: no other unit can change that
  account's data until this one ends. A unit that decides on behalf of an
  account it learnt only by reading (an access check finds a node's owner)
  calls :meth:`UnitOfWork.hold_accounts` first and reads again, so the
  decision and the write that follows see one state. Several accounts are
  always held in ascending ``user_id`` order (no deadlock between two units).
* **A chunk id is the unit of isolation of a blob's life.** Recording an
  ownership row for a chunk and claiming its blob for deletion exclude each
  other; see the chunk part of the contract for the deletion queue.
* Global uniqueness (user names, user ids, node ids) is the database's own
  unique constraints: the loser of a race gets ``Exists``.
* Blob I/O never runs inside a unit of work: deletions are queued in the
  unit and carried out after it commits.

How each engine keeps it (server/store/sqlite.py, server/store/postgresql.py):
SQLite serialises every writing unit with ``BEGIN IMMEDIATE`` (one writer at a
time, readers never blocked), so holding an account costs nothing; PostgreSQL
runs units at READ COMMITTED and takes a row lock (``SELECT ... FOR UPDATE``)
on each held account and a transaction-scoped advisory lock on a chunk id.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager

from ..records import Limits


class UnitOfWork(ABC):
    """Transactions and isolation (see the module docstring)."""

    limits: Limits

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Run the enclosed calls as one atomic unit of work.

        Nests (an inner failure undoes only the inner calls). Decisions made
        inside it on a held account hold for the writes that follow them.
        """

    @abstractmethod
    def snapshot(self) -> AbstractContextManager[None]:
        """Run the enclosed reads against one consistent state (no writes inside)."""

    @abstractmethod
    def hold_accounts(self, *user_ids: str) -> bool:
        """Inside a unit of work: hold these accounts until it ends (see "Isolation").

        True if what the unit read about them before may have changed meanwhile
        (read it again); False if nothing could have (the engine excluded other
        writers from the start, or they were held already). Outside a unit it
        does nothing and answers False. Unknown ids are ignored.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and pools."""
