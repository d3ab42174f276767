"""What a WebDAV request may ask of the gateway, checked before wsgidav (or memory) is spent on it.

:func:`check_request` runs in the :class:`~.guard.Guard`, after the client
logged in. It refuses, with a one-line reason that never names a file:

- a path with a NUL byte, that is not UTF-8 or climbs above the root (400),
  longer than ``MAX_PATH_BYTES`` (414), or with a name longer than
  ``MAX_NAME_BYTES`` (400); the same for the path of a ``Destination``, which must also be a URL
  of this gateway (400);
- a ``Depth`` other than 0, 1 or infinity, an ``Overwrite`` other than T or
  F, a malformed ``Timeout``, ``Lock-Token``, ``X-OC-Mtime`` or ``If``
  header, or an ``If`` header over ``MAX_IF_BYTES`` (400); an
  ``If-Modified-Since`` or ``If-Unmodified-Since`` that is no date is
  ignored (RFC 9110), and so is a ``Range`` whose ``If-Range`` is neither a
  date nor an entity tag;
- a ``Range`` of more than ``MAX_RANGES`` ranges (416); any other ``Range``
  is served as one range (several are joined into the one that covers
  them), or ignored if malformed (RFC 9110 14.2), never parsed in a way that
  costs more than its length;
- a request body, other than a PUT's, over ``MAX_XML_BODY`` (413, without
  reading it); a chunked one is read up to that bound. An XML body may hold
  at most ``MAX_XML_ELEMENTS`` elements nested at most ``MAX_XML_DEPTH`` deep
  (413), and no DTD or entity (400: parsed with defusedxml, so no billion
  laughs and no external entity);
- a PUT announcing more than the largest file the Drive stores (413), or a
  content coding (415); a GET or HEAD with a body (415, as wsgidav answers
  for a file, where its folder listing would fail).

It also rewrites what wsgidav would misread: ``Depth``, ``Overwrite``,
``Timeout`` and ``Range`` in canonical form, a ``Destination`` on one of the
gateway's own names as a path, and a buffered XML body with its
``Content-Length``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as safe_xml
from defusedxml import DefusedXmlException
from wsgidav import util

from megadrive.drive import MAX_FILE_SIZE, MAX_NAME_BYTES

from .connection import ClientTooSlow, MalformedBody

MAX_PATH_BYTES = 4096
MAX_XML_BODY = 1 << 20
MAX_XML_ELEMENTS = 1000
MAX_XML_DEPTH = 32
MAX_IF_BYTES = 16 * 1024
MAX_IF_CONDITIONS = 256
MAX_RANGES = 64
MAX_LOCK_TOKEN_BYTES = 1024
MAX_TIMEOUT_BYTES = 256
MAX_DESTINATION_BYTES = 3 * MAX_PATH_BYTES + 1024  # a fully percent-encoded longest path, with scheme and host
MAX_RANGE_NUMBER = 10**18  # past any file: bigger numbers in a Range are read as this one

XML_METHODS = frozenset({"PROPFIND", "PROPPATCH", "LOCK"})
Environ = dict[str, Any]


@dataclass(frozen=True)
class Refusal:
    """An answer instead of the request: its status line and a one-line reason without any name in it."""

    status: str
    reason: str


def bad(reason: str) -> Refusal:
    return Refusal("400 Bad Request", reason)


def check_request(environ: Environ, *, scheme: str, own_host: Callable[[str], bool]) -> Refusal | None:
    """None if the request may go on (possibly rewritten in place), else why not.

    ``own_host(netloc)`` tells whether a Destination's host and port name this gateway.
    """
    method = environ.get("REQUEST_METHOD", "")
    for check in (_check_path, _check_destination, _check_headers, _check_range):
        refusal = check(environ, method, scheme, own_host)
        if refusal:
            return refusal
    return _check_body(environ, method)


def path_problem(raw: bytes) -> Refusal | None:
    """Why a decoded URL path (bytes) is refused, or None."""
    if b"\0" in raw:
        return bad("the path holds a NUL byte")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return bad("the path is not valid UTF-8")
    if len(raw) > MAX_PATH_BYTES:
        return Refusal("414 URI Too Long", f"the path is longer than {MAX_PATH_BYTES} bytes")
    parts = raw.split(b"/")
    if any(len(part) > MAX_NAME_BYTES for part in parts):
        return bad(f"a name in the path is longer than {MAX_NAME_BYTES} bytes")
    depth = 0
    for part in parts:
        if part == b"..":
            depth -= 1
            if depth < 0:  # (wsgidav answers this itself, with a Content-Length and no body)
                return bad("the path climbs above the root")
        elif part not in (b"", b"."):
            depth += 1
    return None


def _check_path(environ: Environ, method: str, scheme: str, own_host: Callable[[str], bool]) -> Refusal | None:
    try:
        raw = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1")
    except UnicodeEncodeError:  # PEP 3333: the server hands the path over as latin-1 text
        return bad("the path is not valid UTF-8")
    return path_problem(raw)


def _check_destination(environ: Environ, method: str, scheme: str,
                       own_host: Callable[[str], bool]) -> Refusal | None:
    value = environ.get("HTTP_DESTINATION")
    if value is None:
        return None
    value = value.strip()
    if len(value) > MAX_DESTINATION_BYTES:
        return Refusal("414 URI Too Long", "the Destination header is too long")
    try:
        u = urlsplit(value)
        u.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return bad("the Destination header is not a URL")
    if u.scheme or u.netloc:
        if u.scheme.lower() != scheme or not own_host(u.netloc) or u.username or u.password:
            return bad("the Destination is not a URL of this gateway")
    if not u.path.startswith("/") or u.query or u.fragment:
        return bad("the Destination header is not a URL of a file or folder")
    try:
        raw = unquote_to_bytes(u.path.encode("latin-1"))  # header values come as latin-1 text (PEP 3333)
    except UnicodeEncodeError:
        return bad("the Destination header is not a URL")
    refusal = path_problem(raw)
    if refusal:
        return Refusal(refusal.status, f"Destination: {refusal.reason}")
    environ["HTTP_DESTINATION"] = u.path  # wsgidav compares a host literally with Host; a path it takes as ours
    return None


_TIMEOUT_ITEM = re.compile(r"(?i)\s*(?:infinite|second-(\d+))\s*")
_LOCK_TOKEN = re.compile(r"\s*<[^<>\s]+>\s*")


def _check_headers(environ: Environ, method: str, scheme: str, own_host: Callable[[str], bool]) -> Refusal | None:
    depth = environ.get("HTTP_DEPTH")
    if depth is not None:
        depth = depth.strip().lower()
        if depth not in ("0", "1", "infinity"):
            return bad("the Depth header must be 0, 1 or infinity")
        environ["HTTP_DEPTH"] = depth
    overwrite = environ.get("HTTP_OVERWRITE")
    if overwrite is not None:
        overwrite = overwrite.strip().upper()
        if overwrite not in ("T", "F"):
            return bad("the Overwrite header must be T or F")
        environ["HTTP_OVERWRITE"] = overwrite
    timeout = environ.get("HTTP_TIMEOUT")
    if timeout is not None:
        items = [_TIMEOUT_ITEM.fullmatch(t) for t in timeout.split(",")] if len(timeout) <= MAX_TIMEOUT_BYTES else []
        if not items or not all(items):
            return bad("malformed Timeout header")
        # wsgidav reads the first item; a number too long for it (or for a lock's expiry) means "Infinite".
        environ["HTTP_TIMEOUT"] = ", ".join(
            f"Second-{int(m[1])}" if m and m[1] and len(m[1].lstrip("0")) <= 10 else "Infinite" for m in items)
    token = environ.get("HTTP_LOCK_TOKEN")
    if token is not None and (len(token) > MAX_LOCK_TOKEN_BYTES or not _LOCK_TOKEN.fullmatch(token)):
        return bad("malformed Lock-Token header")
    mtime = environ.get("HTTP_X_OC_MTIME")
    if mtime is not None and not (mtime.isascii() and mtime.isdigit() and len(mtime) <= 10):
        return bad("malformed X-OC-Mtime header")
    for name in ("HTTP_IF_MODIFIED_SINCE", "HTTP_IF_UNMODIFIED_SINCE"):
        if name in environ and http_date(environ[name]) is None:
            del environ[name]  # RFC 9110 13.1.3-4: a date that is not valid is ignored
    if_range = environ.get("HTTP_IF_RANGE")
    if if_range is not None and not if_range.strip().startswith(('"', 'W/"')) and http_date(if_range) is None:
        del environ["HTTP_IF_RANGE"]  # neither an entity tag nor a date: the whole file, not a range of it
        environ.pop("HTTP_RANGE", None)
    if_header = environ.get("HTTP_IF")
    if if_header is not None:
        if len(if_header) > MAX_IF_BYTES:
            return bad(f"the If header is longer than {MAX_IF_BYTES} bytes")
        if not if_header_ok(if_header):
            return bad("malformed If header")
    return None


def http_date(text: str) -> float | None:
    """Seconds since the epoch of an HTTP date as wsgidav reads it, or None (where wsgidav would raise, too)."""
    try:
        return util.parse_time_string(text.strip())  # type: ignore[no-any-return]
    except (ValueError, OverflowError):  # a year past 9999, a day 0...
        return None


def if_header_ok(text: str) -> bool:
    """RFC 4918 10.4: ``[<resource>] (list) ...``, each list ``([Not] <state-token> | [entity-tag] ...)``."""
    i, n = 0, len(text)
    lists = conditions = 0

    def skip(i: int) -> int:
        while i < n and text[i] in " \t":
            i += 1
        return i

    def closing(i: int, close: str) -> int:
        """Index after the bracketed item opening at i, or -1."""
        j = text.find(close, i + 1)
        if j < 0 or any(c in text[i + 1:j] for c in "<>[]()"):
            return -1
        return j + 1

    while (i := skip(i)) < n:
        if text[i] == "<":  # a resource tag: needs a list after it
            i = closing(i, ">")
            if i < 0 or (i := skip(i)) >= n or text[i] != "(":
                return False
            continue
        if text[i] != "(":
            return False
        i += 1
        in_list = 0
        while True:
            i = skip(i)
            if i >= n:
                return False
            if text[i] == ")":
                i += 1
                break
            if text[i:i + 3].lower() == "not":
                i = skip(i + 3)
                if i >= n:
                    return False
            if text[i] not in "<[":
                return False
            i = closing(i, ">" if text[i] == "<" else "]")
            if i < 0:
                return False
            in_list += 1
            conditions += 1
        if not in_list:
            return False
        lists += 1
    return 0 < lists and conditions <= MAX_IF_CONDITIONS


_RANGE_SPEC = re.compile(r"\s*([0-9]*)\s*-\s*([0-9]*)\s*")


def _number(digits: str) -> int:
    return MAX_RANGE_NUMBER if len(digits) > 18 else int(digits)


def _check_range(environ: Environ, method: str, scheme: str, own_host: Callable[[str], bool]) -> Refusal | None:
    value = environ.get("HTTP_RANGE")
    if value is None:
        return None
    if method not in ("GET", "HEAD"):
        del environ["HTTP_RANGE"]
        return None
    unit, eq, specs = value.partition("=")
    parts = [p for p in specs.split(",") if p.strip()]
    if len(parts) > MAX_RANGES:
        return Refusal("416 Range Not Satisfiable", f"more than {MAX_RANGES} ranges")
    ranges: list[tuple[int | None, int | None]] = []
    for p in parts:
        m = _RANGE_SPEC.fullmatch(p)
        if not m or not (m[1] or m[2]):
            break
        first = _number(m[1]) if m[1] else None
        last = _number(m[2]) if m[2] else None
        if first is not None and last is not None and last < first:
            break
        ranges.append((first, last))
    else:
        if eq and unit.strip().lower() == "bytes" and ranges:
            canonical = _one_range(ranges)
            if canonical:
                environ["HTTP_RANGE"] = canonical
                return None
    del environ["HTTP_RANGE"]  # malformed, or suffix ranges mixed with others: the whole file
    return None


def _one_range(ranges: list[tuple[int | None, int | None]]) -> str | None:
    """``bytes=A-B`` covering all the ranges; None when a suffix range (``-N``) comes with others."""
    if len(ranges) == 1:
        first, last = ranges[0]
        return f"bytes={'' if first is None else first}-{'' if last is None else last}"
    if any(first is None for first, _ in ranges):
        return None
    start = min(first for first, _ in ranges if first is not None)
    ends = [last for _, last in ranges]
    end = "" if any(e is None for e in ends) else str(max(e for e in ends if e is not None))
    return f"bytes={start}-{end}"


def _check_body(environ: Environ, method: str) -> Refusal | None:
    length_text = environ.get("CONTENT_LENGTH") or ""
    length = int(length_text) if length_text.isdigit() else None  # the server checked it is plain digits
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if method == "PUT":
        if length is not None and length > MAX_FILE_SIZE:
            return Refusal("413 Content Too Large", "the file is larger than the drive stores")
        coding = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
        if coding not in ("", "identity"):
            return Refusal("415 Unsupported Media Type", "content codings are not supported; send the bytes as "
                                                         "they are")
        environ.pop("HTTP_CONTENT_ENCODING", None)
        return None
    if method in ("GET", "HEAD") and (length or chunked):
        return Refusal("415 Unsupported Media Type", f"a {method} request takes no body")
    if length is not None and length > MAX_XML_BODY:
        return Refusal("413 Content Too Large", f"a {method} body may hold at most {MAX_XML_BODY} bytes")
    if method not in XML_METHODS or not (length or chunked):
        return None
    body = _read_body(environ, length)
    if isinstance(body, Refusal):
        return body
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return _check_xml(body) if body else None


def _read_body(environ: Environ, length: int | None) -> bytes | Refusal:
    want = MAX_XML_BODY + 1 if length is None else length
    stream = environ["wsgi.input"]
    parts: list[bytes] = []
    got = 0
    try:
        while got < want:
            data = stream.read(min(want - got, 256 * 1024))
            if not data:
                break
            parts.append(data)
            got += len(data)
    except ClientTooSlow:
        return Refusal("408 Request Timeout", "the request body came too slowly")
    except MalformedBody as e:
        return bad(str(e))
    if length is None and got > MAX_XML_BODY:
        return Refusal("413 Content Too Large", f"a request body may hold at most {MAX_XML_BODY} bytes")
    if length is not None and got < length:
        return bad("the request body ended before its Content-Length")
    return b"".join(parts)


def _check_xml(body: bytes) -> Refusal | None:
    """Walk the XML with defusedxml (no DTD, no entities), counting elements and depth as they come."""
    elements = depth = 0
    try:
        for event, _elem in safe_xml.iterparse(io.BytesIO(body), events=("start", "end"), forbid_dtd=True):
            if event == "end":
                depth -= 1
                continue
            elements += 1
            depth += 1
            if elements > MAX_XML_ELEMENTS or depth > MAX_XML_DEPTH:
                return Refusal("413 Content Too Large", f"XML bodies may hold at most {MAX_XML_ELEMENTS} elements "
                                                        f"nested at most {MAX_XML_DEPTH} deep")
    except DefusedXmlException:
        return bad("XML with a DTD or entities is refused")
    except (ParseError, ValueError, LookupError):
        return bad("the body is not well-formed XML")
    return None
