"""Chunks as files in a local folder (``file:///path``): the embedded default."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .chunks import ID_RE, ChunkNotFound, ChunkStore, check_id

_TMP_PREFIX = ".tmp-"


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
                        if ID_RE.fullmatch(name) and name.startswith(prefix) and entry.is_file(follow_symlinks=False):
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
