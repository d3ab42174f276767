"""The trash and the versions over WebDAV: /.trash/ and /.versions/<path>/ are read-only collections;
a MOVE out of them restores (a trashed item to the destination, a version onto its file)."""

from __future__ import annotations

import httpx
from support.dav import GatewayProcess, get, href, propfind, put, settle


def names(c: httpx.Client, path: str) -> list[str]:
    return sorted(r.path.rstrip("/").rsplit("/", 1)[-1] for r in propfind(c, path, depth="1")[1:])


def move(c: httpx.Client, src: str, dst: str, overwrite: bool = True) -> httpx.Response:
    return c.request("MOVE", href(src), headers={"Destination": href(dst), "Overwrite": "T" if overwrite else "F"})


def test_trash_and_versions_over_webdav(gw: GatewayProcess, dav: httpx.Client) -> None:
    for text in (b"first", b"second", b"third"):
        put(dav, "/a.txt", text)
        settle(gw.home)  # each PUT a version once uploaded
    put(dav, "/b.txt", b"to be deleted")
    settle(gw.home)
    assert dav.request("DELETE", "/b.txt").status_code == 204
    assert ".trash" not in names(dav, "/")

    assert names(dav, "/.trash/") == ["b.txt"]
    assert get(dav, "/.trash/b.txt") == b"to be deleted"
    assert dav.put(href("/.trash/x.txt"), content=b"x").status_code == 403
    assert dav.put(href("/.trash/b.txt"), content=b"x").status_code == 403
    assert dav.request("DELETE", href("/.trash/b.txt")).status_code == 403
    assert dav.request("MKCOL", href("/.trash/d")).status_code == 403
    assert move(dav, "/.trash/b.txt", "/b.txt").status_code == 201
    assert get(dav, "/b.txt") == b"to be deleted" and names(dav, "/.trash/") == []

    assert names(dav, "/.versions/a.txt/") == ["a v1.txt", "a v2.txt", "a v3.txt"]
    assert get(dav, "/.versions/a.txt/a v1.txt") == b"first"
    assert move(dav, "/.versions/a.txt/a v1.txt", "/a.txt").status_code in (201, 204)
    assert get(dav, "/a.txt") == b"first"
    assert names(dav, "/.versions/a.txt/") == ["a v1.txt", "a v2.txt", "a v3.txt", "a v4.txt"]
    assert move(dav, "/.versions/a.txt/a v2.txt", "/second.txt").status_code == 201
    assert get(dav, "/second.txt") == b"second"
    assert move(dav, "/a.txt", "/.trash/a.txt").status_code == 403  # nothing goes in by a move either
    assert dav.get(href("/.versions/nope.txt/x v1.txt")).status_code == 404
