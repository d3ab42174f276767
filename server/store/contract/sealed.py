"""Sealed per-account records (compare-and-swap on their version)."""

from __future__ import annotations

from abc import abstractmethod

from ..records import Record
from .unit import UnitOfWork


class RecordStore(UnitOfWork):
    @abstractmethod
    def get_record(self, owner: str, name: str) -> Record | None:
        """``owner``'s record of that name; records of other accounts are never reachable."""

    @abstractmethod
    def put_record(self, owner: str, name: str, expected_version: int, blob: bytes, now: float) -> int:
        """Replace (or, with ``expected_version`` 0, create) a record; returns its new version.

        Compare-and-swap: ``PreconditionFailed`` (with the current version, 0 if
        there is none) unless ``expected_version`` is the current one.
        ``RecordLimit`` for a new record past ``limits.max_records``;
        ``QuotaExceeded`` if the growth does not fit.
        """

    @abstractmethod
    def delete_record(self, owner: str, name: str, expected_version: int) -> None:
        """Delete a record (its bytes given back); ``NotFound`` if there is none,
        ``PreconditionFailed`` if ``expected_version`` is not the current one."""
