"""Hostile: a server lying to a folder link's visitor. It may leave entries out (and the visitor is told
how many failed); it cannot add one, move one, rename one, swap contents, serve an older version, or turn
the folder into a file."""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.accounts import Server, make_drive, megadrive, new_home, one_line_error
from support.evil import EvilServer, LyingProxy

from megadrive import crypto, format
from megadrive.errors import IntegrityError
from megadrive.format import NodeMeta
from megadrive.publiclink import read_public_folder


@pytest.fixture
def linked(server: Server, tmp_path: Path) -> Iterator[tuple[LyingProxy, str, dict[str, str]]]:
    """A linked folder behind a lying proxy: (proxy, the link's URL through it, path -> node id)."""
    a = make_drive(server.url, new_home(tmp_path), "alice")
    a.makedirs("/pub/sub")
    for path, data in {"/pub/one.txt": b"one", "/pub/two.txt": b"two", "/pub/sub/three.txt": b"three"}.items():
        a.write_file(path, data)
    a.write_file("/pub/one.txt", b"one, second version")
    ids = {p: a.resolve(f"/pub/{p}").row.node_id for p in ("one.txt", "two.txt", "sub", "sub/three.txt")}
    version, first = a.api.get_manifest(ids["one.txt"], 1)  # kept by the server: an older, real manifest
    assert version == 1
    ids["one.txt@v1"] = base64.b64encode(first).decode()
    url = a.sharing.create_link("/pub")
    a.close()
    proxy = LyingProxy(server.url, EvilServer(server.data))
    try:
        yield proxy, url.replace(server.url, proxy.url), ids
    finally:
        proxy.close()


def _rewrite_listing(proxy: LyingProxy, change: object) -> None:
    def rewrite(method: str, path: str, out: bytes) -> bytes:
        if "/nodes?" not in path:
            return out
        d = json.loads(out)
        change(d["nodes"])  # type: ignore[operator]
        return json.dumps(d).encode()

    proxy.rewrite = rewrite


def test_a_planted_entry_is_left_out_and_counted(linked: tuple[LyingProxy, str, dict[str, str]],
                                                 server: Server, tmp_path: Path) -> None:
    proxy, url, ids = linked
    forged = NodeMeta(name="planted.exe", kind="file", key=crypto.random_key(), file_id=os.urandom(16))
    # Sealed under a key the server made up, in the store for real (the server lists it like any node).
    blob = format.seal_meta(crypto.random_key(), "x" * 32, ids["sub"], "p" * 32, forged)
    owner = EvilServer(server.data).row(ids["sub"]).owner
    EvilServer(server.data).insert(secrets.token_hex(16), owner, ids["sub"], "file", blob)
    with read_public_folder(url) as folder:
        assert folder.refused == 1
        assert [e.path for e in folder.entries] == ["one.txt", "sub", "sub/three.txt", "two.txt"]
    r = megadrive("ls", url, env={"MEGADRIVE_HOME": str(new_home(tmp_path))})
    assert r.returncode == 3 and "1 entry of the link was left out" in one_line_error(r)
    assert "planted.exe" not in r.stdout and "sub/three.txt" in r.stdout  # the rest is still listed


def test_a_moved_or_renamed_entry_is_refused(linked: tuple[LyingProxy, str, dict[str, str]]) -> None:
    proxy, url, ids = linked

    def move(nodes: list[dict[str, object]]) -> None:
        for n in nodes:
            if n["node_id"] == ids["two.txt"]:
                n["parent_id"] = ids["sub"]  # into the subfolder
            if n["node_id"] == ids["one.txt"]:
                n["meta"] = next(x["meta"] for x in nodes if x["node_id"] == ids["sub/three.txt"])  # another's name

    _rewrite_listing(proxy, move)
    with read_public_folder(url) as folder:
        assert [e.path for e in folder.entries] == ["sub", "sub/three.txt"]
        assert folder.refused == 2


def test_a_folder_whose_entry_fails_keeps_everything_else(linked: tuple[LyingProxy, str, dict[str, str]]) -> None:
    """A failed check takes down that entry (and what only it leads to), never the listing."""
    proxy, url, ids = linked

    def corrupt(nodes: list[dict[str, object]]) -> None:
        for n in nodes:
            if n["node_id"] == ids["sub"]:
                raw = bytearray(base64.b64decode(str(n["meta"])))
                raw[-1] ^= 1
                n["meta"] = base64.b64encode(bytes(raw)).decode()

    _rewrite_listing(proxy, corrupt)
    with read_public_folder(url) as folder:
        assert [e.path for e in folder.entries] == ["one.txt", "two.txt"]
        assert folder.refused == 2  # the folder, and the file only it leads to
        for e in folder.entries:
            with folder.reader(e) as r:
                assert r.read() in (b"one, second version", b"two")


def test_swapped_or_older_content_is_refused(linked: tuple[LyingProxy, str, dict[str, str]],
                                             server: Server) -> None:
    proxy, url, ids = linked
    link_id = url.split("/l/")[1].split("#")[0]
    two = proxy._http.get(f"{server.url}/v1/l/{link_id}/nodes/{ids['two.txt']}/manifest").content
    with read_public_folder(url) as folder:
        one = next(e for e in folder.entries if e.path == "one.txt")
        assert one.content.version == 2
        # Another file's manifest, under this file's name.
        proxy.forge = lambda m, p, b: (200, two) if f"/nodes/{ids['one.txt']}/manifest" in p else None
        with pytest.raises(IntegrityError):
            folder.reader(one)
        # This file's own first version (a real, older manifest) offered as the current one.
        older = {"version": 1, "manifest": ids["one.txt@v1"], "size": 3}
        proxy.forge = lambda m, p, b: (200, json.dumps(older).encode()) \
            if f"/nodes/{ids['one.txt']}/manifest" in p else None
        with pytest.raises(IntegrityError, match="older version"):
            folder.reader(one)
        proxy.forge = lambda m, p, b: None
        with folder.reader(one) as r:
            assert r.read() == b"one, second version"


def test_the_server_cannot_turn_a_folder_link_into_a_file(linked: tuple[LyingProxy, str, dict[str, str]],
                                                          tmp_path: Path) -> None:
    proxy, url, ids = linked

    def as_file(method: str, path: str, out: bytes) -> bytes:
        if path.startswith("/v1/l/") and path.count("/") == 3:
            d = json.loads(out) | {"kind": "file", "version": 1, "manifest": "AAAA", "size": 3}
            return json.dumps(d).encode()
        return out

    proxy.rewrite = as_file
    with read_public_folder(url) as folder:  # the sealed record says folder: it is listed as one
        assert "sub/three.txt" in [e.path for e in folder.entries]
    out = tmp_path / "dl"
    out.mkdir()
    r = megadrive("get", url, str(out), env={"MEGADRIVE_HOME": str(new_home(tmp_path))})
    assert r.returncode == 0, r.stderr
    assert (out / "pub" / "sub" / "three.txt").read_bytes() == b"three"


def test_a_folder_listed_as_a_file_is_refused(linked: tuple[LyingProxy, str, dict[str, str]]) -> None:
    proxy, url, ids = linked

    def retype(nodes: list[dict[str, object]]) -> None:
        for n in nodes:
            if n["node_id"] == ids["sub"]:
                n["kind"] = "file"

    _rewrite_listing(proxy, retype)
    with read_public_folder(url) as folder:
        assert [e.path for e in folder.entries] == ["one.txt", "two.txt"] and folder.refused == 2


def test_a_server_hiding_a_folder_link_does_not_stop_its_re_key(server: Server, tmp_path: Path) -> None:
    """'unlink FOLDER' re-keys even when the server says there is no link: whether a link holder keeps
    the folder's key is not the server's to say."""
    from support.evil import leaked_keys

    proxy = LyingProxy(server.url, EvilServer(server.data))
    try:
        a = make_drive(proxy.url, new_home(tmp_path), "alice")
        a.makedirs("/pub/sub")
        url = a.sharing.create_link("/pub")
        with read_public_folder(url.replace(proxy.url, server.url)) as folder:
            held = {folder.record.key} | {e.meta.key for e in folder.entries}
        proxy.rewrite = lambda m, p, out: json.dumps({"links": []}).encode() \
            if m == "GET" and p.split("?")[0] == "/v1/links" else out
        n, done = a.sharing.remove_links("/pub")
        assert n == 0 and done is not None and done.nodes == 2
        a.write_file("/pub/sub/later.txt", b"after the unlink")
        reach = leaked_keys(held, EvilServer(server.data).rows())
        for path in ("/pub", "/pub/sub", "/pub/sub/later.txt"):
            assert a.resolve(path).verified().key not in reach, path
        a.close()
    finally:
        proxy.close()
