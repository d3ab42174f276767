"""API tests (real server process): compare-and-swap of node metadata.

``PATCH /v1/nodes/{id}`` takes ``base_seq`` and ``POST /v1/nodes/{id}/versions``
takes ``meta_seq``: the node's ``seq`` the new meta was built on. A stale one is
``412 stale_meta`` (with the current ``seq``) and writes nothing; a stale
``If-Match`` keeps its own ``412 precondition_failed`` and wins when both are stale.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from support.server_api import User, assert_json_error, b64, new_user, unb64


def patch(user: User, node_id: str, meta: bytes, **extra: Any) -> httpx.Response:
    return user.client.patch(f"/v1/nodes/{node_id}", json={"meta": b64(meta), **extra})


def commit(user: User, node_id: str, base: int, meta: bytes | None = None, **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"manifest": b64(b"manifest"), "chunks": [], **extra}
    if meta is not None:
        body["meta"] = b64(meta)
    return user.client.post(f"/v1/nodes/{node_id}/versions", json=body, headers={"If-Match": f'"{base}"'})


def test_patch_with_the_current_base_seq(alice: User) -> None:
    f = alice.mkfile()
    r = patch(alice, f["node_id"], b"renamed", base_seq=f["seq"])
    assert r.status_code == 200, r.text
    node = r.json()["node"]
    assert unb64(node["meta"]) == b"renamed" and node["seq"] > f["seq"]
    r = patch(alice, f["node_id"], b"again", base_seq=node["seq"])
    assert r.status_code == 200 and unb64(r.json()["node"]["meta"]) == b"again"


def test_patch_with_a_stale_base_seq_is_412_stale_meta_and_writes_nothing(alice: User) -> None:
    d, f = alice.mkdir(), alice.mkfile()
    target = alice.mkfile(d["node_id"])
    theirs = patch(alice, f["node_id"], b"their rename").json()["node"]  # the other client got there first
    used, seq = alice.account()["used"], alice.account()["seq"]
    r = patch(alice, f["node_id"], b"my rename", base_seq=f["seq"], parent_id=d["node_id"], replace=target["node_id"])
    body = assert_json_error(r, 412, "stale_meta")
    assert body["seq"] == theirs["seq"]
    assert alice.node(f["node_id"]).json()["node"] == theirs
    assert alice.node(target["node_id"]).json()["node"]["trashed"] is False
    assert (alice.account()["used"], alice.account()["seq"]) == (used, seq)


def test_patch_without_base_seq_keeps_the_old_behaviour(alice: User) -> None:
    f = alice.mkfile()
    patch(alice, f["node_id"], b"first")
    r = patch(alice, f["node_id"], b"second")
    assert r.status_code == 200 and unb64(r.json()["node"]["meta"]) == b"second"


def test_commit_with_the_current_meta_seq(alice: User) -> None:
    f = alice.mkfile()
    r = commit(alice, f["node_id"], 0, b"meta-1", meta_seq=f["seq"])
    assert r.status_code == 201, r.text
    n = r.json()["node"]
    assert (n["version"], unb64(n["meta"])) == (1, b"meta-1")
    r = commit(alice, f["node_id"], 1, meta_seq=n["seq"])  # no new meta: the check still applies
    assert r.status_code == 201 and r.json()["node"]["version"] == 2


def test_commit_with_a_stale_meta_seq_is_412_stale_meta_and_commits_nothing(alice: User) -> None:
    f = alice.mkfile()
    renamed = patch(alice, f["node_id"], b"renamed elsewhere").json()["node"]
    used = alice.account()["used"]
    body = assert_json_error(commit(alice, f["node_id"], 0, b"old name", meta_seq=f["seq"]), 412, "stale_meta")
    assert body["seq"] == renamed["seq"] and "version" not in body
    assert alice.node(f["node_id"]).json()["node"] == renamed
    assert alice.client.get(f"/v1/nodes/{f['node_id']}/versions").json() == {"versions": []}
    assert alice.account()["used"] == used


def test_a_version_mismatch_wins_over_a_stale_meta(alice: User) -> None:
    f = alice.mkfile()
    assert commit(alice, f["node_id"], 0, b"theirs").status_code == 201
    body = assert_json_error(commit(alice, f["node_id"], 0, b"mine", meta_seq=f["seq"]), 412, "precondition_failed")
    assert body["version"] == 1


@pytest.mark.parametrize("bad", [-1, 1.5, 1.0, "3", True, False, None, 2**63, 2**64, -(2**63), [], {}])
@pytest.mark.parametrize("route", ["patch", "commit"])
def test_malformed_seq_is_400_and_writes_nothing(alice: User, route: str, bad: object) -> None:
    f = alice.mkfile()
    if route == "patch":
        r = patch(alice, f["node_id"], b"x", base_seq=bad)
    else:
        r = commit(alice, f["node_id"], 0, b"x", meta_seq=bad)
    body = assert_json_error(r, 400, "bad_request")
    assert ("base_seq" if route == "patch" else "meta_seq") in body["message"]
    assert alice.node(f["node_id"]).json()["node"] == f


def test_the_largest_seq_is_accepted_as_a_number(alice: User) -> None:
    f = alice.mkfile()
    assert_json_error(patch(alice, f["node_id"], b"x", base_seq=2**63 - 1), 412, "stale_meta")
    assert_json_error(patch(alice, f["node_id"], b"x", base_seq=0), 412, "stale_meta")


def test_no_seq_leaks_to_an_account_without_access(alice: User, bob: User) -> None:
    """The access check comes first: a stranger with a stale seq gets 404, never the current seq."""
    f = alice.mkfile()
    patch(alice, f["node_id"], b"moved on")
    assert_json_error(patch(bob, f["node_id"], b"x", base_seq=f["seq"]), 404, "not_found")
    assert_json_error(commit(bob, f["node_id"], 0, b"x", meta_seq=f["seq"]), 404, "not_found")


def test_a_writer_through_a_share_gets_the_same_check(alice: User, bob: User) -> None:
    d = alice.mkdir()
    r = alice.client.post(
        "/v1/shares", json={"node_id": d["node_id"], "recipient": bob.name, "access": "write", "grant": b64(b"g")}
    )
    assert r.status_code == 201, r.text
    f = alice.mkfile(d["node_id"])
    owner_rename = patch(alice, f["node_id"], b"owner renamed").json()["node"]
    body = assert_json_error(patch(bob, f["node_id"], b"bob renames", base_seq=f["seq"]), 412, "stale_meta")
    assert body["seq"] == owner_rename["seq"]
    r = patch(bob, f["node_id"], b"bob renames", base_seq=owner_rename["seq"])
    assert r.status_code == 200, r.text


def run_together(n: int, work: Any) -> list[httpx.Response]:
    """``work(client, i)`` in n threads, each with its own connection, released together."""
    barrier = threading.Barrier(n)
    results: list[httpx.Response | BaseException] = [RuntimeError("not run")] * n

    def worker(i: int, client: httpx.Client) -> None:
        barrier.wait()
        try:
            results[i] = work(client, i)
        except BaseException as exc:  # reported below
            results[i] = exc

    clients = []
    threads = []
    for i in range(n):
        clients.append(httpx.Client(timeout=60))
        threads.append(threading.Thread(target=worker, args=(i, clients[-1])))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results  # type: ignore[return-value]


N_PARALLEL = 12


def test_parallel_patches_with_one_base_seq_exactly_one_wins(server_url: str) -> None:
    """Two (here twelve) clients of one account, each with its own login, rename one node at once."""
    user = new_user(server_url)
    try:
        f = user.mkfile()
        tokens = [user.token]
        for _ in range(N_PARALLEL - 1):  # every thread its own session, as separate devices have
            user.do_login()
            tokens.append(user.token)

        def work(client: httpx.Client, i: int) -> httpx.Response:
            return client.patch(
                f"{server_url}/v1/nodes/{f['node_id']}",
                json={"meta": b64(b"device %d" % i), "base_seq": f["seq"]},
                headers={"Authorization": f"Bearer {tokens[i]}"},
            )

        results = run_together(N_PARALLEL, work)
        statuses = sorted(r.status_code for r in results)
        assert statuses == [200] + [412] * (N_PARALLEL - 1), statuses
        winner = next(r for r in results if r.status_code == 200).json()["node"]
        for r in results:
            if r.status_code == 412:
                assert_json_error(r, 412, "stale_meta")
                assert r.json()["seq"] == winner["seq"]
        assert user.node(f["node_id"]).json()["node"] == winner
    finally:
        user.client.close()


def test_parallel_renames_and_commits_with_one_base_exactly_one_wins(server_url: str) -> None:
    user = new_user(server_url)
    try:
        f = user.mkfile()
        auth = {"Authorization": f"Bearer {user.token}"}

        def work(client: httpx.Client, i: int) -> httpx.Response:
            url = f"{server_url}/v1/nodes/{f['node_id']}"
            if i % 2:
                return client.patch(url, json={"meta": b64(b"r%d" % i), "base_seq": f["seq"]}, headers=auth)
            body = {"manifest": b64(b"m"), "chunks": [], "meta": b64(b"c%d" % i), "meta_seq": f["seq"]}
            return client.post(url + "/versions", json=body, headers={**auth, "If-Match": '"0"'})

        results = run_together(N_PARALLEL, work)
        won = [r for r in results if r.status_code in (200, 201)]
        assert len(won) == 1, [r.status_code for r in results]
        codes = sorted(r.json()["error"] for r in results if r not in won)
        assert all(r.status_code == 412 for r in results if r not in won)
        half = N_PARALLEL // 2
        if won[0].status_code == 201:  # a commit won: other commits see the new version, renames the new seq
            assert codes == ["precondition_failed"] * (half - 1) + ["stale_meta"] * half, codes
        else:
            assert codes == ["stale_meta"] * (N_PARALLEL - 1), codes
    finally:
        user.client.close()
