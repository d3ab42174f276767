"""API tests (real server process): size limits, content types, malformed input,
error shape. No response may ever be a 500 or carry a stack trace."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.server_api import User, assert_json_error, b64, hex32

MIB = 2**20
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def node_body(**over: Any) -> dict[str, Any]:
    return {"node_id": hex32(), "parent_id": None, "kind": "dir", "meta": b64(b"m"), **over}


def test_json_body_limit(alice: User) -> None:
    body = node_body(parent_id=alice.root, pad="x" * MIB)
    assert_json_error(alice.client.post("/v1/nodes", json=body), 413, "too_large")
    # Just under the limit is parsed (and unknown fields ignored).
    body = node_body(parent_id=alice.root, pad="x" * (MIB - 500))
    assert alice.client.post("/v1/nodes", json=body).status_code == 201


def test_chunked_json_body(alice: User) -> None:
    raw = json.dumps(node_body(parent_id=alice.root)).encode()

    def gen() -> Iterator[bytes]:
        yield raw[:10]
        yield raw[10:]

    r = alice.client.post("/v1/nodes", content=gen(), headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text

    def big() -> Iterator[bytes]:
        yield raw[:-1]
        for _ in range(20):
            yield b" " * 65536
        yield raw[-1:]

    r = alice.client.post("/v1/nodes", content=big(), headers={"Content-Type": "application/json"})
    assert_json_error(r, 413, "too_large")


def test_commit_body_limit(alice: User) -> None:
    f = alice.mkfile()
    body = {"manifest": b64(b"m"), "chunks": [], "pad": "x" * (16 * MIB)}
    r = alice.client.post(f"/v1/nodes/{f['node_id']}/versions", json=body, headers={"If-Match": '"0"'})
    assert_json_error(r, 413, "too_large")
    # The commit limit is not the 1 MiB one (a manifest that fits the 1 MiB quota, over 1 MiB as base64).
    body = {"manifest": b64(b"m" * (800 * 1024)), "chunks": []}
    assert len(json.dumps(body)) > MIB
    r = alice.client.post(f"/v1/nodes/{f['node_id']}/versions", json=body, headers={"If-Match": '"0"'})
    assert r.status_code == 201


def test_manifest_and_id_count_limits(alice: User) -> None:
    f = alice.mkfile()
    big_manifest = b64(b"\0" * (8 * MIB + 1))
    assert_json_error(alice.commit(f["node_id"], 0, [], manifest=b"\0" * (8 * MIB + 1)), 400, "bad_request")
    del big_manifest
    r = alice.client.post(
        f"/v1/nodes/{f['node_id']}/versions",
        json={"manifest": b64(b"m"), "chunks": ["ab" * 32] * 200_001},
        headers={"If-Match": '"0"'},
    )
    assert_json_error(r, 400, "bad_request")
    assert alice.node(f["node_id"]).json()["node"]["version"] == 0


def test_meta_limit_boundary(alice: User) -> None:
    ok = node_body(parent_id=alice.root, meta=b64(b"\0" * 65536))
    assert alice.client.post("/v1/nodes", json=ok).status_code == 201
    over = node_body(parent_id=alice.root, meta=b64(b"\0" * 65537))
    assert_json_error(alice.client.post("/v1/nodes", json=over), 400)


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1", "application/jsonx"],
)
def test_json_content_type(alice: User, content_type: str | None) -> None:
    raw = json.dumps(node_body(parent_id=alice.root)).encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    assert_json_error(alice.client.post("/v1/nodes", content=raw, headers=headers), 415, "unsupported_media_type")


def test_json_content_type_with_utf8_charset(alice: User) -> None:
    raw = json.dumps(node_body(parent_id=alice.root)).encode()
    headers = {"Content-Type": "Application/JSON; charset=UTF-8"}
    assert alice.client.post("/v1/nodes", content=raw, headers=headers).status_code == 201


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b'"string"',
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"node_id": "a", "node_id": "b"}',
        b"\xff\xfe{}",
        b'{"a": "\xc3"}',
        b"[" * 100_000,
        b'{"a": ' + b"9" * 5000 + b"}",
    ],
)
def test_malformed_json(alice: User, raw: bytes) -> None:
    r = alice.client.post("/v1/nodes", content=raw, headers={"Content-Type": "application/json"})
    assert_json_error(r, 400, "bad_request")


def test_unknown_route_and_method(alice: User) -> None:
    assert_json_error(alice.client.get("/v1/nope"), 404, "not_found")
    assert_json_error(alice.client.get("/nope"), 404, "not_found")  # ("/" is the web client)
    assert_json_error(alice.client.post("/"), 405, "method_not_allowed")
    assert_json_error(alice.client.get("/v1/nodes/" + hex32() + "/versions/1/extra"), 404)
    r = alice.client.request("PUT", "/v1/account")
    assert_json_error(r, 405, "method_not_allowed")
    assert "GET" in r.headers.get("allow", "")
    assert_json_error(alice.client.delete("/v1/health"), 405)


def test_bad_ids_in_paths(alice: User) -> None:
    for path in ("/v1/nodes/XYZ", "/v1/nodes/" + "a" * 31, "/v1/nodes/" + "A" * 32, "/v1/nodes/%00" + "a" * 31):
        assert_json_error(alice.client.get(path), 400, "bad_request")


def test_chunked_body_never_desyncs_connection(server_url: str) -> None:
    """An unread chunked body must not be parsed as the next request."""
    first = (
        b"POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(SMUGGLED):x}\r\n".encode() + SMUGGLED + b"\r\n0\r\n\r\n"
    )
    second = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    text = _raw_exchange(server_url, first + second)
    assert text.startswith("HTTP/1.1 401")
    assert text.count("HTTP/1.1 ") == 2, text
    assert "nope-smuggled" not in text and "404" not in text
    assert text.rstrip().endswith('{"ok": true}')


def _raw_exchange(server_url: str, payload: bytes) -> str:
    parts = urlsplit(server_url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(payload)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode("latin-1")


SMUGGLED = b"GET /v1/nope-smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def test_broken_chunked_framing_closes_connection(server_url: str) -> None:
    # "zz" is not a chunk size; what follows must not be served as a request.
    text = _raw_exchange(
        server_url,
        b"POST /v1/prelogin HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + SMUGGLED,
    )
    assert text.startswith("HTTP/1.1 400") and "connection: close" in text.lower()
    assert text.count("HTTP/1.1 ") == 1 and "nope-smuggled" not in text


def test_content_length_with_transfer_encoding_refused(server_url: str) -> None:
    body = b'{"user": "someone"}'
    text = _raw_exchange(
        server_url,
        b"POST /v1/prelogin HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
        + SMUGGLED,
    )
    assert text.startswith("HTTP/1.1 400") and "connection: close" in text.lower()
    assert text.count("HTTP/1.1 ") == 1 and "nope-smuggled" not in text
    assert '"error": "bad_request"' in text


def test_huge_unread_body_closes_connection(server_url: str) -> None:
    """A 1 GiB Content-Length on an endpoint that refuses early is not read."""
    parts = urlsplit(server_url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(
            b"PUT /v1/chunks/" + b"a" * 64 + b" HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: 1073741824\r\n\r\n" + b"x" * 1000
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    text = data.decode("latin-1")
    assert text.startswith("HTTP/1.1 401") and "connection: close" in text.lower()


def test_health_rejects_nothing_weird(server_url: str) -> None:
    # Query strings and bodies on GET are ignored, not crashed on.
    import httpx

    r = httpx.request("GET", server_url + "/v1/health?x=%ff%00", content=b"junk")
    assert r.status_code == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=80),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


def _field_values() -> st.SearchStrategy[Any]:
    return json_values | st.sampled_from(["", "AAAA", "=", "a" * 32, "f" * 64, "QUJD", "ab" * 32, "\x00"])


@FUZZ
@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "node_id": _field_values(),
            "parent_id": _field_values(),
            "kind": _field_values(),
            "meta": _field_values(),
            "replace": _field_values(),
            "manifest": _field_values(),
            "chunks": _field_values(),
            "ids": _field_values(),
            "user": _field_values(),
            "auth_key": _field_values(),
            "blob": _field_values(),
        },
    )
)
def test_fuzz_json_endpoints_never_500(alice: User, body: dict[str, Any]) -> None:
    f = alice.mkfile()
    for method, path, headers in (
        ("POST", "/v1/nodes", {}),
        ("PATCH", f"/v1/nodes/{f['node_id']}", {}),
        ("POST", f"/v1/nodes/{f['node_id']}/versions", {"If-Match": '"0"'}),
        ("POST", "/v1/chunks/missing", {}),
        ("POST", "/v1/prelogin", {}),
        ("POST", "/v1/signup", {}),
        ("PUT", "/v1/records/fuzz", {"If-Match": '"0"'}),
        ("DELETE", "/v1/records/fuzz", {"If-Match": '"1"'}),
    ):
        r = alice.client.request(method, path, json=body, headers=headers)
        assert r.status_code < 500, (method, path, r.status_code, r.text)
        assert "Traceback" not in r.text
        if r.status_code >= 400:
            assert_json_error(r, r.status_code)


@FUZZ
@given(segment=st.text(min_size=1, max_size=80).filter(lambda s: s not in (".", "..")))
def test_fuzz_path_segments_never_500(alice: User, segment: str) -> None:
    from urllib.parse import quote

    seg = quote(segment, safe="")
    for path in (
        f"/v1/nodes/{seg}",
        f"/v1/chunks/{seg}",
        f"/v1/users/{seg}/keys",
        f"/v1/nodes/{seg}/versions/{seg}",
        f"/v1/records/{seg}",
    ):
        r = alice.client.get(path)
        assert r.status_code in (400, 404), (path, r.status_code, r.text)
        assert_json_error(r, r.status_code)


@FUZZ
@given(
    query=st.dictionaries(st.sampled_from(["since", "limit", "purge", "recursive"]), st.text(max_size=25), max_size=4)
)
def test_fuzz_query_params_never_500(alice: User, query: dict[str, str]) -> None:
    r = alice.client.get("/v1/changes", params=query)
    assert r.status_code in (200, 400), r.text
    d = alice.mkdir()
    r = alice.client.delete(f"/v1/nodes/{d['node_id']}", params=query)
    assert r.status_code in (200, 400, 409), r.text
    assert "Traceback" not in r.text
