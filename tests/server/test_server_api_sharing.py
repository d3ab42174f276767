"""API tests (real server process): shares, the access matrix, revocation, the shared feed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.server_api import User, assert_json_error, b64, chunk, hex32, new_user, unb64


@pytest.fixture
def carol(server_url: str) -> Iterator[User]:
    user = new_user(server_url)
    yield user
    user.client.close()


def share(owner: User, node_id: str, recipient: User, access: str = "read") -> httpx.Response:
    grant = b64(b"sealed-" + access.encode())
    body = {"node_id": node_id, "recipient": recipient.name, "access": access, "grant": grant}
    return owner.client.post("/v1/shares", json=body)


def shared(owner: User, node_id: str, recipient: User, access: str = "read") -> dict[str, Any]:
    r = share(owner, node_id, recipient, access)
    assert r.status_code == 201, r.text
    return r.json()["share"]


def put_for(user: User, data: bytes, owner: User | None) -> tuple[str, httpx.Response]:
    cid, _ = chunk(data)
    headers = {"Content-Type": "application/octet-stream"}
    if owner is not None:
        headers["X-MegaDrive-Owner"] = owner.user_id
    return cid, user.client.put(f"/v1/chunks/{cid}", content=data, headers=headers)


def create(user: User, parent: str, kind: str = "file") -> httpx.Response:
    body = {"node_id": hex32(), "parent_id": parent, "kind": kind, "meta": b64(b"m")}
    return user.client.post("/v1/nodes", json=body)


def feed(user: User, owner: User, since: int = 0) -> httpx.Response:
    return user.client.get("/v1/changes", params={"owner": owner.user_id, "since": since})


@pytest.fixture
def tree(alice: User) -> dict[str, Any]:
    """alice: /S (to be shared) with file F (one committed version) and folder S/D; /P private."""
    s = alice.mkdir()
    d = alice.mkdir(s["node_id"])
    f = alice.mkfile(s["node_id"])
    cid, r = alice.put_chunk(b"alice's ciphertext")
    assert r.status_code == 201
    r = alice.commit(f["node_id"], 0, [cid])
    assert r.status_code == 201, r.text
    p = alice.mkdir()
    return {"S": s["node_id"], "D": d["node_id"], "F": f["node_id"], "P": p["node_id"], "chunk": cid}


def test_share_create_replace_list_delete(alice: User, bob: User, carol: User, tree: dict[str, Any]) -> None:
    s = shared(alice, tree["S"], bob)
    assert set(s) == {
        "share_id", "node_id", "owner", "owner_name", "recipient", "recipient_name", "access", "grant", "created",
    }  # fmt: skip
    assert (s["node_id"], s["owner"], s["owner_name"], s["recipient"], s["recipient_name"], s["access"]) == (
        tree["S"],
        alice.user_id,
        alice.name,
        bob.user_id,
        bob.name,
        "read",
    )
    again = shared(alice, tree["S"], bob, "write")
    assert again["share_id"] == s["share_id"] and again["access"] == "write" and again["grant"] == b64(b"sealed-write")
    listing = alice.client.get("/v1/shares").json()
    assert listing == {"outgoing": [again], "incoming": []}
    listing = bob.client.get("/v1/shares").json()
    assert listing == {"outgoing": [], "incoming": [again]}
    assert carol.client.get("/v1/shares").json() == {"outgoing": [], "incoming": []}
    assert_json_error(bob.client.delete(f"/v1/shares/{s['share_id']}"), 403, "forbidden")
    assert_json_error(carol.client.delete(f"/v1/shares/{s['share_id']}"), 404, "not_found")
    assert alice.client.delete(f"/v1/shares/{s['share_id']}").status_code == 204
    assert_json_error(alice.client.delete(f"/v1/shares/{s['share_id']}"), 404)
    assert bob.client.get("/v1/shares").json()["incoming"] == []
    assert_json_error(alice.client.delete("/v1/shares/nothex"), 400)


def test_share_refusals(alice: User, bob: User, carol: User, tree: dict[str, Any]) -> None:
    assert_json_error(share(alice, tree["F"], bob), 409, "conflict")  # a file
    assert_json_error(share(alice, alice.root, bob), 409, "conflict")  # the root
    assert_json_error(share(alice, tree["S"], alice), 400, "bad_request")  # oneself
    body = {"node_id": tree["S"], "recipient": "nobody-" + hex32()[:8], "access": "read", "grant": b64(b"g")}
    assert_json_error(alice.client.post("/v1/shares", json=body), 404, "not_found")
    for bad in ({"access": "admin"}, {"grant": b64(b"g" * 4097)}, {"grant": ""}, {"recipient": "X"}):
        body = {"node_id": tree["S"], "recipient": bob.name, "access": "read", "grant": b64(b"g"), **bad}
        assert_json_error(alice.client.post("/v1/shares", json=body), 400, "bad_request")
    assert_json_error(share(carol, tree["S"], bob), 404)  # not carol's, and nothing shared with her
    shared(alice, tree["S"], bob, "write")
    assert_json_error(share(bob, tree["D"], carol), 403, "forbidden")  # sharing stays with the owner
    assert alice.client.get("/v1/shares").json()["outgoing"][0]["recipient"] == bob.user_id


def test_read_share(alice: User, bob: User, carol: User, tree: dict[str, Any]) -> None:
    shared(alice, tree["S"], bob, "read")
    # Reading works...
    for nid in (tree["S"], tree["D"], tree["F"]):
        r = bob.node(nid)
        assert r.status_code == 200 and r.json()["node"]["owner"] == alice.user_id
    assert bob.node(tree["F"]).json()["node"]["removed"] is False
    assert bob.client.get(f"/v1/nodes/{tree['F']}/manifest").json() == {"version": 1, "manifest": b64(b"manifest")}
    assert bob.client.get(f"/v1/nodes/{tree['F']}/versions/1").status_code == 200
    assert [v["version"] for v in bob.client.get(f"/v1/nodes/{tree['F']}/versions").json()["versions"]] == [1]
    r = bob.client.get(f"/v1/chunks/{tree['chunk']}")
    assert r.status_code == 200 and r.content == b"alice's ciphertext"
    r = feed(bob, alice)
    assert r.status_code == 200
    assert {n["node_id"] for n in r.json()["changes"]} == {tree["S"], tree["D"], tree["F"]}
    # ... outside the share it does not (404: bob cannot tell it exists).
    assert_json_error(bob.node(tree["P"]), 404)
    assert_json_error(bob.node(alice.root), 404)
    # Writing is refused with 403.
    assert_json_error(create(bob, tree["S"]), 403, "forbidden")
    assert_json_error(bob.client.patch(f"/v1/nodes/{tree['F']}", json={"meta": b64(b"x")}), 403)
    assert_json_error(bob.client.delete(f"/v1/nodes/{tree['F']}"), 403)
    assert_json_error(bob.client.delete(f"/v1/nodes/{tree['F']}", params={"purge": 1}), 403)
    assert_json_error(bob.client.post(f"/v1/nodes/{tree['F']}/restore"), 403)
    assert_json_error(bob.commit(tree["F"], 1, []), 403)
    _, r = put_for(bob, b"bob's bytes", alice)
    assert_json_error(r, 403, "forbidden")
    r = bob.client.post("/v1/chunks/missing", json={"ids": [tree["chunk"]], "owner": alice.user_id})
    assert_json_error(r, 403)
    assert alice.node(tree["F"]).json()["node"]["version"] == 1
    # Carol, who has no share, sees nothing at all.
    for nid in (tree["S"], tree["F"]):
        assert_json_error(carol.node(nid), 404)
        assert_json_error(carol.client.get(f"/v1/nodes/{nid}/versions"), 404)
    assert_json_error(carol.client.get(f"/v1/chunks/{tree['chunk']}"), 404)
    assert_json_error(feed(carol, alice), 403, "forbidden")
    assert_json_error(create(carol, tree["S"]), 404)
    _, r = put_for(carol, b"carol", alice)
    assert_json_error(r, 403)
    assert_json_error(bob.client.get("/v1/changes", params={"owner": "XYZ"}), 400)


def test_write_share(alice: User, bob: User, tree: dict[str, Any]) -> None:
    shared(alice, tree["S"], bob, "write")
    cursor = alice.account()["seq"]
    alice_used, bob_used = alice.account()["used"], bob.account()["used"]
    r = create(bob, tree["D"])
    assert r.status_code == 201, r.text
    g = r.json()["node"]
    assert g["owner"] == alice.user_id
    # The new node's meta is alice's to pay for, like everything bob writes in her tree.
    assert alice.account()["used"] == alice_used + len(unb64(g["meta"])) and bob.account()["used"] == bob_used
    alice_used = alice.account()["used"]
    # Chunks for alice's file are stored for alice (her quota), then committed.
    r = bob.client.post("/v1/chunks/missing", json={"ids": [tree["chunk"], "0" * 64], "owner": alice.user_id})
    assert r.json() == {"missing": ["0" * 64]}
    cid, r = put_for(bob, b"written by bob" * 10, alice)
    assert r.status_code == 201, r.text
    assert alice.account()["used"] == alice_used + 140 and bob.account()["used"] == bob_used
    own_cid, r = put_for(bob, b"bob's own", None)
    assert r.status_code == 201
    r = bob.commit(g["node_id"], 0, [cid, own_cid])
    assert assert_json_error(r, 409, "missing_chunks")["missing"] == [own_cid]
    r = bob.commit(g["node_id"], 0, [cid, tree["chunk"]])
    assert r.status_code == 201, r.text
    assert r.json()["node"]["size"] == 140 + len(b"alice's ciphertext")
    r = alice.client.get(f"/v1/chunks/{cid}")
    assert r.status_code == 200 and r.content == b"written by bob" * 10
    # Every effect is on alice's feed, and on bob's view of it.
    changes = alice.changes(cursor)["changes"]
    assert [n["node_id"] for n in changes] == [g["node_id"]] and changes[0]["version"] == 1
    assert g["node_id"] in {n["node_id"] for n in feed(bob, alice, cursor).json()["changes"]}
    # Rename, move inside the share, trash and restore are writes bob may do.
    r = bob.client.patch(f"/v1/nodes/{g['node_id']}", json={"meta": b64(b"moved"), "parent_id": tree["S"]})
    assert r.status_code == 200 and r.json()["node"]["parent_id"] == tree["S"]
    assert bob.client.delete(f"/v1/nodes/{g['node_id']}").json()["node"]["trashed"] is True
    assert bob.client.post(f"/v1/nodes/{g['node_id']}/restore").json()["node"]["trashed"] is False
    # Purging stays with the owner; so does everything about the share's root.
    assert_json_error(bob.client.delete(f"/v1/nodes/{g['node_id']}", params={"purge": 1}), 403)
    assert_json_error(bob.client.delete(f"/v1/nodes/{tree['S']}"), 403)
    assert_json_error(bob.client.patch(f"/v1/nodes/{tree['S']}", json={"meta": b64(b"x")}), 403)
    r = bob.client.patch(f"/v1/nodes/{tree['S']}", json={"meta": b64(b"x"), "parent_id": bob.root})
    assert_json_error(r, 403, "forbidden")
    assert_json_error(bob.client.post("/v1/links", json={"node_id": g["node_id"], "blob": b64(b"b")}), 403)
    # A move never crosses between owners' trees, either way.
    r = bob.client.patch(f"/v1/nodes/{g['node_id']}", json={"meta": b64(b"x"), "parent_id": bob.root})
    assert_json_error(r, 409, "conflict")
    mine = bob.mkfile()
    r = bob.client.patch(f"/v1/nodes/{mine['node_id']}", json={"meta": b64(b"x"), "parent_id": tree["S"]})
    assert_json_error(r, 409, "conflict")
    r = alice.client.patch(f"/v1/nodes/{tree['F']}", json={"meta": b64(b"x"), "parent_id": bob.root})
    assert_json_error(r, 404)  # bob's root is not visible to alice
    # Outside the shared folder bob still cannot see or write.
    assert_json_error(create(bob, tree["P"]), 404)
    r = bob.client.patch(f"/v1/nodes/{g['node_id']}", json={"meta": b64(b"x"), "parent_id": tree["P"]})
    assert_json_error(r, 404)
    # Alice (the owner) may move and purge as usual.
    r = alice.client.delete(f"/v1/nodes/{g['node_id']}", params={"purge": 1})
    assert r.json() == {"purged": 1}


def test_write_share_quota_is_the_owners(alice: User, bob: User, tree: dict[str, Any]) -> None:
    shared(alice, tree["S"], bob, "write")
    quota = alice.account()["quota"]
    free = quota - alice.account()["used"]
    cid, r = alice.put_chunk(b"\0" * (free - 10))
    assert r.status_code == 201
    _, r = put_for(bob, b"x" * 20, alice)
    body = assert_json_error(r, 507, "quota_exceeded")
    assert body["quota"] == quota and body["used"] == quota - 10
    _, r = put_for(bob, b"x" * 20, None)  # bob's own quota is untouched
    assert r.status_code == 201


def test_revocation_is_immediate(alice: User, bob: User, tree: dict[str, Any]) -> None:
    s = shared(alice, tree["S"], bob, "write")
    assert bob.node(tree["F"]).status_code == 200
    assert alice.client.delete(f"/v1/shares/{s['share_id']}").status_code == 204
    for r in (
        bob.node(tree["F"]),
        bob.node(tree["S"]),
        bob.client.get(f"/v1/nodes/{tree['F']}/manifest"),
        bob.client.get(f"/v1/chunks/{tree['chunk']}"),
        feed(bob, alice),
        create(bob, tree["S"]),
        bob.commit(tree["F"], 1, []),
        bob.client.delete(f"/v1/nodes/{tree['F']}"),
        put_for(bob, b"late", alice)[1],
        bob.client.post("/v1/chunks/missing", json={"ids": [tree["chunk"]], "owner": alice.user_id}),
    ):
        assert_json_error(r, 403, "forbidden")
    assert_json_error(bob.node(tree["P"]), 404)  # never shared: still unknown to bob


def test_shared_feed_follows_moves_trash_and_purge(alice: User, bob: User, tree: dict[str, Any]) -> None:
    shared(alice, tree["S"], bob, "read")
    out = alice.mkdir()
    arriving = alice.mkdir(out["node_id"])
    arriving_child = alice.mkfile(arriving["node_id"])
    cursor = alice.account()["seq"]

    def move(nid: str, parent: str) -> None:
        r = alice.client.patch(f"/v1/nodes/{nid}", json={"meta": b64(b"moved"), "parent_id": parent})
        assert r.status_code == 200, r.text

    move(tree["F"], out["node_id"])
    move(arriving["node_id"], tree["S"])
    assert alice.client.delete(f"/v1/nodes/{tree['D']}").status_code == 200
    body = feed(bob, alice, cursor).json()
    by_id = {n["node_id"]: n for n in body["changes"]}
    assert set(by_id) == {tree["F"], arriving["node_id"], arriving_child["node_id"], tree["D"]}
    assert by_id[tree["F"]]["gone"] is True and by_id[tree["F"]]["meta"] == "" and by_id[tree["F"]]["parent_id"] is None
    assert by_id[arriving_child["node_id"]]["gone"] is False
    assert by_id[tree["D"]]["trashed"] is True
    assert body["seq"] == max(n["seq"] for n in body["changes"]) and body["more"] is False
    assert_json_error(bob.node(tree["F"]), 404)  # moved out: no longer bob's to see
    cursor = body["seq"]
    assert alice.client.delete(f"/v1/nodes/{tree['D']}", params={"purge": 1}).status_code == 200
    (gone,) = feed(bob, alice, cursor).json()["changes"]
    assert gone["node_id"] == tree["D"] and gone["gone"] is True
    # Paging and the empty page follow the usual rules.
    r = bob.client.get("/v1/changes", params={"owner": alice.user_id, "since": 0, "limit": 1})
    assert r.json()["more"] is True and len(r.json()["changes"]) == 1
    last = feed(bob, alice, 10**6).json()
    assert last == {"changes": [], "seq": 10**6, "more": False}
    # alice asking for her own feed with owner= is her plain feed.
    r = alice.client.get("/v1/changes", params={"owner": alice.user_id, "since": 0})
    assert r.status_code == 200 and alice.root in {n["node_id"] for n in r.json()["changes"]}
