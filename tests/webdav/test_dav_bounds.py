"""Bounds: every size, count and length a WebDAV client sends is checked before the gateway spends memory on it.

Each hostile request goes to a real `megadrive webdav` over a raw socket; its exact status is checked, the
gateway logs a line for it, and the gateway's resident memory (psutil, sampled every 10 ms while the request
is sent) stays under 300 MiB.

Before the fix: a PUT refused with 401 or 409 had its whole announced body read into memory by cheroot
(an unauthenticated client grew the gateway to 730 MiB by sending 400 MiB), a chunk announcing 1 GiB was
read in one call, a path that is not UTF-8 crashed the request (empty reply), bodies of 400 answers carried
Python reprs ("Source exception: ParseError(...)"), a Timeout or X-OC-Mtime of 5000 digits and a malformed
Destination answered 500, and PROPFIND without Depth was refused even on a file.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

import pytest
from support.dav import (
    DAV,
    GatewayProcess,
    MiB,
    PeakRss,
    get,
    href,
    lockinfo,
    parse_multistatus,
    propfind_body,
    proppatch_body,
    put,
    raw_connect,
    raw_request,
    read_response,
)

RSS_LIMIT_MIB = 300
FILE = b"0123456789"


@pytest.fixture(scope="module")
def gw(shared_gw: GatewayProcess) -> GatewayProcess:
    """The module's gateway, with /f.txt (ten bytes) and the folder /dir."""
    with shared_gw.client() as c:
        put(c, "/f.txt", FILE)
        assert c.request("MKCOL", "/dir").status_code == 201
    return shared_gw


@pytest.fixture
def rss(gw: GatewayProcess) -> Iterator[list[float]]:
    """Peaks of the gateway's RSS (MiB) measured by the test; all must stay under the limit."""
    peaks: list[float] = []
    yield peaks
    print(f"\ngateway RSS peaks (MiB): {[round(p) for p in peaks]}")
    assert peaks and max(peaks) < RSS_LIMIT_MIB, peaks


def refused(gw: GatewayProcess, rss: list[float], method: str, path: str | bytes, expect: int,
            headers: dict[str, str] | None = None, body: bytes = b"", *, auth: bool = True) -> bytes:
    """Send one request, check its exact status, a clean one-line body and a log line; returns the body."""
    before = gw.stderr().count("refused")
    with PeakRss(gw.pid) as peak:
        code, _, resp = raw_request(gw, method, path, headers, body, auth=auth)
    rss.append(peak.mib)
    assert code == expect, (method, path[:80], headers and {k: v[:80] for k, v in headers.items()}, code, resp[:300])
    text = resp.decode("utf-8", "replace")
    assert "Traceback" not in text and "Source exception" not in text and "Error(" not in text, text
    if expect != 401:
        deadline = time.monotonic() + 5
        while gw.stderr().count("refused") == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gw.stderr().count("refused") > before, f"no log line for {method} -> {code}"
    return resp


def flood(gw: GatewayProcess, head: bytes, pieces: Iterable[bytes], limit: int,
          answer_wait: float = 30) -> tuple[int | None, int, float]:
    """Send ``head`` then ``pieces`` (up to ``limit`` bytes) until the gateway stops taking them; then read its
    answer (for up to ``answer_wait`` seconds). Returns (status or None, bytes sent, peak RSS in MiB)."""
    sent = 0
    status = None
    with PeakRss(gw.pid) as peak, raw_connect(gw.url) as s:
        s.settimeout(30)
        try:
            s.sendall(head)
            for p in pieces:
                s.sendall(p)
                sent += len(p)
                if sent >= limit:
                    break
        except OSError:
            pass  # the gateway answered and closed the connection: the point
        s.settimeout(answer_wait)
        try:
            status = read_response(s)[0]
        except (OSError, ConnectionError):
            status = None
    return status, sent, peak.mib


def endless(block: bytes = b"\0" * MiB) -> Iterator[bytes]:
    while True:
        yield block


def chunks(block: bytes = b"<a/>" * (MiB // 4)) -> Iterator[bytes]:
    while True:
        yield b"%x\r\n%s\r\n" % (len(block), block)


def head(gw: GatewayProcess, method: str, path: str, *extra: str, auth: bool = True) -> bytes:
    lines = [f"{method} {href(path)} HTTP/1.1", f"Host: {urlsplit(gw.url).netloc}", *extra]
    if auth:
        lines.append(f"Authorization: {gw.authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- bodies ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PROPFIND", "PROPPATCH", "LOCK"])
def test_a_body_over_1_mib_is_refused_unread(gw: GatewayProcess, rss: list[float], method: str) -> None:
    status, sent, peak = flood(gw, head(gw, method, "/f.txt", "Depth: 0", f"Content-Length: {4 << 30}"),
                               endless(), 200 * MiB)
    rss.append(peak)
    assert status == 413 and sent < 200 * MiB, (status, sent)
    status, sent, peak = flood(gw, head(gw, method, "/f.txt", "Depth: 0", "Transfer-Encoding: chunked"),
                               chunks(), 200 * MiB)
    rss.append(peak)
    assert status == 413 and sent < 200 * MiB, (status, sent)
    body = b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>' + b"<x/>" * 2000 + b"</D:prop></D:propfind>"
    refused(gw, rss, method, "/f.txt", 413, {"Depth": "0", "Content-Type": "application/xml"}, body)
    deep = b"<a>" * 100 + b"</a>" * 100
    refused(gw, rss, method, "/f.txt", 413, {"Depth": "0"}, deep)
    assert f"a {method} body may hold at most 1048576 bytes" in gw.stderr()


def test_a_chunked_xml_body_is_read_and_parsed(gw: GatewayProcess) -> None:
    """A chunked PROPFIND body used to be ignored (answered as allprop); now it is read, within the bound."""
    body = propfind_body([f"{DAV}getcontentlength"])
    pieces = [body[:10], body[10:]]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    code, _, resp = raw_request(gw, "PROPFIND", "/f.txt", {"Depth": "0", "Transfer-Encoding": "chunked"}, chunked)
    assert code == 207, resp
    (res,) = parse_multistatus(resp)
    assert res.text(f"{DAV}getcontentlength") == "10" and f"{DAV}getetag" not in res.props


def test_xml_with_entities_or_a_dtd_is_refused(gw: GatewayProcess, rss: list[float]) -> None:
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                         for i in range(1, 10))
              + b']><D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&lol9;</D:displayname></D:prop></D:propfind>')
    external = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                b'<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&e;</D:displayname></D:prop></D:propfind>')
    for body in (laughs, external):
        for method in ("PROPFIND", "PROPPATCH", "LOCK"):
            resp = refused(gw, rss, method, "/f.txt", 400, {"Depth": "0"}, body)
            assert b"XML with a DTD or entities is refused" in resp and b"root:" not in resp
    resp = refused(gw, rss, "PROPFIND", "/f.txt", 400, {"Depth": "0"}, b"<not xml")
    assert resp == b"400 Bad Request: the body is not well-formed XML\n"


def test_a_refused_upload_is_not_read_into_memory(gw: GatewayProcess, rss: list[float]) -> None:
    """A 401 (not logged in) or 409 (no parent folder) before the body: the connection closes, nothing is read."""
    for extra, path, expect in (((), "/big.bin", 401), ((f"Authorization: {gw.authorization}",), "/no/big.bin", 409)):
        status, sent, peak = flood(gw, head(gw, "PUT", path, f"Content-Length: {2 << 30}", *extra, auth=False),
                                   endless(), 300 * MiB)
        rss.append(peak)
        assert status == expect and sent < 300 * MiB, (status, sent)


def test_a_chunk_announcing_a_gigabyte_is_streamed_not_allocated(gw: GatewayProcess, rss: list[float]) -> None:
    """The chunk is read in blocks as the upload goes; cut off mid-chunk, nothing is committed."""
    status, sent, peak = flood(gw, head(gw, "PUT", "/huge-chunk.bin", "Transfer-Encoding: chunked")
                               + b"%x\r\n" % (1 << 30), endless(), 48 * MiB, answer_wait=2)
    rss.append(peak)
    assert sent >= 48 * MiB and status is None, (status, sent)  # still reading the chunk: no answer; we hang up
    with gw.client() as c:
        deadline = time.monotonic() + 10
        while (r := c.head("/huge-chunk.bin")).status_code != 404 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert r.status_code == 404
    for bad_line in (b"z\r\n", b"1" * 5000 + b"\r\n", b"5\r\nabcdeXX"):
        code, _, resp = raw_request(gw, "PUT", "/bad-chunks.bin", {"Transfer-Encoding": "chunked"}, bad_line)
        assert code == 400, (bad_line[:20], code, resp)
        assert_clean_text(resp)


def assert_clean_text(resp: bytes) -> None:
    assert b"Traceback" not in resp and b"Error(" not in resp, resp


# -- paths --------------------------------------------------------------------------------------------


def test_paths(gw: GatewayProcess, rss: list[float]) -> None:
    long_name = "n" * 256
    cases: list[tuple[str, bytes, int]] = [
        ("GET", b"/a%00b", 400), ("PUT", b"/a%00b", 400), ("PROPFIND", b"/%ff%fe", 400), ("GET", b"/%c3%28", 400),
        ("MKCOL", href("/" + long_name).encode(), 400), ("GET", href("/dir/" + long_name).encode(), 400),
        ("PROPFIND", ("/" + "d/" * 2100).encode(), 414), ("GET", ("/" + "x" * 200).encode() * 25, 414),
    ]
    for method, path, expect in cases:
        refused(gw, rss, method, path, expect, {"Depth": "0"}, b"x" if method == "PUT" else b"")
    assert "the path is not valid UTF-8" in gw.stderr() and "NUL byte" in gw.stderr()
    with gw.client() as c:  # 255 bytes is fine (a 2-byte character counts twice)
        put(c, "/" + "é" * 127 + "x", b"ok")
        assert get(c, "/" + "é" * 127 + "x") == b"ok"
    code, _, _ = raw_request(gw, "GET", ("/" + "y" * 70_000).encode())  # past the whole header block
    assert code == 414


def test_destination(gw: GatewayProcess, rss: list[float]) -> None:
    port = urlsplit(gw.url).port
    for dest in ("http://[::1/x", "http://evil.example/x.txt", f"https://127.0.0.1:{port}/x.txt",
                 f"http://127.0.0.1:{port}/a%00b", f"http://user:pw@127.0.0.1:{port}/x", "x.txt",
                 f"http://127.0.0.1:{port}/" + "n" * 300, f"http://127.0.0.1:{port}/x?y=1"):
        refused(gw, rss, "COPY", "/f.txt", 400, {"Destination": dest})
    refused(gw, rss, "COPY", "/f.txt", 414, {"Destination": f"http://127.0.0.1:{port}/" + "d/" * 2100})
    # Any of the gateway's own names works, also when the Host header uses another one.
    with gw.client() as c:
        r = c.request("COPY", "/f.txt", headers={"Destination": f"http://localhost:{port}/copy.txt"})
        assert r.status_code == 201, r.text
        r = c.request("MOVE", "/copy.txt", headers={"Destination": "/moved.txt", "Host": f"localhost:{port}"})
        assert r.status_code == 201, r.text
        assert get(c, "/moved.txt") == FILE


# -- headers ------------------------------------------------------------------------------------------


def test_depth_overwrite_timeout_lock_token_mtime(gw: GatewayProcess, rss: list[float]) -> None:
    for depth in ("2", "-1", "infinite", "1,0", "0" * 5000, ""):
        refused(gw, rss, "PROPFIND", "/dir/", 400, {"Depth": depth})
    refused(gw, rss, "COPY", "/f.txt", 400, {"Destination": "/o.txt", "Overwrite": "maybe"})
    for timeout in ("Second-abc", "Second-" + "9" * 5000, "Soon", "", "Second-1," * 100):
        refused(gw, rss, "LOCK", "/f.txt", 400, {"Timeout": timeout, "Depth": "0"}, lockinfo())
    refused(gw, rss, "UNLOCK", "/f.txt", 400, {"Lock-Token": "not-a-token"})
    refused(gw, rss, "UNLOCK", "/f.txt", 400, {"Lock-Token": "<" + "t" * 2000 + ">"})
    for mtime in ("²", "99999999999", "-5", "1e9"):
        refused(gw, rss, "PUT", "/m.txt", 400, {"X-OC-Mtime": mtime}, b"x")
    with gw.client() as c:  # a huge number of seconds: the longest lock the gateway grants (a month)
        r = c.request("LOCK", "/f.txt", content=lockinfo(),
                      headers={"Timeout": "Second-99999999999999999999", "Depth": "0"})
        assert r.status_code == 200, r.text
        granted = re.search(r"timeout>Second-(\d+)<", r.text)
        assert granted and 0 < int(granted[1]) <= 31 * 86400, r.text
        assert c.request("UNLOCK", "/f.txt", headers={"Lock-Token": r.headers["Lock-Token"]}).status_code == 204


def test_if_headers(gw: GatewayProcess, rss: list[float]) -> None:
    for value in ("<<<(((", "(", "()", "(<a>", "x", "(Not)", "<http://x/> ", "([etag] junk)", "(<a> <b) "):
        refused(gw, rss, "PUT", "/if.txt", 400, {"If": value}, b"x")
    refused(gw, rss, "PUT", "/if.txt", 400, {"If": "(<opaquelocktoken:" + "a" * 20_000 + ">)"}, b"x")
    refused(gw, rss, "PUT", "/if.txt", 400, {"If": "(<a>)" * 300}, b"x")  # more than 256 conditions
    refused(gw, rss, "PUT", "/if.txt", 431, {"If": "(<a>)" * 20_000}, b"x")  # past the whole header block
    # Well-formed ones are evaluated as before: a token that is no lock's fails the precondition.
    with gw.client() as c:
        put(c, "/if.txt", FILE)
        for value in ("(<opaquelocktoken:nope>)", '(Not <DAV:no-lock> ["nope"])', "(<DAV:no-lock>)"):
            assert c.put("/if.txt", content=b"x", headers={"If": value}).status_code == 412, value
        assert c.put("/if.txt", content=b"y", headers={"If": "(Not <DAV:no-lock>)"}).status_code == 204
        assert get(c, "/if.txt") == b"y"


def test_ranges(gw: GatewayProcess, rss: list[float]) -> None:
    refused(gw, rss, "GET", "/f.txt", 416, {"Range": "bytes=" + ",".join(f"{i}-{i}" for i in range(5000))})
    refused(gw, rss, "GET", "/f.txt", 416, {"Range": "bytes=" + "0-0," * 65})
    with gw.client() as c:
        def ranged(value: str) -> tuple[int, str | None, bytes]:
            with PeakRss(gw.pid) as peak:
                r = c.get("/f.txt", headers={"Range": value})
            rss.append(peak.mib)
            return r.status_code, r.headers.get("content-range"), r.content

        assert ranged("bytes=2-4") == (206, "bytes 2-4/10", b"234")
        assert ranged("bytes=-3") == (206, "bytes 7-9/10", b"789")
        assert ranged("bytes=1-2,6-7") == (206, "bytes 1-7/10", b"1234567")  # served as one range
        assert ranged("bytes=0-" + "9" * 5000) == (206, "bytes 0-9/10", FILE)
        assert ranged("bytes=" + "9" * 5000 + "-")[0] == 416
        for ignored in ("bytes=abc", "bytes=5-2", "items=0-1", "bytes=-", "bytes=1-2,-3", "0-1"):
            assert ranged(ignored) == (200, None, FILE), ignored


def test_content_length_and_codings(gw: GatewayProcess, rss: list[float]) -> None:
    for length in ("-1", "+5", "5_0", "0x10", "1" * 25):
        code, _, _ = raw_request(gw, "PUT", "/cl.txt", {"Content-Length": length}, b"12345")
        assert code == 400, length
    code, _, _ = raw_request(gw, "PUT", "/cl.txt", {"Content-Length": "5", "Transfer-Encoding": "chunked"},
                             b"5\r\n12345\r\n0\r\n\r\n")
    assert code == 400
    refused(gw, rss, "PUT", "/gz.txt", 415, {"Content-Encoding": "gzip"}, b"x")
    refused(gw, rss, "PUT", "/huge.bin", 413, {"Content-Length": str(1 << 50)})


def test_a_large_property_value_is_refused_per_property(gw: GatewayProcess) -> None:
    with gw.client() as c:
        r = c.request("PROPPATCH", "/f.txt", content=proppatch_body({"{urn:x:}big": "v" * 200_000}))
        assert r.status_code == 207, r.text[:500]
        assert "HTTP/1.1 413" in r.text and "HTTP/1.1 5" not in r.text, r.text[:500]
        r = c.request("PROPPATCH", "/f.txt", content=proppatch_body({"{urn:x:}big": "v" * 20_000,
                                                                     "{urn:x:}small": "s"}))
        assert r.status_code == 207 and "HTTP/1.1 200" in r.text, r.text[:500]  # 20 KB fits
        r = c.request("PROPPATCH", "/f.txt", content=proppatch_body({"{urn:x:}more": "m" * 20_000,
                                                                     "{urn:x:}other": "o"}))
        assert "HTTP/1.1 413" in r.text and "HTTP/1.1 424" in r.text, r.text[:800]  # 40 KB would not
        many = {f"{{urn:x:}}p{i}": "x" * 1000 for i in range(40)}  # each fits, all of them do not
        r = c.request("PROPPATCH", "/f.txt", content=proppatch_body(many))
        assert r.status_code == 207 and r.text.count("HTTP/1.1 413") >= 1 and "HTTP/1.1 200" not in r.text
        assert "HTTP/1.1 5" not in r.text, r.text[:800]
        r = c.request("PROPFIND", "/f.txt", headers={"Depth": "0"}, content=propfind_body(["{urn:x:}p0"]))
        assert "HTTP/1.1 404" in r.text, r.text  # nothing of it was written


# -- PROPFIND without Depth -----------------------------------------------------------------------------


def test_propfind_without_depth(gw: GatewayProcess) -> None:
    """No Depth means infinity (RFC 4918): on a file or a missing resource it answers as Depth 0; on a small
    folder it answers the whole subtree (a big one is refused: test_dav_scale)."""
    with gw.client() as c:
        r = c.request("PROPFIND", "/f.txt")
        assert r.status_code == 207, r.text
        (res,) = parse_multistatus(r.content)
        assert res.path == "/f.txt" and res.text(f"{DAV}getcontentlength") == "10"
        assert c.request("PROPFIND", "/missing.txt").status_code == 404
        assert c.request("PROPFIND", "/f.txt/below").status_code == 404
        r = c.request("PROPFIND", "/f.txt", headers={"Depth": "infinity"})
        assert r.status_code == 207 and [x.path for x in parse_multistatus(r.content)] == ["/f.txt"], r.text
        assert c.request("PROPFIND", "/missing.txt", headers={"Depth": "infinity"}).status_code == 404
        c.request("MKCOL", "/dir/sub/")
        c.put("/dir/sub/deep.txt", content=b"deep")
        whole = {"/", "/f.txt", "/dir/", "/dir/sub/", "/dir/sub/deep.txt"}
        for headers in ({}, {"Depth": "infinity"}):
            r = c.request("PROPFIND", "/", headers=headers)
            assert r.status_code == 207, r.text
            assert whole <= {x.path for x in parse_multistatus(r.content)}, r.text
        r = c.request("PROPFIND", "/dir/", headers={"Depth": "1"})
        assert r.status_code == 207 and "/dir/sub/deep.txt" not in {x.path for x in parse_multistatus(r.content)}


def test_keep_alive_survives_small_refusals(gw: GatewayProcess) -> None:
    """A refused request whose small body was not read leaves the connection usable (the rest is drained)."""
    with raw_connect(gw.url) as s:
        host = urlsplit(gw.url).netloc
        for _ in range(3):
            s.sendall(f"PUT /no/x HTTP/1.1\r\nHost: {host}\r\nAuthorization: {gw.authorization}\r\n"
                      f"Content-Length: 1000\r\n\r\n".encode() + b"x" * 1000)
            code, headers, _ = read_response(s)
            assert code == 409 and headers.get("connection") != "close"
        s.shutdown(socket.SHUT_WR)
