"""Small HTTP helpers for the server API tests (no client code involved)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

DEFAULT_KDF = {"alg": "argon2id13", "opslimit": 3, "memlimit": 268435456}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def hex32() -> str:
    return secrets.token_hex(16)


def chunk(data: bytes) -> tuple[str, bytes]:
    return hashlib.sha256(data).hexdigest(), data


def signup_body(name: str, auth_key: bytes | None = None) -> dict[str, Any]:
    return {
        "user": name,
        "user_id": hex32(),
        "salt": b64(secrets.token_bytes(16)),
        "kdf": dict(DEFAULT_KDF),
        "auth_key": b64(auth_key or secrets.token_bytes(32)),
        "wrapped_master": b64(secrets.token_bytes(72)),
        "identity": {
            "sign_pub": b64(secrets.token_bytes(32)),
            "box_pub": b64(secrets.token_bytes(32)),
            "box_sig": b64(secrets.token_bytes(64)),
            "wrapped_private": b64(secrets.token_bytes(120)),
        },
        "root": {"node_id": hex32(), "meta": b64(secrets.token_bytes(40))},
    }


def assert_json_error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is a JSON error of the given status (and code), without a trace."""
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    assert "Traceback" not in resp.text
    body = resp.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    if code is not None:
        assert body["error"] == code, body
    return body


@dataclass
class User:
    """A signed-up account and an authenticated httpx client for it."""

    url: str
    name: str
    auth_key: bytes
    signup: dict[str, Any]
    token: str = ""
    login: dict[str, Any] = field(default_factory=dict)
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30)

    @property
    def user_id(self) -> str:
        return self.signup["user_id"]

    @property
    def root(self) -> str:
        return self.signup["root"]["node_id"]

    def do_login(self) -> None:
        r = self.client.post("/v1/login", json={"user": self.name, "auth_key": b64(self.auth_key)})
        assert r.status_code == 200, r.text
        self.login = r.json()
        self.token = self.login["token"]
        self.client.headers["Authorization"] = f"Bearer {self.token}"

    # -- API shortcuts --------------------------------------------------------
    def mkdir(self, parent: str | None = None, node_id: str | None = None) -> dict[str, Any]:
        return self.mknode("dir", parent, node_id)

    def mkfile(self, parent: str | None = None, node_id: str | None = None) -> dict[str, Any]:
        return self.mknode("file", parent, node_id)

    def mknode(self, kind: str, parent: str | None = None, node_id: str | None = None) -> dict[str, Any]:
        body = {"node_id": node_id or hex32(), "parent_id": parent or self.root, "kind": kind, "meta": b64(b"m")}
        r = self.client.post("/v1/nodes", json=body)
        assert r.status_code == 201, r.text
        return r.json()["node"]

    def node(self, node_id: str) -> httpx.Response:
        return self.client.get(f"/v1/nodes/{node_id}")

    def put_chunk(self, data: bytes) -> tuple[str, httpx.Response]:
        cid = hashlib.sha256(data).hexdigest()
        r = self.client.put(f"/v1/chunks/{cid}", content=data, headers={"Content-Type": "application/octet-stream"})
        return cid, r

    def commit(
        self, node_id: str, base: int, chunks: list[str], manifest: bytes = b"manifest", meta: bytes | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"manifest": b64(manifest), "chunks": chunks}
        if meta is not None:
            body["meta"] = b64(meta)
        return self.client.post(f"/v1/nodes/{node_id}/versions", json=body, headers={"If-Match": f'"{base}"'})

    def changes(self, since: int = 0, limit: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"since": since}
        if limit is not None:
            params["limit"] = limit
        r = self.client.get("/v1/changes", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def account(self) -> dict[str, Any]:
        r = self.client.get("/v1/account")
        assert r.status_code == 200, r.text
        return r.json()


def new_user(url: str, name: str | None = None, login: bool = True) -> User:
    name = name or "u" + secrets.token_hex(6)
    auth_key = secrets.token_bytes(32)
    body = signup_body(name, auth_key)
    user = User(url=url, name=name, auth_key=auth_key, signup=body)
    r = user.client.post("/v1/signup", json=body)
    assert r.status_code == 201, r.text
    assert r.json() == {"user_id": body["user_id"], "root_node_id": body["root"]["node_id"]}
    if login:
        user.do_login()
    return user
