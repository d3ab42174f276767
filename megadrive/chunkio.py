"""Moving ciphertext chunks: the local cache, the server and the I/O threads, behind one small object.

Readers and writers (:mod:`megadrive.content`) see only this and the journal,
never the Drive: they get and put opaque blobs by id and verify what they get.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .api import Api
from .cache import ChunkCache
from .errors import IntegrityError, NotFound


class ServerChunks:
    """Chunk I/O for one account: cached reads, uploads for a tree's owner, a bounded thread pool."""

    def __init__(self, api: Api, cache: ChunkCache, account: str, workers: int = 8) -> None:
        self.api = api
        self.cache = cache
        self.account = account
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="megadrive-io")

    def fetch(self, chunk_id: str, *, use_cache: bool = True) -> bytes:
        """A chunk's ciphertext, from the local cache or the server (the caller verifies it)."""
        if use_cache:
            blob = self.cache.get(chunk_id)
            if blob is not None:
                return blob
        try:
            blob = self.api.get_chunk(chunk_id)
        except NotFound:
            raise IntegrityError(f"integrity check failed: chunk {chunk_id[:12]}… is missing on the server") from None
        if use_cache:
            self.cache.put(chunk_id, blob)
        return blob

    def discard(self, chunk_id: str) -> None:
        self.cache.discard(chunk_id)

    def put(self, chunk_id: str, blob: bytes, owner: str) -> None:
        """Store a chunk for the owner of the tree it belongs to (a sharing owner's quota, or ours)."""
        self.api.put_chunk(chunk_id, blob, owner=None if owner == self.account else owner)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self.pool.submit(fn, *args)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
