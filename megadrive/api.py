"""HTTP client for the server API (docs/SERVER_API.md).

Thin and typed: one pooled, thread-safe httpx client; retries with backoff on
network errors; every error status mapped to a :mod:`megadrive.errors` type
here and nowhere else. It knows nothing about keys: it moves opaque blobs.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import (
    AlreadyExists,
    AuthError,
    Conflict,
    MegaDriveError,
    NetworkError,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServerError,
    StaleVersion,
    TakenDown,
)

log = logging.getLogger(__name__)

RETRIES = 4
BACKOFF = 0.25
DOWN_FOR = 5.0  # after a server was found unreachable, fail fast for this long (the journal keeps writes)
# The most this client reads of one answer: a server that sends more is refused, never buffered whole.
MAX_JSON_BYTES = 64 << 20  # a feed page of FEED_PAGE nodes with 64 KiB metas fits; a manifest of 8 MiB too
MAX_CHUNK_BYTES = (1 << 20) + 4096  # one sealed 1 MiB chunk and its overhead
FEED_PAGE = 500
U63 = (1 << 63) - 1


def b64e(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def b64d(s: object) -> bytes:
    if not isinstance(s, str):
        raise ServerError("server sent a malformed response")
    try:
        return base64.b64decode(s, validate=True)
    except ValueError:
        raise ServerError("server sent malformed base64") from None


class MetaChanged(StaleVersion):
    """The node changed on the server since the state this change was based on (read it again)."""


class MissingChunks(Conflict):
    """The server lacks chunks this commit names."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"server is missing {len(missing)} chunk(s)")
        self.missing = missing


@dataclass
class RemoteNode:
    """A node as the server describes it: ids, kind, opaque meta, version."""

    node_id: str
    parent_id: str | None
    kind: str
    meta: bytes
    version: int
    size: int
    trashed: bool
    gone: bool
    seq: int
    owner: str = ""
    removed: bool = False

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RemoteNode:
        """Strict: ids of the right shape, integers in range, a known kind (the server is not trusted)."""
        bad = ServerError("server sent a malformed node")
        try:
            parent = d.get("parent_id")
            n = cls(node_id=str(d["node_id"]), parent_id=None if parent is None else str(parent),
                    kind=str(d["kind"]), meta=b64d(d.get("meta") or ""), version=int(d.get("version", 0)),
                    size=int(d.get("size", 0)), trashed=bool(d.get("trashed", False)),
                    gone=bool(d.get("gone", False)), seq=int(d.get("seq", 0)),
                    owner=str(d.get("owner") or ""), removed=bool(d.get("removed", False)))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise bad from None
        ids = [n.node_id] + ([n.parent_id] if n.parent_id is not None else [])
        if (n.kind not in ("dir", "file") or not all(_is_id(i) for i in ids)
                or not all(0 <= x <= U63 for x in (n.version, n.size, n.seq))):
            raise bad
        return n


def _is_id(s: str) -> bool:
    return len(s) == 32 and all(c in "0123456789abcdef" for c in s)


def _raise_for(resp: httpx.Response, authenticated: bool) -> None:
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
        code, msg = str(body.get("error", "")), str(body.get("message", ""))
    except ValueError:
        body, code, msg = {}, "", resp.text[:200]
    st = resp.status_code
    text = f"server: {msg or resp.reason_phrase}"
    if st == 401:
        if authenticated:
            raise AuthError("session expired or revoked: run `megadrive login`")
        raise AuthError(text)
    if st == 429:
        raise RateLimited(f"{text} (retry after {resp.headers.get('Retry-After', '?')} s)")
    if st == 403:
        raise PermissionDenied(text)
    if st == 404:
        raise NotFound(text)
    if st == 409 and code == "exists":
        raise AlreadyExists(text)
    if st == 409 and code == "missing_chunks":
        raise MissingChunks(list(body.get("missing", [])))
    if st == 409:
        raise Conflict(text)
    if st == 451:
        raise TakenDown("this content was removed after an abuse notice (HTTP 451)")
    if st == 410:
        raise NotFound("this link has expired")
    if st == 412 and code == "stale_meta":
        raise MetaChanged("the node was changed elsewhere; reading it again")
    if st == 412:
        raise StaleVersion("the file was changed elsewhere; this version was not committed")
    if st == 507 and code in ("node_limit", "record_limit"):
        raise QuotaExceeded(f"{text} (limit {body.get('limit', '?')})")
    if st == 507:
        raise QuotaExceeded(f"storage quota exceeded (used {body.get('used', '?')} of {body.get('quota', '?')} bytes)")
    if st >= 500:
        raise ServerError(text)
    raise MegaDriveError(text)


class Transport:
    """HTTP to one server with one optional bearer token: retries, bounded answers, errors mapped."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 60.0,
                 verify: bool | str = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._down_until = 0.0
        self._http = httpx.Client(
            base_url=self.base_url + "/v1", timeout=timeout, verify=verify,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, idempotent: bool = True, max_bytes: int = MAX_JSON_BYTES,
                 **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", None) or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if time.monotonic() < self._down_until:
            raise NetworkError(f"cannot reach the server at {self.base_url} (it was unreachable moments ago)")
        delay = BACKOFF
        for attempt in range(RETRIES + 1):
            try:
                resp = self._send(method, path, headers, max_bytes, kw)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
                err: Exception = e  # request never reached the server: always safe to retry
            except httpx.TransportError as e:
                if not idempotent:
                    raise NetworkError(f"network error talking to {self.base_url}: {e}") from None
                err = e
            else:
                if resp.status_code in (502, 503, 504) and idempotent and attempt < RETRIES:
                    time.sleep(delay)
                    delay *= 2
                    continue
                _raise_for(resp, bool(self.token))
                return resp
            if attempt == RETRIES:
                if isinstance(err, httpx.ConnectError | httpx.ConnectTimeout):
                    self._down_until = time.monotonic() + DOWN_FOR
                raise NetworkError(f"cannot reach the server at {self.base_url}: {err}") from None
            log.debug("retrying %s %s after %s", method, path, err)
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _send(self, method: str, path: str, headers: dict[str, str], max_bytes: int,
              kw: dict[str, Any]) -> httpx.Response:
        """One request whose answer is read up to ``max_bytes``: more is a malformed answer, not memory."""
        req = self._http.build_request(method, path, headers=headers, **kw)
        resp = self._http.send(req, stream=True)
        try:
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise ServerError(f"server sent an answer of {declared} bytes (at most {max_bytes} expected)")
            body = bytearray()
            for piece in resp.iter_bytes():
                body += piece
                if len(body) > max_bytes:
                    raise ServerError(f"server sent an answer over {max_bytes} bytes")
        finally:
            resp.close()
        kept = [(k, v) for k, v in resp.headers.items() if k.lower() != "content-encoding"]  # decoded above
        out = httpx.Response(resp.status_code, headers=kept, content=bytes(body), request=req)
        out.read()
        return out

    def _json(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        resp = self._request(method, path, json=body, **kw)
        if resp.status_code == 204 or not resp.content:
            return {}
        try:
            return resp.json()
        except ValueError:
            raise ServerError("server sent malformed JSON") from None



class _AccountCalls(Transport):
    """Accounts, their public keys and their sealed records (docs/SERVER_API.md, Authentication, Records)."""

    def health(self) -> bool:
        return bool(self._json("GET", "/health").get("ok"))

    def signup(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._json("POST", "/signup", body, idempotent=False))

    def prelogin(self, user: str) -> dict[str, Any]:
        return dict(self._json("POST", "/prelogin", {"user": user}))

    def login(self, user: str, auth_key: bytes, device: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"user": user, "auth_key": b64e(auth_key)} | ({"device": device} if device else {})
        return dict(self._json("POST", "/login", body, idempotent=False))

    def sessions(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/sessions")["sessions"])

    def revoke_session(self, session_id: str) -> None:
        self._json("DELETE", f"/sessions/{session_id}")

    def change_password(self, auth_key: bytes, new_auth_key: bytes, wrapped_master: bytes) -> None:
        self._json("POST", "/account/password", {"auth_key": b64e(auth_key), "new_auth_key": b64e(new_auth_key),
                                                 "wrapped_master": b64e(wrapped_master)}, idempotent=False)

    def set_recovery(self, auth_key: bytes, recovery_auth: bytes, recovery_wrap: bytes) -> None:
        self._json("PUT", "/account/recovery", {"auth_key": b64e(auth_key), "recovery_auth": b64e(recovery_auth),
                                                "recovery_wrap": b64e(recovery_wrap)})

    def recover(self, user: str, recovery_auth: bytes,
                new: tuple[bytes, bytes] | None = None) -> dict[str, Any]:
        """Without ``new``: the account's id and its master key wrapped under the recovery key. With
        ``new`` (auth key, wrapped master key): a new password (every session ends)."""
        body: dict[str, Any] = {"user": user, "recovery_auth": b64e(recovery_auth)}
        if new is not None:
            body |= {"new_auth_key": b64e(new[0]), "wrapped_master": b64e(new[1])}
        return dict(self._json("POST", "/recover", body, idempotent=False))

    def trash(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/trash")["trash"])

    def logout(self) -> None:
        self._json("POST", "/logout", {})

    def account(self) -> dict[str, Any]:
        return dict(self._json("GET", "/account"))

    def user_keys(self, user: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/users/{user}/keys"))


    def get_record(self, name: str) -> tuple[int, bytes] | None:
        try:
            d = self._json("GET", f"/records/{name}")
        except NotFound:
            return None
        try:
            return int(d["version"]), b64d(d["blob"])
        except (KeyError, TypeError, ValueError):
            raise ServerError("server sent a malformed record") from None

    def put_record(self, name: str, blob: bytes, base_version: int) -> int:
        """Compare-and-swap: stored only if the server still holds ``base_version`` (0: none yet)."""
        d = self._json("PUT", f"/records/{name}", {"blob": b64e(blob)},
                       headers={"If-Match": f'"{base_version}"'}, idempotent=False)
        try:
            return int(d["version"])
        except (KeyError, TypeError, ValueError):
            raise ServerError("server sent a malformed record answer") from None



class _NodeCalls(Transport):
    """Nodes, the change feed, versions and chunks (docs/SERVER_API.md, Nodes, File versions, Chunks)."""

    def create_node(self, node_id: str, parent_id: str, kind: str, meta: bytes,
                    first_version: tuple[bytes, list[str]] | None = None) -> RemoteNode:
        """``first_version`` (sealed manifest, chunk ids): a file created with its version 1 in the same
        transaction (one round trip instead of two); ``meta`` is then the meta of that version."""
        body: dict[str, Any] = {"node_id": node_id, "parent_id": parent_id, "kind": kind, "meta": b64e(meta)}
        if first_version is not None:
            body["version"] = {"manifest": b64e(first_version[0]), "chunks": first_version[1]}
        return RemoteNode.from_json(self._json("POST", "/nodes", body, idempotent=False)["node"])

    def create_nodes(self, items: list[tuple[str, str, bytes, tuple[bytes, list[str]]]]) -> list[RemoteNode]:
        """Files (node id, parent id, meta, first version) created with their first versions in one
        request and one transaction (``POST /v1/batch/nodes``): all or none. The answer must name the
        same nodes in the same order (the server is not trusted to)."""
        body = {"nodes": [{"node_id": nid, "parent_id": pid, "kind": "file", "meta": b64e(meta),
                           "version": {"manifest": b64e(manifest), "chunks": chunks}}
                          for nid, pid, meta, (manifest, chunks) in items]}
        try:
            raw = list(self._json("POST", "/batch/nodes", body, idempotent=False)["nodes"])
        except (KeyError, TypeError):
            raise ServerError("server sent a malformed batch answer") from None
        nodes = [RemoteNode.from_json(d) for d in raw]
        if [n.node_id for n in nodes] != [nid for nid, *_ in items]:
            raise ServerError("the server answered a batch of creates with other nodes")
        return nodes

    def get_node(self, node_id: str) -> RemoteNode:
        return RemoteNode.from_json(self._json("GET", f"/nodes/{node_id}")["node"])

    def update_node(self, node_id: str, meta: bytes, parent_id: str | None = None,
                    replace: str | None = None, base_seq: int | None = None) -> RemoteNode:
        """``base_seq``: the node's seq this change is based on (412 ``stale_meta`` if it moved on)."""
        body: dict[str, Any] = {"meta": b64e(meta)}
        if base_seq is not None:
            body["base_seq"] = base_seq
        if parent_id is not None:
            body["parent_id"] = parent_id
        if replace is not None:
            body["replace"] = replace
        return RemoteNode.from_json(self._json("PATCH", f"/nodes/{node_id}", body)["node"])

    def trash_node(self, node_id: str) -> RemoteNode:
        """Move a node to the trash; the answer is its new state (no second request to read it)."""
        n = RemoteNode.from_json(self._json("DELETE", f"/nodes/{node_id}")["node"])
        if n.node_id != node_id:
            raise ServerError("the server answered a delete with another node")
        return n

    def purge_node(self, node_id: str, recursive: bool = False, only_trashed: bool = False) -> None:
        """``only_trashed``: 409 unless the node is in the trash when the server purges it."""
        params = {"purge": "1"} | ({"recursive": "1"} if recursive else {})
        params |= {"if_trashed": "1"} if only_trashed else {}
        self._json("DELETE", f"/nodes/{node_id}", params=params)

    def restore_node(self, node_id: str) -> RemoteNode:
        return RemoteNode.from_json(self._json("POST", f"/nodes/{node_id}/restore", {})["node"])

    def changes(self, since: int, limit: int = FEED_PAGE,
                owner: str | None = None) -> tuple[list[RemoteNode], int, bool]:
        params: dict[str, Any] = {"since": since, "limit": limit}
        if owner:
            params["owner"] = owner
        d = self._json("GET", "/changes", params=params)
        try:
            nodes, seq = [RemoteNode.from_json(n) for n in d["changes"]], int(d["seq"])
        except (KeyError, TypeError, ValueError):
            raise ServerError("server sent a malformed change feed") from None
        if len(nodes) > limit or not 0 <= seq <= U63:
            raise ServerError("server sent a malformed change feed")
        return nodes, seq, bool(d.get("more"))

    def commit_version(self, node_id: str, base_version: int, manifest: bytes, chunk_ids: list[str],
                       meta: bytes | None = None, meta_seq: int | None = None) -> RemoteNode:
        """``meta_seq``: the node's seq the new meta is based on (412 ``stale_meta`` if it moved on)."""
        body: dict[str, Any] = {"manifest": b64e(manifest), "chunks": chunk_ids}
        if meta is not None:
            body["meta"] = b64e(meta)
        if meta_seq is not None:
            body["meta_seq"] = meta_seq
        d = self._json("POST", f"/nodes/{node_id}/versions", body,
                       headers={"If-Match": f'"{base_version}"'}, idempotent=False)
        return RemoteNode.from_json(d["node"])

    def get_manifest(self, node_id: str, version: int | None = None) -> tuple[int, bytes]:
        path = f"/nodes/{node_id}/manifest" if version is None else f"/nodes/{node_id}/versions/{version}"
        d = self._json("GET", path)
        return int(d["version"]), b64d(d["manifest"])

    def list_versions(self, node_id: str) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/nodes/{node_id}/versions")["versions"])

    def missing_chunks(self, ids: list[str], owner: str | None = None) -> list[str]:
        if not ids:
            return []
        body: dict[str, Any] = {"ids": ids} | ({"owner": owner} if owner else {})
        return list(self._json("POST", "/chunks/missing", body)["missing"])

    def put_chunk(self, chunk_id: str, blob: bytes, owner: str | None = None) -> None:
        """Store a chunk; ``owner``: for a folder another account shares with us (their quota)."""
        headers = {"Content-Type": "application/octet-stream"} | ({"X-MegaDrive-Owner": owner} if owner else {})
        self._request("PUT", f"/chunks/{chunk_id}", content=blob, headers=headers)

    def get_chunk(self, chunk_id: str) -> bytes:
        return self._request("GET", f"/chunks/{chunk_id}", max_bytes=MAX_CHUNK_BYTES).content



class _SharingCalls(Transport):
    """Shares, public links and abuse reports (docs/SERVER_API.md, Sharing, Public links)."""

    def create_share(self, node_id: str, recipient: str, access: str, grant: bytes) -> dict[str, Any]:
        return dict(self._json("POST", "/shares", {"node_id": node_id, "recipient": recipient, "access": access,
                                                   "grant": b64e(grant)}, idempotent=False)["share"])

    def shares(self) -> dict[str, list[dict[str, Any]]]:
        d = self._json("GET", "/shares")
        return {"outgoing": list(d.get("outgoing", [])), "incoming": list(d.get("incoming", []))}

    def delete_share(self, share_id: str) -> None:
        self._json("DELETE", f"/shares/{share_id}")

    def create_link(self, node_id: str, blob: bytes, salt: bytes | None, kdf: dict[str, Any] | None,
                    expires: float | None) -> dict[str, Any]:
        body = {"node_id": node_id, "blob": b64e(blob), "salt": b64e(salt) if salt else None, "kdf": kdf,
                "expires": int(expires) if expires else None}
        return dict(self._json("POST", "/links", body, idempotent=False)["link"])

    def links(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/links")["links"])

    def delete_link(self, link_id: str) -> None:
        self._json("DELETE", f"/links/{link_id}")

    def public_link(self, link_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/l/{link_id}"))

    def public_chunk(self, link_id: str, chunk_id: str, node_id: str | None = None) -> bytes:
        """A chunk of the linked file, or (``node_id``) of a file under a linked folder."""
        params = {} if node_id is None else {"node": node_id}
        return self._request("GET", f"/l/{link_id}/chunks/{chunk_id}", max_bytes=MAX_CHUNK_BYTES,
                             params=params).content

    def public_link_nodes(self, link_id: str, since: int, limit: int = FEED_PAGE) -> tuple[list[RemoteNode], int, bool]:
        """One page of a folder link's tree (the live nodes under the folder, by seq)."""
        d = self._json("GET", f"/l/{link_id}/nodes", params={"since": since, "limit": limit})
        try:
            nodes, seq = [RemoteNode.from_json(n) for n in d["nodes"]], int(d["seq"])
        except (KeyError, TypeError, ValueError):
            raise ServerError("server sent a malformed folder listing") from None
        if len(nodes) > limit or not since <= seq <= U63:
            raise ServerError("server sent a malformed folder listing")
        return nodes, seq, bool(d.get("more"))

    def public_link_manifest(self, link_id: str, node_id: str) -> tuple[int, bytes]:
        """(version, sealed manifest) of a file under a linked folder."""
        d = self._json("GET", f"/l/{link_id}/nodes/{node_id}/manifest")
        try:
            return int(d["version"]), b64d(d["manifest"])
        except (KeyError, TypeError, ValueError):
            raise ServerError("server sent a malformed manifest") from None

    def report_abuse(self, link: str, reason: str) -> dict[str, Any]:
        return dict(self._json("POST", "/abuse", {"link": link, "reason": reason}, idempotent=False))


class Api(_AccountCalls, _NodeCalls, _SharingCalls):
    """The whole server API for one server and one optional bearer token. Safe to share between threads.

    One class per part of the API (as docker-py composes its client), over one
    :class:`Transport`; every error status becomes a :mod:`megadrive.errors`
    type in ``_raise_for`` and nowhere else.
    """
