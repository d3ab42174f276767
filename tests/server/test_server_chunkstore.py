"""ChunkStore contract: every implementation passes the same tests."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from megadrive.server.store.chunks import ChunkNotFound, ChunkStore, MemoryChunkStore
from megadrive.server.store.chunks_folder import DirChunkStore


def cid(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["dir", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChunkStore]:
    """The local folder, memory, and S3 (SeaweedFS; each test its own key prefix)."""
    s: ChunkStore
    if request.param == "s3":
        from megadrive.server.store.chunks_s3 import S3ChunkStore

        s = S3ChunkStore.from_url(request.getfixturevalue("seaweed").url())
    else:
        s = DirChunkStore(tmp_path / "chunks") if request.param == "dir" else MemoryChunkStore()
    yield s
    s.close()


class TestContract:
    def test_put_get_roundtrip(self, store: ChunkStore) -> None:
        data = b"ciphertext" * 100
        store.put(cid(data), data)
        assert store.has(cid(data))
        assert store.get(cid(data)) == data
        assert store.size(cid(data)) == len(data)

    def test_empty_chunk(self, store: ChunkStore) -> None:
        store.put(cid(b""), b"")
        assert store.get(cid(b"")) == b""
        assert store.size(cid(b"")) == 0

    def test_missing_chunk(self, store: ChunkStore) -> None:
        missing = cid(b"never stored")
        assert not store.has(missing)
        with pytest.raises(ChunkNotFound):
            store.get(missing)
        with pytest.raises(ChunkNotFound):
            store.size(missing)
        with pytest.raises(KeyError):  # ChunkNotFound is a KeyError
            store.get(missing)
        assert store.delete(missing) is False

    def test_put_twice_is_idempotent(self, store: ChunkStore) -> None:
        data = b"same bytes"
        store.put(cid(data), data)
        store.put(cid(data), data)
        assert store.get(cid(data)) == data
        assert list(store.iter_ids()) == [cid(data)]

    def test_delete(self, store: ChunkStore) -> None:
        data = b"to delete"
        store.put(cid(data), data)
        assert store.delete(cid(data)) is True
        assert not store.has(cid(data))
        assert store.delete(cid(data)) is False

    def test_modified(self, store: ChunkStore) -> None:
        data = b"dated"
        before = time.time()
        store.put(cid(data), data)
        assert before - 2 <= store.modified(cid(data)) <= time.time() + 2
        store.delete(cid(data))
        with pytest.raises(ChunkNotFound):
            store.modified(cid(data))

    def test_iter_ids(self, store: ChunkStore) -> None:
        blobs = [os.urandom(50) for _ in range(20)]
        for b in blobs:
            store.put(cid(b), b)
        store.delete(cid(blobs[0]))
        assert sorted(store.iter_ids()) == sorted(cid(b) for b in blobs[1:])

    @pytest.mark.parametrize(
        "bad",
        ["", "../" + "a" * 61, "A" * 64, "a" * 63, "a" * 65, "g" * 64, "/etc/passwd", "a" * 62 + "\n", "..", "ab/cd"],
    )
    def test_invalid_ids_refused(self, store: ChunkStore, bad: str) -> None:
        for op in (store.get, store.has, store.delete, store.size, store.modified):
            with pytest.raises(ValueError):
                op(bad)
        with pytest.raises(ValueError):
            store.put(bad, b"x")

    # The store is not modified (every call is refused), so sharing it is fine.
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(bad=st.text(max_size=70).filter(lambda s: not (len(s) == 64 and set(s) <= set("0123456789abcdef"))))
    def test_only_hex64_ids_accepted(self, store: ChunkStore, bad: str) -> None:
        with pytest.raises(ValueError):
            store.has(bad)
        with pytest.raises(ValueError):
            store.put(bad, b"x")


class TestS3ChunkStore:
    def test_url_forms(self) -> None:
        from megadrive.server.store.chunks_s3 import S3ChunkStore

        with pytest.raises(ValueError):
            S3ChunkStore.from_url("s3:///no-bucket")
        with pytest.raises(ValueError):
            S3ChunkStore.from_url("s3://bucket?endpoint=http://x&secret=leak")  # credentials never in a URL

    def test_objects_are_named_by_prefix_and_id(self, seaweed: object) -> None:
        from megadrive.server.store.chunks_s3 import S3ChunkStore

        url = seaweed.url("layout/test")  # type: ignore[attr-defined]
        store = S3ChunkStore.from_url(url)
        data = b"layout"
        store.put(cid(data), data)
        assert store.prefix == "layout/test/"
        listed = store._client.list_objects_v2(Bucket=store.bucket, Prefix="layout/")["Contents"]
        assert [o["Key"] for o in listed] == ["layout/test/" + cid(data)]
        assert store.remove(cid(data)) == len(data) and store.remove(cid(data)) is None
        store.close()


class TestDirChunkStore:
    def test_fan_out_layout(self, tmp_path: Path) -> None:
        store = DirChunkStore(tmp_path / "chunks")
        data = b"layout"
        store.put(cid(data), data)
        c = cid(data)
        path = tmp_path / "chunks" / c[:2] / c[2:4] / c
        assert path.read_bytes() == data
        assert oct(path.stat().st_mode & 0o777) == oct(0o600)
        assert [p.name for p in path.parent.iterdir()] == [c]  # no temp file left behind

    def test_failed_write_leaves_nothing(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        store = DirChunkStore(tmp_path / "chunks")
        data = b"will fail"

        def broken_fsync(fd: int) -> None:
            raise OSError(5, "simulated I/O error")

        monkeypatch.setattr(os, "fsync", broken_fsync)
        with pytest.raises(OSError):
            store.put(cid(data), data)
        monkeypatch.undo()
        assert not store.has(cid(data))
        c = cid(data)
        assert list((tmp_path / "chunks" / c[:2] / c[2:4]).iterdir()) == []

    def test_sweep_temp(self, tmp_path: Path) -> None:
        store = DirChunkStore(tmp_path / "chunks")
        data = b"x"
        store.put(cid(data), data)
        c = cid(data)
        d = tmp_path / "chunks" / c[:2] / c[2:4]
        old = d / ".tmp-old"
        new = d / ".tmp-new"
        old.write_bytes(b"partial")
        new.write_bytes(b"partial")
        past = time.time() - 7200
        os.utime(old, (past, past))
        assert store.sweep_temp(3600) == 1
        assert not old.exists() and new.exists()
        assert store.has(c)
        assert list(store.iter_ids()) == [c]  # temp files are never listed as chunks

    def test_foreign_files_ignored(self, tmp_path: Path) -> None:
        store = DirChunkStore(tmp_path / "chunks")
        (tmp_path / "chunks" / "zz").mkdir()
        (tmp_path / "chunks" / "README").write_text("not a chunk")
        data = b"y"
        store.put(cid(data), data)
        assert list(store.iter_ids()) == [cid(data)]
