"""Chunk ownership and quota, the blob deletion queue, garbage collection and the fsck audit.

The life of a blob, across a database that commits and a chunk store that does not:

* **Upload**: the blob is written first (outside any unit of work), then
  :meth:`ChunkLedger.add_chunk` records the ownership row. It never leaves a
  row naming a blob that a deletion took: a deletion still queued for the
  chunk is cancelled, one being carried out makes ``add_chunk`` refuse with
  ``DeletionInProgress`` (the caller waits and tries again), and one carried
  out since the caller wrote the blob answers ``restore`` (write it again).
* **Deletion**: a unit of work that removes the last row naming a chunk
  (collection, takedown, a refused upload) queues the blob in the same unit.
  After it commits, :meth:`ChunkLedger.process_deletions` claims queued blobs
  that still nobody names (claim and ``add_chunk`` exclude each other per
  chunk id), deletes them outside any unit, and marks them done. A crash
  leaves either a queued or claimed entry (retried; a claim expires after
  ``CLAIM_SECONDS``) or an orphan blob (swept by the next pass), never a row
  whose blob is gone.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence

from ..records import BlobDeleter, ChunkAdded, ChunkRow, GarbageReport, UsageAudit, VersionRef
from .unit import UnitOfWork

# How long a claimed deletion may take before another process may retry it.
CLAIM_SECONDS = 300.0
# How long a done deletion is remembered (to tell a slow upload to write its blob again).
DONE_SECONDS = 3600.0


class DeletionInProgress(Exception):
    """The chunk's blob is being deleted right now: wait a moment and record it again."""


class ChunkLedger(UnitOfWork):
    @abstractmethod
    def missing_chunks(self, owner: str, ids: Sequence[str], now: float) -> list[str]:
        """Ids ``owner`` does not store (first-seen order, no repeats). The ones it does
        store are touched so the collector leaves them alone for another grace period."""

    @abstractmethod
    def owns_chunk(self, owner: str, chunk_id: str) -> bool: ...

    @abstractmethod
    def chunk_holders(self, chunk_id: str) -> list[str]:
        """The accounts storing the chunk."""

    @abstractmethod
    def is_removed_chunk(self, chunk_id: str) -> bool:
        """Whether a takedown deleted this chunk (it can then not be stored again)."""

    @abstractmethod
    def add_chunk(self, owner: str, chunk_id: str, size: int, quota: int, now: float) -> ChunkAdded:
        """Record that ``owner`` stores the chunk (its blob already written by the caller).

        Refuses with ``QuotaExceeded`` (``used + size > quota``; the caller passes the
        server's quota, the one in ``limits``), ``Unavailable`` for a chunk a takedown
        deleted, ``DeletionInProgress`` while its blob is being deleted (nothing changed:
        wait and call again). A row that exists is touched (``created`` False).
        """

    @abstractmethod
    def usage(self, owner: str) -> int:
        """``used``: bytes ``owner`` makes the server keep (chunks, metas, manifests, records)."""

    @abstractmethod
    def stored_bytes(self, owner: str) -> int:
        """The same figure as :meth:`usage`, counted from the stored data (an audit of ``used``)."""

    # -- deletion queue and garbage collection -------------------------------------------
    @abstractmethod
    def queue_unowned(self, ids: Sequence[str], now: float) -> int:
        """Queue for deletion the blobs among ``ids`` that no row names; returns how many."""

    @abstractmethod
    def process_deletions(self, delete_blob: BlobDeleter, ids: Sequence[str] | None = None) -> tuple[int, int]:
        """Carry out queued deletions (only those among ``ids`` if given): (blobs deleted, bytes).

        Each is claimed in a unit of work that re-checks that nobody names the chunk
        (a named one is dropped from the queue); the blob is deleted after that unit
        commits, through ``delete_blob`` (None: absent or kept), and the entry marked done.
        """

    @abstractmethod
    def pending_deletions(self) -> list[str]:
        """Chunk ids queued or claimed for deletion, not yet done."""

    @abstractmethod
    def collect_garbage(self, cutoff: float, delete_blob: BlobDeleter) -> GarbageReport:
        """Drop ownership of chunks no version of the owner references and untouched since
        ``cutoff`` (the bytes given back), queueing the blobs nobody names any more; then
        carry out those deletions (:meth:`process_deletions`).

        Crash order: a batch's row removal is committed *before* its blobs are
        deleted, so a crash can leave a blob no row names (swept by the next pass),
        never a row whose blob is gone (which ``chunks/missing`` would report as
        stored, so a client would commit a version naming bytes the server no longer has)."""

    @abstractmethod
    def delete_unowned(self, ids: Sequence[str], delete_blob: BlobDeleter) -> tuple[int, int]:
        """Delete the blobs among ``ids`` that no account owns: (count, bytes).

        Queues them (:meth:`queue_unowned`) and carries the deletions out. A blob a
        retained version lists is never deleted, owned or not (that state is damage
        for fsck to report, and deleting would make it worse)."""

    # -- consistency audit (server/fsck.py) ----------------------------------------------
    @abstractmethod
    def iter_chunk_rows(self) -> Iterator[ChunkRow]:
        """Every ownership row, ordered by (owner, chunk id), read page by page (no long
        unit of work: other writes may interleave between pages)."""

    @abstractmethod
    def iter_version_refs(self) -> Iterator[VersionRef]:
        """Every chunk a retained version lists, ordered by (node, version, chunk), page by page."""

    @abstractmethod
    def named_chunks(self, ids: Sequence[str]) -> set[str]:
        """The ids among ``ids`` that an ownership row or a retained version names."""

    @abstractmethod
    def usage_audit(self) -> list[UsageAudit]:
        """Every account's recorded ``used`` and node count beside the same counted from the data."""

    @abstractmethod
    def recompute_usage(self, user_ids: Sequence[str]) -> None:
        """Set ``used`` and the node count of these accounts from what they store (one unit)."""

    @abstractmethod
    def drop_unstored_chunks(self, rows: Sequence[tuple[str, str]], is_stored: Callable[[str], bool]) -> list[ChunkRow]:
        """Drop the (owner, chunk id) ownership rows among ``rows`` whose blob is absent
        (``is_stored`` false, asked outside any unit) and that no retained version of the
        owner lists, giving the bytes back (re-checked in the unit that drops). Returns the
        rows dropped."""
