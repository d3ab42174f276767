"""Fuzzing the WebDAV gateway with hypothesis: a real `megadrive webdav` over a real server, over raw sockets.

Inputs: every WebDAV method (and a few others); paths with NUL bytes, invalid UTF-8, overlong names and
paths, dot segments, the other account's names; odd Depth, Range, If, Destination, Overwrite, Timeout,
Lock-Token, X-OC-Mtime and conditional headers; malformed XML bodies, XML with a DTD, external entities,
billion laughs, deep nesting, thousands of elements; chunked bodies, well-formed or not.

A second account on the same server holds a marker: a folder and a file whose names and content, and a
dead property, are random tokens. The invariants of every answer (``check_answer``): never a 5xx, at the
top or inside a multistatus; never a traceback or Python repr in a body; never a byte of the marker; a
refusal is a clear 4xx (a one-line text, or the XML of a WebDAV precondition) and the gateway logged a
line for it. At the end the gateway is alive, its log holds no traceback, no internal error and no marker,
and its RSS stayed under 300 MiB.

Runs: ``EXAMPLES`` inputs per test (MEGADRIVE_LONG_TESTS=1 for the long run); the totals are printed.
"""

from __future__ import annotations

import os
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.dav import (  # noqa: E402
    GatewayProcess,
    get,
    lockinfo,
    propfind_body,
    proppatch_body,
    put,
    raw_request,
    signup,
)
from support.server import NO_SIGNUP_LIMIT, ServerProcess  # noqa: E402

LONG = os.environ.get("MEGADRIVE_LONG_TESTS") == "1"
EXAMPLES = 2500 if LONG else 300
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=30), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example, HealthCheck.filter_too_much])
RSS_LIMIT = 300 << 20
# A refusal: the gateway will not carry the request out as sent (404, 409, 412, 423... are answers, not refusals).
REFUSALS = {400, 405, 408, 411, 413, 414, 415, 416, 421, 431, 501}
LEAKS = ("Traceback", 'File "', "Source exception", "Error(", "Exception(", " object at 0x")
MULTISTATUS_5XX = re.compile(rb"HTTP/1\.[01] 5\d\d")
METHODS = ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK",
           "UNLOCK", "POST", "PATCH", "TRACE", "SEARCH", "REPORT", "MKCALENDAR", "ACL", "BIND", "get", "Propfind"]


@dataclass
class World:
    server: ServerProcess
    gw: GatewayProcess
    markers: list[bytes]  # the other account's content, property value and a hidden name: never in an answer
    marker_path: str  # where the marker file is in the other account (fed to the fuzzer: never in a log)
    stats: Counter[str] = field(default_factory=Counter)  # test -> requests sent
    statuses: Counter[int] = field(default_factory=Counter)
    lock_tokens: list[str] = field(default_factory=list)
    sent: int = 0
    peak_rss: int = 0


class Summary:
    """Prints the run's figures at the end of the test session."""

    def __init__(self, line: str) -> None:
        self.line = line

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_line(self.line)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[World]:
    base = tmp_path_factory.mktemp("gateway-fuzz")
    server = ServerProcess(base / "data", extra_args=NO_SIGNUP_LIMIT)
    gateways: list[GatewayProcess] = []
    try:
        # The other account: a marker folder, file, content and property of random tokens.
        tokens = [f"mk{secrets.token_hex(12)}" for _ in range(5)]
        marker_path = f"/{tokens[0]}/{tokens[1]}.txt"
        other = signup(server.url, base / "other")
        mgw = GatewayProcess(other.home)
        gateways.append(mgw)
        with mgw.client() as c:
            assert c.request("MKCOL", f"/{tokens[0]}").status_code == 201
            put(c, marker_path, tokens[2].encode() * 100)
            r = c.request("PROPPATCH", marker_path, content=proppatch_body({"{urn:mk:}secret": tokens[3]}))
            assert r.status_code == 207 and "200 OK" in r.text, r.text
            put(c, f"/{tokens[0]}/{tokens[4]}.txt", b"hidden")
        mgw.stop()
        gw = GatewayProcess(signup(server.url, base / "fuzzer").home)
        gateways.append(gw)
        w = World(server, gw, [t.encode() for t in tokens[2:]], marker_path)
        restore(w)
        yield w
        line = (f"gateway fuzz: {w.sent} requests ({', '.join(f'{k} {v}' for k, v in sorted(w.stats.items()))}); "
                f"statuses {dict(sorted(w.statuses.items()))}; gateway RSS peak {w.peak_rss / 2**20:.0f} MiB")
        request.config.pluginmanager.register(Summary(line), "gateway-fuzz-summary")
        assert gw.proc.poll() is None, "the gateway died"
        log = gw.stderr()
        for bad in ("Traceback", "internal error", "request failed"):
            assert bad not in log, f"{bad!r} in the gateway's log:\n{log[-3000:]}"
        for m in [*w.markers, *(t.encode() for t in tokens[:2])]:
            assert m.decode() not in log, "a marker or a name reached the gateway's log"
        assert w.peak_rss < RSS_LIMIT, w.peak_rss
    finally:
        for g in gateways:
            g.stop()
        server.stop()


def restore(w: World) -> None:
    """Put back what the fuzzer's requests may have moved, locked or deleted."""
    with w.gw.client(timeout=30) as c:
        for token in w.lock_tokens:
            for path in ("/f.txt", "/dir", "/dir/g.txt", "/"):
                c.request("UNLOCK", path, headers={"Lock-Token": f"<{token}>"})
        w.lock_tokens.clear()
        answers: list[tuple[str, int, str]] = []
        for _ in range(2):
            c.request("MKCOL", "/dir")
            answers = [(path, r.status_code, r.text[:200]) for path, data in
                       (("/f.txt", b"0123456789"), ("/dir/g.txt", b"g" * 3000)) if (r := c.put(path, content=data))]
            if all(code in (201, 204) for _, code, _ in answers):
                return
            for path in ("/dir", "/f.txt"):  # a file where the folder was, or a folder where the file was
                c.request("DELETE", path)
        raise AssertionError(f"cannot restore the fuzzer's files: {answers}")


def check_answer(w: World, test: str, method: str, code: int, headers: dict[str, str], body: bytes,
                 log_before: int) -> None:
    """The invariants of every answer to the fuzzer."""
    w.stats[test] += 1
    w.statuses[code] += 1
    w.sent += 1
    text = body.decode("utf-8", "replace")
    shown = (method, code, text[:400])
    assert code < 500, shown
    if method.upper() != "HEAD" and "content-length" in headers:
        assert len(body) == int(headers["content-length"]), ("a body shorter than its Content-Length", shown)
    assert not MULTISTATUS_5XX.search(body), shown
    for leak in LEAKS:
        assert leak not in text, (leak, shown)
    for m in w.markers:
        assert m not in body and all(m.decode() not in v for v in headers.values()), ("marker leaked", shown)
    if 400 <= code < 500 and method.upper() != "HEAD" and body:
        ctype = headers.get("content-type", "")
        if ctype.startswith("text/plain"):
            assert text.strip() and text.count("\n") <= 1, shown
        else:
            assert ctype.startswith("application/xml") and "<" in text, shown
    if code in REFUSALS:
        log = w.gw.stderr()
        assert log.count("refused") > log_before, ("no log line for a refusal", shown)
    token = headers.get("lock-token", "")
    if token.startswith("<") and token.endswith(">"):
        w.lock_tokens.append(token[1:-1])


def send(w: World, test: str, method: str, path: bytes, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    log_before = w.gw.stderr().count("refused")
    try:
        code, hdrs, resp = raw_request(w.gw, method, path, headers, body, timeout=20)
    except ConnectionError as e:  # closed without an answer: only acceptable if the gateway is still alive
        assert w.gw.proc.poll() is None, f"the gateway died on {method} {path[:100]!r}"
        raise AssertionError(f"no answer to {method} {path[:100]!r} {headers}: {e}") from None
    check_answer(w, test, method, code, hdrs, resp, log_before)
    w.peak_rss = max(w.peak_rss, psutil.Process(w.gw.pid).memory_info().rss)
    if w.sent % 40 == 0:
        restore(w)
    return code, resp


# -- strategies ---------------------------------------------------------------------------------------

HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                      max_size=60)
NAME_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20)


def raw_segment() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from([b"f.txt", b"dir", b"g.txt", b"missing", b".", b"..", b"", b"%2F", b"%00", b"a%00b",
                         b"%ff%fe", b"%c3%28", b"%e2%82", b"~", b"*", b"%25", b"a%2Fb"]),
        NAME_TEXT.map(lambda s: quote(s, safe="").encode()),
        st.integers(250, 300).map(lambda n: b"n" * n),
        st.binary(min_size=1, max_size=8).map(lambda b: quote(b, safe="").encode()),
    )


def mostly(valid: list[str], invalid: list[str], *others: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Valid values half the time (so requests get past the checks), odd ones the other half."""
    return st.one_of(st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(invalid), *others)


def paths(marker_path: str) -> st.SearchStrategy[bytes]:
    good = [b"/", b"/f.txt", b"/dir/", b"/dir", b"/dir/g.txt", b"/missing.txt", b"/new.txt", b"/dir/new/"]
    odd = [b"/f.txt/below", b"//f.txt", b"/dir/../f.txt", b"/..", b"*", quote(marker_path).encode(),
           b"/Shared%20with%20me/", b"/?x=1", b"/f.txt#frag", b"/a%00b", b"/%ff%fe"]
    return st.one_of(
        st.sampled_from(good), st.sampled_from(good), st.sampled_from(odd),
        st.lists(raw_segment(), min_size=1, max_size=4).map(lambda segs: b"/" + b"/".join(segs)),
        st.integers(4000, 4200).map(lambda n: b"/" + b"d/" * (n // 2)),
    )


def destinations(w: World) -> st.SearchStrategy[str]:
    netloc = urlsplit(w.gw.url).netloc
    port = urlsplit(w.gw.url).port
    return mostly(
        [f"http://{netloc}/copy.txt", "/moved.txt", f"http://localhost:{port}/dir/h.txt", f"http://{netloc}/dir/",
         f"http://{netloc}/f.txt", f"http://{netloc}/dir/sub/"],
        ["http://evil.example/x", f"https://{netloc}/x", "http://[::1/x", f"http://{netloc}{w.marker_path}",
         f"http://{netloc}/a%00b", f"http://{netloc}/%ff", "", "relative.txt", f"http://{netloc}/" + "d/" * 2100,
         f"http://{netloc}/" + "n" * 300, f"http://u:p@{netloc}/x", f"http://{netloc}:99999/x",
         f"http://{netloc}/../x"],
        HEADER_TEXT, NAME_TEXT.map(lambda s: f"http://{netloc}/{quote(s)}"),
    )


DEPTHS = mostly(["0", "1", "infinity"], ["Infinity", " 1 ", "2", "-1", "", "01", "0" * 300, "1,0", "inf"])
RANGES = mostly(
    ["bytes=0-0", "bytes=2-4", "bytes=-3", "bytes=5-", "bytes=1-2,6-7", "bytes=0-99999999999999999999"],
    ["bytes=" + "9" * 30 + "-", "bytes=0-" + "9" * 400, "bytes=1-2,-3", "bytes=abc", "bytes=5-2", "items=0-1",
     "bytes=-", "bytes=", "bytes=" + ",".join(f"{i}-{i}" for i in range(3000)), "bytes=" + "0-1," * 64],
    st.lists(st.tuples(st.integers(-5, 2**70), st.integers(-5, 2**70)), min_size=1, max_size=80).map(
        lambda rs: "bytes=" + ",".join(f"{a}-{b}" for a, b in rs)),
    HEADER_TEXT,
)
IFS = mostly(
    ["(<opaquelocktoken:nope>)", "(Not <DAV:no-lock>)", "(<DAV:no-lock>)", '(["etag"])', '(Not ["x"] <DAV:no-lock>)',
     "<http://x/f.txt> (<a>)"],
    ["<<<(((", "(", "()", "(<a>", "x", "(Not)", "(<" + "a" * 20_000 + ">)", "(<a>)" * 300, "(<a>)" * 12_000],
    st.lists(st.sampled_from(["(", ")", "<", ">", "[", "]", "Not", " ", "a", '"', "urn:x"]), max_size=30).map("".join),
    HEADER_TEXT,
)
TIMEOUTS = mostly(["Second-3600", "Infinite", "Infinite, Second-4100000000", "Second-99999999999999999999"],
                  ["Second-0", "Second-" + "9" * 5000, "Second-abc", "", "Soon", "Second-1," * 50], HEADER_TEXT)
TOKENS = mostly(["<opaquelocktoken:nope>"], ["not-a-token", "<>", "<" + "t" * 3000 + ">", ""], HEADER_TEXT)
DATES = mostly(["Mon, 30 Nov 2026 00:00:00 GMT", "Sun, 06 Nov 1994 08:49:37 GMT"],
               ["Mon, 99 Foo 99999 99:99:99 GMT", "yesterday", "", "Sun, 06 Nov 99999999 08:49:37 GMT"], HEADER_TEXT)


def header_sets(w: World) -> st.SearchStrategy[dict[str, str]]:
    """Up to four of the headers WebDAV clients send, each valid about half the time."""
    values: dict[str, st.SearchStrategy[str]] = {
        "Depth": DEPTHS, "Range": RANGES, "If": IFS, "Destination": destinations(w), "Timeout": TIMEOUTS,
        "Overwrite": mostly(["T", "F"], ["t", "maybe", ""], HEADER_TEXT), "Lock-Token": TOKENS,
        "X-OC-Mtime": mostly(["1700000000"], ["²", "99999999999", "-5", "1e9", ""]),
        "If-Match": mostly(['"x"', "*"], ['W/"x"', ""], HEADER_TEXT), "If-None-Match": mostly(['"x"', "*"], [""]),
        "If-Modified-Since": DATES, "If-Unmodified-Since": DATES, "If-Range": DATES,
        "Content-Type": mostly(["application/xml", "text/xml; charset=utf-8"], ["application/octet-stream", "x/y"]),
        "Content-Encoding": mostly(["identity"], ["gzip"]), "Content-Range": st.just("bytes 0-1/2"),
        "Expect": st.just("100-continue"),
    }
    return st.lists(st.sampled_from(sorted(values)), max_size=4, unique=True).flatmap(
        lambda names: st.fixed_dictionaries({n: values[n] for n in names}))


def billion_laughs(n: int = 10) -> bytes:
    ents = "".join(f'<!ENTITY l{i} "{(f"&l{i - 1};" if i else "lol") * 10}">' for i in range(n))
    return (f'<?xml version="1.0"?><!DOCTYPE d [{ents}]><D:propfind xmlns:D="DAV:"><D:prop><D:displayname>'
            f"&l{n - 1};</D:displayname></D:prop></D:propfind>").encode()


HOSTILE_XML = [
    billion_laughs(),
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><D:propfind xmlns:D="DAV:">'
    b"<D:prop><D:displayname>&e;</D:displayname></D:prop></D:propfind>",
    b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://127.0.0.1:9/dtd"><x/>',
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p">%p;]><x/>',
    b'<?xml version="1.0"?><!DOCTYPE x [<!ELEMENT x ANY>]><x/>',
]
TEMPLATES = {  # (by name: hypothesis shows the name of a failing one, not 40 KB of it)
    "allprop": propfind_body(), "named-props": propfind_body(["{DAV:}getcontentlength", "{urn:x:}p"]),
    "quota-and-locks": propfind_body(["{DAV:}quota-used-bytes", "{DAV:}lockdiscovery"]),
    "propname": b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>',
    "set-and-remove": proppatch_body({"{urn:x:}p": "v"}, ["{urn:x:}q"]),
    "bad-lastmodified": proppatch_body({"{DAV:}getlastmodified": "Mon, 99 Foo 9999 GMT"}),
    "win32-garbage": proppatch_body({"{urn:schemas-microsoft-com:}Win32LastModifiedTime": "garbage",
                                     "{urn:schemas-microsoft-com:}Win32FileAttributes": "00000020"}),
    "protected": proppatch_body({"{DAV:}displayname": "x", "{DAV:}getetag": "y"}),
    "big-property": proppatch_body({"{urn:x:}big": "v" * 40_000}),
    "lock": lockinfo(), "shared-lock": lockinfo(scope="shared"), "big-owner": lockinfo(owner="o" * 5000),
    "deep": b"<a>" * 40 + b"</a>" * 40, "many-elements": b"<x/>" * 1500, "not-xml": b"<not xml",
    "unknown-encoding": b'<?xml version="1.0" encoding="x-nope"?><x/>', "utf16": b"\xff\xfe<\x00x\x00/\x00>\x00",
    "empty-lockinfo": b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"/>', "empty-propfind": b"<D:propfind "
    b"xmlns:D='DAV:'/>", "nul": b"\x00",
    "billion-laughs": HOSTILE_XML[0], "external-entity": HOSTILE_XML[1], "external-dtd": HOSTILE_XML[2],
    "parameter-entity": HOSTILE_XML[3], "internal-dtd": HOSTILE_XML[4],
}
XML_BODIES = st.one_of(
    st.sampled_from(sorted(TEMPLATES)),
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.recursive(st.sampled_from(["<a/>", "text", "<D:prop xmlns:D='DAV:'/>"]),
                 lambda inner: st.lists(inner, max_size=4).map(lambda xs: "<e>" + "".join(xs) + "</e>"),
                 max_leaves=20).map(str.encode),
)


def body_of(drawn: str | bytes) -> bytes:
    return TEMPLATES[drawn] if isinstance(drawn, str) else drawn


BODIES = st.one_of(st.just(b""), XML_BODIES, st.binary(max_size=4096))


def framed(body: bytes, mode: str) -> tuple[dict[str, str], bytes]:
    """The body as sent: plain (Content-Length), chunked, or chunked and broken."""
    if mode == "plain" or not body:
        return {}, body
    pieces = [body[i:i + 7] for i in range(0, len(body), 7)]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    if mode == "chunked":
        return {"Transfer-Encoding": "chunked"}, chunked + b"0\r\n\r\n"
    return {"Transfer-Encoding": "chunked"}, chunked + b"zz\r\n"  # a bad chunk size after the data


# -- the fuzz tests -----------------------------------------------------------------------------------


def test_fuzz_world_holds_what_it_claims(world: World) -> None:
    """The marker is on the server, unreachable through the fuzzer's gateway; the fuzzer's files are there."""
    blobs = b"".join(p.read_bytes() for p in (world.server.data_dir).rglob("*") if p.is_file())
    assert all(m not in blobs for m in world.markers)  # stored encrypted, names included
    code, _ = send(world, "sanity", "GET", quote(world.marker_path).encode(), {}, b"")
    assert code == 404
    with httpx.Client(base_url=world.gw.url, auth=world.gw.auth, timeout=30) as c:
        assert get(c, "/f.txt") == b"0123456789"


@FUZZ
@given(data=st.data())
def test_fuzz_any_request(world: World, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(METHODS), "method")
    path = data.draw(paths(world.marker_path), "path")
    headers = data.draw(header_sets(world), "headers")
    if world.lock_tokens and data.draw(st.booleans(), "use a lock token it holds"):
        token = data.draw(st.sampled_from(world.lock_tokens), "token")
        name = data.draw(st.sampled_from(["If", "Lock-Token"]), "as")
        headers[name] = f"(<{token}>)" if name == "If" else f"<{token}>"
    body = body_of(data.draw(BODIES, "body"))
    extra, wire = framed(body, data.draw(st.sampled_from(["plain", "plain", "chunked", "broken"]), "framing"))
    send(world, "any", method, path, {**headers, **extra}, wire)


@FUZZ
@given(method=st.sampled_from(["PROPFIND", "PROPPATCH", "LOCK"]), path=st.sampled_from([b"/f.txt", b"/dir/", b"/"]),
       depth=st.sampled_from(["0", "1"]), xml=XML_BODIES, chunked=st.booleans())
def test_fuzz_xml_bodies(world: World, method: str, path: bytes, depth: str, xml: str | bytes, chunked: bool) -> None:
    body = body_of(xml)
    extra, wire = framed(body, "chunked" if chunked else "plain")
    code, resp = send(world, "xml", method, path, {"Depth": depth, **extra}, wire)
    if body in HOSTILE_XML:  # defusedxml refuses every DTD and entity, before wsgidav sees the body
        assert code == 400 and b"XML with a DTD or entities is refused" in resp, (code, resp[:300])


@FUZZ
@given(method=st.sampled_from(METHODS[:12]), path=paths("/x"), data=st.data())
def test_fuzz_headers(world: World, method: str, path: bytes, data: st.DataObject) -> None:
    headers = data.draw(header_sets(world).filter(bool), "headers")
    send(world, "headers", method, path, headers, b"x" if method == "PUT" else b"")
