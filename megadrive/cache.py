"""On-disk chunk cache: ciphertext blobs only, bounded in size, least recently used out first.

Blobs are stored as the server holds them and are re-verified against the
manifest on every read, so a corrupted cache file is caught like a corrupted
server chunk (and then dropped and fetched again).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

DEFAULT_MAX_BYTES = 512 << 20
STALE_TMP_SECONDS = 3600.0  # a temporary file this old was left by a process that died while writing it


class ChunkCache:
    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._lru: OrderedDict[str, int] = OrderedDict()
        entries = []
        # Another process on this folder (a gateway, a mount, the command line) may be writing or
        # replacing any of these right now: only a temporary file left long ago by a dead one goes, and
        # a file gone meanwhile is skipped.
        stale = time.time() - STALE_TMP_SECONDS
        for e in os.scandir(self.root):
            try:
                if e.name.startswith(".tmp-"):
                    if e.stat().st_mtime < stale:
                        os.unlink(e.path)
                elif e.is_file():
                    st = e.stat()
                    entries.append((st.st_mtime, e.name, st.st_size))
            except FileNotFoundError:
                continue
        for _, name, size in sorted(entries):
            self._lru[name] = size
        self._total = sum(self._lru.values())

    @property
    def total_bytes(self) -> int:
        return self._total

    def get(self, chunk_id: str) -> bytes | None:
        with self._lock:
            if chunk_id not in self._lru:
                return None
            self._lru.move_to_end(chunk_id)
        try:
            return (self.root / chunk_id).read_bytes()
        except FileNotFoundError:
            self.discard(chunk_id)
            return None

    def put(self, chunk_id: str, blob: bytes) -> None:
        if len(blob) > self.max_bytes:
            return
        with self._lock:
            if chunk_id in self._lru:
                self._lru.move_to_end(chunk_id)
                return
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, self.root / chunk_id)
        except OSError:  # (a cache is best effort: a full disk, or a file swept meanwhile, only costs a fetch)
            Path(tmp).unlink(missing_ok=True)
            return
        with self._lock:
            self._lru[chunk_id] = len(blob)
            self._total += len(blob)
            victims = []
            while self._total > self.max_bytes and self._lru:
                vid, vsize = self._lru.popitem(last=False)
                self._total -= vsize
                victims.append(vid)
        for vid in victims:
            (self.root / vid).unlink(missing_ok=True)

    def discard(self, chunk_id: str) -> None:
        with self._lock:
            size = self._lru.pop(chunk_id, None)
            if size is not None:
                self._total -= size
        (self.root / chunk_id).unlink(missing_ok=True)
