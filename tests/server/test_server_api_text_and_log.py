"""API tests (real server process): JSON strings must be Unicode text; refusals are logged.

The first group pins the 500s the fuzzer (tests/fuzz) found: a lone surrogate
escape (``"\\ud800"``) is valid JSON syntax but not text; it used to be stored
(a KDF's ``alg``) and then break every answer that carried it (prelogin: 500),
or be echoed at once (a duplicate key: 500).

The second group: every refused request leaves one INFO line, ``refused
METHOD /route/{template} STATUS code``, and nothing else (no path, no id, no body).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable

import httpx
import pytest
from support.server import ServerProcess
from support.server_api import User, assert_json_error, b64, hex32, new_user, signup_body

JSON = {"Content-Type": "application/json"}


def post_raw(client: httpx.Client, path: str, raw: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return client.post(path, content=raw, headers={**JSON, **(headers or {})})


@pytest.mark.parametrize(
    "raw",
    [
        b'{"\\ud800": 1, "\\ud800": 2}',
        b'{"a": 1, "a": 2}',
        b'{"user": "x", "user": "\\udfff"}',
    ],
)
def test_duplicate_keys_are_400_and_never_echoed(alice: User, raw: bytes) -> None:
    body = assert_json_error(post_raw(alice.client, "/v1/nodes", raw), 400, "bad_request")
    assert body["message"] == "duplicate key in JSON object"


@pytest.mark.parametrize("where", ["alg", "key", "value"])
def test_signup_with_a_lone_surrogate_in_kdf_is_refused(server_url: str, where: str) -> None:
    body = signup_body("s" + hex32()[:12])
    if where == "alg":
        body["kdf"]["alg"] = "\ud800"
    elif where == "key":
        body["kdf"]["x\udc00"] = 1
    else:
        body["kdf"]["note"] = "a\udbffb"
    with httpx.Client(base_url=server_url) as c:
        r = post_raw(c, "/v1/signup", json.dumps(body).encode())
        assert_json_error(r, 400, "bad_request")
        assert "Unicode" in r.json()["message"]
        # The name was not taken: prelogin answers the fake salt, and the same signup without the surrogate works.
        assert c.post("/v1/prelogin", json={"user": body["user"]}).status_code == 200
        body["kdf"] = {"alg": "argon2id13", "opslimit": 3, "memlimit": 268435456, "note": "é ü 😀"}
        assert c.post("/v1/signup", json=body).status_code == 201
        r = c.post("/v1/prelogin", json={"user": body["user"]})
        assert r.status_code == 200 and r.json()["kdf"]["note"] == "é ü 😀"


def test_link_with_a_lone_surrogate_in_kdf_is_refused(alice: User) -> None:
    f = alice.mkfile()
    kdf = {"alg": "argon2id13", "opslimit": 3, "memlimit": 268435456, "s": "\ud83d"}
    body = {"node_id": f["node_id"], "blob": b64(b"sealed"), "salt": b64(b"s" * 16), "kdf": kdf, "expires": None}
    assert_json_error(post_raw(alice.client, "/v1/links", json.dumps(body).encode()), 400, "bad_request")
    assert alice.client.get("/v1/links").json() == {"links": []}


def test_a_surrogate_pair_is_text(alice: User) -> None:
    raw = b'{"link": "AAAAAAAAAAAAAAAAAAAAAA", "reason": "\\ud83d\\ude00 \\u00e9"}'  # an escaped emoji is fine
    assert post_raw(alice.client, "/v1/abuse", raw).status_code == 202
    raw = b'{"link": "AAAAAAAAAAAAAAAAAAAAAA", "reason": "\\ude00\\ud83d"}'  # the wrong way round is not
    assert_json_error(post_raw(alice.client, "/v1/abuse", raw), 400, "bad_request")


def test_a_database_that_already_holds_a_surrogate_still_answers(
    make_server: Callable[..., ServerProcess],
) -> None:
    """Data stored before the input rule (kdf JSON with a lone-surrogate escape) is answered, not a 500."""
    server = make_server()
    user = new_user(server.url)
    user.client.close()
    conn = sqlite3.connect(server.data_dir / "meta.sqlite3", timeout=30)
    with conn:
        conn.execute(
            "UPDATE users SET kdf = ? WHERE name = ?",
            ('{"alg": "\\ud800", "memlimit": 268435456, "opslimit": 3}', user.name),
        )
    conn.close()
    r = httpx.post(server.url + "/v1/prelogin", json={"user": user.name})
    assert r.status_code == 200, r.text
    assert b'"alg": "\\ud800"' in r.content  # ASCII-only JSON: the surrogate travels as its escape


# -- the refusal log ----------------------------------------------------------------------------

LINE = re.compile(r" INFO megadrive\.server\.access: refused (\S+) (\S+) (\d{3}) (\S+)$")


def access_lines(server: ServerProcess) -> list[tuple[str, str, int, str]]:
    found = []
    for line in server.stderr().splitlines():
        match = LINE.search(line)
        if match is not None:
            found.append((match[1], match[2], int(match[3]), match[4]))
    return found


def test_every_refusal_is_logged_at_info_without_ids(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(None, "--log-level", "INFO", "--signup-limit", "0")
    alice, bob = new_user(server.url), new_user(server.url)
    secret_meta = b"SECRET-META-OF-BOB"
    bobs = bob.client.post("/v1/nodes", json={"node_id": hex32(), "parent_id": bob.root, "kind": "file",
                                              "meta": b64(secret_meta)}).json()["node"]  # fmt: skip
    before = len(access_lines(server))
    c = alice.client
    assert c.get("/v1/account").status_code == 200  # accepted: not logged
    assert_json_error(c.get(f"/v1/nodes/{bobs['node_id']}"), 404, "not_found")
    assert_json_error(c.patch(f"/v1/nodes/{bobs['node_id']}", json={"meta": b64(b"x")}), 404, "not_found")
    assert_json_error(post_raw(c, "/v1/nodes", b'{"secret-body": '), 400, "bad_request")
    assert_json_error(c.get("/v1/chunks/" + "ab" * 32, headers={"Authorization": "Bearer " + "A" * 43}), 401)
    assert_json_error(c.get(f"/v1/no/such/route/{bobs['node_id']}"), 404, "not_found")
    assert_json_error(c.request("PATCH", "/v1/health"), 405, "method_not_allowed")
    f = alice.mkfile()
    r = c.patch(f"/v1/nodes/{f['node_id']}", json={"meta": b64(b"m"), "base_seq": f["seq"] + 5})
    assert_json_error(r, 412, "stale_meta")
    assert access_lines(server)[before:] == [
        ("GET", "/v1/nodes/{node_id}", 404, "not_found"),
        ("PATCH", "/v1/nodes/{node_id}", 404, "not_found"),
        ("POST", "/v1/nodes", 400, "bad_request"),
        ("GET", "/v1/chunks/{chunk_id}", 401, "unauthorized"),
        ("GET", "-", 404, "not_found"),
        ("PATCH", "/v1/health", 405, "method_not_allowed"),
        ("PATCH", "/v1/nodes/{node_id}", 412, "stale_meta"),
    ]
    log = server.stderr()
    for private in (bobs["node_id"], f["node_id"], "secret-body", "ab" * 32, alice.token, "A" * 43, b64(secret_meta)):
        assert private not in log
    alice.client.close()
    bob.client.close()
