"""The world the server fuzzer plays in, and the invariants every answer must keep.

:func:`build_world` starts a real server (log level INFO, so refusals are logged)
and makes three accounts through the API:

* the **fuzzer**, whose valid token most requests carry, with a folder, a file
  with a version, a chunk, a record, a link and a write share to the helper;
* the **marker**, whose secret bytes (node metas, manifest, chunk, record,
  share grant, wrapped keys, auth key) must never appear in any answer to the
  fuzzer, raw or base64; its ids (nodes, chunk, share, link) are fed to the
  fuzzer as "other accounts' ids". Its one public link (to a file with public
  content) is public by design, so that content is not secret;
* the **helper**, recipient of the marker's and the fuzzer's shares.

Tokens: the fuzzer's valid one, one revoked by logout, expired ones of the
fuzzer and of the marker (planted in the real database: a test cannot wait a
day), forged well-formed ones and malformed headers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from megadrive.server.errors import _FALCON_CODES, ServerError
from support.server import NO_SIGNUP_LIMIT, ServerProcess
from support.server_api import User, b64, new_user

STATS: Counter[str] = Counter()  # requests sent, per "METHOD /route/template" (printed at the end of the run)
ACCEPTED: Counter[str] = Counter()  # of those, answered 2xx

# Every "error" code the server may answer (errors.py), and what Falcon's own errors map to.
KNOWN_CODES = {cls.code for cls in ServerError.__subclasses__()} | set(_FALCON_CODES.values()) | {"http_error"}
KNOWN_CODES |= {sub.code for cls in ServerError.__subclasses__() for sub in cls.__subclasses__()}

ACCESS_LINE = re.compile(r"INFO megadrive\.server\.access: refused ([A-Z?]+) (\S+) (\d{3}) ([a-z_]+|-)$")


@dataclass(repr=False)
class World:
    server: ServerProcess
    url: str
    http: httpx.Client  # the fuzzer's connection (no default headers: each request sets its own)
    fuzzer: User
    marker: User
    helper: User
    own: dict[str, list[str]]  # kind -> the fuzzer's own ids / names
    other: dict[str, list[str]]  # kind -> the marker's ids / names
    tokens: dict[str, str]  # "valid", "throwaway" (for logout), "revoked", "expired", "expired-marker"
    secrets: list[bytes]  # raw secret bytes and their base64 text
    log_offset: int  # bytes of server stderr before fuzzing started
    refused: list[tuple[str, int, str]] = field(default_factory=list)  # (method, status, code), in order

    def __repr__(self) -> str:
        return f"World({self.url})"


def _check(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    return r.json() if r.content else {}


def _put_chunk(user: User, data: bytes) -> str:
    cid, r = user.put_chunk(data)
    assert r.status_code in (200, 201), r.text
    return cid


def _plant_token(data_dir: Path, user_id: str, expires: float) -> str:
    """A token row written straight into the server's database (the server has no way to
    hand out an expired token)."""
    token = secrets.token_urlsafe(32)
    conn = sqlite3.connect(data_dir / "meta.sqlite3", timeout=30)
    try:
        with conn:
            conn.execute(
                "INSERT INTO tokens (token_hash, user_id, created, expires) VALUES (?, ?, ?, ?)",
                (hashlib.sha256(token.encode()).hexdigest(), user_id, expires - 100, expires),
            )
    finally:
        conn.close()
    return token


def build_world(data_dir: Path) -> World:
    server = ServerProcess(data_dir, extra_args=[*NO_SIGNUP_LIMIT, "--log-level", "INFO", "--gc-interval", "0"])
    url = server.url
    fuzzer, marker, helper = new_user(url), new_user(url), new_user(url)

    # -- the marker's secrets ------------------------------------------------------------
    def secret(tag: str) -> bytes:
        return b"MARKER-" + tag.encode() + b"-" + os.urandom(24)

    meta_dir, meta_file, manifest, chunk_data = secret("meta-dir"), secret("meta-file"), secret("manifest"), None
    chunk_data = secret("chunk") * 40
    record, grant = secret("record"), secret("grant")
    m = marker.client
    d = _check(m.post("/v1/nodes", json={"node_id": secrets.token_hex(16), "parent_id": marker.root, "kind": "dir",
                                         "meta": b64(meta_dir)}), 201)["node"]  # fmt: skip
    f = _check(m.post("/v1/nodes", json={"node_id": secrets.token_hex(16), "parent_id": d["node_id"], "kind": "file",
                                         "meta": b64(meta_file)}), 201)["node"]  # fmt: skip
    m_chunk = _put_chunk(marker, chunk_data)
    _check(marker.commit(f["node_id"], 0, [m_chunk], manifest), 201)
    _check(m.put("/v1/records/pins", json={"blob": b64(record)}, headers={"If-Match": '"0"'}), 200)
    m_share = _check(m.post("/v1/shares", json={"node_id": d["node_id"], "recipient": helper.name,
                                                 "access": "read", "grant": b64(grant)}), 201)["share"]  # fmt: skip
    # A public file (its link, manifest and chunk are public by design: not secret).
    pub = marker.mkfile()
    pub_chunk = _put_chunk(marker, b"public content " + os.urandom(16))
    _check(marker.commit(pub["node_id"], 0, [pub_chunk], b"public manifest"), 201)
    m_link = _check(m.post("/v1/links", json={"node_id": pub["node_id"], "blob": b64(b"public link blob"),
                                               "salt": None, "kdf": None, "expires": None}), 201)["link"]  # fmt: skip
    signup = marker.signup
    raw_secrets = [
        meta_dir, meta_file, manifest, chunk_data, record, grant,
        base64.b64decode(signup["wrapped_master"]), base64.b64decode(signup["identity"]["wrapped_private"]),
        base64.b64decode(signup["root"]["meta"]), marker.auth_key,
    ]  # fmt: skip

    # -- the fuzzer's own things ---------------------------------------------------------
    z = fuzzer.client
    fd = fuzzer.mkdir()
    ff = fuzzer.mkfile(fd["node_id"])
    z_chunk = _put_chunk(fuzzer, b"fuzzer content " + os.urandom(16))
    _check(fuzzer.commit(ff["node_id"], 0, [z_chunk], b"fuzzer manifest"), 201)
    _check(z.put("/v1/records/notes", json={"blob": b64(b"fuzzer record")}, headers={"If-Match": '"0"'}), 200)
    z_link = _check(z.post("/v1/links", json={"node_id": ff["node_id"], "blob": b64(b"fuzzer link"), "salt": None,
                                               "kdf": None, "expires": None}), 201)["link"]  # fmt: skip
    z_folder_link = _check(z.post("/v1/links", json={"node_id": fd["node_id"], "blob": b64(b"fuzzer folder link"),
                                                      "salt": None, "kdf": None, "expires": None}), 201)["link"]
    share_body = {"node_id": fd["node_id"], "recipient": helper.name, "access": "write", "grant": b64(b"grant")}
    z_share = _check(z.post("/v1/shares", json=share_body), 201)["share"]

    # -- tokens ----------------------------------------------------------------------------
    valid = fuzzer.token
    fuzzer.do_login()
    revoked = fuzzer.token
    _check(z.post("/v1/logout"), 204)
    fuzzer.do_login()
    throwaway = fuzzer.token  # what fuzzed logouts may revoke
    fuzzer.token = valid
    z.headers["Authorization"] = f"Bearer {valid}"
    now = time.time()
    tokens = {
        "valid": valid,
        "throwaway": throwaway,
        "revoked": revoked,
        "expired": _plant_token(server.data_dir, fuzzer.user_id, now - 1),
        "expired-marker": _plant_token(server.data_dir, marker.user_id, now - 1),
    }
    own = {
        "node_id": [fuzzer.root, fd["node_id"], ff["node_id"]],
        "dir": [fuzzer.root, fd["node_id"]],
        "file": [ff["node_id"]],
        "chunk_id": [z_chunk],
        "share_id": [z_share["share_id"]],
        "link_id": [z_link["link_id"], z_folder_link["link_id"]],
        "user_id": [fuzzer.user_id],
        "user": [fuzzer.name, helper.name],
        "name": ["notes", "pins", "contacts", "a", "x-1"],  # a fixed few: records stay far below their cap
    }
    other = {
        "node_id": [marker.root, d["node_id"], f["node_id"], pub["node_id"]],
        "dir": [marker.root, d["node_id"]],
        "file": [f["node_id"], pub["node_id"]],
        "chunk_id": [m_chunk, pub_chunk],
        "share_id": [m_share["share_id"]],
        "link_id": [m_link["link_id"]],
        "user_id": [marker.user_id, helper.user_id],
        "user": [marker.name],
        "name": ["pins"],
    }
    encoded = [base64.b64encode(s) for s in raw_secrets]
    http = httpx.Client(base_url=url, timeout=60)
    return World(server, url, http, fuzzer, marker, helper, own, other, tokens, raw_secrets + encoded,
                 len(server.stderr().encode()))  # fmt: skip


def check_answer(world: World, route: str, method: str, r: httpx.Response) -> None:
    """The invariants of every answer to the fuzzer."""
    STATS[route] += 1
    ACCEPTED[route] += r.status_code < 300
    body = r.content
    assert r.status_code < 500, (route, r.status_code, body[:300])
    assert b"Traceback" not in body and b'File "' not in body, (route, body[:300])
    for s in world.secrets:
        assert s not in body, (route, "the marker account's secret bytes reached the fuzzer")
    if r.status_code >= 400:
        assert r.headers.get("content-type", "").startswith("application/json"), (route, r.status_code, body[:200])
        answer = json.loads(body)
        assert isinstance(answer, dict), (route, body[:200])
        code, message = answer.get("error"), answer.get("message")
        assert isinstance(code, str) and code in KNOWN_CODES, (route, answer)
        assert isinstance(message, str) and message and "\n" not in message, (route, answer)
        world.refused.append((method, r.status_code, code))


def access_lines(world: World) -> list[tuple[str, str, int, str]]:
    """The refusal log lines the server wrote since fuzzing began: (method, route, status, code)."""
    text = world.server.stderr().encode()[world.log_offset :].decode("utf-8", "replace")
    out = []
    for line in text.splitlines():
        if "megadrive.server.access" in line:
            match = ACCESS_LINE.search(line)
            assert match is not None, line
            out.append((match[1], match[2], int(match[3]), match[4]))
    return out
