"""Properties: X-OC-Mtime, dead properties (persisted, encrypted on the server), names that need encoding."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import PurePosixPath

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.dav import (
    DAV,
    TEST_NS,
    GatewayProcess,
    assert_clean_body,
    files_containing,
    get,
    href,
    needle_forms,
    parse_multistatus,
    prop,
    propfind,
    proppatch_body,
    put,
    signup,
)
from support.server import ServerProcess


def test_x_oc_mtime_sets_last_modified(dav: httpx.Client) -> None:
    r = dav.put("/synced.txt", content=b"from a sync client", headers={"X-OC-Mtime": "1000000000"})
    assert r.status_code == 201, r.text
    if "x-oc-mtime" in r.headers:
        assert r.headers["x-oc-mtime"] == "accepted"
    assert prop(dav, "/synced.txt", f"{DAV}getlastmodified") == "Sun, 09 Sep 2001 01:46:40 GMT"
    assert dav.head("/synced.txt").headers["Last-Modified"] == "Sun, 09 Sep 2001 01:46:40 GMT"
    # Also on an update of an existing file.
    r = dav.put("/synced.txt", content=b"v2", headers={"X-OC-Mtime": "1500000000"})
    assert r.status_code == 204, r.text
    assert prop(dav, "/synced.txt", f"{DAV}getlastmodified") == "Fri, 14 Jul 2017 02:40:00 GMT"
    assert get(dav, "/synced.txt") == b"v2"
    r = dav.put("/synced.txt", content=b"v3", headers={"X-OC-Mtime": "yesterday"})
    assert r.status_code == 400
    assert_clean_body(r)


def test_dead_property_survives_restart_and_is_encrypted_on_server(
        fresh_server: ServerProcess, tmp_path, gateways: Callable[..., GatewayProcess]) -> None:
    acct = signup(fresh_server.url, tmp_path)
    value = f"propvalue{secrets.token_hex(8)}"
    name = f"{{{TEST_NS}}}colour"
    gw1 = gateways(acct.home)
    with gw1.client() as c:
        put(c, "/doc.txt", b"content")
        assert c.request("MKCOL", "/folder").status_code == 201
        for path in ("/doc.txt", "/folder"):
            r = c.request("PROPPATCH", href(path), content=proppatch_body({name: value}),
                          headers={"Content-Type": "application/xml"})
            assert r.status_code == 207, r.text
            (res,) = parse_multistatus(r.content)
            assert res.status_of == {name: 200}, r.text
    gw1.stop()
    gw2 = gateways(acct.home)
    with gw2.client() as c:
        assert prop(c, "/doc.txt", name) == value
        assert prop(c, "/folder", name) == value
        # allprop lists dead properties too
        (res,) = propfind(c, "/doc.txt")
        assert res.text(name) == value
        # removal
        r = c.request("PROPPATCH", "/doc.txt", content=proppatch_body(removes=[name]),
                      headers={"Content-Type": "application/xml"})
        assert r.status_code == 207
        assert prop(c, "/doc.txt", name) is None
        assert prop(c, "/folder", name) == value
    hits = files_containing(fresh_server.data_dir, needle_forms(value))
    assert not hits, f"a dead property value reached the server in plaintext: {hits}"


def test_dead_properties_travel_with_move_and_copy(dav: httpx.Client) -> None:
    name = f"{{{TEST_NS}}}tag"
    put(dav, "/a.txt", b"a")
    r = dav.request("PROPPATCH", "/a.txt", content=proppatch_body({name: "blue"}))
    assert r.status_code == 207
    assert dav.request("COPY", "/a.txt", headers={"Destination": str(dav.base_url.join("/b.txt"))}).status_code == 201
    assert dav.request("MOVE", "/a.txt", headers={"Destination": str(dav.base_url.join("/c.txt"))}).status_code == 201
    assert prop(dav, "/b.txt", name) == "blue"
    assert prop(dav, "/c.txt", name) == "blue"


NAME_CHARS = st.characters(categories=("L", "N", "P", "S", "Zs"), exclude_characters="/\\")
NAMES = st.text(NAME_CHARS, min_size=1, max_size=30).filter(
    lambda s: s not in (".", "..") and s.strip() == s and len(s.encode()) <= 200)
PINNED = ["with space.txt", "100% sure", "%41%2F", "a+b&c=d?e#f", "naïve café ☕", "日本語のファイル", "emoji 🎉.txt",
          "'quotes\"", "<tag>&amp;", "~tilde", "semi;colon,comma"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.sampled_from(PINNED), NAMES), data=st.binary(max_size=64))
def test_names_round_trip(shared_gw: GatewayProcess, name: str, data: bytes) -> None:
    folder = "/names"
    path = str(PurePosixPath(folder, name))
    with shared_gw.client() as c:
        if c.request("PROPFIND", folder + "/", headers={"Depth": "0"}).status_code == 404:
            assert c.request("MKCOL", folder).status_code == 201
        r = c.put(href(path), content=data)
        assert r.status_code in (201, 204), f"PUT {name!r}: {r.status_code} {r.text}"
        assert get(c, path) == data
        listed = {PurePosixPath(p.path.rstrip("/")).name: p for p in propfind(c, folder + "/", depth="1")}
        assert name in listed, f"{name!r} not in {sorted(listed)}"
        assert listed[name].text(f"{DAV}displayname") in (None, name)
        assert listed[name].text(f"{DAV}getcontentlength") == str(len(data))
        (own,) = propfind(c, path)
        assert PurePosixPath(own.path).name == name
        assert c.delete(href(path)).status_code == 204
        assert c.get(href(path)).status_code == 404
