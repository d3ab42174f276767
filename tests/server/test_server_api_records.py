"""API tests (real server process): sealed per-account records, /v1/records/{name}."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from support.server import ServerProcess
from support.server_api import User, assert_json_error, b64, new_user, unb64

KIB = 1024
MAX_RECORD = 256 * KIB


def put(user: User, name: str, blob: bytes, version: int | str | None) -> httpx.Response:
    headers = {} if version is None else {"If-Match": version if isinstance(version, str) else f'"{version}"'}
    return user.client.put(f"/v1/records/{name}", json={"blob": b64(blob)}, headers=headers)


def delete(user: User, name: str, version: int | None) -> httpx.Response:
    headers = {} if version is None else {"If-Match": f'"{version}"'}
    return user.client.delete(f"/v1/records/{name}", headers=headers)


def test_create_read_update_delete(alice: User) -> None:
    assert_json_error(alice.client.get("/v1/records/contacts"), 404, "not_found")
    sealed = secrets.token_bytes(300)
    r = put(alice, "contacts", sealed, 0)
    assert r.status_code == 200 and r.json() == {"name": "contacts", "version": 1}
    assert r.headers["etag"] == '"1"'
    r = alice.client.get("/v1/records/contacts")
    assert r.status_code == 200 and r.json() == {"name": "contacts", "version": 1, "blob": b64(sealed)}
    assert r.headers["etag"] == '"1"' and r.headers["cache-control"] == "no-store"
    newer = secrets.token_bytes(500)
    r = put(alice, "contacts", newer, "1")  # the quotes may be omitted, as for version commits
    assert r.status_code == 200 and r.json() == {"name": "contacts", "version": 2}
    # A stale or wrong If-Match: 412 with the current version, nothing written.
    for stale in (0, 1, 3):
        body = assert_json_error(put(alice, "contacts", b"lost update", stale), 412, "precondition_failed")
        assert body["version"] == 2
    body = assert_json_error(delete(alice, "contacts", 1), 412, "precondition_failed")
    assert body["version"] == 2
    assert unb64(alice.client.get("/v1/records/contacts").json()["blob"]) == newer
    # Without If-Match: 428, as for version commits; a malformed one: 400.
    assert_json_error(put(alice, "contacts", b"x", None), 428, "precondition_required")
    assert_json_error(delete(alice, "contacts", None), 428, "precondition_required")
    for bad in ('"one"', "W/\"2\"", "*", '"-1"', ""):
        assert_json_error(put(alice, "contacts", b"x", bad), 400, "bad_request")
    r = delete(alice, "contacts", 2)
    assert r.status_code == 204 and r.content == b""
    assert_json_error(alice.client.get("/v1/records/contacts"), 404, "not_found")
    assert_json_error(delete(alice, "contacts", 2), 404, "not_found")
    body = assert_json_error(put(alice, "contacts", b"x", 2), 412, "precondition_failed")
    assert body["version"] == 0  # absent: create with If-Match "0"
    assert put(alice, "contacts", b"again", 0).json() == {"name": "contacts", "version": 1}


def test_names_and_sizes(alice: User) -> None:
    for good in ("a", "pins-v2", "a" + "0" * 31):
        assert put(alice, good, b"x", 0).status_code == 200, good
    for bad in ("A", "0pins", "-x", "a" + "0" * 32, "a_b", "a.b", "%C3%A4", "a%20b"):
        assert_json_error(alice.client.get(f"/v1/records/{bad}"), 400, "bad_request")
        assert_json_error(put(alice, bad, b"x", 0), 400, "bad_request")
        assert_json_error(delete(alice, bad, 1), 400, "bad_request")
    # The blob: 1..256 KiB, canonical base64 (over the limit is 400, like an oversized meta).
    assert put(alice, "big", b"\0" * MAX_RECORD, 0).status_code == 200
    assert_json_error(put(alice, "big", b"\0" * (MAX_RECORD + 1), 1), 400, "bad_request")
    assert_json_error(put(alice, "empty", b"", 0), 400, "bad_request")
    r = alice.client.put("/v1/records/x", json={"blob": "not base64!"}, headers={"If-Match": '"0"'})
    assert_json_error(r, 400, "bad_request")
    r = alice.client.put("/v1/records/x", json={}, headers={"If-Match": '"0"'})
    assert_json_error(r, 400, "bad_request")
    r = alice.client.put("/v1/records/x", content=b"x", headers={"If-Match": '"0"', "Content-Type": "text/plain"})
    assert_json_error(r, 415, "unsupported_media_type")
    r = alice.client.put("/v1/records/x", json={"blob": b64(b"x"), "pad": "p" * 2**20}, headers={"If-Match": '"0"'})
    assert_json_error(r, 413, "too_large")
    assert_json_error(alice.client.post("/v1/records/x", json={}), 405, "method_not_allowed")
    assert_json_error(alice.client.get("/v1/records"), 404, "not_found")


def test_record_limit_and_quota(make_server: Callable[..., ServerProcess]) -> None:
    quota = 1 << 20
    server = make_server(quota)
    alice = new_user(server.url)
    base = alice.account()["used"]
    for i in range(16):
        assert put(alice, f"r{i}", b"x" * 1000, 0).status_code == 200
    assert alice.account()["used"] == base + 16 * 1000
    body = assert_json_error(put(alice, "r16", b"x", 0), 507, "record_limit")
    assert body["limit"] == 16 and "16" in body["message"]
    assert put(alice, "r0", b"y" * 2000, 1).json()["version"] == 2  # updating is not a new record
    assert alice.account()["used"] == base + 17 * 1000
    assert delete(alice, "r1", 1).status_code == 204
    assert alice.account()["used"] == base + 16 * 1000
    assert put(alice, "r16", b"x", 0).status_code == 200
    # Records count against the quota like everything else.
    used = alice.account()["used"]
    _, _ = alice.put_chunk(b"\0" * (quota - used - 100))
    body = assert_json_error(put(alice, "r2", b"z" * (1000 + 101), 1), 507, "quota_exceeded")
    assert (body["quota"], body["used"]) == (quota, quota - 100)
    assert put(alice, "r2", b"z" * (1000 + 100), 1).status_code == 200
    assert alice.account()["used"] == quota


def test_only_the_token_s_own_account(alice: User, bob: User, server_url: str) -> None:
    sealed = secrets.token_bytes(64)
    assert put(alice, "contacts", sealed, 0).status_code == 200
    nobody = "contacts-" + secrets.token_hex(4)
    # Bob sees exactly what he sees for a name nobody uses: alice's record is not there for him.
    for name in ("contacts", nobody):
        assert_json_error(bob.client.get(f"/v1/records/{name}"), 404, "not_found")
        assert_json_error(delete(bob, name, 1), 404, "not_found")
        assert assert_json_error(put(bob, name, b"x", 1), 412, "precondition_failed")["version"] == 0
    answers = {name: bob.client.get(f"/v1/records/{name}").json() for name in ("contacts", nobody)}
    assert answers["contacts"] == answers[nobody]
    # His PUT creates his own record; alice's is untouched.
    assert put(bob, "contacts", b"bob's own", 0).json() == {"name": "contacts", "version": 1}
    r = alice.client.get("/v1/records/contacts")
    assert r.json() == {"name": "contacts", "version": 1, "blob": b64(sealed)}
    assert unb64(bob.client.get("/v1/records/contacts").json()["blob"]) == b"bob's own"
    # No token, no records.
    with httpx.Client(base_url=server_url) as anon:
        for method in ("GET", "PUT", "DELETE"):
            r = anon.request(method, "/v1/records/contacts", headers={"If-Match": '"1"'})
            assert_json_error(r, 401, "unauthorized")


def test_parallel_writers_exactly_one_wins(alice: User) -> None:
    assert put(alice, "pins", b"v1", 0).status_code == 200

    def write(i: int) -> int:
        return put(alice, "pins", b"writer %d" % i, 1).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(write, range(8)))
    assert codes == [200] + [412] * 7
    assert alice.client.get("/v1/records/pins").json()["version"] == 2
