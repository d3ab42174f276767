"""fsck (server/fsck.py, ``megadrive server fsck``): each inconsistency planted in a real data dir.

A real server process fills the data directory through the API and is
stopped; then one kind of damage is planted by hand (a blob deleted or
truncated, a stray blob, a row whose blob is gone, a wrong ``used``...).
fsck must report exactly it, ``--repair`` must fix exactly the repairable
ones and touch nothing else (every blob, row and version not named stays
byte for byte), and what a kept version references is never deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.server import ServerProcess
from support.server_api import new_user

from megadrive.server import fsck
from megadrive.server.config import ServerConfig

BIN = Path(sys.executable).parent
OLD = time.time() - 7200  # older than the default grace of one hour


@dataclass
class Data:
    """A stopped server's data dir and what is in it."""

    dir: Path
    alice: str  # user ids
    bob: str
    file_id: str  # alice's file: version 1 lists c1, c2; version 2 lists c2, c3
    c1: str
    c2: str
    c3: str
    spare: str  # a chunk alice uploaded and never committed (no version lists it)
    shared: str  # bytes alice and bob both stored (two rows, one blob); bob's file lists it
    blobs: dict[str, bytes]  # chunk id -> bytes, every blob stored

    def blob_path(self, chunk_id: str) -> Path:
        return self.dir / "chunks" / chunk_id[:2] / chunk_id[2:4] / chunk_id

    def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.dir / "meta.sqlite3")
        try:
            with conn:
                return conn.execute(statement, args).fetchall()
        finally:
            conn.close()


def _put(client: httpx.Client, data: bytes, owner: str | None = None) -> str:
    cid = hashlib.sha256(data).hexdigest()
    headers = {"Content-Type": "application/octet-stream"}
    r = client.put(f"/v1/chunks/{cid}", content=data, headers=headers)
    assert r.status_code in (200, 201), r.text
    return cid


@pytest.fixture
def data(make_server: Callable[..., ServerProcess]) -> Data:
    server = make_server(None, "--gc-interval", "0", "--signup-limit", "0")
    alice, bob = new_user(server.url), new_user(server.url)
    blobs = {}
    ids = []
    for i in range(5):
        raw = os.urandom(1000 + i)
        ids.append(_put(alice.client, raw))
        blobs[ids[-1]] = raw
    c1, c2, c3, spare, shared = ids
    _put(bob.client, blobs[shared])
    f = alice.mkfile()
    assert alice.commit(f["node_id"], 0, [c1, c2], b"manifest-1").status_code == 201
    assert alice.commit(f["node_id"], 1, [c2, c3, shared], b"manifest-2").status_code == 201
    g = bob.mkfile()
    assert bob.commit(g["node_id"], 0, [shared], b"bob-manifest").status_code == 201
    alice.client.close()
    bob.client.close()
    assert server.stop() == 0
    d = Data(server.data_dir, alice.user_id, bob.user_id, f["node_id"], c1, c2, c3, spare, shared, blobs)
    for cid in blobs:  # as if uploaded long ago
        os.utime(d.blob_path(cid), (OLD, OLD))
    return d


def state(d: Data) -> dict[str, Any]:
    """Everything fsck could touch, to show a repair changes exactly what it names."""
    blob_files = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (d.dir / "chunks").rglob("*")
        if p.is_file() and len(p.name) == 64
    }
    return {
        "blobs": blob_files,
        "rows": sorted(d.sql("SELECT owner, chunk_id, size FROM chunks")),
        "versions": sorted(d.sql("SELECT node_id, version, size, manifest FROM versions")),
        "refs": sorted(d.sql("SELECT node_id, version, chunk_id FROM version_chunks")),
        "nodes": sorted(d.sql("SELECT node_id, meta, version, seq FROM nodes")),
        "users": sorted(d.sql("SELECT user_id, used, node_count, seq FROM users")),
    }


def run(d: Data, repair: bool = False, grace: float = fsck.DEFAULT_GRACE) -> fsck.FsckResult:
    return fsck.run(ServerConfig(data_dir=d.dir), do_repair=repair, grace=grace)


def plant_blob(d: Data, data: bytes, mtime: float) -> str:
    cid = hashlib.sha256(data).hexdigest()
    path = d.blob_path(cid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return cid


def test_a_consistent_data_dir_is_clean(data: Data) -> None:
    before = state(data)
    result = run(data, repair=True)
    assert result.found.clean and result.final.clean and result.exit_code == 0
    assert result.repaired is not None and result.repaired.total == 0
    assert (result.found.rows, result.found.refs, result.found.blobs, result.found.accounts) == (6, 6, 5, 2)
    assert state(data) == before


def test_missing_blob_of_a_kept_version_is_reported_never_invented(data: Data) -> None:
    data.blob_path(data.c3).unlink()
    before = state(data)
    result = run(data, repair=True)
    found = result.found
    assert [(r.node_id, r.version, r.chunk_id, r.owner) for r in found.missing] == [
        (data.file_id, 2, data.c3, data.alice)
    ]
    assert found.broken_versions == [(data.file_id, 2)]
    assert found.problems == 1 and not found.dead_rows  # the row stays: a version lists it
    assert result.repaired is not None and result.repaired.total == 0
    assert state(data) == before  # nothing deleted, nothing invented
    assert result.after is not None and result.after.broken_versions == [(data.file_id, 2)]
    assert result.exit_code == 1


def test_blob_of_the_wrong_size_is_reported(data: Data) -> None:
    path = data.blob_path(data.c1)
    path.write_bytes(path.read_bytes()[:-10])
    before = state(data)
    result = run(data, repair=True)
    (wrong,) = result.found.wrong_size
    assert (wrong.chunk_id, wrong.owner, wrong.recorded, wrong.stored, wrong.referenced) == (
        data.c1, data.alice, 1000, 990, True,
    )  # fmt: skip
    assert result.found.broken_versions == [(data.file_id, 1)]
    assert result.found.problems == 1
    assert state(data) == before and result.exit_code == 1


def test_orphan_blob_older_than_the_grace_is_deleted_a_young_one_kept(data: Data) -> None:
    old = plant_blob(data, b"left by a crash" * 50, OLD)
    young = plant_blob(data, b"an upload in flight" * 50, time.time())
    before = state(data)
    found = run(data).found
    assert [o.chunk_id for o in found.orphans] == [old]
    assert found.orphans[0].size == len(b"left by a crash" * 50) and found.orphans[0].age >= 7000
    assert [o.chunk_id for o in found.pending] == [young]
    assert found.problems == 1
    result = run(data, repair=True)
    assert result.repaired is not None and result.repaired.orphans_deleted == [old]
    assert result.repaired.bytes_freed == len(b"left by a crash" * 50)
    assert result.exit_code == 0 and result.after is not None and result.after.clean
    expected = dict(before)
    expected["blobs"] = {k: v for k, v in before["blobs"].items() if k != old}
    assert state(data) == expected
    assert young in state(data)["blobs"]
    # With no grace at all, the young one goes too.
    assert run(data, repair=True, grace=0).repaired.orphans_deleted == [young]  # type: ignore[union-attr]


def test_row_without_blob_that_no_version_lists_is_dropped(data: Data) -> None:
    data.blob_path(data.spare).unlink()
    before = state(data)
    found = run(data).found
    assert [(r.owner, r.chunk_id, r.size) for r in found.dead_rows] == [(data.alice, data.spare, 1003)]
    assert found.problems == 1 and not found.missing
    result = run(data, repair=True)
    assert result.repaired is not None
    assert [(r.owner, r.chunk_id) for r in result.repaired.rows_dropped] == [(data.alice, data.spare)]
    assert result.repaired.usage_fixed == []  # dropping gave the bytes back itself
    assert result.exit_code == 0
    expected = dict(before)
    expected["rows"] = [r for r in before["rows"] if r[1] != data.spare]
    expected["users"] = [(u, used - 1003 if u == data.alice else used, n, s) for u, used, n, s in before["users"]]
    assert state(data) == expected


def test_row_without_blob_a_version_lists_is_kept(data: Data) -> None:
    """The shared blob is gone: both rows stay (alice's and bob's versions list it); both versions reported."""
    data.blob_path(data.shared).unlink()
    before = state(data)
    result = run(data, repair=True)
    assert not result.found.dead_rows
    assert sorted((r.owner, r.version) for r in result.found.missing) == sorted([(data.alice, 2), (data.bob, 1)])
    assert state(data) == before and result.exit_code == 1


def test_wrong_used_and_node_count_are_recomputed(data: Data) -> None:
    before = state(data)
    data.sql("UPDATE users SET used = used + 12345, node_count = node_count + 3 WHERE user_id = ?", data.bob)
    found = run(data).found
    ((audit),) = found.usage
    assert audit.user_id == data.bob and audit.used == audit.stored + 12345 and audit.node_count == audit.nodes + 3
    result = run(data, repair=True)
    assert result.repaired is not None and result.repaired.usage_fixed == [data.bob]
    assert result.exit_code == 0
    assert state(data) == before


def test_a_version_chunk_its_owner_holds_no_row_for_is_reported(data: Data) -> None:
    (size,) = data.sql("SELECT size FROM chunks WHERE owner = ? AND chunk_id = ?", data.alice, data.c1)[0]
    data.sql("DELETE FROM chunks WHERE owner = ? AND chunk_id = ?", data.alice, data.c1)
    data.sql("UPDATE users SET used = used - ? WHERE user_id = ?", size, data.alice)  # used stays consistent
    before = state(data)
    result = run(data, repair=True)
    assert [(r.owner, r.node_id, r.version, r.chunk_id) for r in result.found.unowned] == [
        (data.alice, data.file_id, 1, data.c1)
    ]
    assert result.found.problems == 1 and not result.found.broken_versions
    assert state(data) == before and result.exit_code == 1  # reported, not invented


def test_everything_at_once_through_both_command_lines(data: Data) -> None:
    data.blob_path(data.c3).unlink()  # missing (kept version)
    data.blob_path(data.spare).unlink()  # dead row
    orphan = plant_blob(data, b"orphan" * 99, OLD)
    data.sql("UPDATE users SET used = used + 1 WHERE user_id = ?", data.bob)

    r = subprocess.run(
        [sys.executable, "-m", "megadrive.server", "fsck", "--data", str(data.dir), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert report["clean"] is False and report["repaired"] is None
    assert report["found"]["counts"] == {
        "missing": 1, "wrong_size": 0, "unowned": 0, "orphans": 1, "dead_rows": 1, "usage": 1,
        "broken_versions": 1, "pending": 0,
    }  # fmt: skip

    r = subprocess.run([str(BIN / "megadrive"), "server", "fsck", "--data", str(data.dir)], capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert r.returncode == 1, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[-1].startswith("fsck: 4 problems (")
    assert any(line.startswith(f"orphan: blob {orphan}") for line in lines)
    assert any(line.startswith(f"missing: chunk {data.c3}") for line in lines)
    assert any(line.startswith(f"dead row: owner {data.alice} holds chunk {data.spare}") for line in lines)
    assert any(line.startswith(f"usage: account {data.bob}") for line in lines)
    assert any(line.startswith(f"broken version: node {data.file_id} version 2") for line in lines)

    r = subprocess.run([str(BIN / "megadrive"), "server", "fsck", "--data", str(data.dir), "--repair"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 1, r.stderr  # the broken version is left (and said so)
    lines = r.stdout.strip().splitlines()
    assert lines[-1].startswith("fsck: 4 problems (") and lines[-1].endswith("repaired 3, 1 left")
    assert f"repaired: deleted orphan blob {orphan}" in lines
    assert f"repaired: dropped row of {data.alice} for chunk {data.spare}" in lines
    assert f"repaired: recomputed used and node count of {data.bob}" in lines
    assert any(line.startswith(f"left: missing: chunk {data.c3}") for line in lines)

    # What is left is exactly the version whose chunk is gone; the rest is clean.
    after = run(data).found
    assert after.counts()["missing"] == 1 and after.problems == 1
    # A client re-uploading the lost bytes heals it (PUT re-stores the blob of a row it holds).
    data.blob_path(data.c3).parent.mkdir(parents=True, exist_ok=True)
    data.blob_path(data.c3).write_bytes(data.blobs[data.c3])
    r = subprocess.run([str(BIN / "megadrive"), "server", "fsck", "--data", str(data.dir)], capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1].startswith("fsck: clean ("), r.stdout


def test_command_line_refusals(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "megadrive.server", "fsck", "--data", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "no MegaDrive data" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "none").exists()  # fsck never creates a data dir
    r = subprocess.run([str(BIN / "megadrive"), "server", "fsck", "--data", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith("megadrive: error: no MegaDrive data")
    r = subprocess.run([sys.executable, "-m", "megadrive.server", "fsck", "--data", str(tmp_path), "--grace", "-1"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_rows_without_blob_heal_through_the_api(make_server: Callable[..., ServerProcess]) -> None:
    """chunks/missing does not call a chunk stored when its blob is gone; the PUT that follows re-stores it."""
    server = make_server(None, "--gc-interval", "0")
    alice = new_user(server.url)
    raw = secrets.token_bytes(3000)
    cid = _put(alice.client, raw)
    path = server.data_dir / "chunks" / cid[:2] / cid[2:4] / cid
    path.unlink()
    r = alice.client.post("/v1/chunks/missing", json={"ids": [cid, cid]})
    assert r.status_code == 200 and r.json() == {"missing": [cid]}
    used = alice.account()["used"]
    r = alice.client.put(f"/v1/chunks/{cid}", content=raw, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text  # already held: no new row, no new charge
    assert alice.account()["used"] == used
    assert path.read_bytes() == raw
    assert alice.client.post("/v1/chunks/missing", json={"ids": [cid]}).json() == {"missing": []}
    alice.client.close()
