"""API tests (real server process): nodes, versions, change feed, isolation."""

from __future__ import annotations

from typing import Any

from support.server_api import User, assert_json_error, b64, hex32, unb64


def test_create_get_node(alice: User) -> None:
    d = alice.mkdir()
    assert d["kind"] == "dir" and d["parent_id"] == alice.root and d["version"] == 0 and d["size"] == 0
    assert d["trashed"] is False and d["gone"] is False and unb64(d["meta"]) == b"m"
    r = alice.node(d["node_id"])
    assert r.status_code == 200 and r.json() == {"node": d}
    assert r.headers["etag"] == '"0"'


def test_create_refusals(alice: User) -> None:
    f = alice.mkfile()
    post = alice.client.post
    body = {"node_id": f["node_id"], "parent_id": alice.root, "kind": "dir", "meta": b64(b"m")}
    assert_json_error(post("/v1/nodes", json=body), 409, "exists")
    body = {"node_id": hex32(), "parent_id": hex32(), "kind": "dir", "meta": b64(b"m")}
    assert_json_error(post("/v1/nodes", json=body), 404, "not_found")
    body = {"node_id": hex32(), "parent_id": f["node_id"], "kind": "dir", "meta": b64(b"m")}
    assert_json_error(post("/v1/nodes", json=body), 409, "conflict")
    for bad in (
        {"kind": "symlink"},
        {"node_id": "X" * 32},
        {"parent_id": None},
        {"meta": ""},
        {"meta": b64(b"x" * (64 * 1024 + 1))},
    ):
        body = {"node_id": hex32(), "parent_id": alice.root, "kind": "dir", "meta": b64(b"m"), **bad}
        assert_json_error(post("/v1/nodes", json=body), 400, "bad_request")


def test_move_rename_replace(alice: User) -> None:
    a, b = alice.mkdir(), alice.mkdir()
    f = alice.mkfile(a["node_id"])
    target = alice.mkfile(b["node_id"])
    r = alice.client.patch(f"/v1/nodes/{f['node_id']}", json={"meta": b64(b"renamed")})
    assert r.status_code == 200 and unb64(r.json()["node"]["meta"]) == b"renamed"
    r = alice.client.patch(
        f"/v1/nodes/{f['node_id']}",
        json={"parent_id": b["node_id"], "meta": b64(b"moved"), "replace": target["node_id"]},
    )
    assert r.status_code == 200, r.text
    moved = r.json()["node"]
    assert moved["parent_id"] == b["node_id"]
    replaced = alice.node(target["node_id"]).json()["node"]
    assert replaced["trashed"] is True and replaced["seq"] == moved["seq"] - 1


def test_move_rules(alice: User) -> None:
    a = alice.mkdir()
    b = alice.mkdir(a["node_id"])
    f = alice.mkfile()
    patch = alice.client.patch
    assert_json_error(patch(f"/v1/nodes/{a['node_id']}", json={"parent_id": b["node_id"], "meta": b64(b"x")}), 409)
    assert_json_error(patch(f"/v1/nodes/{a['node_id']}", json={"parent_id": a["node_id"], "meta": b64(b"x")}), 409)
    assert_json_error(patch(f"/v1/nodes/{a['node_id']}", json={"parent_id": f["node_id"], "meta": b64(b"x")}), 409)
    assert_json_error(
        patch(f"/v1/nodes/{alice.root}", json={"parent_id": a["node_id"], "meta": b64(b"x")}), 409, "conflict"
    )
    assert_json_error(patch(f"/v1/nodes/{a['node_id']}", json={"parent_id": alice.root}), 400, "bad_request")
    assert alice.node(a["node_id"]).json()["node"] == a


def test_trash_restore_purge(alice: User) -> None:
    d = alice.mkdir()
    f = alice.mkfile(d["node_id"])
    delete = alice.client.delete
    assert_json_error(delete(f"/v1/nodes/{alice.root}"), 409, "conflict")
    assert_json_error(delete(f"/v1/nodes/{alice.root}", params={"purge": 1, "recursive": 1}), 409)
    r = delete(f"/v1/nodes/{d['node_id']}")
    assert r.status_code == 200 and r.json()["node"]["trashed"] is True
    body = {"node_id": hex32(), "parent_id": d["node_id"], "kind": "file", "meta": b64(b"m")}
    assert_json_error(alice.client.post("/v1/nodes", json=body), 409, "conflict")  # parent in trash
    delete(f"/v1/nodes/{f['node_id']}")
    assert_json_error(alice.client.post(f"/v1/nodes/{f['node_id']}/restore"), 409, "conflict")
    r = alice.client.post(f"/v1/nodes/{d['node_id']}/restore")
    assert r.status_code == 200 and r.json()["node"]["trashed"] is False
    assert_json_error(delete(f"/v1/nodes/{d['node_id']}", params={"purge": 1}), 409, "conflict")
    assert_json_error(delete(f"/v1/nodes/{d['node_id']}", params={"purge": "maybe"}), 400)
    r = delete(f"/v1/nodes/{d['node_id']}", params={"purge": 1, "recursive": 1})
    assert r.status_code == 200 and r.json() == {"purged": 2}
    assert_json_error(alice.node(d["node_id"]), 404, "not_found")
    assert_json_error(alice.node(f["node_id"]), 404, "not_found")
    gone = [n for n in alice.changes()["changes"] if n["node_id"] in (d["node_id"], f["node_id"])]
    assert len(gone) == 2 and all(n["gone"] for n in gone)


def test_versions_flow(alice: User) -> None:
    f = alice.mkfile()
    c1, r1 = alice.put_chunk(b"chunk one")
    c2, r2 = alice.put_chunk(b"chunk two!")
    assert r1.status_code == 201 and r2.status_code == 201
    r = alice.commit(f["node_id"], 0, [c1, c2], manifest=b"manifest-1", meta=b"meta-1")
    assert r.status_code == 201, r.text
    node = r.json()["node"]
    assert node["version"] == 1 and node["size"] == len(b"chunk one") + len(b"chunk two!")
    assert unb64(node["meta"]) == b"meta-1" and r.headers["etag"] == '"1"'
    r = alice.commit(f["node_id"], 1, [c1], manifest=b"manifest-2")
    assert r.status_code == 201 and r.json()["node"]["version"] == 2
    assert unb64(r.json()["node"]["meta"]) == b"meta-1"  # unchanged without "meta"
    r = alice.client.get(f"/v1/nodes/{f['node_id']}/manifest")
    assert r.json() == {"version": 2, "manifest": b64(b"manifest-2")}
    r = alice.client.get(f"/v1/nodes/{f['node_id']}/versions/1")
    assert r.json() == {"version": 1, "manifest": b64(b"manifest-1")}
    versions = alice.client.get(f"/v1/nodes/{f['node_id']}/versions").json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["size"] == 19 and versions[0]["created"] >= versions[1]["created"]
    assert_json_error(alice.client.get(f"/v1/nodes/{f['node_id']}/versions/3"), 404, "not_found")
    assert_json_error(alice.client.get(f"/v1/nodes/{f['node_id']}/versions/0"), 400, "bad_request")
    assert_json_error(alice.client.get(f"/v1/nodes/{f['node_id']}/versions/x1"), 400, "bad_request")


def test_first_manifest_missing(alice: User) -> None:
    f = alice.mkfile()
    assert_json_error(alice.client.get(f"/v1/nodes/{f['node_id']}/manifest"), 404, "not_found")
    assert alice.client.get(f"/v1/nodes/{f['node_id']}/versions").json() == {"versions": []}


def test_stale_if_match_412_newer_survives(alice: User) -> None:
    f = alice.mkfile()
    assert alice.commit(f["node_id"], 0, [], manifest=b"device A").status_code == 201
    stale = alice.commit(f["node_id"], 0, [], manifest=b"device B")
    body = assert_json_error(stale, 412, "precondition_failed")
    assert body["version"] == 1
    r = alice.client.get(f"/v1/nodes/{f['node_id']}/manifest")
    assert r.json() == {"version": 1, "manifest": b64(b"device A")}


def test_if_match_required_and_validated(alice: User) -> None:
    f = alice.mkfile()
    url = f"/v1/nodes/{f['node_id']}/versions"
    body = {"manifest": b64(b"m"), "chunks": []}
    assert_json_error(alice.client.post(url, json=body), 428, "precondition_required")
    for bad in ('"abc"', "*", '"-1"', '"1', "W/x"):
        assert_json_error(alice.client.post(url, json=body, headers={"If-Match": bad}), 400, "bad_request")
    assert alice.client.post(url, json=body, headers={"If-Match": "0"}).status_code == 201


def test_missing_chunks_409_commits_nothing(alice: User, bob: User) -> None:
    f = alice.mkfile()
    mine, _ = alice.put_chunk(b"mine")
    bobs, _ = bob.put_chunk(b"bob's chunk")
    never = "ab" * 32
    before = alice.account()["seq"]
    r = alice.commit(f["node_id"], 0, [mine, bobs, never], meta=b"should not apply")
    body = assert_json_error(r, 409, "missing_chunks")
    assert body["missing"] == [bobs, never]
    assert alice.node(f["node_id"]).json()["node"] == f
    assert alice.account()["seq"] == before


def test_create_with_first_version_is_one_transaction(alice: User, bob: User) -> None:
    """A file created with its version 1 in one request: both or neither (missing chunks, a bad version)."""
    c1, _ = alice.put_chunk(b"first content")
    nid = hex32()
    body = {"node_id": nid, "parent_id": alice.root, "kind": "file", "meta": b64(b"meta-v1"),
            "version": {"manifest": b64(b"manifest-1"), "chunks": [c1]}}
    r = alice.client.post("/v1/nodes", json=body)
    assert r.status_code == 201, r.text
    node = r.json()["node"]
    assert node["version"] == 1 and node["size"] == len(b"first content") and unb64(node["meta"]) == b"meta-v1"
    assert r.headers["etag"] == '"1"'
    assert alice.client.get(f"/v1/nodes/{nid}/manifest").json() == {"version": 1, "manifest": b64(b"manifest-1")}

    bobs, _ = bob.put_chunk(b"bob's chunk")
    before = alice.account()["seq"]
    other = hex32()
    body = {**body, "node_id": other, "version": {"manifest": b64(b"m"), "chunks": [c1, bobs]}}
    assert assert_json_error(alice.client.post("/v1/nodes", json=body), 409, "missing_chunks")["missing"] == [bobs]
    assert_json_error(alice.node(other), 404, "not_found")  # not created either
    assert alice.account()["seq"] == before
    for bad in ({"kind": "dir"}, {"version": []}, {"version": {"chunks": []}}, {"version": {"manifest": b64(b"m")}},
                {"version": {"manifest": b64(b"m"), "chunks": ["xyz"]}}):
        bad_body = {**body, "version": {"manifest": b64(b"m"), "chunks": []}, **bad}
        assert_json_error(alice.client.post("/v1/nodes", json=bad_body), 400, "bad_request")
    assert_json_error(alice.node(other), 404, "not_found")


def _item(parent: str, cid: str, node_id: str | None = None, manifest: bytes = b"manifest") -> dict[str, Any]:
    return {"node_id": node_id or hex32(), "parent_id": parent, "kind": "file", "meta": b64(b"meta-v1"),
            "version": {"manifest": b64(manifest), "chunks": [cid]}}


def test_batch_of_creates_is_one_transaction(alice: User, bob: User) -> None:
    """``POST /v1/batch/nodes``: every file created at version 1 in the order sent, or none of them."""
    c1, _ = alice.put_chunk(b"batch content")
    folder = alice.mkdir()["node_id"]
    items = [_item(alice.root, c1), _item(folder, c1), _item(folder, c1, manifest=b"other")]
    before = alice.account()["seq"]
    r = alice.client.post("/v1/batch/nodes", json={"nodes": items})
    assert r.status_code == 201, r.text
    nodes = r.json()["nodes"]
    assert [n["node_id"] for n in nodes] == [i["node_id"] for i in items]
    assert [n["parent_id"] for n in nodes] == [alice.root, folder, folder]
    assert all(n["version"] == 1 and n["size"] == len(b"batch content") for n in nodes)
    seqs = [n["seq"] for n in nodes]  # (a create and its version 1: two changes each)
    assert before < seqs[0] < seqs[1] < seqs[2] == alice.account()["seq"] == before + 6
    got = alice.client.get(f"/v1/nodes/{items[2]['node_id']}/manifest").json()
    assert got == {"version": 1, "manifest": b64(b"other")}

    bobs, _ = bob.put_chunk(b"bob's batch chunk")
    before = alice.account()["seq"]
    fresh = [_item(alice.root, c1), _item(alice.root, c1)]
    failing = [  # the last item fails each batch: the first ones are not created either
        ([*fresh, _item(alice.root, bobs)], 409, "missing_chunks"),
        ([*fresh, _item(alice.root, c1, node_id=items[0]["node_id"])], 409, "exists"),
        ([*fresh, _item(hex32(), c1)], 404, "not_found"),
        ([*fresh, _item(bob.root, c1)], 404, "not_found"),  # another account's folder, not shared
        ([*fresh, {**_item(alice.root, c1), "kind": "dir"}], 400, "bad_request"),
        ([*fresh, "not an object"], 400, "bad_request"),
    ]
    for batch, status, code in failing:
        assert_json_error(alice.client.post("/v1/batch/nodes", json={"nodes": batch}), status, code)
        for item in fresh:
            assert_json_error(alice.node(item["node_id"]), 404, "not_found")
    assert alice.account()["seq"] == before
    for bad in ({}, {"nodes": []}, {"nodes": {}}, {"nodes": [_item(alice.root, c1) for _ in range(129)]}):
        assert_json_error(alice.client.post("/v1/batch/nodes", json=bad), 400, "bad_request")
    assert alice.account()["seq"] == before


def test_commit_to_folder_refused(alice: User) -> None:
    assert_json_error(alice.commit(alice.root, 0, []), 409, "conflict")


def test_change_feed(alice: User) -> None:
    start = alice.account()["seq"]
    made = [alice.mkdir()["node_id"] for _ in range(5)]
    alice.client.delete(f"/v1/nodes/{made[0]}")
    page = alice.changes(since=start, limit=3)
    assert page["more"] is True and len(page["changes"]) == 3
    assert [n["node_id"] for n in page["changes"]] == made[1:4]  # made[0] moved to the end (trashed)
    rest = alice.changes(since=page["seq"], limit=3)
    assert rest["more"] is False and [n["node_id"] for n in rest["changes"]] == [made[4], made[0]]
    assert rest["changes"][-1]["trashed"] is True
    seqs = [n["seq"] for n in page["changes"] + rest["changes"]]
    assert seqs == sorted(seqs) and rest["seq"] == seqs[-1] == alice.account()["seq"]
    empty = alice.changes(since=rest["seq"])
    assert empty == {"changes": [], "seq": rest["seq"], "more": False}
    fresh = alice.changes(since=0)
    assert fresh["changes"][0]["node_id"] == alice.root


def test_change_feed_params(alice: User) -> None:
    for params in ({"limit": 0}, {"limit": 10001}, {"limit": "x"}, {"since": -1}, {"since": "1e3"}):
        assert_json_error(alice.client.get("/v1/changes", params=params), 400, "bad_request")
    assert alice.client.get("/v1/changes", params={"limit": 10000}).status_code == 200


def test_users_cannot_see_each_other(alice: User, bob: User) -> None:
    f = alice.mkfile()
    cid, _ = alice.put_chunk(b"alice secret ciphertext")
    assert alice.commit(f["node_id"], 0, [cid]).status_code == 201
    nid = f["node_id"]
    bob_dir = bob.mkdir()["node_id"]
    for r in (
        bob.node(nid),
        bob.node(alice.root),
        bob.client.patch(f"/v1/nodes/{nid}", json={"meta": b64(b"x")}),
        bob.client.delete(f"/v1/nodes/{nid}"),
        bob.client.delete(f"/v1/nodes/{nid}", params={"purge": 1}),
        bob.client.post(f"/v1/nodes/{nid}/restore"),
        bob.client.get(f"/v1/nodes/{nid}/versions"),
        bob.client.get(f"/v1/nodes/{nid}/versions/1"),
        bob.client.get(f"/v1/nodes/{nid}/manifest"),
        bob.commit(nid, 1, []),
        bob.client.get(f"/v1/chunks/{cid}"),
        bob.client.post(
            "/v1/nodes", json={"node_id": hex32(), "parent_id": alice.root, "kind": "file", "meta": b64(b"m")}
        ),
        bob.client.patch(f"/v1/nodes/{bob_dir}", json={"parent_id": alice.root, "meta": b64(b"m")}),
    ):
        assert_json_error(r, 404, "not_found")
    # Bob's feed and account show nothing of Alice's.
    assert [n["node_id"] for n in bob.changes()["changes"]] == [bob.root, bob_dir]
    assert bob.account()["used"] == len(unb64(bob.signup["root"]["meta"])) + len(b"m")  # his root and folder
    # And Alice's data is intact.
    assert alice.node(nid).json()["node"]["version"] == 1
    assert alice.client.get(f"/v1/chunks/{cid}").content == b"alice secret ciphertext"
