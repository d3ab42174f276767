"""Content-addressed storage of chunk ciphertext: the contract and an in-memory store.

The chunk store only knows ids and bytes; ownership, quota and references
live in the metadata store. :class:`ChunkStore` is the contract every
implementation (tests/server/test_server_chunkstore.py runs its suite on each)
shares: the local folder (chunks_folder.py), S3 (chunks_s3.py), memory (here).
None of them is ever called inside a metadata unit of work.
"""

from __future__ import annotations

import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator

ID_RE = re.compile(r"[0-9a-f]{64}")


class ChunkNotFound(KeyError):
    """The chunk is not stored."""


def check_id(chunk_id: str) -> str:
    """Refuse anything but 64 lowercase hex chars, so an id can never be a path or a key prefix."""
    if not isinstance(chunk_id, str) or ID_RE.fullmatch(chunk_id) is None:
        raise ValueError("invalid chunk id")
    return chunk_id


class ChunkStore(ABC):
    """Blob storage keyed by chunk id. Writes are atomic: a chunk is absent or whole."""

    @abstractmethod
    def put(self, chunk_id: str, data: bytes) -> None:
        """Store ``data`` under ``chunk_id`` (overwriting is harmless: same id, same bytes)."""

    @abstractmethod
    def get(self, chunk_id: str) -> bytes:
        """The stored bytes; :class:`ChunkNotFound` if absent."""

    @abstractmethod
    def has(self, chunk_id: str) -> bool: ...

    @abstractmethod
    def delete(self, chunk_id: str) -> bool:
        """Remove the chunk; True if it existed."""

    @abstractmethod
    def size(self, chunk_id: str) -> int:
        """Stored length in bytes; :class:`ChunkNotFound` if absent."""

    @abstractmethod
    def modified(self, chunk_id: str) -> float:
        """When the chunk was last written (Unix time); :class:`ChunkNotFound` if absent.

        fsck spares blobs no row names yet that are younger than its grace
        period: an upload writes the blob before its ownership row.
        """

    @abstractmethod
    def iter_ids(self) -> Iterator[str]:
        """Every stored id, in no particular order."""

    def remove(self, chunk_id: str) -> int | None:
        """Delete the chunk and return the bytes freed, or None if it was absent."""
        try:
            size = self.size(chunk_id)
        except ChunkNotFound:
            return None
        return size if self.delete(chunk_id) else None

    def sweep_temp(self, max_age: float) -> int:
        """Remove leftovers of interrupted writes older than ``max_age`` seconds."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release resources."""


class MemoryChunkStore(ChunkStore):
    """In-memory store: for tests, and to show the contract is not tied to files."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._written: dict[str, float] = {}
        self._lock = threading.Lock()

    def put(self, chunk_id: str, data: bytes) -> None:
        check_id(chunk_id)
        with self._lock:
            self._data[chunk_id] = bytes(data)
            self._written[chunk_id] = time.time()

    def get(self, chunk_id: str) -> bytes:
        check_id(chunk_id)
        with self._lock:
            try:
                return self._data[chunk_id]
            except KeyError:
                raise ChunkNotFound(chunk_id) from None

    def has(self, chunk_id: str) -> bool:
        check_id(chunk_id)
        with self._lock:
            return chunk_id in self._data

    def delete(self, chunk_id: str) -> bool:
        check_id(chunk_id)
        with self._lock:
            self._written.pop(chunk_id, None)
            return self._data.pop(chunk_id, None) is not None

    def size(self, chunk_id: str) -> int:
        return len(self.get(chunk_id))

    def modified(self, chunk_id: str) -> float:
        check_id(chunk_id)
        with self._lock:
            try:
                return self._written[chunk_id]
            except KeyError:
                raise ChunkNotFound(chunk_id) from None

    def iter_ids(self) -> Iterator[str]:
        with self._lock:
            ids = list(self._data)
        return iter(ids)
