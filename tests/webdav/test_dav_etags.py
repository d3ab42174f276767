"""ETags: strong, stable across renames, new on every content change; conditional requests honour them."""

from __future__ import annotations

import httpx
from support.dav import DAV, assert_clean_body, get, href, prop, put


def getetag(c: httpx.Client, path: str) -> str:
    """{DAV:}getetag from PROPFIND, compared by its opaque value (see the quoting test below)."""
    v = prop(c, path, f"{DAV}getetag")
    assert v, f"no getetag for {path}"
    return v if v.startswith('"') else f'"{v}"'


def etag_of(c: httpx.Client, path: str) -> str:
    r = c.head(href(path))
    assert r.status_code == 200, r.text
    return r.headers["etag"]


def test_etags_are_strong_and_consistent(dav: httpx.Client) -> None:
    r = put(dav, "/e.txt", b"one")
    put_etag = r.headers.get("etag")
    assert put_etag, f"PUT sent no ETag: {r.headers}"
    assert not put_etag.startswith("W/"), put_etag
    assert put_etag.startswith('"') and put_etag.endswith('"'), put_etag
    g = dav.get("/e.txt")
    assert g.headers["etag"] == put_etag
    assert getetag(dav, "/e.txt") == put_etag
    # content changes: new ETag
    r = put(dav, "/e.txt", b"two")
    assert r.headers["etag"] != put_etag
    assert etag_of(dav, "/e.txt") == r.headers["etag"]
    second = r.headers["etag"]
    # same bytes written again is still a new version
    r = put(dav, "/e.txt", b"two")
    assert r.headers["etag"] not in (put_etag, second)
    # metadata changes and renames keep it
    current = r.headers["etag"]
    r = dav.request("PROPPATCH", "/e.txt",
                    content=b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:x="urn:x">'
                            b'<D:set><D:prop><x:y>z</x:y></D:prop></D:set></D:propertyupdate>')
    assert r.status_code == 207
    assert etag_of(dav, "/e.txt") == current
    r = dav.request("MOVE", "/e.txt", headers={"Destination": str(dav.base_url.join("/renamed.txt"))})
    assert r.status_code == 201
    assert etag_of(dav, "/renamed.txt") == current
    assert getetag(dav, "/renamed.txt") == current
    # a copy is another resource
    r = dav.request("COPY", "/renamed.txt", headers={"Destination": str(dav.base_url.join("/copy.txt"))})
    assert r.status_code == 201
    assert etag_of(dav, "/copy.txt") != current


def test_if_match_and_if_none_match(dav: httpx.Client) -> None:
    stale = put(dav, "/c.txt", b"first").headers["etag"]
    fresh = put(dav, "/c.txt", b"second").headers["etag"]
    r = dav.put("/c.txt", content=b"lost update", headers={"If-Match": stale})
    assert r.status_code == 412, r.text
    assert_clean_body(r)
    assert get(dav, "/c.txt") == b"second"
    r = dav.put("/c.txt", content=b"third", headers={"If-Match": fresh})
    assert r.status_code == 204, r.text
    assert get(dav, "/c.txt") == b"third"
    r = dav.put("/c.txt", content=b"clobber", headers={"If-None-Match": "*"})
    assert r.status_code == 412, r.text
    assert get(dav, "/c.txt") == b"third"
    r = dav.put("/brand-new.txt", content=b"created", headers={"If-None-Match": "*"})
    assert r.status_code == 201, r.text
    # conditional GET
    etag = etag_of(dav, "/c.txt")
    assert dav.get("/c.txt", headers={"If-None-Match": etag}).status_code == 304
    assert dav.get("/c.txt", headers={"If-Match": stale}).status_code == 412
    r = dav.delete("/c.txt", headers={"If-Match": stale})
    assert r.status_code == 412
    assert get(dav, "/c.txt") == b"third"


def test_propfind_getetag_is_the_quoted_entity_tag(dav: httpx.Client) -> None:
    etag = put(dav, "/q.txt", b"quoted").headers["etag"]
    assert prop(dav, "/q.txt", f"{DAV}getetag") == etag
