"""API tests (real server process): sessions, password change, recovery key, the trash list."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import httpx
from support.server import ServerProcess
from support.server_api import User, assert_json_error, b64, new_user


def second_session(user: User, device: str | None = None) -> httpx.Client:
    body = {"user": user.name, "auth_key": b64(user.auth_key)} | ({"device": device} if device else {})
    r = httpx.post(f"{user.url}/v1/login", json=body)
    assert r.status_code == 200, r.text
    return httpx.Client(base_url=user.url, headers={"Authorization": f"Bearer {r.json()['token']}"})


def test_sessions_list_and_revoke(alice: User, bob: User) -> None:
    phone = second_session(alice, "phone")
    listed = alice.client.get("/v1/sessions").json()["sessions"]
    assert len(listed) == 2 and [s["current"] for s in listed].count(True) == 1
    other = next(s for s in listed if not s["current"])
    assert other["device"] == "phone" and other["created"] <= time.time() and other["last_used"] >= other["created"]
    assert set(other) == {"id", "created", "last_used", "expires", "device", "current"}  # never a token
    assert_json_error(bob.client.delete(f"/v1/sessions/{other['id']}"), 404, "not_found")  # not bob's
    assert phone.get("/v1/account").status_code == 200
    assert alice.client.delete(f"/v1/sessions/{other['id']}").status_code == 204
    assert_json_error(phone.get("/v1/account"), 401, "unauthorized")
    assert_json_error(alice.client.delete("/v1/sessions/XYZ"), 400, "bad_request")
    for bad in ("", "x" * 65, "tab\there", 7):
        r = httpx.post(f"{alice.url}/v1/login", json={"user": alice.name, "auth_key": b64(alice.auth_key),
                                                      "device": bad})
        assert_json_error(r, 400, "bad_request")


def test_password_change_needs_the_current_password_and_ends_other_sessions(
        make_server: Callable[..., ServerProcess]) -> None:
    alice = new_user(make_server().url)  # (fails logins: not on the shared server)
    phone = second_session(alice)
    new_key = secrets.token_bytes(32)
    body = {"auth_key": b64(secrets.token_bytes(32)), "new_auth_key": b64(new_key), "wrapped_master": b64(b"W" * 73)}
    assert_json_error(alice.client.post("/v1/account/password", json=body), 403, "forbidden")  # a stolen session
    assert phone.get("/v1/account").status_code == 200
    body["auth_key"] = b64(alice.auth_key)
    assert alice.client.post("/v1/account/password", json=body).status_code == 204
    assert alice.client.get("/v1/account").status_code == 200  # the session that changed it goes on
    assert_json_error(phone.get("/v1/account"), 401, "unauthorized")
    old = httpx.post(f"{alice.url}/v1/login", json={"user": alice.name, "auth_key": b64(alice.auth_key)})
    assert_json_error(old, 401, "unauthorized")
    new = httpx.post(f"{alice.url}/v1/login", json={"user": alice.name, "auth_key": b64(new_key)})
    assert new.status_code == 200 and new.json()["wrapped_master"] == b64(b"W" * 73)


def test_a_password_change_ends_the_recovery_key(make_server: Callable[..., ServerProcess]) -> None:
    """A recovery key set by whoever knew the old password (a phished one) must not outlive it."""
    alice = new_user(make_server().url)
    recovery_auth = secrets.token_bytes(32)
    body = {"auth_key": b64(alice.auth_key), "recovery_auth": b64(recovery_auth), "recovery_wrap": b64(b"R" * 73)}
    assert alice.client.put("/v1/account/recovery", json=body).status_code == 204
    assert alice.client.get("/v1/account").json()["recovery_key"] is True
    change = {"auth_key": b64(alice.auth_key), "new_auth_key": b64(secrets.token_bytes(32)),
              "wrapped_master": b64(b"W" * 73)}
    assert alice.client.post("/v1/account/password", json=change).status_code == 204
    assert alice.client.get("/v1/account").json()["recovery_key"] is False
    ask = {"user": alice.name, "recovery_auth": b64(recovery_auth)}
    assert_json_error(httpx.post(f"{alice.url}/v1/recover", json=ask), 401, "unauthorized")


def test_recovery_wrap_is_set_with_the_password_and_given_back_for_its_key(
        make_server: Callable[..., ServerProcess]) -> None:
    alice = new_user(make_server().url)
    recovery_auth = secrets.token_bytes(32)
    body = {"auth_key": b64(secrets.token_bytes(32)), "recovery_auth": b64(recovery_auth),
            "recovery_wrap": b64(b"R" * 73)}
    assert_json_error(alice.client.put("/v1/account/recovery", json=body), 403, "forbidden")
    ask = {"user": alice.name, "recovery_auth": b64(recovery_auth)}
    assert_json_error(httpx.post(f"{alice.url}/v1/recover", json=ask), 401, "unauthorized")  # none set
    body["auth_key"] = b64(alice.auth_key)
    assert alice.client.put("/v1/account/recovery", json=body).status_code == 204
    r = httpx.post(f"{alice.url}/v1/recover", json=ask)
    assert r.status_code == 200 and r.json() == {"user_id": alice.user_id, "recovery_wrap": b64(b"R" * 73)}
    wrong = {"user": alice.name, "recovery_auth": b64(secrets.token_bytes(32))}
    assert_json_error(httpx.post(f"{alice.url}/v1/recover", json=wrong), 401, "unauthorized")
    new_key = secrets.token_bytes(32)
    reset = ask | {"new_auth_key": b64(new_key), "wrapped_master": b64(b"N" * 73)}
    assert httpx.post(f"{alice.url}/v1/recover", json=reset).status_code == 204
    assert_json_error(alice.client.get("/v1/account"), 401, "unauthorized")  # every session ended
    r = httpx.post(f"{alice.url}/v1/login", json={"user": alice.name, "auth_key": b64(new_key)})
    assert r.status_code == 200 and r.json()["wrapped_master"] == b64(b"N" * 73)
    assert_json_error(httpx.post(f"{alice.url}/v1/recover", json=ask), 401, "unauthorized")  # used up
    nobody = {"user": "u" + secrets.token_hex(6), "recovery_auth": b64(recovery_auth)}
    assert_json_error(httpx.post(f"{alice.url}/v1/recover", json=nobody), 401, "unauthorized")


def test_trash_lists_what_was_trashed_and_when(alice: User, bob: User) -> None:
    d = alice.mkdir()
    f = alice.mkfile(d["node_id"])
    g = alice.mkfile()
    assert alice.client.get("/v1/trash").json() == {"trash": []}
    before = time.time()
    assert alice.client.delete(f"/v1/nodes/{f['node_id']}").status_code == 200
    assert alice.client.delete(f"/v1/nodes/{d['node_id']}").status_code == 200
    trash = alice.client.get("/v1/trash").json()["trash"]
    assert [t["node_id"] for t in trash] == [d["node_id"], f["node_id"]]  # newest first; not g
    assert all(before <= t["trashed_at"] <= time.time() for t in trash)
    assert bob.client.get("/v1/trash").json() == {"trash": []}
    assert alice.client.post(f"/v1/nodes/{d['node_id']}/restore", json={}).status_code == 200
    assert [t["node_id"] for t in alice.client.get("/v1/trash").json()["trash"]] == [f["node_id"]]
    assert g["trashed"] is False


def test_recover_counts_as_a_login_attempt(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server()
    user = new_user(server.url)
    wrong = {"user": user.name, "recovery_auth": b64(secrets.token_bytes(32))}
    codes = [httpx.post(f"{server.url}/v1/recover", json=wrong).status_code for _ in range(12)]
    assert codes[0] == 401 and codes[-1] == 429, codes
