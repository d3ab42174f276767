"""The malicious server's toolbox: edit the real server's metadata store between client steps, and check
afterwards what an attacker holding some keys can open of everything the server stores.

Every hostile test plays the server (or a server colluding with an account it controls): it rewrites rows
the way a compromised operator would, announces them in the change feed (a new ``seq``), and then asks
the one question that matters: did the victim's client seal anything the attacker can open?
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from megadrive import format
from megadrive.errors import IntegrityError
from megadrive.format import NodeMeta


@dataclass
class Row:
    node_id: str
    owner: str
    parent_id: str | None
    kind: str
    meta: bytes
    version: int


class EvilServer:
    """Direct access to a running server's SQLite metadata store (WAL mode: safe next to the live server)."""

    def __init__(self, data: Path) -> None:
        self.path = data / "meta.sqlite3"

    @contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def rows(self) -> list[Row]:
        with self.db() as c:
            return [Row(*r) for r in c.execute("SELECT node_id, owner, parent_id, kind, meta, version FROM nodes")]

    def row(self, node_id: str) -> Row:
        return next(r for r in self.rows() if r.node_id == node_id)

    def rewrite(self, node_id: str, **cols: object) -> int:
        """Change a node's columns and announce it in its owner's change feed (the next seq). Returns the seq."""
        with self.db() as c:
            (owner,) = c.execute("SELECT owner FROM nodes WHERE node_id=?", (node_id,)).fetchone()
            c.execute("UPDATE users SET seq = seq + 1 WHERE user_id=?", (owner,))
            (seq,) = c.execute("SELECT seq FROM users WHERE user_id=?", (owner,)).fetchone()
            sets = ", ".join(f"{k}=?" for k in cols)
            c.execute(f"UPDATE nodes SET {sets}, seq=? WHERE node_id=?", (*cols.values(), seq, node_id))
            return int(seq)

    def insert(self, node_id: str, owner: str, parent_id: str, kind: str, meta: bytes) -> None:
        """Plant a node the owner never created (announced in the owner's feed)."""
        with self.db() as c:
            c.execute("UPDATE users SET seq = seq + 1 WHERE user_id=?", (owner,))
            (seq,) = c.execute("SELECT seq FROM users WHERE user_id=?", (owner,)).fetchone()
            c.execute("INSERT INTO nodes(node_id, owner, parent_id, kind, meta, seq) VALUES (?,?,?,?,?,?)",
                      (node_id, owner, parent_id, kind, meta, seq))

    def all_bytes(self) -> bytes:
        """Everything the server holds on disk: the metadata store (with its WAL) and every chunk."""
        out = []
        for p in sorted(self.path.parent.rglob("*")):
            if p.is_file():
                out.append(p.read_bytes())
        return b"".join(out)


def opened_under(key: bytes, rows: list[Row]) -> list[tuple[Row, NodeMeta]]:
    """Every meta on the server that opens under ``key`` (as the child of any parent): what its holder reads."""
    out = []
    for r in rows:
        if r.parent_id is None:
            continue
        try:
            out.append((r, format.open_meta(key, r.owner, r.parent_id, r.node_id, r.meta)))
        except IntegrityError:
            continue
    return out


def leaked_keys(attacker_keys: set[bytes], rows: list[Row]) -> set[bytes]:
    """Every key an attacker holding ``attacker_keys`` reaches by opening metas, transitively."""
    known, frontier = set(attacker_keys), set(attacker_keys)
    while frontier:
        found = {m.key for k in frontier for _, m in opened_under(k, rows)}
        frontier = found - known
        known |= found
    return known


class LyingProxy:
    """A proxy in front of the real server that rewrites the victim's change feed: the server lies to one
    client while its own store stays consistent (so its own checks, e.g. no cycles, keep passing).

    ``lies`` maps node ids to fields to present instead (``parent_id``, ``meta`` as bytes); every lie is
    put into each answer of ``GET /v1/changes`` (the victim's own feed) with the answer's newest seq, so a
    client ingests it as the node's latest state.
    """

    def __init__(self, upstream: str, evil: EvilServer) -> None:
        import http.server
        import threading

        import httpx

        self.upstream = upstream.rstrip("/")
        self.evil = evil
        self.lies: dict[str, dict[str, object]] = {}
        # (method, path, body) -> a forged (status, JSON body) answered instead of forwarding, or None.
        self.forge: Callable[[str, str, bytes], tuple[int, bytes] | None] = lambda method, path, body: None
        self.received: list[bytes] = []  # every request line and body a client sent through the proxy
        # (method, path, forwarded answer's body) -> the body the client gets instead.
        self.rewrite: Callable[[str, str, bytes], bytes] = lambda method, path, out: out
        self._http = httpx.Client(timeout=60)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.received.append(self.requestline.encode() + b"\n" + body)
                forged = proxy.forge(self.command, self.path, body)
                if forged is not None:
                    self.send_response(forged[0])
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(forged[1])))
                    self.end_headers()
                    self.wfile.write(forged[1])
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                r = proxy._http.request(self.command, proxy.upstream + self.path, content=body, headers=headers)
                out = r.content
                if self.command == "GET" and self.path.startswith("/v1/changes") and "owner=" not in self.path \
                        and r.status_code == 200:
                    out = proxy._lie(r.json())
                out = proxy.rewrite(self.command, self.path, out)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward  # noqa: N815

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _lie(self, d: dict) -> bytes:  # type: ignore[type-arg]
        import base64
        import json

        seq = max([int(d.get("seq", 0)), *[int(n["seq"]) for n in d["changes"]]])
        changes = [n for n in d["changes"] if n["node_id"] not in self.lies]
        for node_id, fields in self.lies.items():
            real = self.evil.row(node_id)
            node = {"node_id": node_id, "owner": real.owner, "parent_id": real.parent_id, "kind": real.kind,
                    "meta": real.meta, "version": real.version, "size": 0, "trashed": False, "gone": False,
                    "removed": False} | fields
            node["meta"] = base64.b64encode(node["meta"]).decode()  # type: ignore[arg-type]
            node["seq"] = seq
            changes.append(node)
        d["changes"] = changes
        return json.dumps(d).encode()

    def close(self) -> None:
        self._server.shutdown()
        self._http.close()
