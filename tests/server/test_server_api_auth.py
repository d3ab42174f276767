"""API tests (real server process): signup, prelogin, login, tokens, rate limiting."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from support.server import ServerProcess
from support.server_api import (
    DEFAULT_KDF,
    User,
    assert_json_error,
    b64,
    new_user,
    signup_body,
    unb64,
)


def test_health_needs_no_token(server_url: str) -> None:
    r = httpx.get(server_url + "/v1/health")
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert r.headers["cache-control"] == "no-store"


def test_signup_login_account(server_url: str) -> None:
    user = new_user(server_url)
    login = user.login
    assert set(login) == {"token", "expires", "user_id", "root_node_id", "wrapped_master", "identity"}
    assert len(login["token"]) == 43
    assert login["user_id"] == user.user_id and login["root_node_id"] == user.root
    assert login["wrapped_master"] == user.signup["wrapped_master"]
    assert login["identity"] == user.signup["identity"]
    assert abs(login["expires"] - (time.time() + 86400)) < 60
    acct = user.account()
    assert acct == {
        "user": user.name,
        "user_id": user.user_id,
        "root_node_id": user.root,
        "quota": 1 << 20,
        "used": len(unb64(user.signup["root"]["meta"])),  # the root's meta is the first thing stored
        "seq": 1,
        "recovery_key": False,
    }
    root = user.node(user.root).json()["node"]
    assert root["kind"] == "dir" and root["parent_id"] is None and root["meta"] == user.signup["root"]["meta"]


def test_signup_conflicts(server_url: str, alice: User) -> None:
    taken_name = signup_body(alice.name)
    assert_json_error(httpx.post(server_url + "/v1/signup", json=taken_name), 409, "exists")
    taken_id = signup_body("u" + secrets.token_hex(6))
    taken_id["user_id"] = alice.user_id
    assert_json_error(httpx.post(server_url + "/v1/signup", json=taken_id), 409, "exists")
    taken_root = signup_body("u" + secrets.token_hex(6))
    taken_root["root"]["node_id"] = alice.root
    assert_json_error(httpx.post(server_url + "/v1/signup", json=taken_root), 409, "exists")
    # None of the refused signups left an account behind.
    for body in (taken_id, taken_root):
        pre = httpx.post(server_url + "/v1/prelogin", json={"user": body["user"]}).json()
        assert pre["salt"] != body["salt"]


def test_signup_validation(server_url: str) -> None:
    def bad(mutate: Callable[[dict], None]) -> None:
        body = signup_body("u" + secrets.token_hex(6))
        mutate(body)
        assert_json_error(httpx.post(server_url + "/v1/signup", json=body), 400, "bad_request")

    bad(lambda b: b.update(user="Alice"))  # upper case
    bad(lambda b: b.update(user="ab"))  # too short
    bad(lambda b: b.update(user="a" * 65))
    bad(lambda b: b.update(user_id="XYZ"))
    bad(lambda b: b.update(salt=b64(b"x" * 15)))
    bad(lambda b: b.update(auth_key=b64(b"x" * 31)))
    bad(lambda b: b.update(auth_key="not base64!"))
    bad(lambda b: b.update(wrapped_master=b64(b"x" * 4097)))
    bad(lambda b: b["identity"].update(box_sig=b64(b"x" * 63)))
    bad(lambda b: b["identity"].pop("sign_pub"))
    bad(lambda b: b["root"].update(meta=b64(b"x" * (64 * 1024 + 1))))
    bad(lambda b: b.update(kdf={"alg": "argon2id13", "opslimit": "3", "memlimit": 1}))
    bad(lambda b: b.update(kdf={"alg": "argon2id13", "opslimit": True, "memlimit": 1}))
    bad(lambda b: b.pop("root"))


def test_prelogin_real_and_fake(server_url: str, alice: User) -> None:
    real = httpx.post(server_url + "/v1/prelogin", json={"user": alice.name})
    assert real.status_code == 200
    assert real.json() == {"salt": alice.signup["salt"], "kdf": dict(sorted(DEFAULT_KDF.items()))}
    ghost = "ghost" + secrets.token_hex(4)
    fake1 = httpx.post(server_url + "/v1/prelogin", json={"user": ghost})
    fake2 = httpx.post(server_url + "/v1/prelogin", json={"user": ghost})
    other = httpx.post(server_url + "/v1/prelogin", json={"user": ghost + "x"})
    assert fake1.status_code == 200 and fake1.json() == fake2.json()  # stable
    assert fake1.json()["salt"] != other.json()["salt"]  # per name
    assert len(unb64(fake1.json()["salt"])) == 16
    # Same shape, same bytes layout as a real answer.
    assert list(fake1.json()) == list(real.json())
    assert fake1.json()["kdf"] == real.json()["kdf"]
    assert len(fake1.content) == len(real.content)


def test_fake_salt_survives_restart(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server()
    first = httpx.post(server.url + "/v1/prelogin", json={"user": "nobody"}).json()
    server.stop()
    again = ServerProcess(server.data_dir, quota=1 << 20)
    try:
        assert httpx.post(again.url + "/v1/prelogin", json={"user": "nobody"}).json() == first
    finally:
        again.stop()
    secret = server.data_dir / "server.secret"
    assert secret.stat().st_size == 32 and secret.stat().st_mode & 0o777 == 0o600


def test_login_failures_look_alike(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server()
    user = new_user(server.url, login=False)
    wrong = httpx.post(server.url + "/v1/login", json={"user": user.name, "auth_key": b64(b"\0" * 32)})
    unknown = httpx.post(server.url + "/v1/login", json={"user": "nobody-here", "auth_key": b64(b"\0" * 32)})
    assert assert_json_error(wrong, 401, "unauthorized") == assert_json_error(unknown, 401, "unauthorized")


def test_token_required_everywhere(server_url: str, alice: User) -> None:
    nid = alice.mkdir()["node_id"]
    cid = "0" * 64
    calls = [
        ("GET", "/v1/account"),
        ("POST", "/v1/logout"),
        ("GET", f"/v1/users/{alice.name}/keys"),
        ("POST", "/v1/nodes"),
        ("GET", f"/v1/nodes/{nid}"),
        ("PATCH", f"/v1/nodes/{nid}"),
        ("DELETE", f"/v1/nodes/{nid}"),
        ("POST", f"/v1/nodes/{nid}/restore"),
        ("GET", f"/v1/nodes/{nid}/versions"),
        ("POST", f"/v1/nodes/{nid}/versions"),
        ("GET", f"/v1/nodes/{nid}/versions/1"),
        ("GET", f"/v1/nodes/{nid}/manifest"),
        ("POST", "/v1/chunks/missing"),
        ("PUT", f"/v1/chunks/{cid}"),
        ("GET", f"/v1/chunks/{cid}"),
        ("GET", "/v1/changes"),
    ]
    bad_headers = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "A" * 43},
        {"Authorization": "Basic " + alice.token},
        {"Authorization": "Bearer " + alice.token + "x"},
        {"Authorization": "Bearer ../../" + alice.token[6:]},
    ]
    with httpx.Client(base_url=server_url) as anon:
        for method, path in calls:
            for headers in bad_headers:
                r = anon.request(method, path, headers=headers)
                body = assert_json_error(r, 401, "unauthorized")
                assert r.headers["www-authenticate"] == "Bearer", body
    assert alice.node(nid).status_code == 200  # the real token still works


def test_logout_revokes_only_that_token(server_url: str) -> None:
    user = new_user(server_url)
    first = user.token
    user.do_login()
    second = user.token
    assert first != second
    r = httpx.post(server_url + "/v1/logout", headers={"Authorization": f"Bearer {first}"})
    assert r.status_code == 204 and r.content == b""
    assert_json_error(httpx.get(server_url + "/v1/account", headers={"Authorization": f"Bearer {first}"}), 401)
    assert httpx.get(server_url + "/v1/account", headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_token_expiry(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(1 << 20, "--token-ttl", "1")
    user = new_user(server.url)
    assert user.client.get("/v1/account").status_code == 200
    time.sleep(1.2)
    assert_json_error(user.client.get("/v1/account"), 401, "unauthorized")


def test_public_keys(server_url: str, alice: User, bob: User) -> None:
    r = bob.client.get(f"/v1/users/{alice.name}/keys")
    assert r.status_code == 200
    ident = alice.signup["identity"]
    assert r.json() == {
        "user": alice.name,
        "user_id": alice.user_id,
        "sign_pub": ident["sign_pub"],
        "box_pub": ident["box_pub"],
        "box_sig": ident["box_sig"],
    }
    assert_json_error(bob.client.get("/v1/users/nobody-at-all/keys"), 404, "not_found")
    assert_json_error(bob.client.get("/v1/users/NOT..VALID/keys"), 400, "bad_request")


def test_rate_limit_per_user(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(1 << 20, "--login-window", "2")
    user = new_user(server.url, login=False)
    wrong = {"user": user.name, "auth_key": b64(b"\1" * 32)}
    with httpx.Client(base_url=server.url) as c:
        for _ in range(5):
            assert_json_error(c.post("/v1/login", json=wrong), 401)
        limited = c.post("/v1/login", json=wrong)
        assert_json_error(limited, 429, "rate_limited")
        assert 1 <= int(limited.headers["retry-after"]) <= 2
        # Even the right key is refused while limited.
        right = {"user": user.name, "auth_key": b64(user.auth_key)}
        assert_json_error(c.post("/v1/login", json=right), 429)
        time.sleep(int(limited.headers["retry-after"]) + 0.2)
        assert c.post("/v1/login", json=right).status_code == 200


def test_rate_limit_per_address(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(1 << 20, "--login-window", "60")
    with httpx.Client(base_url=server.url) as c:
        for i in range(5):
            r = c.post("/v1/login", json={"user": f"spray{i}", "auth_key": b64(b"\1" * 32)})
            assert_json_error(r, 401)
        r = c.post("/v1/login", json={"user": "another-name", "auth_key": b64(b"\1" * 32)})
        assert_json_error(r, 429, "rate_limited")
        assert 50 <= int(r.headers["retry-after"]) <= 60


def test_parallel_guesses_cannot_exceed_limit(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(1 << 20, "--login-window", "60")
    user = new_user(server.url, login=False)
    wrong = {"user": user.name, "auth_key": b64(b"\2" * 32)}

    def attempt(_: int) -> int:
        return httpx.post(server.url + "/v1/login", json=wrong, timeout=30).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(attempt, range(12)))
    assert codes.count(401) == 5 and codes.count(429) == 7, codes


def test_successful_logins_are_not_counted(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server()
    user = new_user(server.url, login=False)
    tokens = set()
    for _ in range(8):  # more than the five failures that would lock the name out
        user.do_login()  # (asserts 200)
        tokens.add(user.token)
    assert len(tokens) == 8
    wrong = {"user": user.name, "auth_key": b64(b"\1" * 32)}
    # The successes left the failure count at zero: five failures are still answered 401, the sixth 429.
    with httpx.Client(base_url=server.url) as c:
        for _ in range(5):
            assert_json_error(c.post("/v1/login", json=wrong), 401)
        assert_json_error(c.post("/v1/login", json=wrong), 429, "rate_limited")


# -- signup limit per source address -------------------------------------------------------


def fresh_signup() -> dict:
    return signup_body("u" + secrets.token_hex(6))


def exists(url: str, body: dict) -> bool:
    """Whether the signup ``body`` created its account (prelogin answers its salt, not a fake one)."""
    return httpx.post(url + "/v1/prelogin", json={"user": body["user"]}).json()["salt"] == body["salt"]


def test_signup_limit_default_is_10_per_address_per_hour(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server()  # no --signup-limit: the default
    bodies = [fresh_signup() for _ in range(11)]
    with httpx.Client(base_url=server.url, timeout=30) as c:
        codes = [c.post("/v1/signup", json=body).status_code for body in bodies[:10]]
        assert codes == [201] * 10
        r = c.post("/v1/signup", json=bodies[10])
    body = assert_json_error(r, 429, "rate_limited")
    assert 3590 <= int(r.headers["retry-after"]) <= 3600 and body["retry_after"] == int(r.headers["retry-after"])
    assert body["message"] == "too many signups from this address, retry later"
    assert not exists(server.url, bodies[10])
    # Logging in is limited separately: the accounts made work.
    r = httpx.post(server.url + "/v1/login", json={"user": bodies[0]["user"], "auth_key": bodies[0]["auth_key"]})
    assert r.status_code == 200


def test_signup_limit_holds_exactly_under_parallel_signups(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(1 << 20, "--signup-limit", "5")
    bodies = [fresh_signup() for _ in range(24)]

    def attempt(body: dict) -> httpx.Response:
        return httpx.post(server.url + "/v1/signup", json=body, timeout=60)

    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(attempt, bodies))
    codes = [r.status_code for r in answers]
    assert codes.count(201) == 5 and codes.count(429) == 19, codes
    for r in answers:
        if r.status_code == 429:
            assert_json_error(r, 429, "rate_limited")
            assert 3590 <= int(r.headers["retry-after"]) <= 3600
    created = [exists(server.url, body) for body in bodies]
    assert created == [code == 201 for code in codes]  # exactly the five answered 201 exist


def test_signup_limit_counts_taken_names_but_not_malformed_bodies(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(1 << 20, "--signup-limit", "3")
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for _ in range(5):
            bad = fresh_signup()
            bad["salt"] = b64(b"short")
            assert_json_error(c.post("/v1/signup", json=bad), 400, "bad_request")
        first = fresh_signup()
        assert c.post("/v1/signup", json=first).status_code == 201
        for _ in range(2):  # a taken name counts: signup is no free oracle of which names exist
            again = fresh_signup()
            again["user"] = first["user"]
            assert_json_error(c.post("/v1/signup", json=again), 409, "exists")
        assert_json_error(c.post("/v1/signup", json=fresh_signup()), 429, "rate_limited")


def test_signup_limit_zero_turns_it_off(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(1 << 20, "--signup-limit", "0")
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert [c.post("/v1/signup", json=fresh_signup()).status_code for _ in range(15)] == [201] * 15
