"""Chunk ownership, the blob deletion queue, garbage collection and the fsck audit, in SQL.

See contract/chunks.py for the life of a blob. Claims and ownership rows of one chunk
id exclude each other through the dialect's ``_hold_chunks``; rows of an account are
changed only while holding it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import testhooks
from ..errors import NotFound, QuotaExceeded, Unavailable
from .contract import CLAIM_SECONDS, DONE_SECONDS, DeletionInProgress
from .records import BlobDeleter, ChunkAdded, ChunkRow, GarbageReport, UsageAudit, VersionRef
from .sqlbase import BATCH, SQLStoreBase, batches, node_count_query, stored_bytes_expr, unique
from .tables import blob_deletions, chunks, nodes, removed_chunks, users, version_chunks


def _referenced_by_owner(chunk_id: Any, owner: Any) -> sa.Exists:
    """A retained version of one of ``owner``'s files lists the chunk."""
    return sa.exists(
        sa.select(version_chunks.c.chunk_id)
        .select_from(version_chunks.join(nodes, nodes.c.node_id == version_chunks.c.node_id))
        .where(version_chunks.c.chunk_id == chunk_id, nodes.c.owner == owner)
    )


class SQLChunks(SQLStoreBase):
    def _claimable(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """Queue entries another process is claiming right now are skipped (dialect hook)."""
        return query

    def missing_chunks(self, owner: str, ids: Sequence[str], now: float) -> list[str]:
        distinct = unique(ids)
        owned: set[str] = set()
        with self._write() as c:
            for batch in batches(distinct):
                found = list(
                    c.execute(
                        sa.select(chunks.c.chunk_id).where(chunks.c.owner == owner, chunks.c.chunk_id.in_(batch))
                    ).scalars()
                )
                owned.update(found)
                if found:
                    c.execute(
                        sa.update(chunks)
                        .where(chunks.c.owner == owner, chunks.c.chunk_id.in_(found))
                        .values(touched=now)
                    )
        return [cid for cid in distinct if cid not in owned]

    def owns_chunk(self, owner: str, chunk_id: str) -> bool:
        with self._read() as c:
            row = c.execute(
                sa.select(chunks.c.chunk_id).where(chunks.c.owner == owner, chunks.c.chunk_id == chunk_id)
            ).first()
        return row is not None

    def chunk_holders(self, chunk_id: str) -> list[str]:
        with self._read() as c:
            return list(c.execute(sa.select(chunks.c.owner).where(chunks.c.chunk_id == chunk_id)).scalars())

    def is_removed_chunk(self, chunk_id: str) -> bool:
        with self._read() as c:
            row = c.execute(sa.select(removed_chunks.c.chunk_id).where(removed_chunks.c.chunk_id == chunk_id)).first()
        return row is not None

    def add_chunk(self, owner: str, chunk_id: str, size: int, quota: int, now: float) -> ChunkAdded:
        with self._write() as c:
            self._hold_now([owner])
            self._hold_chunks(c, [chunk_id])
            restore = self._cancel_deletion(c, chunk_id)
            exists = c.execute(
                sa.select(chunks.c.chunk_id).where(chunks.c.owner == owner, chunks.c.chunk_id == chunk_id)
            ).first()
            if exists is not None:
                c.execute(
                    sa.update(chunks).where(chunks.c.owner == owner, chunks.c.chunk_id == chunk_id).values(touched=now)
                )
                return ChunkAdded(False, restore)
            used = c.execute(sa.select(users.c.used).where(users.c.user_id == owner)).scalar()
            if used is None:
                raise NotFound("account not found")
            if c.execute(sa.select(removed_chunks.c.chunk_id).where(removed_chunks.c.chunk_id == chunk_id)).first():
                raise Unavailable()
            if int(used) + size > quota:
                raise QuotaExceeded(quota=quota, used=int(used))
            c.execute(sa.insert(chunks).values(owner=owner, chunk_id=chunk_id, size=size, created=now, touched=now))
            c.execute(sa.update(users).where(users.c.user_id == owner).values(used=users.c.used + size))
            return ChunkAdded(True, restore)

    @staticmethod
    def _cancel_deletion(c: Connection, chunk_id: str) -> bool:
        """Cancel a queued deletion of the chunk (holding it); True if its blob may be gone."""
        entry = c.execute(
            sa.select(blob_deletions.c.claimed, blob_deletions.c.done).where(blob_deletions.c.chunk_id == chunk_id)
        ).first()
        if entry is None:
            return False
        claimed, done = entry
        if done is None and claimed is not None and claimed > time.time() - CLAIM_SECONDS:
            raise DeletionInProgress(chunk_id)
        c.execute(sa.delete(blob_deletions).where(blob_deletions.c.chunk_id == chunk_id))
        return claimed is not None  # carried out (or its claimer died part-way): write the blob again

    def usage(self, owner: str) -> int:
        with self._read() as c:
            used = c.execute(sa.select(users.c.used).where(users.c.user_id == owner)).scalar()
        if used is None:
            raise NotFound("account not found")
        return int(used)

    def stored_bytes(self, owner: str) -> int:
        with self._unit(False, snapshot=True) as c:
            if c.execute(sa.select(users.c.user_id).where(users.c.user_id == owner)).first() is None:
                raise NotFound("account not found")
            return int(c.execute(sa.select(stored_bytes_expr(owner))).scalar() or 0)

    # -- deletion queue ----------------------------------------------------------------------
    @staticmethod
    def _named(c: Connection, batch: Sequence[str]) -> set[str]:
        q = sa.union(
            sa.select(chunks.c.chunk_id).where(chunks.c.chunk_id.in_(batch)),
            sa.select(version_chunks.c.chunk_id).where(version_chunks.c.chunk_id.in_(batch)),
        )
        return set(c.execute(q).scalars())

    def _queue(self, c: Connection, ids: Sequence[str], now: float) -> None:
        """Queue these chunk ids (a done entry starts over; a pending one stays as it is)."""
        if not ids:
            return
        stmt = self._insert(blob_deletions)
        stmt = stmt.on_conflict_do_update(
            index_elements=["chunk_id"],
            set_={"queued": stmt.excluded.queued, "claimed": None, "done": None},
            where=blob_deletions.c.done.is_not(None),
        )
        c.execute(stmt, [{"chunk_id": cid, "queued": now, "claimed": None, "done": None} for cid in ids])

    def queue_unowned(self, ids: Sequence[str], now: float) -> int:
        queued = 0
        for batch in batches(unique(ids)):
            with self._write() as c:
                named = self._named(c, batch)
                unnamed = [cid for cid in batch if cid not in named]
                self._queue(c, unnamed, now)
                queued += len(unnamed)
        return queued

    def pending_deletions(self) -> list[str]:
        with self._read() as c:
            return list(
                c.execute(
                    sa.select(blob_deletions.c.chunk_id)
                    .where(blob_deletions.c.done.is_(None))
                    .order_by(blob_deletions.c.chunk_id)
                ).scalars()
            )

    def process_deletions(self, delete_blob: BlobDeleter, ids: Sequence[str] | None = None) -> tuple[int, int]:
        count = freed = 0
        scopes: list[Sequence[str] | None] = [None] if ids is None else list(batches(unique(ids)))
        for scope in scopes:
            while True:
                claim = self._claim(scope)
                if claim is None:
                    break
                stamp, claimed = claim
                try:
                    for cid in claimed:  # after the claim committed: no unit of work is open here
                        size = delete_blob(cid)
                        if size is not None:
                            count += 1
                            freed += size
                finally:
                    with self._write() as c:
                        c.execute(
                            sa.update(blob_deletions)
                            .where(blob_deletions.c.chunk_id.in_(claimed), blob_deletions.c.claimed == stamp)
                            .values(done=time.time())
                        )
                if scope is not None:
                    break
        return count, freed

    def _claim(self, scope: Sequence[str] | None) -> tuple[float, list[str]] | None:
        """Claim a batch of queued deletions nobody names (named ones leave the queue)."""
        stamp = time.time()
        with self._write() as c:
            q = sa.select(blob_deletions.c.chunk_id).where(
                blob_deletions.c.done.is_(None),
                sa.or_(blob_deletions.c.claimed.is_(None), blob_deletions.c.claimed < stamp - CLAIM_SECONDS),
            )
            if scope is not None:
                q = q.where(blob_deletions.c.chunk_id.in_(scope))
            candidates = list(c.execute(self._claimable(q.order_by(blob_deletions.c.chunk_id).limit(BATCH))).scalars())
            if not candidates:
                return None
            self._hold_chunks(c, candidates)
            named = self._named(c, candidates)
            if named:
                c.execute(sa.delete(blob_deletions).where(blob_deletions.c.chunk_id.in_(sorted(named))))
            claimed = [cid for cid in candidates if cid not in named]
            if claimed:
                c.execute(sa.update(blob_deletions).where(blob_deletions.c.chunk_id.in_(claimed)).values(claimed=stamp))
        return stamp, claimed

    # -- garbage collection -------------------------------------------------------------------
    def collect_garbage(self, cutoff: float, delete_blob: BlobDeleter) -> GarbageReport:
        report = GarbageReport()
        after = ("", "")
        while True:
            queued: list[str] = []
            with self._write() as c:
                rows = c.execute(
                    sa.select(chunks.c.owner, chunks.c.chunk_id, chunks.c.size)
                    .where(sa.tuple_(chunks.c.owner, chunks.c.chunk_id) > sa.tuple_(*after), chunks.c.touched < cutoff)
                    .order_by(chunks.c.owner, chunks.c.chunk_id)
                    .limit(BATCH)
                ).all()
                if not rows:
                    break
                after = (rows[-1][0], rows[-1][1])
                self._hold_now(r[0] for r in rows)
                gone: list[str] = []
                for owner, cid, size in rows:
                    if c.execute(sa.select(_referenced_by_owner(cid, owner))).scalar():
                        continue
                    removed = c.execute(
                        sa.delete(chunks).where(
                            chunks.c.owner == owner, chunks.c.chunk_id == cid, chunks.c.touched < cutoff
                        )
                    ).rowcount
                    if not removed:  # touched (asked about, uploaded) since the page was read
                        continue
                    c.execute(sa.update(users).where(users.c.user_id == owner).values(used=users.c.used - size))
                    report.refs_removed += 1
                    report.bytes_released += int(size)
                    gone.append(cid)
                named = self._named(c, unique(gone)) if gone else set()
                queued = [cid for cid in unique(gone) if cid not in named]
                self._queue(c, queued, time.time())
            # Committed: now the blobs (see the contract for why in this order).
            testhooks.pause("gc.rows_removed")
            deleted, freed = self.process_deletions(delete_blob, queued)
            report.chunks_deleted += deleted
            report.bytes_freed += freed
        with self._write() as c:  # done entries past the time a slow upload could still need them
            c.execute(
                sa.delete(blob_deletions).where(
                    blob_deletions.c.done.is_not(None), blob_deletions.c.done < time.time() - DONE_SECONDS
                )
            )
        return report

    def delete_unowned(self, ids: Sequence[str], delete_blob: BlobDeleter) -> tuple[int, int]:
        ids = unique(ids)
        self.queue_unowned(ids, time.time())
        return self.process_deletions(delete_blob, ids)

    # -- consistency audit ----------------------------------------------------------------------
    def iter_chunk_rows(self) -> Iterator[ChunkRow]:
        after = ("", "")
        while True:
            with self._read() as c:
                rows = c.execute(
                    sa.select(
                        chunks.c.owner,
                        chunks.c.chunk_id,
                        chunks.c.size,
                        _referenced_by_owner(chunks.c.chunk_id, chunks.c.owner),
                    )
                    .where(sa.tuple_(chunks.c.owner, chunks.c.chunk_id) > sa.tuple_(*after))
                    .order_by(chunks.c.owner, chunks.c.chunk_id)
                    .limit(BATCH)
                ).all()
            yield from (ChunkRow(r[0], r[1], int(r[2]), bool(r[3])) for r in rows)
            if len(rows) < BATCH:
                return
            after = (rows[-1][0], rows[-1][1])

    def iter_version_refs(self) -> Iterator[VersionRef]:
        after: tuple[str, int, str] = ("", -1, "")
        vc = version_chunks
        while True:
            with self._read() as c:
                rows = c.execute(
                    sa.select(nodes.c.owner, vc.c.node_id, vc.c.version, vc.c.chunk_id, chunks.c.size)
                    .select_from(
                        vc.join(nodes, nodes.c.node_id == vc.c.node_id).outerjoin(
                            chunks, sa.and_(chunks.c.owner == nodes.c.owner, chunks.c.chunk_id == vc.c.chunk_id)
                        )
                    )
                    .where(sa.tuple_(vc.c.node_id, vc.c.version, vc.c.chunk_id) > sa.tuple_(*after))
                    .order_by(vc.c.node_id, vc.c.version, vc.c.chunk_id)
                    .limit(BATCH)
                ).all()
            yield from (VersionRef(r[0], r[1], int(r[2]), r[3], None if r[4] is None else int(r[4])) for r in rows)
            if len(rows) < BATCH:
                return
            after = (rows[-1][1], int(rows[-1][2]), rows[-1][3])

    def named_chunks(self, ids: Sequence[str]) -> set[str]:
        named: set[str] = set()
        with self._unit(False, snapshot=True) as c:
            for batch in batches(unique(ids)):
                named |= self._named(c, batch)
        return named

    def usage_audit(self) -> list[UsageAudit]:
        audits: list[UsageAudit] = []
        with self._unit(False, snapshot=True) as c:
            accounts = c.execute(
                sa.select(users.c.user_id, users.c.used, users.c.node_count).order_by(users.c.user_id)
            ).all()
            for user_id, used, node_count in accounts:
                stored = c.execute(sa.select(stored_bytes_expr(user_id))).scalar()
                count = c.execute(node_count_query(user_id)).scalar()
                audits.append(UsageAudit(user_id, int(used), int(stored or 0), int(node_count), int(count or 0)))
        return audits

    def recompute_usage(self, user_ids: Sequence[str]) -> None:
        with self._write() as c:
            self._hold_now(user_ids)
            self._recount(c, user_ids)

    def drop_unstored_chunks(self, rows: Sequence[tuple[str, str]], is_stored: Callable[[str], bool]) -> list[ChunkRow]:
        dropped: list[ChunkRow] = []
        candidates = [(owner, cid) for owner, cid in dict.fromkeys(rows) if not is_stored(cid)]
        for start in range(0, len(candidates), BATCH):
            part = candidates[start : start + BATCH]
            with self._write() as c:
                self._hold_now(owner for owner, _ in part)
                for owner, cid in part:
                    size = c.execute(
                        sa.select(chunks.c.size).where(chunks.c.owner == owner, chunks.c.chunk_id == cid)
                    ).scalar()
                    if size is None or c.execute(sa.select(_referenced_by_owner(cid, owner))).scalar():
                        continue
                    c.execute(sa.delete(chunks).where(chunks.c.owner == owner, chunks.c.chunk_id == cid))
                    c.execute(sa.update(users).where(users.c.user_id == owner).values(used=users.c.used - size))
                    dropped.append(ChunkRow(owner, cid, int(size)))
        return dropped
