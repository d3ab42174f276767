"""Sealed per-account records, in SQL."""

from __future__ import annotations

import sqlalchemy as sa

from ..errors import NotFound, PreconditionFailed, RecordLimit
from .records import Record
from .sqlbase import SQLStoreBase
from .tables import records


class SQLRecords(SQLStoreBase):
    def get_record(self, owner: str, name: str) -> Record | None:
        with self._read() as c:
            row = c.execute(
                sa.select(records.c.version, records.c.blob).where(records.c.owner == owner, records.c.name == name)
            ).first()
        return None if row is None else Record(name, int(row[0]), bytes(row[1]))

    def put_record(self, owner: str, name: str, expected_version: int, blob: bytes, now: float) -> int:
        with self._write() as c:
            self._hold_now([owner])
            row = c.execute(
                sa.select(records.c.version, sa.func.length(records.c.blob)).where(
                    records.c.owner == owner, records.c.name == name
                )
            ).first()
            current, old_len = (0, 0) if row is None else (int(row[0]), int(row[1]))
            if current != expected_version:
                raise PreconditionFailed(current)
            if row is None:
                count = c.execute(
                    sa.select(sa.func.count()).select_from(records).where(records.c.owner == owner)
                ).scalar()
                if int(count or 0) >= self.limits.max_records:
                    raise RecordLimit(self.limits.max_records)
            self._charge(c, owner, len(blob) - old_len)
            stmt = self._insert(records).values(owner=owner, name=name, version=current + 1, blob=blob, updated=now)
            c.execute(
                stmt.on_conflict_do_update(
                    index_elements=["owner", "name"],
                    set_={
                        "version": stmt.excluded.version,
                        "blob": stmt.excluded.blob,
                        "updated": stmt.excluded.updated,
                    },
                )
            )
            return current + 1

    def delete_record(self, owner: str, name: str, expected_version: int) -> None:
        with self._write() as c:
            self._hold_now([owner])
            row = c.execute(
                sa.select(records.c.version, sa.func.length(records.c.blob)).where(
                    records.c.owner == owner, records.c.name == name
                )
            ).first()
            if row is None:
                raise NotFound("record not found")
            if int(row[0]) != expected_version:
                raise PreconditionFailed(int(row[0]))
            c.execute(sa.delete(records).where(records.c.owner == owner, records.c.name == name))
            self._charge(c, owner, -int(row[1]))
