"""Hostile: an account must not store data for free in its metadata, or multiply itself.

Before the fix ``users.used`` counted chunk bytes only. Node ``meta`` blobs
(up to 64 KiB each, any number of nodes) and manifests (up to 8 MiB each, for
every kept version) were free: an account that never uploaded a chunk stored
~80 MiB this way while GET /v1/account said ``"used": 0``. Anything can be
hidden in those blobs: the server cannot tell a sealed manifest from data.

Here a real account does exactly that through the HTTP API (raw httpx, no
client code), and is stopped at its quota with ``507``; ``used`` is then the
exact sum of what was accepted, computed from what the attacker sent. The
other ways around a per-account quota are closed too: one account making
endless tiny nodes hits the node cap, one address making endless accounts
hits the signup limit.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.server import ServerProcess

KIB, MIB = 1024, 1024 * 1024
MAX_META = 64 * KIB  # the largest meta the server accepts
MAX_MANIFEST = 8 * MIB  # the largest manifest
QUOTA = 24 * MIB


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def signup_body(root_meta: bytes) -> dict[str, Any]:
    return {
        "user": "mallory" + secrets.token_hex(4),
        "user_id": secrets.token_hex(16),
        "salt": b64(secrets.token_bytes(16)),
        "kdf": {"alg": "argon2id13", "opslimit": 3, "memlimit": 268435456},
        "auth_key": b64(secrets.token_bytes(32)),
        "wrapped_master": b64(secrets.token_bytes(72)),
        "identity": {
            "sign_pub": b64(secrets.token_bytes(32)),
            "box_pub": b64(secrets.token_bytes(32)),
            "box_sig": b64(secrets.token_bytes(64)),
            "wrapped_private": b64(secrets.token_bytes(120)),
        },
        "root": {"node_id": secrets.token_hex(16), "meta": b64(root_meta)},
    }


def account(url: str, root_meta: bytes) -> httpx.Client:
    """Sign up and log in; a client carrying the token."""
    body = signup_body(root_meta)
    client = httpx.Client(base_url=url, timeout=120)
    assert client.post("/v1/signup", json=body).status_code == 201
    r = client.post("/v1/login", json={"user": body["user"], "auth_key": body["auth_key"]})
    assert r.status_code == 200, r.text
    client.headers["Authorization"] = f"Bearer {r.json()['token']}"
    client.headers["X-Root"] = body["root"]["node_id"]  # (our own note; the server ignores it)
    return client


def new_node(c: httpx.Client, meta: bytes, kind: str = "file") -> tuple[str, httpx.Response]:
    node_id = secrets.token_hex(16)
    body = {"node_id": node_id, "parent_id": c.headers["X-Root"], "kind": kind, "meta": b64(meta)}
    return node_id, c.post("/v1/nodes", json=body)


def commit(c: httpx.Client, node_id: str, base: int, manifest: bytes) -> httpx.Response:
    body = {"manifest": b64(manifest), "chunks": []}
    return c.post(f"/v1/nodes/{node_id}/versions", json=body, headers={"If-Match": f'"{base}"'})


def refused(r: httpx.Response, code: str = "quota_exceeded") -> dict[str, Any]:
    assert r.status_code == 507, (r.status_code, r.text[:300])
    body: dict[str, Any] = r.json()
    assert body["error"] == code, body
    return body


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "data", quota=QUOTA)  # default versions kept (10), nodes, signups
    try:
        yield srv
    finally:
        srv.stop()


def test_metadata_is_no_free_storage(server: ServerProcess) -> None:
    stored = 0  # what the server accepted, counted from what we sent
    attempted = 0  # what the attacker tried to make it keep
    root_meta = secrets.token_bytes(MAX_META)
    c = account(server.url, root_meta)
    stored += len(root_meta)

    # 1. Versions with maximal manifests, all kept: ten of them would be 80 MiB.
    f, r = new_node(c, secrets.token_bytes(MAX_META))
    assert r.status_code == 201
    small, r = new_node(c, b"s")  # (renamed to a larger meta below)
    assert r.status_code == 201
    stored += MAX_META + 1
    version = 0
    for _ in range(10):
        manifest = secrets.token_bytes(MAX_MANIFEST)
        attempted += len(manifest)
        r = commit(c, f, version, manifest)
        if r.status_code != 201:  # the attacker keeps trying; every further one is refused
            body = refused(r)
            assert (body["quota"], body["used"]) == (QUOTA, stored)
            continue
        version += 1
        stored += len(manifest)
    assert version == 2  # 8 MiB + 8 MiB + 128 KiB of metas fit in 24 MiB; a third manifest does not
    assert c.get(f"/v1/nodes/{f}").json()["node"]["version"] == 2
    assert [v["version"] for v in c.get(f"/v1/nodes/{f}/versions").json()["versions"]] == [2, 1]

    # 2. Many nodes with maximal metas, until the quota says no.
    created = [f, small]
    while True:
        meta = secrets.token_bytes(MAX_META)
        attempted += len(meta)
        node_id, r = new_node(c, meta)
        if r.status_code != 201:
            body = refused(r)
            assert (body["quota"], body["used"]) == (QUOTA, stored)
            assert c.get(f"/v1/nodes/{node_id}").status_code == 404  # nothing was created
            break
        created.append(node_id)
        stored += len(meta)
    assert QUOTA - MAX_META < stored <= QUOTA
    room = QUOTA - stored
    if room:  # the last bytes, exactly
        node_id, r = new_node(c, secrets.token_bytes(room))
        assert r.status_code == 201
        created.append(node_id)
        stored += room
    assert stored == QUOTA

    # 3. Every other way to add even one byte is refused as well, and none changes anything.
    seq = c.get("/v1/account").json()["seq"]
    refused(c.patch(f"/v1/nodes/{small}", json={"meta": b64(b"s+")}))  # a rename to a longer meta
    refused(commit(c, f, 2, b"m"))  # (with 10 versions kept nothing is pruned)
    refused(c.put("/v1/records/pins", json={"blob": b64(b"p")}, headers={"If-Match": '"0"'}))
    chunk_id = hashlib.sha256(b"c").hexdigest()
    refused(c.put(f"/v1/chunks/{chunk_id}", content=b"c", headers={"Content-Type": "application/octet-stream"}))
    _, r = new_node(c, b"x", kind="dir")
    refused(r)
    attempted += 5
    assert c.get("/v1/account").json()["seq"] == seq

    # The account's figure is exactly what it stores; the old server showed 0 here.
    acct = c.get("/v1/account").json()
    assert acct["used"] == stored and acct["quota"] == QUOTA
    assert attempted > 80 * MIB and acct["used"] <= QUOTA
    print(f"\nattempted {attempted} bytes of metadata, stored {stored} = used {acct['used']} (quota {QUOTA})")

    # 4. Trashing hides nothing from the quota; purging gives the bytes back.
    for node_id in created:
        assert c.delete(f"/v1/nodes/{node_id}").status_code == 200
    assert c.get("/v1/account").json()["used"] == stored
    _, r = new_node(c, b"x")
    refused(r)
    for node_id in created:
        assert c.delete(f"/v1/nodes/{node_id}", params={"purge": 1}).json() == {"purged": 1}
    assert c.get("/v1/account").json()["used"] == len(root_meta)
    c.close()


def test_tiny_nodes_hit_the_node_cap(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data", quota=QUOTA, extra_args=["--max-nodes", "300"])
    try:
        c = account(srv.url, b"r")
        made = 1  # the root
        while True:
            node_id, r = new_node(c, b"x", kind="dir")
            if r.status_code != 201:
                break
            made += 1
        body = refused(r, "node_limit")
        assert made == 300 and body["limit"] == 300 and "300" in body["message"]
        assert c.get("/v1/account").json()["used"] == 300  # one byte of meta per node
        c.close()
    finally:
        srv.stop()


def test_one_address_cannot_multiply_its_quota(server: ServerProcess) -> None:
    """Ten accounts an hour from one address, by default; the eleventh is refused."""
    codes = []
    with httpx.Client(base_url=server.url, timeout=60) as anon:
        for _ in range(12):
            codes.append(anon.post("/v1/signup", json=signup_body(b"r")))
    assert [r.status_code for r in codes] == [201] * 10 + [429] * 2
    assert codes[-1].json()["error"] == "rate_limited" and int(codes[-1].headers["Retry-After"]) > 3500
