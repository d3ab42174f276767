"""The ciphertext chunk cache shared by every process on one data folder (gateway, mount, command line)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from megadrive.cache import ChunkCache


def test_a_second_process_on_the_cache_never_breaks_the_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process opening the cache sweeps only temporary files left long ago (the stress run's settle()
    once deleted one a live gateway was about to rename); a put whose temporary file went meanwhile is
    skipped, never an error (caching is best effort)."""
    root = tmp_path / "cache"
    first = ChunkCache(root)
    writing = root / ".tmp-writing"
    writing.write_bytes(b"being written by the first process")
    dead = root / ".tmp-dead"
    dead.write_bytes(b"left by a process that died")
    os.utime(dead, (time.time() - 7200, time.time() - 7200))
    ChunkCache(root)  # another process opens the same folder
    assert writing.exists() and not dead.exists()

    real_replace = os.replace

    def swept_first(src: str, dst: str) -> None:
        os.unlink(src)  # another process swept it between the write and the rename
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", swept_first)
    first.put("c1", b"ciphertext")
    monkeypatch.setattr(os, "replace", real_replace)
    assert first.get("c1") is None and [p.name for p in root.iterdir()] == [".tmp-writing"]
    first.put("c2", b"ciphertext")
    assert first.get("c2") == b"ciphertext"
