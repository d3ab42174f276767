"""The gateway's front door: who may talk to the decrypted drive, and how its bytes reach a browser.

:class:`Guard` wraps the whole wsgidav application. Before wsgidav sees a
request it checks, in this order:

1. the ``Host`` header is one of the gateway's own names (421 otherwise), so
   a web page whose DNS name was rebound to 127.0.0.1 is not served;
2. an ``Origin`` header, if present, is the gateway's own origin, and fetch
   metadata does not mark a cross-site sub-request (403 otherwise), so no
   other web page can script requests to it;
3. the request carries the gateway's credentials, HTTP Basic or Digest, for
   every method, GET and OPTIONS included (401 otherwise): on loopback too,
   because any local user can connect to 127.0.0.1;
4. its path, headers and body stay within the gateway's bounds
   (:mod:`.bounds`: 400, 408, 413, 414, 415 or 416 otherwise).

Every refusal but the 401 challenge is logged, one line without any name.

Every response then gets ``X-Content-Type-Options: nosniff``,
``X-Frame-Options: DENY`` and, unless it is file content, a script-free
Content-Security-Policy (the folder listing needs none: its only script
opens MS Office documents through a SharePoint ActiveX plugin, which the
gateway turns off). File content is marked by :class:`FileContentHeaders`,
which sits inside wsgidav behind the folder listing, so only GET/HEAD of a
file reaches it: ``Content-Security-Policy: sandbox`` and, for any type a
browser could run (HTML, SVG, XML, script, unknown), ``Content-Disposition:
attachment``, so a file someone shared with you never runs as a page of the
gateway's origin.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from wsgidav.mw.base_mw import BaseMiddleware

from .bounds import check_request

log = logging.getLogger(__name__)

REALM = "MegaDrive"
GENERATED_USER = "megadrive"
NONCE_LIFETIME = 300.0  # seconds a Digest nonce stays fresh (Apache's default); then the client is told stale=true

FILE_CSP = "sandbox; default-src 'none'"
PAGE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'none'")

# Types a browser shows without running anything; everything else (HTML, SVG, XML, script, unknown) is a download.
INLINE_TYPES = frozenset({
    "text/plain", "text/csv", "text/markdown", "application/pdf", "application/json",
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp", "image/x-icon",
    "image/vnd.microsoft.icon", "image/tiff",
})
INLINE_PREFIXES = ("audio/", "video/")
ACTIVE_MARKERS = ("html", "xml", "script")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class Credentials:
    """The one user the gateway accepts; ``generated`` when the gateway made the password itself."""

    user: str
    password: str
    generated: bool = False

    @classmethod
    def fresh(cls) -> Credentials:
        """A new random secret for this run: 32 bytes, URL-safe base64 (never starting with '-', so it pastes
        into command lines as it is)."""
        while True:
            password = secrets.token_urlsafe(32)
            if not password.startswith("-"):
                return cls(GENERATED_USER, password, generated=True)

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, password=<hidden>, generated={self.generated})"


def is_active_type(content_type: str) -> bool:
    """True unless a browser would only display this type (text, images, audio, video, PDF)."""
    main = content_type.split(";", 1)[0].strip().lower()
    if not main or main == "application/octet-stream" or any(m in main for m in ACTIVE_MARKERS):
        return True
    return not (main in INLINE_TYPES or main.startswith(INLINE_PREFIXES))


def attachment(name: str) -> str:
    """``attachment; filename*=UTF-8''...`` (RFC 6266 / 8187): any name, no quoting pitfalls."""
    return "attachment; filename*=UTF-8''" + quote(name, safe="")


def _norm_host(name: str) -> str:
    name = name.strip().strip("[]").rstrip(".").lower()
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def split_host(value: str, default_port: int) -> tuple[str, int] | None:
    """'Host' header -> (normalized name, port); None if malformed."""
    value = value.strip()
    if not value or any(c in value for c in "/?#@\\ \t"):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
        if not _is_ip(name):
            return None
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else ""
    else:
        name, sep, port_text = value.rpartition(":")
        if not sep:
            name, port_text = value, ""
        if ":" in name:  # a bare IPv6 address without brackets is not a valid Host
            return None
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            return None
        port = int(port_text)
    else:
        port = default_port
    return _norm_host(name), port


class HostPolicy:
    """The Host names the gateway answers to.

    The bound address with its port; on loopback (or a wildcard bind) also
    ``localhost``, ``127.0.0.1`` and ``[::1]``; on a wildcard bind any IP
    literal (DNS rebinding needs a name the attacker controls, never an IP
    literal); plus the names the operator adds (``NAME`` or ``NAME:PORT``).
    """

    def __init__(self, bind_host: str, port: int, scheme: str, extra_names: Iterable[str] = ()) -> None:
        self.scheme = scheme
        self.port = port
        self.default_port = 443 if scheme == "https" else 80
        host = _norm_host(bind_host)
        self.wildcard = host in ("0.0.0.0", "::")  # noqa: S104 - compared, not bound
        self.allowed: set[tuple[str, int]] = set()
        if not self.wildcard:
            self.allowed.add((host, port))
        if self.wildcard or host == "localhost" or (_is_ip(host) and ipaddress.ip_address(host).is_loopback):
            self.allowed.update({("localhost", port), ("127.0.0.1", port), ("::1", port)})
        for name in extra_names:
            parsed = split_host(name if ":" in name.strip("[]") or name.startswith("[") else f"{name}:{port}",
                                port)
            if parsed is None:
                raise ValueError(f"not a host name: {name!r}")
            self.allowed.add(parsed)

    def admits(self, host_header: str | None) -> tuple[str, int] | None:
        """The (name, port) of an acceptable Host header, or None."""
        if not host_header:
            return None
        parsed = split_host(host_header, self.default_port)
        if parsed is None:
            return None
        if parsed in self.allowed:
            return parsed
        if self.wildcard and parsed[1] == self.port and _is_ip(parsed[0]):
            return parsed
        return None


def _digest_params(text: str) -> dict[str, str]:
    """auth-params of a Digest Authorization header (quoted-strings may hold commas and escapes)."""
    out: dict[str, str] = {}
    for m in re.finditer(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))', text):
        key = m.group(1).lower()
        value = m.group(2)
        out[key] = re.sub(r"\\(.)", r"\1", value) if value is not None else m.group(3)
    return out


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - RFC 7616 Digest: MD5 is what clients speak


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class Guard:
    """WSGI middleware in front of wsgidav: Host, Origin and authentication checks, and safe headers."""

    def __init__(self, app: App, credentials: Credentials) -> None:
        self.app = app
        self.credentials = credentials
        self.hosts: HostPolicy | None = None  # set by listen_on() once the port is known
        self._nonce_key = secrets.token_bytes(32)

    def listen_on(self, hosts: HostPolicy) -> None:
        self.hosts = hosts

    # -- the checks -----------------------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        hosts = self.hosts
        target = hosts.admits(environ.get("HTTP_HOST")) if hosts else None
        if hosts is None or target is None:
            return self._refuse(environ, start_response, "421 Misdirected Request",
                                "this gateway does not answer to that Host name (add it with --host-name)")
        if not self._origin_ok(environ, hosts.scheme, target):
            return self._refuse(environ, start_response, "403 Forbidden", "cross-origin requests are refused")
        ok, stale = self._authenticated(environ)
        if not ok:
            return self._challenge(environ, start_response, stale)
        environ["megadrive.gateway.user"] = self.credentials.user
        refusal = check_request(environ, scheme=hosts.scheme, own_host=lambda netloc: hosts.admits(netloc) is not None)
        if refusal:
            return self._refuse(environ, start_response, refusal.status, refusal.reason)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, _with_page_headers(headers, file=bool(environ.get(FILE_REQUEST))),
                                  exc_info)

        return self.app(environ, start)

    def _origin_ok(self, environ: Environ, scheme: str, target: tuple[str, int]) -> bool:
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None:
            u = urlsplit(origin.strip())
            if u.scheme != scheme or u.path not in ("", "/") or u.query or u.username or u.password:
                return False  # includes "null" (sandboxed documents, file: pages)
            parsed = split_host(u.netloc, 443 if scheme == "https" else 80)
            if parsed != target:
                return False
        # Fetch metadata: another site's page loading our URLs as images, scripts, fetches... (not a navigation).
        site = environ.get("HTTP_SEC_FETCH_SITE", "").strip().lower()
        mode = environ.get("HTTP_SEC_FETCH_MODE", "").strip().lower()
        return not (site in ("cross-site", "same-site") and mode != "navigate")

    def _authenticated(self, environ: Environ) -> tuple[bool, bool]:
        """(accepted, the Digest nonce was ours but expired)."""
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, rest = header.strip().partition(" ")
        if scheme.lower() == "basic":
            return self._basic(rest.strip()), False
        if scheme.lower() == "digest":
            return self._digest(environ, rest)
        return False, False

    def _basic(self, token: str) -> bool:
        try:
            text = base64.b64decode(token, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        user, sep, password = text.partition(":")
        c = self.credentials
        return bool(sep) & _same(user, c.user) & _same(password, c.password)

    def _digest(self, environ: Environ, text: str) -> tuple[bool, bool]:
        p = _digest_params(text)
        need = ("username", "realm", "nonce", "uri", "response")
        if any(k not in p for k in need) or p["realm"] != REALM:
            return False, False
        if p.get("algorithm", "MD5").upper() != "MD5":
            return False, False
        qop = p.get("qop")
        if qop is not None and (qop.lower() != "auth" or "cnonce" not in p or "nc" not in p):
            return False, False
        if not self._uri_matches(p["uri"], environ):
            return False, False
        fresh = self._nonce_state(p["nonce"])
        if fresh is None:
            return False, False
        c = self.credentials
        ha1 = _md5(f"{c.user}:{REALM}:{c.password}")
        ha2 = _md5(f"{environ['REQUEST_METHOD']}:{p['uri']}")
        if qop is not None:
            expected = _md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{qop}:{ha2}")
        else:
            expected = _md5(f"{ha1}:{p['nonce']}:{ha2}")
        good = _same(p["username"], c.user) & _same(p["response"].lower(), expected)
        if not good:
            return False, False
        return (True, False) if fresh else (False, True)

    @staticmethod
    def _uri_matches(uri: str, environ: Environ) -> bool:
        """RFC 7616 3.4.6: the digest's uri names the resource of the request line."""
        raw = environ.get("REQUEST_URI") or quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
        if raw == "*":
            return uri in ("*", "/")
        got, want = urlsplit(uri), urlsplit(raw)
        return unquote(got.path) == unquote(want.path) and got.query == want.query

    def _new_nonce(self) -> str:
        stamp = int(time.time()).to_bytes(8, "big")
        mac = hmac.new(self._nonce_key, stamp, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(stamp + mac).decode().rstrip("=")

    def _nonce_state(self, nonce: str) -> bool | None:
        """True: ours and fresh; False: ours but expired; None: not ours."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) != 24:
            return None
        stamp, mac = raw[:8], raw[8:]
        if not hmac.compare_digest(mac, hmac.new(self._nonce_key, stamp, hashlib.sha256).digest()[:16]):
            return None
        age = time.time() - int.from_bytes(stamp, "big")
        return -5 <= age <= NONCE_LIFETIME

    # -- the answers ----------------------------------------------------------------------------

    def _challenge(self, environ: Environ, start_response: StartResponse, stale: bool) -> list[bytes]:
        digest = f'Digest realm="{REALM}", qop="auth", algorithm=MD5, nonce="{self._new_nonce()}"'
        if stale:
            digest += ", stale=true"
        basic = f'Basic realm="{REALM}", charset="UTF-8"'
        return self._refuse(environ, start_response, "401 Unauthorized",
                            "log in with the gateway's user and password (see its banner, or gateway.json "
                            "in MEGADRIVE_HOME)",
                            [("WWW-Authenticate", digest), ("WWW-Authenticate", basic)], logged=False)

    @staticmethod
    def _refuse(environ: Environ, start_response: StartResponse, status: str, message: str,
                extra: list[tuple[str, str]] | None = None, *, logged: bool = True) -> list[bytes]:
        """A one-line text/plain answer (no body for HEAD), and a log line (the message never names a file)."""
        if logged:
            method = str(environ.get("REQUEST_METHOD", ""))
            method = method if method.isascii() and method.isalpha() and len(method) <= 16 else "?"
            log.warning("refused %s request: %s: %s", method, status, message)
        body = f"{status}: {message}\n".encode()
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                   *(extra or [])]
        start_response(status, _with_page_headers(headers))
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def _with_page_headers(headers: list[tuple[str, str]], *, file: bool = False) -> list[tuple[str, str]]:
    """nosniff, no framing and a script-free CSP on every response: ``sandbox`` for a file's GET/HEAD
    (whatever its status: a 304 must not loosen the cached response's policy), the listing's otherwise."""
    out = [(k, v) for k, v in headers
           if k.lower() not in ("content-security-policy", "x-content-type-options", "x-frame-options")]
    out += [("Content-Security-Policy", FILE_CSP if file else PAGE_CSP), ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY")]
    return out


FILE_REQUEST = "megadrive.file_request"


class FileContentHeaders(BaseMiddleware):  # type: ignore[misc]
    """Inside wsgidav, behind the folder listing: a GET/HEAD that gets here is for file content.

    It marks the request (the Guard then sends the sandbox CSP) and makes a
    successful answer of a type a browser could run a download.
    """

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return self.next_app(environ, start_response)  # type: ignore[no-any-return]
        environ[FILE_REQUEST] = True
        name = environ.get("PATH_INFO", "").rstrip("/").rsplit("/", 1)[-1] or "download"

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if status.startswith("2"):
                ctype = next((v for k, v in headers if k.lower() == "content-type"), "")
                headers = [(k, v) for k, v in headers if k.lower() != "content-disposition"]
                if is_active_type(ctype):
                    headers.append(("Content-Disposition", attachment(name)))
            return start_response(status, headers, exc_info)

        return self.next_app(environ, start)  # type: ignore[no-any-return]
