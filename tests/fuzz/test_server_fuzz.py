"""Fuzzing every route of the server API with hypothesis, against a real server process.

Inputs: malformed JSON and non-JSON bodies, wrong types, huge and negative
numbers, very long strings, NUL bytes and lone surrogates, non-canonical base64,
other accounts' node, chunk, share, link and user ids, forged, revoked and
expired tokens (the marker account's too), wrong content types, If-Match and
owner headers, query parameters, wrong methods and unknown paths. After an
answer that created something, what was created is read back (a value can be
accepted, and break only when it is sent back).

Invariants of every answer (support.fuzzworld.check_answer): never a 5xx, never a
traceback, never a byte of the marker account's secrets (raw or base64), and
every refusal a 4xx with a JSON body whose ``error`` is one of the server's
codes. At the end, the server logged exactly one INFO line per refusal, in
order (method, route template, status, code), naming no id, token or secret.

``max_examples`` per route: EXAMPLES (MEGADRIVE_LONG_TESTS=1 for the long run).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fuzzworld import ACCESS_LINE, World, access_lines, build_world, check_answer

from megadrive.server import routes_web

LONG = os.environ.get("MEGADRIVE_LONG_TESTS") == "1"
EXAMPLES = 600 if LONG else 20
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=60 if LONG else 15),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
MIB = 1 << 20


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("fuzz") / "data")
    try:
        yield w
    finally:
        w.http.close()
        for user in (w.fuzzer, w.marker, w.helper):
            user.client.close()
        w.server.stop()


def test_fuzz_world_is_what_it_claims(world: World) -> None:
    """Sanity of the setup: the marker's secrets are really on the server, readable by the marker alone,
    and the planted tokens are refused."""
    pins = world.marker.client.get("/v1/records/pins").json()
    assert base64.b64decode(pins["blob"]) in world.secrets
    valid = {"Authorization": f"Bearer {world.tokens['valid']}"}
    r = world.http.get("/v1/records/pins", headers=valid)
    check_answer(world, "GET /v1/records/{name}", "GET", r)
    assert r.status_code == 404
    for name in ("expired", "expired-marker", "revoked"):
        r = world.http.get("/v1/account", headers={"Authorization": f"Bearer {world.tokens[name]}"})
        check_answer(world, "GET /v1/account", "GET", r)
        assert r.status_code == 401
    r = world.http.get("/v1/account", headers=valid)
    assert r.status_code == 200 and r.json()["user_id"] == world.fuzzer.user_id


# -- values ---------------------------------------------------------------------------------------

HUGE_INTS = [2**63 - 1, 2**63, 2**64, -1, -(2**63), -(2**63) - 1, 10**30, -(10**30), 10**400]
LONG_TEXT = st.sampled_from([1_000, 70_000, 300_000]).flatmap(
    lambda n: st.sampled_from(["A" * n, "\x00" * n, "é" * n, "QUFB" * (n // 4), "/l/" + "a" * n])
)
ODD_TEXT = st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\ud800", "x\udfffy", "\ud83d", "😀", "../../etc/passwd", "%00", "#key", "\r\n",
     "null", "0", "-1", "1e400", "NaN", "true", "[]", "{}", "'; DROP TABLE users; --", "\u202e", "A" * 64]
)  # fmt: skip
BAD_B64 = st.sampled_from(["QQ", "QQ=", "QR==", " QQ==", "QQ==\n", "Q Q==", "-_-_", "====", "QUJD" + "=", "***"])


def weird() -> st.SearchStrategy[Any]:
    """Any JSON value of the wrong shape."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**6), max_value=10**6),
        st.sampled_from(HUGE_INTS),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
        ODD_TEXT,
        LONG_TEXT,
        BAD_B64,
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    )


def hexs(n: int) -> st.SearchStrategy[str]:
    return st.binary(min_size=n, max_size=n).map(bytes.hex)


def ids(world: World, kind: str) -> st.SearchStrategy[str]:
    """An id of ``kind``: the fuzzer's own, the marker's, or a random well-formed one."""
    random = {"chunk_id": hexs(32), "link_id": st.binary(min_size=16, max_size=16).map(
        lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")), "user": st.from_regex(
        r"[a-z0-9][a-z0-9._-]{2,12}", fullmatch=True), "name": st.from_regex(r"[a-z][a-z0-9-]{0,31}", fullmatch=True)}
    fallback = hexs(16)
    strategies = [st.sampled_from(world.own[kind]), st.sampled_from(world.other[kind])]
    if kind == "name":  # record names: only a fixed few valid ones, so the fuzzer never fills the record cap
        return st.one_of(*strategies, st.sampled_from(["A", "-x", "a" * 33, "a_b"]))
    return st.one_of(*strategies, random.get(kind, fallback))  # fmt: skip


def b64s(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.binary(min_size=min_size, max_size=max_size).map(lambda b: base64.b64encode(b).decode())


KDF_VALID = st.fixed_dictionaries(
    {"alg": st.just("argon2id13"), "opslimit": st.integers(1, 10), "memlimit": st.just(268435456)},
    optional={"extra": st.one_of(st.integers(0, 99), st.text(max_size=20))},
)
KDF = st.fixed_dictionaries(
    {
        "alg": st.one_of(st.just("argon2id13"), st.just("argon2id13"), weird()),
        "opslimit": st.one_of(st.just(3), st.just(3), weird()),
        "memlimit": st.just(268435456),
    },
    optional={"extra": st.one_of(st.integers(), st.text(max_size=70)), "x" * 40: st.integers()},
)


def valid(world: World, kind: str) -> st.SearchStrategy[Any]:
    """A well-formed value of a body field of ``kind`` (it may still name the wrong thing)."""
    table: dict[str, st.SearchStrategy[Any]] = {
        "node_id": ids(world, "node_id") | hexs(16),
        "dir": ids(world, "dir"),
        "user_id": ids(world, "user_id"),
        "user": ids(world, "user"),
        "kind": st.sampled_from(["dir", "file"]),
        "access": st.sampled_from(["read", "write"]),
        "meta": b64s(1, 80),
        "blob": b64s(1, 300),
        "manifest": b64s(1, 300),
        "salt": b64s(16, 16),
        "auth_key": b64s(32, 32),
        "wrapped": b64s(1, 200),
        "pub32": b64s(32, 32),
        "sig64": b64s(64, 64),
        "kdf": KDF_VALID,
        "seq": st.integers(min_value=0, max_value=50),
        "expires": st.one_of(st.none(), st.integers(min_value=0, max_value=2**40)),
        "chunks": st.lists(ids(world, "chunk_id"), max_size=6),
        "text": st.text(max_size=200),
        "link": st.one_of(ids(world, "link_id"), ids(world, "link_id").map(lambda i: f"https://x.test/l/{i}#key")),
        "optional_b64": st.one_of(st.none(), b64s(16, 16)),
        "optional_kdf": st.one_of(st.none(), KDF_VALID),
        "optional_node": st.one_of(st.none(), ids(world, "node_id")),
        "optional_user_id": st.one_of(st.none(), ids(world, "user_id")),
        "new_id": st.one_of(hexs(16), hexs(16), ids(world, "node_id")),
        "new_user": st.one_of(st.from_regex(r"[a-z][a-z0-9]{2,10}", fullmatch=True), ids(world, "user")),
        "own_chunks": st.lists(st.sampled_from(world.own["chunk_id"]), max_size=3),
        "file": ids(world, "file"),
    }
    if kind == "identity":
        return st.fixed_dictionaries(
            {"sign_pub": valid(world, "pub32"), "box_pub": valid(world, "pub32"), "box_sig": valid(world, "sig64"),
             "wrapped_private": valid(world, "wrapped")}
        )  # fmt: skip
    if kind == "root":
        return st.fixed_dictionaries({"node_id": valid(world, "new_id"), "meta": valid(world, "meta")})
    if kind == "creates":
        one = st.fixed_dictionaries({name: valid(world, k) for name, k in FIELDS["POST /v1/nodes"].items()})
        return st.lists(one, min_size=1, max_size=3)
    return table[kind]


def field(world: World, kind: str) -> st.SearchStrategy[Any]:
    """Mostly well-formed, sometimes anything at all (inside nested objects too)."""
    if kind == "identity":
        nested = st.fixed_dictionaries(
            {"sign_pub": field(world, "pub32"), "box_pub": field(world, "pub32"), "box_sig": field(world, "sig64")},
            optional={"wrapped_private": field(world, "wrapped")},
        )
        return st.one_of(valid(world, kind), nested, weird())
    if kind == "root":
        nested = st.fixed_dictionaries({"node_id": field(world, "node_id")}, optional={"meta": field(world, "meta")})
        return st.one_of(valid(world, kind), nested, weird())
    if kind == "creates":
        one = st.fixed_dictionaries({name: field(world, k) for name, k in FIELDS["POST /v1/nodes"].items()})
        return st.one_of(valid(world, kind), st.lists(st.one_of(one, weird()), max_size=4), weird())
    if kind == "kdf":
        return st.one_of(KDF_VALID, KDF, weird())
    return st.one_of(valid(world, kind), valid(world, kind), weird())


# Body fields of each JSON route: name -> kind.
FIELDS: dict[str, dict[str, str]] = {
    "POST /v1/signup": {"user": "new_user", "user_id": "new_id", "salt": "salt", "kdf": "kdf", "auth_key": "auth_key",
                        "wrapped_master": "wrapped", "identity": "identity", "root": "root"},
    "POST /v1/prelogin": {"user": "user"},
    "POST /v1/login": {"user": "user", "auth_key": "auth_key"},
    "POST /v1/logout": {},
    "POST /v1/nodes": {"node_id": "new_id", "parent_id": "dir", "kind": "kind", "meta": "meta"},
    "POST /v1/batch/nodes": {"nodes": "creates"},
    "PATCH /v1/nodes/{node_id}": {"meta": "meta", "parent_id": "optional_node", "replace": "optional_node",
                                  "base_seq": "seq"},
    "POST /v1/nodes/{node_id}/restore": {},
    "POST /v1/nodes/{node_id}/versions": {"manifest": "manifest", "chunks": "own_chunks", "meta": "meta",
                                          "meta_seq": "seq"},
    "POST /v1/chunks/missing": {"ids": "chunks", "owner": "optional_user_id"},
    "POST /v1/shares": {"node_id": "dir", "recipient": "user", "access": "access", "grant": "blob"},
    "POST /v1/links": {"node_id": "file", "blob": "blob", "salt": "optional_b64", "kdf": "optional_kdf",
                       "expires": "expires"},
    "POST /v1/abuse": {"link": "link", "reason": "text"},
    "PUT /v1/records/{name}": {"blob": "blob"},
}  # fmt: skip
# Fields a well-formed request may leave out.
OPTIONAL = {
    "PATCH /v1/nodes/{node_id}": {"parent_id", "replace", "base_seq"},
    "POST /v1/nodes/{node_id}/versions": {"meta", "meta_seq"},
    "POST /v1/chunks/missing": {"owner"},
    "POST /v1/links": {"salt", "kdf", "expires"},
}


ROUTES = [
    "POST /v1/signup", "POST /v1/prelogin", "POST /v1/login", "POST /v1/logout", "GET /v1/account",
    "GET /v1/users/{user}/keys", "GET /v1/health", "POST /v1/nodes", "POST /v1/batch/nodes", "GET /v1/nodes/{node_id}",
    "PATCH /v1/nodes/{node_id}", "POST /v1/nodes/{node_id}/restore", "GET /v1/nodes/{node_id}/versions",
    "POST /v1/nodes/{node_id}/versions", "GET /v1/nodes/{node_id}/versions/{number}",
    "GET /v1/nodes/{node_id}/manifest", "GET /v1/changes", "POST /v1/chunks/missing", "PUT /v1/chunks/{chunk_id}",
    "GET /v1/chunks/{chunk_id}", "POST /v1/shares", "GET /v1/shares", "POST /v1/links", "GET /v1/links",
    "GET /v1/l/{link_id}", "GET /v1/l/{link_id}/chunks/{chunk_id}", "GET /v1/l/{link_id}/nodes",
    "GET /v1/l/{link_id}/nodes/{node_id}/manifest", "POST /v1/abuse", "GET /v1/records/{name}",
    "PUT /v1/records/{name}",
    # Destructive ones last: they may delete the fuzzer's own things.
    "DELETE /v1/records/{name}", "DELETE /v1/links/{link_id}", "DELETE /v1/shares/{share_id}",
    "DELETE /v1/nodes/{node_id}",
]  # fmt: skip
TEMPLATES = {route.split(" ", 1)[1] for route in ROUTES}
PARAM_KIND = {"node_id": "node_id", "chunk_id": "chunk_id", "share_id": "share_id", "link_id": "link_id",
              "user": "user", "name": "name", "number": "number"}  # fmt: skip
QUERY: dict[str, list[str]] = {"GET /v1/changes": ["since", "limit", "owner"],
                               "GET /v1/l/{link_id}/nodes": ["since", "limit"],
                               "GET /v1/l/{link_id}/chunks/{chunk_id}": ["node"],
                               "DELETE /v1/nodes/{node_id}": ["purge", "recursive"]}  # fmt: skip
IF_MATCH_ROUTES = {"POST /v1/nodes/{node_id}/versions", "PUT /v1/records/{name}", "DELETE /v1/records/{name}"}


def path_value(world: World, kind: str) -> st.SearchStrategy[str]:
    junk = st.one_of(
        st.text(max_size=40),
        ODD_TEXT.filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)),
        st.sampled_from(["-1", "0", "99999999999999999999", "1.5", "9223372036854775808", "A" * 5000]),
    )
    if kind == "number":
        return st.one_of(st.integers(min_value=0, max_value=5).map(str), junk)
    return st.one_of(ids(world, kind), ids(world, kind), junk)


def token_header(world: World, route: str = "") -> st.SearchStrategy[str | None]:
    t = world.tokens
    forged = st.binary(min_size=32, max_size=32).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="))
    # Logout with the valid token would end the fuzzer's session: there, a throwaway one stands in.
    valid = t["throwaway"] if route == "POST /v1/logout" else t["valid"]
    return st.one_of(
        st.just(f"Bearer {valid}"),
        st.just(f"Bearer {valid}"),
        st.just(f"bearer {valid}"),
        st.sampled_from([f"Bearer {t['revoked']}", f"Bearer {t['expired']}", f"Bearer {t['expired-marker']}"]),
        forged.map(lambda tok: f"Bearer {tok}"),
        st.sampled_from([None, "", "Bearer", "Bearer x", f"Basic {valid}", f"Bearer {valid}x", f"Bearer {valid[:-1]}",
                         "Bearer " + "A" * 5000, f"Bearer  {valid}"]),
    )  # fmt: skip


def header_text() -> st.SearchStrategy[str]:
    """Header values h11 sends: printable ASCII, no whitespace at either end."""
    return st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.strip)


def json_body(world: World, route: str) -> st.SearchStrategy[Any]:
    fields = FIELDS[route]
    complete = st.fixed_dictionaries({name: field(world, kind) for name, kind in fields.items()})
    partial = st.fixed_dictionaries({}, optional={name: field(world, kind) for name, kind in fields.items()})
    extra = st.dictionaries(st.text(max_size=10), weird(), max_size=2)
    return st.one_of(complete, complete, partial, st.tuples(complete, extra).map(lambda p: {**p[1], **p[0]}))


RAW_BODIES = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"", b"{", b"[]", b'"x"', b"1", b"null", b'{"a": NaN}', b'{"a": Infinity}', b'{"a":1,"a":2}',
                     b"[" * 100_000 + b"]" * 100_000, b'{"a": "\\ud800"}', b'{"\\udc00": 1, "\\udc00": 2}',
                     b"\xff\xfe{}", b'{"a": 1e999999}', b'{"a": 1' + b"0" * 5000 + b"}", b"{}" * 3,
                     b'{"user": "\xe9"}', b"\x00" * 100]),
    st.sampled_from([MIB + 1, 16 * MIB + 1]).map(lambda n: b'{"pad": "' + b"x" * n + b'"}'),
)  # fmt: skip


@st.composite
def request(draw: st.DrawFn, world: World, route: str) -> dict[str, Any]:
    """A request to ``route``. A third are well-formed in every part (valid token, JSON type,
    every field well-formed, ids of the fuzzer's own things or the marker's) so the deeper
    checks run; the rest may be wrong anywhere."""
    method, template = route.split(" ", 1)
    tame = draw(st.booleans())
    path = template
    for name in re.findall(r"{(\w+)}", template):
        kind = PARAM_KIND[name]
        value = draw(ids(world, kind) if tame and kind != "number" else path_value(world, kind))
        path = path.replace("{" + name + "}", quote(value, safe=""))
    headers: dict[str, Any] = {}
    auth: str | None = f"Bearer {world.tokens['valid']}"
    if not tame or route == "POST /v1/logout":
        auth = draw(token_header(world, route))
    if auth is not None:
        headers["Authorization"] = auth
    params: dict[str, str] = {}
    for name in QUERY.get(route, []):
        plain = st.sampled_from(["0", "1", "5", "10000", "10001", "true", "yes", "no"])
        kind = {"owner": "user_id", "node": "node_id"}.get(name, "number")
        param = draw(st.one_of(st.none(), plain, path_value(world, kind)))
        if param is not None:
            params[name] = param
    if draw(st.integers(0, 9)) == 0:
        params[draw(st.text(min_size=1, max_size=8))] = draw(st.text(max_size=20))
    if route in IF_MATCH_ROUTES:
        tags = ['"0"', '"1"', "1", '"2"', '"-1"', "*", 'W/"1"', '"99999999999999999999"', '""']
        any_tag = st.one_of(st.none(), st.sampled_from(tags), header_text())
        if_match = draw(st.sampled_from(tags[:4]) if tame else any_tag)
        if if_match is not None:
            headers["If-Match"] = if_match
    content: bytes | None = None
    if route in FIELDS and tame:
        optional = OPTIONAL.get(route, set())
        fields = FIELDS[route].items()
        body = st.fixed_dictionaries(
            {name: valid(world, kind) for name, kind in fields if name not in optional},
            optional={name: valid(world, kind) for name, kind in fields if name in optional},
        )
        content = json.dumps(draw(body)).encode()
        headers["Content-Type"] = "application/json"
    elif route in FIELDS:
        choice = draw(st.integers(0, 5))
        if choice <= 3:
            content = json.dumps(draw(json_body(world, route))).encode()
        elif choice == 4:
            content = draw(RAW_BODIES)
        odd_types = [None, "application/json; charset=utf-8", "application/json; charset=latin-1", "text/plain",
                     "application/octet-stream", "application/JSON", "multipart/form-data; boundary=x"]  # fmt: skip
        json_type = st.just("application/json")
        ctype = draw(st.one_of(json_type, json_type, st.sampled_from(odd_types), header_text()))
        if ctype is not None:
            headers["Content-Type"] = ctype
    elif route == "PUT /v1/chunks/{chunk_id}":
        content = draw(st.one_of(st.binary(max_size=2000), st.just(b""), st.just(b"c" * (4 * MIB + 64 * 1024 + 1))))
        if tame or draw(st.booleans()):  # the id of the body: the upload itself is well-formed
            path = "/v1/chunks/" + hashlib.sha256(content).hexdigest()
        octets = st.just("application/octet-stream")
        headers["Content-Type"] = draw(
            octets if tame else st.one_of(octets, st.sampled_from([None, "application/json", "text/plain"]))
        )
        owner = draw(st.one_of(st.none(), ids(world, "user_id"), st.none() if tame else header_text()))
        if owner is not None:
            headers["X-MegaDrive-Owner"] = owner
    elif draw(st.integers(0, 4)) == 0:  # a body where none is expected
        content = draw(RAW_BODIES)
    headers = {k: v for k, v in headers.items() if v is not None}
    chunked = content is not None and not tame and draw(st.integers(0, 7)) == 0
    return {"method": method, "path": path, "params": params, "headers": headers, "content": content,
            "chunked": chunked}  # fmt: skip


def send(world: World, route: str, req: dict[str, Any]) -> httpx.Response:
    content: Any = req["content"]
    if req["chunked"]:
        raw = content

        def pieces() -> Iterator[bytes]:
            yield raw[: len(raw) // 2]
            yield raw[len(raw) // 2 :]

        content = pieces()
    r = world.http.request(req["method"], req["path"], params=req["params"], headers=req["headers"], content=content)
    check_answer(world, route, req["method"], r)
    return r


def follow_up(world: World, route: str, req: dict[str, Any], r: httpx.Response) -> None:
    """Read back what an accepted request created or changed (as the fuzzer, and as nobody)."""
    if r.status_code == 412 and req["headers"].get("Authorization") == f"Bearer {world.tokens['valid']}":
        retry_cas(world, route, req, r)
    if r.status_code >= 300:
        return
    auth = {"Authorization": f"Bearer {world.tokens['valid']}"}

    def get(path: str, *, method: str = "GET", json_body: Any = None, **kw: Any) -> None:
        template = kw.pop("template")
        resp = world.http.request(method, path, headers=auth, json=json_body, **kw)
        check_answer(world, f"{method} {template} (read back)", method, resp)

    try:
        sent = json.loads(req["content"]) if req["content"] and route == "POST /v1/signup" else {}
    except (ValueError, RecursionError):
        sent = {}
    answer = r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else {}
    if route == "POST /v1/signup":
        get("/v1/prelogin", method="POST", json_body={"user": sent["user"]}, template="/v1/prelogin")
        get(f"/v1/users/{sent['user']}/keys", template="/v1/users/{user}/keys")
    elif route == "POST /v1/links":
        get(f"/v1/l/{answer['link']['link_id']}", template="/v1/l/{link_id}")
        get("/v1/links", template="/v1/links")
    elif route == "POST /v1/shares":
        get("/v1/shares", template="/v1/shares")
    elif route == "PUT /v1/records/{name}":
        get(f"/v1/records/{answer['name']}", template="/v1/records/{name}")
    elif route in ("POST /v1/nodes", "PATCH /v1/nodes/{node_id}", "POST /v1/nodes/{node_id}/versions"):
        node = answer["node"]
        get(f"/v1/nodes/{node['node_id']}", template="/v1/nodes/{node_id}")
        get("/v1/changes", params={"since": max(0, node["seq"] - 1)}, template="/v1/changes")
        if node["version"]:
            get(f"/v1/nodes/{node['node_id']}/manifest", template="/v1/nodes/{node_id}/manifest")
    elif route == "POST /v1/batch/nodes":
        for node in answer["nodes"]:
            get(f"/v1/nodes/{node['node_id']}", template="/v1/nodes/{node_id}")


def retry_cas(world: World, route: str, req: dict[str, Any], r: httpx.Response) -> None:
    """What a client does after a 412: take the current version (or seq) from the answer and retry."""
    answer = r.json()
    headers = dict(req["headers"])
    content = req["content"]
    if answer["error"] == "precondition_failed":
        headers["If-Match"] = f'"{answer["version"]}"'
    elif answer["error"] == "stale_meta":
        body = json.loads(content)
        body.update({k: answer["seq"] for k in ("base_seq", "meta_seq") if k in body})
        content = json.dumps(body).encode()
    retry = {**req, "headers": headers, "content": content, "chunked": False}
    method, template = route.split(" ", 1)
    r2 = send(world, f"{method} {template} (retried)", retry)
    if r2.status_code < 300:
        follow_up(world, route, retry, r2)


@pytest.mark.parametrize("route", ROUTES)
def test_route(world: World, route: str) -> None:
    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        req = data.draw(request(world, route))
        r = send(world, route, req)
        follow_up(world, route, req, r)

    run()


METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "TRACE"]


@FUZZ
@given(data=st.data())
def test_any_method_any_path(world: World, data: st.DataObject) -> None:
    """Wrong methods on real routes, near-miss and unknown paths."""
    route = data.draw(st.sampled_from(ROUTES))
    template = route.split(" ", 1)[1]
    path = data.draw(st.one_of(
        st.just(template).map(lambda t: re.sub(r"{\w+}", "0" * 32, t)),
        st.just(template).map(lambda t: re.sub(r"{\w+}", "0" * 32, t) + "/"),
        st.just(template).map(lambda t: re.sub(r"{\w+}", "0" * 32, t) + "/extra"),
        st.sampled_from(["/", "/v1", "/v1/", "/v2/nodes", "/v1/nodes//", "/v1/./nodes", "/V1/NODES", "/v1/%00",
                         "/v1/nodes/%2e%2e/%2e%2e/etc/passwd", "/v1/" + "a" * 5000]),
        st.text(max_size=30).map(lambda t: "/v1/" + quote(t, safe="")),
    ))  # fmt: skip
    method = data.draw(st.sampled_from(METHODS))
    headers = {}
    # Any method on the logout path may be a POST, which would end the session the rest of the run uses:
    # there, too, the throwaway token stands in for the valid one.
    auth = data.draw(token_header(world, "POST /v1/logout" if template == "/v1/logout" else ""))
    if auth is not None:
        headers["Authorization"] = auth
    r = world.http.request(method, path, headers=headers)
    check_answer(world, f"{method} (any path)", method, r)


def test_zz_every_refusal_was_logged_once_without_ids(world: World) -> None:
    """Runs last: the access log has one line per refusal, in order, and names nothing private."""
    lines = access_lines(world)
    assert [(m, s, c) for m, _, s, c in lines] == world.refused
    web = set(routes_web.FILES) | {"/l/{link_id}"}  # (a fuzzed path can land on the web client's pages)
    assert {t for _, t, _, _ in lines} <= TEMPLATES | web | {"-"}
    text = world.server.stderr().encode()[world.log_offset :].decode("utf-8", "replace")
    assert "Traceback" not in text and "unhandled error" not in text, text[-3000:]
    private = [*world.tokens.values(), *(i for pool in world.other.values() for i in pool if len(i) > 8),
               *(i for pool in world.own.values() for i in pool if len(i) > 8)]  # fmt: skip
    for line in text.splitlines():
        if "megadrive.server.access" in line:
            assert ACCESS_LINE.search(line) is not None, line
            assert not any(p in line for p in private), line
            assert not any(s.decode("latin-1") in line for s in world.secrets), line
    assert len(world.refused) > 100
    # The fuzzer's own session survived (else most of the run would have been 401s).
    r = world.http.get("/v1/account", headers={"Authorization": f"Bearer {world.tokens['valid']}"})
    assert r.status_code == 200, "the fuzzing session was revoked during the run"
