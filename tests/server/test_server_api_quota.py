"""API tests (real server process): metadata charged to the quota, the node cap, the upgrade.

Every figure is computed here from what the test sent (base64-decoded
lengths), never read back from the server and trusted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import httpx
from support.server import ServerProcess
from support.server_api import User, assert_json_error, b64, hex32, new_user, unb64

KIB = 1024


def make_node(user: User, meta: bytes, parent: str | None = None, kind: str = "file") -> httpx.Response:
    body = {"node_id": hex32(), "parent_id": parent or user.root, "kind": kind, "meta": b64(meta)}
    return user.client.post("/v1/nodes", json=body)


def root_meta(user: User) -> int:
    return len(unb64(user.signup["root"]["meta"]))


def assert_quota_error(r: httpx.Response, quota: int, used: int) -> None:
    """507 with exactly the chunk quota error's shape: code, message, quota, used."""
    body = assert_json_error(r, 507, "quota_exceeded")
    assert body == {"error": "quota_exceeded", "message": body["message"], "quota": quota, "used": used}


def test_every_metadata_write_is_charged_and_refused_past_the_quota(
    make_server: Callable[..., ServerProcess],
) -> None:
    quota = 64 * KIB
    server = make_server(quota, "--versions-kept", "2")
    alice = new_user(server.url)
    used = root_meta(alice)
    assert alice.account()["used"] == used

    # POST /v1/nodes: the meta is charged.
    r = make_node(alice, b"d" * 500, kind="dir")
    assert r.status_code == 201, r.text
    folder = r.json()["node"]["node_id"]
    r = make_node(alice, b"f" * 500, folder)
    assert r.status_code == 201
    f = r.json()["node"]["node_id"]
    used += 1000
    assert alice.account()["used"] == used

    # PATCH: 500 -> 600 bytes charges 100; 600 -> 200 gives 400 back.
    r = alice.client.patch(f"/v1/nodes/{f}", json={"meta": b64(b"f" * 600)})
    assert r.status_code == 200
    used += 100
    assert alice.account()["used"] == used
    r = alice.client.patch(f"/v1/nodes/{f}", json={"meta": b64(b"f" * 200)})
    used -= 400
    assert alice.account()["used"] == used

    # A version's manifest (and a meta sent with it) is charged; pruning past --versions-kept gives back.
    assert alice.commit(f, 0, [], manifest=b"1" * 10_000).status_code == 201
    used += 10_000
    assert alice.commit(f, 1, [], manifest=b"2" * 20_000, meta=b"f" * 300).status_code == 201
    used += 20_000 + 100
    assert alice.account()["used"] == used
    assert alice.commit(f, 2, [], manifest=b"3" * 5_000).status_code == 201  # prunes v1
    used += 5_000 - 10_000
    assert alice.account()["used"] == used

    # Past the quota: 507 with the chunk error's shape, and nothing written.
    seq = alice.account()["seq"]
    room = quota - used
    node_id = hex32()
    body = {"node_id": node_id, "parent_id": alice.root, "kind": "file", "meta": b64(b"x" * (room + 1))}
    assert_quota_error(alice.client.post("/v1/nodes", json=body), quota, used)
    assert_json_error(alice.node(node_id), 404, "not_found")
    r = alice.client.patch(f"/v1/nodes/{f}", json={"meta": b64(b"f" * (300 + room + 1))})
    assert_quota_error(r, quota, used)
    assert unb64(alice.node(f).json()["node"]["meta"]) == b"f" * 300
    # A commit is charged its net growth: the new manifest less the one it prunes (v2, 20000 bytes).
    assert_quota_error(alice.commit(f, 3, [], manifest=b"4" * (20_000 + room + 1)), quota, used)
    assert alice.node(f).json()["node"]["version"] == 3
    r = alice.client.put("/v1/records/pins", json={"blob": b64(b"r" * (room + 1))}, headers={"If-Match": '"0"'})
    assert_quota_error(r, quota, used)
    assert alice.account()["seq"] == seq and alice.account()["used"] == used
    # Exactly up to the quota is accepted; then even one byte more is not, chunks included.
    assert alice.commit(f, 3, [], manifest=b"4" * (20_000 + room)).status_code == 201
    used = quota
    assert alice.account()["used"] == quota
    assert_quota_error(make_node(alice, b"m"), quota, quota)
    _, r = alice.put_chunk(b"c")
    assert_quota_error(r, quota, quota)
    # Writes that do not grow are never refused: a same-size rename, trashing, a smaller meta.
    assert alice.client.patch(f"/v1/nodes/{f}", json={"meta": b64(b"g" * 300)}).status_code == 200
    assert alice.client.delete(f"/v1/nodes/{folder}").status_code == 200  # the trash still counts
    assert alice.account()["used"] == quota
    # Purging gives back every meta and manifest of what it removes.
    r = alice.client.delete(f"/v1/nodes/{folder}", params={"purge": 1, "recursive": 1})
    assert r.json() == {"purged": 2}
    assert alice.account()["used"] == root_meta(alice)


def test_write_share_additions_are_the_owners(make_server: Callable[..., ServerProcess]) -> None:
    quota = 16 * KIB
    server = make_server(quota, "--max-nodes", "4")
    alice, bob = new_user(server.url), new_user(server.url)
    folder = make_node(alice, b"s", kind="dir").json()["node"]["node_id"]
    grant = {"node_id": folder, "recipient": bob.name, "access": "write", "grant": b64(b"g")}
    assert alice.client.post("/v1/shares", json=grant).status_code == 201
    alice_used, bob_used = alice.account()["used"], bob.account()["used"]
    r = make_node(bob, b"b" * 1000, folder)
    assert r.status_code == 201
    assert alice.account()["used"] == alice_used + 1000 and bob.account()["used"] == bob_used
    # alice's quota and alice's node cap (root, folder, bob's file: 3 of 4) bound what bob adds.
    assert_quota_error(make_node(bob, b"b" * (quota - alice_used - 1000 + 1), folder), quota, alice_used + 1000)
    assert make_node(bob, b"b", folder).status_code == 201
    body = assert_json_error(make_node(bob, b"b", folder), 507, "node_limit")
    assert body["limit"] == 4
    assert make_node(bob, b"b").status_code == 201  # bob's own tree has its own cap


def test_node_cap(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(1 << 20, "--max-nodes", "5")
    alice = new_user(server.url)
    folder = alice.mkdir()["node_id"]
    files = [alice.mkfile(folder)["node_id"] for _ in range(3)]  # the root + 4 nodes = 5
    seq = alice.account()["seq"]
    node_id = hex32()
    body = {"node_id": node_id, "parent_id": alice.root, "kind": "dir", "meta": b64(b"m")}
    r = alice.client.post("/v1/nodes", json=body)
    refused = assert_json_error(r, 507, "node_limit")
    assert refused == {
        "error": "node_limit",
        "message": "node limit reached: an account holds at most 5 nodes (trash included)",
        "limit": 5,
    }
    assert_json_error(alice.node(node_id), 404)
    assert alice.account()["seq"] == seq
    # Trashed but not purged: still counted.
    assert alice.client.delete(f"/v1/nodes/{files[0]}").status_code == 200
    assert_json_error(alice.client.post("/v1/nodes", json=body), 507, "node_limit")
    # Purged: no longer counted.
    assert alice.client.delete(f"/v1/nodes/{files[0]}", params={"purge": 1}).json() == {"purged": 1}
    assert alice.client.post("/v1/nodes", json=body).status_code == 201
    assert_json_error(alice.client.post("/v1/nodes", json={**body, "node_id": hex32()}), 507, "node_limit")
    # Another account has its own allowance.
    bob = new_user(server.url)
    assert bob.mkdir()["node_id"]


def v2_database(path: Any) -> None:
    """Make a database what schema version 2 wrote: no records, no node counts, ``used`` = chunk bytes."""
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        DROP TABLE records;
        DROP TABLE alembic_version;
        DROP TABLE attempts;
        DROP TABLE blob_deletions;
        DROP TABLE server_state;
        ALTER TABLE users DROP COLUMN node_count;
        ALTER TABLE users DROP COLUMN recovery_wrap;
        ALTER TABLE users DROP COLUMN recovery_salt;
        ALTER TABLE users DROP COLUMN recovery_hash;
        ALTER TABLE tokens DROP COLUMN device;
        ALTER TABLE tokens DROP COLUMN last_used;
        ALTER TABLE nodes DROP COLUMN trashed_at;
        UPDATE users SET used = COALESCE((SELECT SUM(size) FROM chunks WHERE chunks.owner = users.user_id), 0);
        PRAGMA user_version=2;
        """
    )
    conn.close()


def test_upgrade_charges_what_older_servers_stored_for_free(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(1 << 20)
    alice = new_user(server.url)
    f = make_node(alice, b"f" * 60_000).json()["node"]["node_id"]
    cid, _ = alice.put_chunk(b"chunk bytes")
    assert alice.commit(f, 0, [cid], manifest=b"M" * 300_000).status_code == 201
    expected = root_meta(alice) + 60_000 + len(b"chunk bytes") + 300_000
    assert alice.account()["used"] == expected
    server.stop()
    v2_database(server.data_dir / "meta.sqlite3")
    conn = sqlite3.connect(server.data_dir / "meta.sqlite3")
    assert conn.execute("SELECT used FROM users").fetchone() == (len(b"chunk bytes"),)  # what v2 showed
    conn.close()
    again = ServerProcess(server.data_dir, quota=1 << 20)
    try:
        alice.url = again.url
        alice.client.close()
        alice.client = httpx.Client(base_url=again.url, timeout=30)
        alice.do_login()
        assert alice.account()["used"] == expected
        conn = sqlite3.connect(server.data_dir / "meta.sqlite3")
        assert conn.execute("PRAGMA user_version").fetchone() == (5,)  # 3, 4 (what processes share), then 5
        assert conn.execute("SELECT node_count FROM users").fetchone() == (2,)
        conn.close()
    finally:
        again.stop()
