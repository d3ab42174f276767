"""Garbage collection of chunks no version references.

A chunk becomes garbage for an account when no retained version of that
account's files lists it (after pruning, purge, or an upload never
committed) and it has not been uploaded or asked about for ``grace``
seconds, which keeps uploads in progress safe. The account's ownership row
goes, returning the bytes to its quota; the blob goes once no account owns
it. Blob deletions are queued in the unit of work that removes the rows and
carried out after it commits (server/store/contract/chunks.py), so a
concurrent upload of the same chunk either cancels the deletion, waits for
it and writes the blob again, or keeps it alive. Several server processes
may collect at once: they hold the same accounts and skip each other's claims.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .store.chunks import ChunkStore
from .store.contract import MetaStore
from .store.records import BlobDeleter

log = logging.getLogger("megadrive.server.gc")

# Interrupted writes leave temp files; none legitimately lives this long.
TEMP_MAX_AGE = 3600.0
_SWEEP_BATCH = 500


def blob_deleter(chunks: ChunkStore) -> BlobDeleter:
    """A callback deleting one blob and reporting the bytes freed (None if absent)."""

    return chunks.remove


def collect(meta: MetaStore, chunks: ChunkStore, grace: float, now: float | None = None) -> dict[str, Any]:
    """One full pass; returns what was removed.

    Also deletes blobs no account owns at all (left by a crash between
    writing a blob and recording it, or queued for deletion by a pass that
    crashed), expired tokens, forgotten limiter attempts and stale temp files.
    """
    started = time.monotonic()
    now = time.time() if now is None else now
    delete = blob_deleter(chunks)
    # Deletions a crashed pass (or a failed delete) left queued: blobs no row names, like orphans.
    orphans, orphan_bytes = meta.process_deletions(delete)
    report = meta.collect_garbage(now - grace, delete)
    batch: list[str] = []
    for chunk_id in chunks.iter_ids():
        batch.append(chunk_id)
        if len(batch) >= _SWEEP_BATCH:
            n, b = meta.delete_unowned(batch, delete)
            orphans, orphan_bytes, batch = orphans + n, orphan_bytes + b, []
    if batch:
        n, b = meta.delete_unowned(batch, delete)
        orphans, orphan_bytes = orphans + n, orphan_bytes + b
    result: dict[str, Any] = {
        "refs_removed": report.refs_removed,
        "bytes_released": report.bytes_released,
        "chunks_deleted": report.chunks_deleted + orphans,
        "bytes_freed": report.bytes_freed + orphan_bytes,
        "orphans_deleted": orphans,
        "temp_files_removed": chunks.sweep_temp(TEMP_MAX_AGE),
        "tokens_expired": meta.purge_expired_tokens(now),
        "attempts_forgotten": meta.prune_attempts(time.time()),
    }
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


class GCThread(threading.Thread):
    """Runs :func:`collect` every ``interval`` seconds until stopped."""

    def __init__(self, meta: MetaStore, chunks: ChunkStore, grace: float, interval: float) -> None:
        super().__init__(name="megadrive-gc", daemon=True)
        self.meta = meta
        self.chunks = chunks
        self.grace = grace
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                result = collect(self.meta, self.chunks, self.grace)
                log.info("gc pass: %s", result)
            except Exception:
                # A failed pass is retried next interval; the server keeps serving.
                log.exception("gc pass failed")

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)
