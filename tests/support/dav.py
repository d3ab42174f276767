"""Helpers for the WebDAV gateway end-to-end tests (fixtures are in this folder's conftest.py).

Everything here drives real processes over real HTTP: the storage server
(``support.server``), accounts made with the real console script (``megadrive
signup``), and the gateway either as ``megadrive webdav`` subprocesses or, for
tests that count the gateway's round trips to the server, in this process
(still real HTTP, served by cheroot).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import random
import re
import secrets
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as safe_xml
import httpx

from support.accounts import BIN, PASSWORD
from support.server import terminate

SERVED_RE = re.compile(r"MegaDrive is served at (\S+)")
DAV = "{DAV:}"
WIN32 = "urn:schemas-microsoft-com:"
TEST_NS = "urn:megadrive-test:"
MiB = 1 << 20
FORBIDDEN_IN_BODIES = ("Traceback", 'File "')


# -- accounts and processes ----------------------------------------------------------------------


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(MEGADRIVE_HOME=str(home), MEGADRIVE_PASSWORD=PASSWORD, MEGADRIVE_KDF="interactive")
    env.update(extra)
    return env


def megadrive(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real console script with MEGADRIVE_HOME=home."""
    return subprocess.run([str(BIN / "megadrive"), *args], capture_output=True, text=True, env=cli_env(home),
                          stdin=subprocess.DEVNULL, timeout=timeout)


@dataclass
class Account:
    """A signed-up account whose client state lives under ``home``."""

    server_url: str
    home: Path
    user: str

    def session(self) -> dict[str, Any]:
        return json.loads((self.home / "session.json").read_text())  # type: ignore[no-any-return]

    def server_account(self) -> dict[str, Any]:
        """GET /v1/account on the server, with the session's bearer token (not through the gateway), once
        what the gateway saved is uploaded."""
        settle(self.home)
        r = httpx.get(self.server_url.rstrip("/") + "/v1/account", timeout=30,
                      headers={"Authorization": f"Bearer {self.session()['token']}"})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def used(self) -> int:
        return int(self.server_account()["used"])


def settle(home: Path, timeout: float = 90) -> None:
    """Wait until the gateway or mount on ``home`` has uploaded what it saved (write-back: a PUT or close()
    returns once the version is sealed in the local journal; a test that reads the server's store waits)."""
    from megadrive.drive import Drive  # the test's own view of the gateway's data folder

    deadline = time.monotonic() + timeout
    while True:
        d = Drive.open(home, refresh=False)
        try:
            pending = d.pending_uploads()
        finally:
            d.close()
        if not pending:
            return
        assert time.monotonic() < deadline, f"the client on {home} still has {pending} upload(s) pending"
        time.sleep(0.05)


def signup(server_url: str, parent: Path, user: str | None = None) -> Account:
    """``megadrive signup`` into a fresh MEGADRIVE_HOME under ``parent``."""
    user = user or f"dav{secrets.token_hex(4)}"
    home = parent / f"home-{user}"
    home.mkdir(parents=True)
    r = megadrive(home, "signup", "--server", server_url, "--user", user)
    assert r.returncode == 0, f"signup failed ({r.returncode}): {r.stdout}{r.stderr}"
    return Account(server_url, home, user)


def basic_authorization(user: str, password: str) -> str:
    """The value of an ``Authorization: Basic`` header."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class GatewayProcess:
    """``megadrive webdav --listen ...`` as a subprocess.

    ``url`` is parsed from its stdout; the credentials (user ``megadrive`` and
    the run's random password) come from the gateway.json it writes into
    MEGADRIVE_HOME, unless ``auth`` gives the operator-set ones.
    """

    def __init__(self, home: Path, *args: str, listen: str = "127.0.0.1:0", timeout: float = 60,
                 auth: tuple[str, str] | None = None, env: dict[str, str] | None = None) -> None:
        self.home = home
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([str(BIN / "megadrive"), "webdav", "--listen", listen, *args],
                                     stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL,
                                     text=True, env=cli_env(home, **(env or {})))
        self.out: list[str] = []
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        deadline = time.monotonic() + timeout
        url = None
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            m = SERVED_RE.search(line)
            if m:
                url = m.group(1)
        if url is None:
            self.stop()
            raise RuntimeError(f"gateway did not start; stdout:\n{''.join(self.out)}\nstderr:\n{self.stderr()}")
        self.url = url
        state_file = home / "gateway.json"
        self.state: dict[str, str] = json.loads(state_file.read_text()) if state_file.exists() else {}
        self.user, self.password = auth or (self.state.get("user", ""), self.state.get("password", ""))

    @property
    def auth(self) -> httpx.BasicAuth | None:
        return httpx.BasicAuth(self.user, self.password) if self.user else None

    @property
    def authorization(self) -> str:
        """The Authorization header value, for raw-socket requests."""
        return basic_authorization(self.user, self.password)

    def banner(self) -> str:
        return "".join(self.out)

    def _pump(self, lines: queue.Queue[str | None]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.append(line)
            lines.put(line)
        lines.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        self._err.seek(0)
        return self._err.read().decode("utf-8", "replace")

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then SIGKILL if it lingers."""
        return terminate(self.proc, timeout)

    def settle(self, timeout: float = 90) -> None:
        settle(self.home, timeout)

    def client(self, **kw: Any) -> httpx.Client:
        """An httpx client logged in to the gateway (Basic: preemptive, so streamed bodies are sent once)."""
        return httpx.Client(base_url=kw.pop("base_url", self.url), timeout=kw.pop("timeout", 120),
                            auth=kw.pop("auth", self.auth), **kw)


@dataclass
class Counters:
    """Calls the in-process gateway's Drive made to the server."""

    requests: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.chunks.clear()


@dataclass
class InProcessGateway:
    drive: Any
    gw: Any
    counters: Counters

    @property
    def url(self) -> str:
        return self.gw.url  # type: ignore[no-any-return]

    @property
    def authorization(self) -> str:
        return basic_authorization(self.gw.user, self.gw.password)

    def client(self, **kw: Any) -> httpx.Client:
        return self.gw.client(timeout=kw.pop("timeout", 120), **kw)  # type: ignore[no-any-return]


@contextmanager
def inprocess_gateway(home: Path) -> Iterator[InProcessGateway]:
    """The real gateway served by cheroot in this process, its Drive's server calls counted.

    The background sync poll is off, so every counted call was caused by a request.
    """
    from megadrive.drive import Drive
    from megadrive.mount import gateway

    drive = Drive.open(home)
    counters = Counters()
    real_request, real_get_chunk = drive.api._request, drive.api.get_chunk

    def counting_request(method: str, path: str, **kw: Any) -> Any:
        with counters.lock:
            counters.requests.append((method, path))
        return real_request(method, path, **kw)

    def counting_get_chunk(chunk_id: str) -> bytes:
        with counters.lock:
            counters.chunks.append(chunk_id)
        return real_get_chunk(chunk_id)  # type: ignore[no-any-return]

    drive.api._request = counting_request  # type: ignore[method-assign]
    drive.api.get_chunk = counting_get_chunk  # type: ignore[method-assign]
    gw = gateway.start(drive, "127.0.0.1", 0, poll=False)
    try:
        yield InProcessGateway(drive, gw, counters)
    finally:
        gw.stop()
        drive.close()


# -- WebDAV requests -----------------------------------------------------------------------------


def href(path: str) -> str:
    """URL-encode a drive path ('/a b/100%' -> '/a%20b/100%25')."""
    return quote(path, safe="/")


def lockinfo(owner: str = "megadrive-tests", scope: str = "exclusive") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?>'
            f'<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:{scope}/></D:lockscope>'
            f'<D:locktype><D:write/></D:locktype><D:owner><D:href>{owner}</D:href></D:owner></D:lockinfo>').encode()


def lock(c: httpx.Client, path: str, *, timeout: str = "Second-3600", expect: int | tuple[int, ...] = (200, 201),
         **headers: str) -> str:
    """LOCK ``path``; returns the lock token (without the angle brackets)."""
    r = c.request("LOCK", href(path), content=lockinfo(),
                  headers={"Timeout": timeout, "Depth": "0", "Content-Type": "application/xml", **headers})
    expected = (expect,) if isinstance(expect, int) else expect
    assert r.status_code in expected, f"LOCK {path}: {r.status_code} {r.text}"
    token = r.headers.get("Lock-Token", "").strip()
    assert token.startswith("<") and token.endswith(">"), r.headers
    return token[1:-1]


def unlock(c: httpx.Client, path: str, token: str) -> httpx.Response:
    return c.request("UNLOCK", href(path), headers={"Lock-Token": f"<{token}>"})


def if_token(token: str) -> dict[str, str]:
    return {"If": f"(<{token}>)"}


def proppatch_body(sets: dict[str, str] | None = None, removes: Iterable[str] = ()) -> bytes:
    """A PROPPATCH body; property names in Clark notation, '{ns}name'."""
    nss: dict[str, str] = {"DAV:": "D"}

    def qname(clark: str) -> str:
        ns, _, local = clark[1:].partition("}")
        prefix = nss.setdefault(ns, f"n{len(nss)}")
        return f"{prefix}:{local}"

    parts = []
    if sets:
        props = "".join(f"<{qname(k)}>{_xml_escape(v)}</{qname(k)}>" for k, v in sets.items())
        parts.append(f"<D:set><D:prop>{props}</D:prop></D:set>")
    rem = list(removes)
    if rem:
        parts.append(f"<D:remove><D:prop>{''.join(f'<{qname(k)}/>' for k in rem)}</D:prop></D:remove>")
    decls = " ".join(f'xmlns:{p}="{ns}"' for ns, p in nss.items())
    return f'<?xml version="1.0" encoding="utf-8"?><D:propertyupdate {decls}>{"".join(parts)}</D:propertyupdate>' \
        .encode()


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def win32_props(mtime: float, attributes: str = "00000020") -> dict[str, str]:
    """What Windows' mini-redirector PROPPATCHes after a save."""
    date = rfc1123(mtime)
    return {f"{{{WIN32}}}Win32CreationTime": date, f"{{{WIN32}}}Win32LastAccessTime": date,
            f"{{{WIN32}}}Win32LastModifiedTime": date, f"{{{WIN32}}}Win32FileAttributes": attributes}


def rfc1123(t: float) -> str:
    return formatdate(t, usegmt=True)


def propfind_body(props: Iterable[str] | None = None) -> bytes:
    if props is None:
        return b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'
    nss: dict[str, str] = {"DAV:": "D"}
    items = []
    for clark in props:
        ns, _, local = clark[1:].partition("}")
        prefix = nss.setdefault(ns, f"n{len(nss)}")
        items.append(f"<{prefix}:{local}/>")
    decls = " ".join(f'xmlns:{p}="{ns}"' for ns, p in nss.items())
    return f'<?xml version="1.0" encoding="utf-8"?><D:propfind {decls}><D:prop>{"".join(items)}</D:prop></D:propfind>' \
        .encode()


@dataclass
class PropResult:
    """One <response> of a multistatus: the decoded path, props by status."""

    path: str
    props: dict[str, Element]
    status_of: dict[str, int]

    def text(self, name: str) -> str | None:
        e = self.props.get(name)
        return None if e is None else (e.text or "")


def parse_multistatus(body: bytes) -> list[PropResult]:
    root = safe_xml.fromstring(body)
    assert root.tag == f"{DAV}multistatus", body[:500]
    out = []
    for resp in root.findall(f"{DAV}response"):
        h = resp.findtext(f"{DAV}href") or ""
        path = unquote(urlsplit(h).path)
        props: dict[str, Element] = {}
        status_of: dict[str, int] = {}
        for ps in resp.findall(f"{DAV}propstat"):
            status = int((ps.findtext(f"{DAV}status") or "HTTP/1.1 0").split()[1])
            for prop in ps.findall(f"{DAV}prop"):
                for child in prop:
                    props[child.tag] = child
                    status_of[child.tag] = status
        out.append(PropResult(path, props, status_of))
    return out


def propfind(c: httpx.Client, path: str, props: Iterable[str] | None = None, depth: str = "0",
             **headers: str) -> list[PropResult]:
    r = c.request("PROPFIND", href(path), content=propfind_body(props),
                  headers={"Depth": depth, "Content-Type": "application/xml", **headers})
    assert r.status_code == 207, f"PROPFIND {path}: {r.status_code} {r.text[:2000]}"
    return parse_multistatus(r.content)


def prop(c: httpx.Client, path: str, name: str) -> str | None:
    """One property of one resource (None if not 200)."""
    (res,) = propfind(c, path, [name])
    return res.text(name) if res.status_of.get(name) == 200 else None


def put(c: httpx.Client, path: str, data: bytes, **headers: str) -> httpx.Response:
    r = c.put(href(path), content=data, headers=headers)
    assert r.status_code in (200, 201, 204), f"PUT {path}: {r.status_code} {r.text[:2000]}"
    return r


def get(c: httpx.Client, path: str) -> bytes:
    r = c.get(href(path))
    assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:2000]}"
    return r.content


def assert_clean_body(r: httpx.Response) -> None:
    """An error body never leaks a Python traceback."""
    for bad in FORBIDDEN_IN_BODIES:
        assert bad not in r.text, f"{r.status_code} body leaks {bad!r}:\n{r.text[:3000]}"


# -- content -------------------------------------------------------------------------------------


def seeded_bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


class SeededStream:
    """A deterministic body of ``total`` bytes yielded in ``block``-sized pieces, cheap to make.

    Every block differs (its index is stamped in), so a reordered or repeated
    block changes the hash.
    """

    def __init__(self, seed: int, total: int, block: int = MiB) -> None:
        self.total = total
        self.block = block
        self._pool = random.Random(seed).randbytes(block * 2)
        self.sha = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        i = 0
        while sent < self.total:
            n = min(self.block, self.total - sent)
            off = (i * 7919) % self.block
            piece = (i.to_bytes(8, "big") + self._pool[off:off + n])[:n]
            self.sha.update(piece)
            yield piece
            sent += n
            i += 1

    def hexdigest(self) -> str:
        """sha256 of what was yielded so far (all of it once iterated to the end)."""
        return self.sha.hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- raw HTTP ------------------------------------------------------------------------------------


def raw_connect(url: str) -> socket.socket:
    u = urlsplit(url)
    s = socket.create_connection((u.hostname or "127.0.0.1", u.port or 80), timeout=60)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_response(s: socket.socket, *, head: bool = False) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length (or until close), past any 1xx interim answer;
    ``head``: the answer to a HEAD (no body, whatever its Content-Length)."""
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            data = s.recv(65536)
            if not data:
                raise ConnectionError(f"connection closed mid-headers: {buf!r}")
            buf += data
        top, _, body = buf.partition(b"\r\n\r\n")
        if not top.startswith(b"HTTP/1.1 1"):
            break
        buf = body
    lines = top.decode("latin-1").split("\r\n")
    code = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if head:
        return code, headers, b""
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(body) < n:
            data = s.recv(65536)
            if not data:
                break
            body += data
    return code, headers, body


class RawTarget(Protocol):
    """A gateway to talk raw HTTP to: its URL and an Authorization header value."""

    @property
    def url(self) -> str: ...

    @property
    def authorization(self) -> str: ...


def raw_chunked_put(gw: RawTarget, path: str, pieces: Iterable[bytes]) -> tuple[int, dict[str, str], bytes]:
    """PUT with Transfer-Encoding: chunked and no Content-Length, encoded by hand on a raw socket."""
    u = urlsplit(gw.url)
    with raw_connect(gw.url) as s:
        s.sendall(f"PUT {href(path)} HTTP/1.1\r\nHost: {u.netloc}\r\nTransfer-Encoding: chunked\r\n"
                  f"Authorization: {gw.authorization}\r\n"
                  "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n".encode())
        for p in pieces:
            if p:
                s.sendall(f"{len(p):x}\r\n".encode() + p + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        return read_response(s)


def interrupted_put(gw: RawTarget, path: str, announced: int, data: bytes) -> None:
    """Announce ``announced`` bytes, send only ``data``, then drop the connection."""
    u = urlsplit(gw.url)
    s = raw_connect(gw.url)
    try:
        s.sendall(f"PUT {href(path)} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Length: {announced}\r\n"
                  f"Authorization: {gw.authorization}\r\n"
                  "Content-Type: application/octet-stream\r\n\r\n".encode())
        s.sendall(data)
    finally:
        s.shutdown(socket.SHUT_RDWR)
        s.close()


# -- looking at bytes on disk --------------------------------------------------------------------


def files_containing(root: Path, needles: Iterable[bytes]) -> list[str]:
    """Every file under ``root`` whose bytes contain one of ``needles``."""
    needles = [n for n in needles if n]
    hits = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            p = Path(dirpath) / name
            try:
                data = p.read_bytes()
            except OSError:
                continue
            for n in needles:
                if n in data:
                    hits.append(f"{p} contains {n!r}")
    return hits


def needle_forms(marker: str) -> list[bytes]:
    """How a marker could land on disk: UTF-8, URL-encoded, UTF-16 (SQLite can store either)."""
    return sorted({marker.encode(), quote(marker).encode(), marker.encode("utf-16-le")})


def raw_request(target: RawTarget, method: str, path: str | bytes, headers: dict[str, str] | None = None,
                body: bytes = b"", *, auth: bool = True, timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh socket, byte for byte as given (``path`` may be bytes: NUL, invalid UTF-8...).

    A Content-Length is added for a body unless ``headers`` frame it themselves."""
    u = urlsplit(target.url)
    hdrs = {"Host": u.netloc, **({"Authorization": target.authorization} if auth else {}), **(headers or {})}
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in hdrs):
        hdrs["Content-Length"] = str(len(body))
    target_bytes = path if isinstance(path, bytes) else path.encode()
    head = method.encode() + b" " + target_bytes + b" HTTP/1.1\r\n"
    head += b"".join(k.encode() + b": " + v.encode("latin-1") + b"\r\n" for k, v in hdrs.items()) + b"\r\n"
    with raw_connect(target.url) as s:
        s.settimeout(timeout)
        s.sendall(head + body)
        return read_response(s, head=method.upper() == "HEAD")


class PeakRss:
    """The highest resident set size of process ``pid`` while the block runs (sampled every 10 ms)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self._proc = psutil.Process(pid)
        self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            try:
                self.peak = max(self.peak, self._proc.memory_info().rss)
            except Exception:  # noqa: BLE001 - the process may have ended
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def mib(self) -> float:
        return self.peak / MiB


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate and key for 127.0.0.1 and localhost (needs the openssl command)."""
    crt, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True, timeout=60)
    return crt, key
