"""API tests (real server process): chunks, quota, garbage collection."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from support.server import ServerProcess
from support.server_api import User, assert_json_error, new_user, unb64

from megadrive.server.config import ServerConfig
from megadrive.server.serve import run_gc

MAX_CHUNK_BYTES = 4 * 2**20 + 64 * 2**10


def chunk_path(data_dir: Path, cid: str) -> Path:
    return data_dir / "chunks" / cid[:2] / cid[2:4] / cid


def test_put_get_idempotent(alice: User, shared_server: ServerProcess) -> None:
    base = alice.account()["used"]  # the root's meta
    data = os.urandom(3000)
    cid, r = alice.put_chunk(data)
    assert r.status_code == 201 and r.json() == {"chunk_id": cid, "size": 3000}
    _, again = alice.put_chunk(data)
    assert again.status_code == 200
    got = alice.client.get(f"/v1/chunks/{cid}")
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == "application/octet-stream"
    assert alice.account()["used"] == base + 3000
    assert chunk_path(shared_server.data_dir, cid).read_bytes() == data


def test_hash_mismatch_rejected(alice: User, shared_server: ServerProcess) -> None:
    base = alice.account()["used"]
    data = b"real bytes"
    wrong_id = hashlib.sha256(b"other bytes").hexdigest()
    r = alice.client.put(f"/v1/chunks/{wrong_id}", content=data, headers={"Content-Type": "application/octet-stream"})
    assert_json_error(r, 400, "bad_request")
    assert alice.account()["used"] == base
    assert not chunk_path(shared_server.data_dir, wrong_id).exists()
    assert alice.client.post("/v1/chunks/missing", json={"ids": [wrong_id]}).json() == {"missing": [wrong_id]}


def test_chunk_request_validation(alice: User) -> None:
    data = b"abc"
    cid = hashlib.sha256(data).hexdigest()
    put = alice.client.put
    assert_json_error(put(f"/v1/chunks/{cid}", content=data, headers={"Content-Type": "text/plain"}), 415)
    assert_json_error(put(f"/v1/chunks/{cid}", content=data), 415, "unsupported_media_type")
    octet = {"Content-Type": "application/octet-stream"}
    assert_json_error(put(f"/v1/chunks/{cid.upper()}", content=data, headers=octet), 400)
    assert_json_error(put(f"/v1/chunks/{cid[:-1]}", content=data, headers=octet), 400)
    assert_json_error(alice.client.get("/v1/chunks/not-a-chunk-id"), 400, "bad_request")
    assert_json_error(alice.client.get(f"/v1/chunks/{cid}"), 404, "not_found")
    big = b"\0" * (MAX_CHUNK_BYTES + 1)
    assert_json_error(put(f"/v1/chunks/{hashlib.sha256(big).hexdigest()}", content=big, headers=octet), 413)


def test_oversized_chunked_upload_refused(alice: User) -> None:
    big = b"\1" * (MAX_CHUNK_BYTES + 10)
    cid = hashlib.sha256(big).hexdigest()

    def body() -> Iterator[bytes]:
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    r = alice.client.put(f"/v1/chunks/{cid}", content=body(), headers={"Content-Type": "application/octet-stream"})
    assert_json_error(r, 413, "too_large")


def test_missing_endpoint(alice: User, bob: User) -> None:
    mine, _ = alice.put_chunk(b"one")
    bobs, _ = bob.put_chunk(b"two")
    other = "cd" * 32
    r = alice.client.post("/v1/chunks/missing", json={"ids": [other, mine, bobs, other]})
    assert r.status_code == 200 and r.json() == {"missing": [other, bobs]}
    assert_json_error(alice.client.post("/v1/chunks/missing", json={"ids": ["xyz"]}), 400)
    assert_json_error(alice.client.post("/v1/chunks/missing", json={"ids": "abc"}), 400)
    assert_json_error(alice.client.post("/v1/chunks/missing", json={}), 400)
    too_many = {"ids": ["ab" * 32] * 200_001}
    assert_json_error(alice.client.post("/v1/chunks/missing", json=too_many), 400, "bad_request")
    r = alice.client.post("/v1/chunks/missing", json={"ids": ["ab" * 32] * 200_000})
    assert r.status_code == 200 and r.json() == {"missing": ["ab" * 32]}


def test_same_ciphertext_other_user_pays_too(alice: User, bob: User) -> None:
    a0, b0 = alice.account()["used"], bob.account()["used"]
    data = os.urandom(1000)
    cid, r1 = alice.put_chunk(data)
    _, r2 = bob.put_chunk(data)
    assert r1.status_code == 201 and r2.status_code == 201  # bob did not have it
    assert alice.account()["used"] == a0 + 1000 and bob.account()["used"] == b0 + 1000
    assert bob.client.get(f"/v1/chunks/{cid}").content == data


def test_quota_507_and_nothing_committed(alice: User, shared_server: ServerProcess) -> None:
    quota, base = alice.account()["quota"], alice.account()["used"]
    first = os.urandom(quota // 2 + 1000)
    second = os.urandom(quota // 2)
    c1, r1 = alice.put_chunk(first)
    assert r1.status_code == 201
    c2, r2 = alice.put_chunk(second)
    body = assert_json_error(r2, 507, "quota_exceeded")
    assert body["quota"] == quota and body["used"] == base + len(first)
    acct = alice.account()
    assert acct["used"] == base + len(first)
    assert not chunk_path(shared_server.data_dir, c2).exists()
    assert alice.client.post("/v1/chunks/missing", json={"ids": [c1, c2]}).json() == {"missing": [c2]}
    f = alice.mkfile()
    before = alice.account()["seq"]
    assert_json_error(alice.commit(f["node_id"], 0, [c1, c2]), 409, "missing_chunks")
    assert alice.node(f["node_id"]).json()["node"]["version"] == 0
    assert alice.account()["seq"] == before
    # A chunk that fits exactly is still accepted.
    rest = os.urandom(quota - alice.account()["used"])
    _, r3 = alice.put_chunk(rest)
    assert r3.status_code == 201 and alice.account()["used"] == quota


def test_gc_cli_removes_unreferenced_keeps_referenced(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(16 << 20)
    user = new_user(server.url)
    f = user.mkfile()
    kept, _ = user.put_chunk(b"referenced chunk")
    dropped, _ = user.put_chunk(b"never committed")
    old, _ = user.put_chunk(b"only in a pruned version")
    assert user.commit(f["node_id"], 0, [old]).status_code == 201
    assert user.commit(f["node_id"], 1, [kept]).status_code == 201
    versions = user.client.get(f"/v1/nodes/{f['node_id']}/versions").json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]  # old still referenced by v1

    # Grace protects everything at first.
    out = subprocess.run(
        [sys.executable, "-m", "megadrive.server", "gc", "--data", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout)["chunks_deleted"] == 0

    out = subprocess.run(
        [sys.executable, "-m", "megadrive.server", "gc", "--data", str(server.data_dir), "--grace", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["chunks_deleted"] == 1 and result["bytes_freed"] == len(b"never committed")
    assert user.client.get(f"/v1/chunks/{kept}").status_code == 200
    assert user.client.get(f"/v1/chunks/{old}").status_code == 200
    assert_json_error(user.client.get(f"/v1/chunks/{dropped}"), 404)
    assert not chunk_path(server.data_dir, dropped).exists()
    metas = len(unb64(user.signup["root"]["meta"])) + len(b"m")  # the root's and the file's
    manifests = 2 * len(b"manifest")
    assert user.account()["used"] == metas + manifests + len(b"referenced chunk") + len(b"only in a pruned version")
    # The file is still whole.
    assert user.client.get(f"/v1/nodes/{f['node_id']}/manifest").status_code == 200


def test_run_gc_after_purge_next_to_live_server(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(16 << 20)
    user = new_user(server.url)
    f = user.mkfile()
    c, _ = user.put_chunk(b"purged soon")
    assert user.commit(f["node_id"], 0, [c]).status_code == 201
    assert run_gc(ServerConfig(data_dir=server.data_dir), grace=0)["chunks_deleted"] == 0
    assert user.client.delete(f"/v1/nodes/{f['node_id']}", params={"purge": 1}).json() == {"purged": 1}
    result = run_gc(ServerConfig(data_dir=server.data_dir), grace=0)
    assert result["chunks_deleted"] == 1 and result["refs_removed"] == 1
    assert user.account()["used"] == len(unb64(user.signup["root"]["meta"]))  # the root's meta is all that is left
    assert not chunk_path(server.data_dir, c).exists()
    # The live server still works and can store the chunk again.
    _, r = user.put_chunk(b"purged soon")
    assert r.status_code == 201


def test_background_gc_thread(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(16 << 20, "--gc-interval", "0.3", "--gc-grace", "1")
    user = new_user(server.url)
    f = user.mkfile()
    kept, _ = user.put_chunk(b"kept by a version")
    assert user.commit(f["node_id"], 0, [kept]).status_code == 201
    dropped, _ = user.put_chunk(b"garbage soon")
    deadline = time.time() + 10
    while time.time() < deadline and chunk_path(server.data_dir, dropped).exists():
        time.sleep(0.2)
    assert not chunk_path(server.data_dir, dropped).exists()
    assert user.client.get(f"/v1/chunks/{kept}").status_code == 200


def test_exact_max_chunk_accepted(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(16 << 20)
    user = new_user(server.url)
    data = os.urandom(MAX_CHUNK_BYTES)
    cid, r = user.put_chunk(data)
    assert r.status_code == 201
    assert httpx.get(f"{server.url}/v1/chunks/{cid}", headers={"Authorization": f"Bearer {user.token}"}).content == data
