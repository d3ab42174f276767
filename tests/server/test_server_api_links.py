"""API tests (real server process): public links and abuse reports."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.server import ServerProcess
from support.server_api import User, assert_json_error, b64, hex32

KDF = {"alg": "argon2id13", "opslimit": 3, "memlimit": 65536}


@pytest.fixture
def anon(server_url: str) -> Iterator[httpx.Client]:
    """A client without any token: what a link's visitor has."""
    with httpx.Client(base_url=server_url, timeout=30) as client:
        yield client


def committed_file(user: User, *datas: bytes, parent: str | None = None) -> tuple[str, list[str]]:
    f = user.mkfile(parent)
    cids = []
    for data in datas:
        cid, r = user.put_chunk(data)
        assert r.status_code in (200, 201), r.text
        cids.append(cid)
    r = user.commit(f["node_id"], 0, cids, manifest=b"manifest-v1")
    assert r.status_code == 201, r.text
    return f["node_id"], cids


def make_link(user: User, node_id: str, **extra: Any) -> httpx.Response:
    body = {"node_id": node_id, "blob": b64(b"sealed link record"), "salt": None, "kdf": None, "expires": None}
    return user.client.post("/v1/links", json={**body, **extra})


def link_of(user: User, node_id: str, **extra: Any) -> str:
    r = make_link(user, node_id, **extra)
    assert r.status_code == 201, r.text
    link = r.json()["link"]
    assert set(link) == {"link_id", "node_id", "expires", "created"} and link["node_id"] == node_id
    return str(link["link_id"])


def test_public_fetch_without_token(alice: User, anon: httpx.Client) -> None:
    node_id, (c1, c2) = committed_file(alice, b"part one", b"part two")
    link_id = link_of(alice, node_id)
    assert len(link_id) == 22
    r = anon.get(f"/v1/l/{link_id}")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "link_id": link_id,
        "owner": alice.user_id,
        "node_id": node_id,
        "kind": "file",
        "blob": b64(b"sealed link record"),
        "salt": None,
        "kdf": None,
        "version": 1,
        "manifest": b64(b"manifest-v1"),
        "size": len(b"part one") + len(b"part two"),
    }
    r = anon.get(f"/v1/l/{link_id}/chunks/{c2}")
    assert r.status_code == 200 and r.content == b"part two"
    assert r.headers["content-type"] == "application/octet-stream"
    # Only chunks of the current version: an older version's and unrelated ones are 404.
    c3, r = alice.put_chunk(b"version two")
    assert alice.commit(node_id, 1, [c3]).status_code == 201
    assert_json_error(anon.get(f"/v1/l/{link_id}/chunks/{c1}"), 404)
    assert anon.get(f"/v1/l/{link_id}/chunks/{c3}").content == b"version two"
    assert anon.get(f"/v1/l/{link_id}").json()["version"] == 2
    _, (unrelated,) = committed_file(alice, b"not linked")
    assert_json_error(anon.get(f"/v1/l/{link_id}/chunks/{unrelated}"), 404)
    assert_json_error(anon.get(f"/v1/l/{'A' * 22}"), 404)
    assert_json_error(anon.get("/v1/l/short"), 400)
    assert_json_error(anon.get(f"/v1/l/{link_id}/chunks/xyz"), 400)
    # The token-side endpoints still need one.
    assert_json_error(anon.get("/v1/links"), 401)


def test_password_link_and_listing(alice: User, bob: User, anon: httpx.Client) -> None:
    node_id, _ = committed_file(alice, b"secret")
    salt = secrets.token_bytes(16)
    link_id = link_of(alice, node_id, salt=b64(salt), kdf=KDF, expires=4_000_000_000)
    body = anon.get(f"/v1/l/{link_id}").json()
    assert body["salt"] == b64(salt) and body["kdf"] == KDF
    links = alice.client.get("/v1/links").json()["links"]
    assert [(x["link_id"], x["expires"]) for x in links] == [(link_id, 4_000_000_000)]
    assert bob.client.get("/v1/links").json() == {"links": []}
    assert_json_error(bob.client.delete(f"/v1/links/{link_id}"), 404)
    assert alice.client.delete(f"/v1/links/{link_id}").status_code == 204
    assert_json_error(anon.get(f"/v1/l/{link_id}"), 404)
    assert_json_error(alice.client.delete(f"/v1/links/{link_id}"), 404)
    assert alice.client.get("/v1/links").json() == {"links": []}


def test_link_refusals(alice: User, bob: User) -> None:
    node_id, _ = committed_file(alice, b"x")
    assert_json_error(make_link(alice, alice.root), 409, "conflict")  # never the whole account
    assert_json_error(make_link(bob, node_id), 404)  # not bob's, nothing shared
    assert_json_error(make_link(alice, hex32()), 404)
    for bad in (
        {"salt": b64(b"s" * 16)},  # salt without kdf
        {"kdf": KDF},  # kdf without salt
        {"salt": b64(b"s" * 15), "kdf": KDF},
        {"blob": b64(b"b" * 4097)},
        {"blob": ""},
        {"expires": "soon"},
        {"expires": True},
        {"expires": -1},
    ):
        assert_json_error(make_link(alice, node_id, **bad), 400, "bad_request")
    assert alice.client.get("/v1/links").json() == {"links": []}


def test_expired_trashed_and_empty(alice: User, anon: httpx.Client) -> None:
    node_id, (cid,) = committed_file(alice, b"expiring")
    expired = link_of(alice, node_id, expires=int(time.time()) - 1)
    assert_json_error(anon.get(f"/v1/l/{expired}"), 410, "gone")
    assert_json_error(anon.get(f"/v1/l/{expired}/chunks/{cid}"), 410, "gone")
    live = link_of(alice, node_id)
    assert alice.client.delete(f"/v1/nodes/{node_id}").status_code == 200
    assert_json_error(anon.get(f"/v1/l/{live}"), 404)  # in the trash: offline until restored
    assert alice.client.post(f"/v1/nodes/{node_id}/restore").status_code == 200
    assert anon.get(f"/v1/l/{live}").status_code == 200
    empty = alice.mkfile()
    assert_json_error(anon.get(f"/v1/l/{link_of(alice, empty['node_id'])}"), 404)  # nothing committed yet
    assert alice.client.delete(f"/v1/nodes/{node_id}", params={"purge": 1}).status_code == 200
    assert_json_error(anon.get(f"/v1/l/{live}"), 404)  # purging a file deletes its links


# -- folder links ------------------------------------------------------------------------


def listing(anon: httpx.Client, link_id: str, **params: Any) -> dict[str, Any]:
    r = anon.get(f"/v1/l/{link_id}/nodes", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def listed_ids(anon: httpx.Client, link_id: str) -> set[str]:
    return {n["node_id"] for n in listing(anon, link_id)["nodes"]}


def test_folder_link_lists_the_subtree_and_nothing_else(alice: User, bob: User, anon: httpx.Client) -> None:
    folder = alice.mkdir()["node_id"]
    sub = alice.mkdir(folder)["node_id"]
    inner, (c_inner,) = committed_file(alice, b"inner", parent=sub)
    top, (c_top,) = committed_file(alice, b"top", parent=folder)
    outside, (c_out,) = committed_file(alice, b"outside")  # a sibling of the folder
    bobs, (c_bob,) = committed_file(bob, b"bob's")
    link_id = link_of(alice, folder)
    body = anon.get(f"/v1/l/{link_id}").json()
    assert body == {"link_id": link_id, "owner": alice.user_id, "node_id": folder, "kind": "dir",
                    "blob": b64(b"sealed link record"), "salt": None, "kdf": None}
    nodes = listing(anon, link_id)
    assert {n["node_id"] for n in nodes["nodes"]} == {sub, inner, top}  # never the folder itself
    assert nodes["more"] is False
    first = next(n for n in nodes["nodes"] if n["node_id"] == inner)
    assert set(first) == {"node_id", "parent_id", "kind", "meta", "version", "size", "removed", "seq"}
    assert (first["parent_id"], first["kind"], first["version"], first["removed"]) == (sub, "file", 1, False)
    # Paging by seq, as the change feed does.
    page = listing(anon, link_id, limit=1)
    assert len(page["nodes"]) == 1 and page["more"] is True
    rest = listing(anon, link_id, since=page["seq"])
    assert {n["node_id"] for n in page["nodes"] + rest["nodes"]} == {sub, inner, top}
    # Manifests and chunks of files under the folder, and only those.
    r = anon.get(f"/v1/l/{link_id}/nodes/{inner}/manifest")
    assert r.json() == {"version": 1, "manifest": b64(b"manifest-v1"), "size": 5}
    assert anon.get(f"/v1/l/{link_id}/chunks/{c_inner}", params={"node": inner}).content == b"inner"
    assert anon.get(f"/v1/l/{link_id}/chunks/{c_top}", params={"node": top}).content == b"top"
    for nid in (outside, bobs, folder, sub, alice.root, hex32()):
        assert_json_error(anon.get(f"/v1/l/{link_id}/nodes/{nid}/manifest"), 404)
    for cid, nid in ((c_out, outside), (c_bob, bobs), (c_out, inner), (c_top, inner)):
        assert_json_error(anon.get(f"/v1/l/{link_id}/chunks/{cid}", params={"node": nid}), 404)
    assert_json_error(anon.get(f"/v1/l/{link_id}/chunks/{c_top}"), 404)  # a folder link names the file
    assert_json_error(anon.get(f"/v1/l/{link_id}/chunks/{c_top}", params={"node": "x"}), 400)
    # A file link neither lists nor serves another file's chunks.
    file_link = link_of(alice, top)
    assert anon.get(f"/v1/l/{file_link}").json()["kind"] == "file"
    assert_json_error(anon.get(f"/v1/l/{file_link}/nodes"), 404)
    assert_json_error(anon.get(f"/v1/l/{file_link}/nodes/{inner}/manifest"), 404)
    assert_json_error(anon.get(f"/v1/l/{file_link}/chunks/{c_inner}", params={"node": inner}), 404)
    assert anon.get(f"/v1/l/{file_link}/chunks/{c_top}", params={"node": top}).content == b"top"


def test_folder_link_follows_trash_moves_and_deletion(alice: User, anon: httpx.Client) -> None:
    folder = alice.mkdir()["node_id"]
    sub = alice.mkdir(folder)["node_id"]
    inner, (c_inner,) = committed_file(alice, b"inner", parent=sub)
    elsewhere = alice.mkdir()["node_id"]
    link_id = link_of(alice, folder)
    # A trashed folder under the link takes its subtree out of view; restored, it is back.
    assert alice.client.delete(f"/v1/nodes/{sub}").status_code == 200
    assert listed_ids(anon, link_id) == set()
    assert_json_error(anon.get(f"/v1/l/{link_id}/nodes/{inner}/manifest"), 404)
    assert_json_error(anon.get(f"/v1/l/{link_id}/chunks/{c_inner}", params={"node": inner}), 404)
    assert alice.client.post(f"/v1/nodes/{sub}/restore").status_code == 200
    assert listed_ids(anon, link_id) == {sub, inner}
    # Moved out of the folder: out of the link.
    assert alice.client.patch(f"/v1/nodes/{sub}", json={"parent_id": elsewhere, "meta": b64(b"m")}).status_code \
        == 200
    assert listed_ids(anon, link_id) == set()
    assert_json_error(anon.get(f"/v1/l/{link_id}/nodes/{inner}/manifest"), 404)
    # The linked folder in the trash, expired, deleted: nothing at all.
    assert alice.client.patch(f"/v1/nodes/{sub}", json={"parent_id": folder, "meta": b64(b"m")}).status_code \
        == 200
    assert alice.client.delete(f"/v1/nodes/{folder}").status_code == 200
    for path in ("", "/nodes", f"/nodes/{inner}/manifest", f"/chunks/{c_inner}?node={inner}"):
        assert_json_error(anon.get(f"/v1/l/{link_id}{path}"), 404)
    assert alice.client.post(f"/v1/nodes/{folder}/restore").status_code == 200
    expired = link_of(alice, folder, expires=int(time.time()) - 1)
    for path in ("", "/nodes", f"/nodes/{inner}/manifest", f"/chunks/{c_inner}?node={inner}"):
        assert_json_error(anon.get(f"/v1/l/{expired}{path}"), 410, "gone")
    assert alice.client.delete(f"/v1/links/{link_id}").status_code == 204
    for path in ("", "/nodes", f"/nodes/{inner}/manifest", f"/chunks/{c_inner}?node={inner}"):
        assert_json_error(anon.get(f"/v1/l/{link_id}{path}"), 404)
    again = link_of(alice, folder)
    assert alice.client.delete(f"/v1/nodes/{folder}", params={"purge": 1, "recursive": 1}).status_code == 200
    assert_json_error(anon.get(f"/v1/l/{again}"), 404)  # purging a folder deletes its links


# -- abuse reports -----------------------------------------------------------------------


def test_abuse_report_never_keeps_the_fragment(alice: User, anon: httpx.Client, shared_server: ServerProcess) -> None:
    node_id, _ = committed_file(alice, b"reported")
    link_id = link_of(alice, node_id)
    marker = "KEYFRAGMENT" + secrets.token_hex(8)
    url = f"https://drive.example/l/{link_id}#{marker}"
    reason = f"this is bad: {url} (also at {url}?x=1)"
    r = anon.post("/v1/abuse", json={"link": url, "reason": reason})
    assert r.status_code == 202, r.text
    assert set(r.json()) == {"report_id"} and len(r.json()["report_id"]) == 32
    for link in (link_id, f"https://drive.example/sub/l/{link_id}/", f"http://h/l/{link_id}?utm=1#{marker}"):
        assert anon.post("/v1/abuse", json={"link": link, "reason": ""}).status_code == 202
    # An unknown (well-formed) link is accepted the same way: no oracle for link ids.
    assert anon.post("/v1/abuse", json={"link": "Q" * 22, "reason": "?"}).status_code == 202
    for bad in (
        {"link": f"https://drive.example/x/{link_id}", "reason": "r"},
        {"link": f"#{link_id}", "reason": "r"},  # everything after '#' is discarded first
        {"link": "not a link", "reason": "r"},
        {"link": 42, "reason": "r"},
        {"link": link_id},
        {"link": link_id, "reason": "r" * 4097},
    ):
        r = anon.post("/v1/abuse", json=bad)
        assert_json_error(r, 400, "bad_request")
        assert marker not in r.text
    # The fragment is nowhere in the data directory (database, WAL, anything).
    for path in Path(shared_server.data_dir).rglob("*"):
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), path
    assert marker not in shared_server.stderr()


def test_abuse_report_needs_no_token_but_json(server_url: str) -> None:
    with httpx.Client(base_url=server_url, timeout=30) as anon:
        r = anon.post("/v1/abuse", content=b"link=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert_json_error(r, 415)
        assert anon.get("/v1/abuse").status_code == 405
