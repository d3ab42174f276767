"""Content-addressed storage of chunk ciphertext.

The chunk store only knows ids and bytes; ownership, quota and references
live in the metadata store. The abstract :class:`ChunkStore` is the contract
both implementations (and tests/server/test_server_chunkstore.py) share.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

_ID_RE = re.compile(r"[0-9a-f]{64}")
_TMP_PREFIX = ".tmp-"


class ChunkNotFound(KeyError):
    """The chunk is not stored."""


def check_id(chunk_id: str) -> str:
    """Refuse anything but 64 lowercase hex chars, so an id can never be a path."""
    if not isinstance(chunk_id, str) or _ID_RE.fullmatch(chunk_id) is None:
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


class DirChunkStore(ChunkStore):
    """One file per chunk under ``root/ab/cd/<id>`` (two fan-out levels).

    Fan-out keeps directories small (65 536 leaf dirs). A write goes to a
    temp file in the destination directory, is fsynced, renamed over the
    final name and the directory is fsynced, so after a crash a chunk is
    either absent or complete, never truncated.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _path(self, chunk_id: str) -> Path:
        check_id(chunk_id)
        return self.root / chunk_id[0:2] / chunk_id[2:4] / chunk_id

    def put(self, chunk_id: str, data: bytes) -> None:
        final = self._path(chunk_id)
        directory = final.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_dir(directory)

    def get(self, chunk_id: str) -> bytes:
        try:
            return self._path(chunk_id).read_bytes()
        except FileNotFoundError:
            raise ChunkNotFound(chunk_id) from None

    def has(self, chunk_id: str) -> bool:
        return self._path(chunk_id).is_file()

    def delete(self, chunk_id: str) -> bool:
        try:
            self._path(chunk_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def size(self, chunk_id: str) -> int:
        try:
            return self._path(chunk_id).stat().st_size
        except FileNotFoundError:
            raise ChunkNotFound(chunk_id) from None

    def modified(self, chunk_id: str) -> float:
        try:
            return self._path(chunk_id).stat().st_mtime
        except FileNotFoundError:
            raise ChunkNotFound(chunk_id) from None

    def iter_ids(self) -> Iterator[str]:
        for top in _subdirs(self.root):
            for sub in _subdirs(top):
                prefix = top.name + sub.name
                with os.scandir(sub) as entries:
                    for entry in entries:
                        name = entry.name
                        if _ID_RE.fullmatch(name) and name.startswith(prefix) and entry.is_file(follow_symlinks=False):
                            yield name

    def sweep_temp(self, max_age: float) -> int:
        cutoff = time.time() - max_age
        removed = 0
        for top in _subdirs(self.root):
            for sub in _subdirs(top):
                with os.scandir(sub) as entries:
                    stale = [
                        e.path
                        for e in entries
                        if e.name.startswith(_TMP_PREFIX) and e.stat(follow_symlinks=False).st_mtime < cutoff
                    ]
                for path in stale:
                    try:
                        os.unlink(path)
                        removed += 1
                    except FileNotFoundError:
                        pass
        return removed


def _subdirs(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as entries:
            return [
                Path(e.path)
                for e in entries
                if len(e.name) == 2 and all(c in "0123456789abcdef" for c in e.name) and e.is_dir(follow_symlinks=False)
            ]
    except FileNotFoundError:
        return []


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
