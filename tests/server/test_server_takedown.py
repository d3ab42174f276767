"""Takedown (operator command) next to a running server: disk, audit log, 451s, feeds."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from support.server import ServerProcess
from support.server_api import assert_json_error, b64, new_user, unb64

from megadrive.server.config import ServerConfig
from megadrive.server.takedown import TakedownError, resolve_target, takedown


def run_takedown(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "megadrive.server", "takedown", *args], capture_output=True, text=True, timeout=60
    )


def chunk_path(data_dir: Path, cid: str) -> Path:
    return data_dir / "chunks" / cid[:2] / cid[2:4] / cid


def test_takedown_while_serving(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server()
    data = Path(server.data_dir)
    alice, bob, carol = (new_user(server.url) for _ in range(3))
    anon = httpx.Client(base_url=server.url, timeout=30)
    try:
        folder = alice.mkdir()
        share = {"node_id": folder["node_id"], "recipient": bob.name, "access": "read", "grant": b64(b"g")}
        assert alice.client.post("/v1/shares", json=share).status_code == 201
        f = alice.mkfile(folder["node_id"])
        v1 = [alice.put_chunk(b"first version %d" % i)[0] for i in range(2)]
        assert alice.commit(f["node_id"], 0, v1).status_code == 201
        v2, _ = alice.put_chunk(b"second version")
        assert alice.commit(f["node_id"], 1, [v2]).status_code == 201
        keep, _ = alice.put_chunk(b"an unrelated file")
        carol.put_chunk(b"first version 0")  # carol holds identical ciphertext
        r = alice.client.post("/v1/links", json={"node_id": f["node_id"], "blob": b64(b"sealed")})
        link_id = r.json()["link"]["link_id"]
        assert anon.get(f"/v1/l/{link_id}").status_code == 200
        marker = "SECRETKEY" + secrets.token_hex(6)
        url = f"{server.url}/l/{link_id}#{marker}"
        report = anon.post("/v1/abuse", json={"link": url, "reason": "illegal"}).json()["report_id"]
        used_before = alice.account()["used"]
        cursor = alice.account()["seq"]
        for cid in (*v1, v2, keep):
            assert chunk_path(data, cid).is_file()

        result = run_takedown(url, "--data", str(data), "--reason", "court order 42", "--operator", "opal")
        assert result.returncode == 0, result.stderr
        printed = json.loads(result.stdout)

        # The audit log: one line, the record printed, no key.
        lines = (data / "audit.log").read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0]) == printed
        assert (data / "audit.log").stat().st_mode & 0o777 == 0o600
        assert printed["action"] == "takedown" and printed["operator"] == "opal"
        assert printed["node_id"] == f["node_id"] and printed["owner"] == alice.user_id
        assert printed["link_ids"] == [link_id] and printed["report_ids"] == [report]
        assert printed["chunks_deleted"] == 3
        assert printed["bytes_deleted"] == 2 * len(b"first version 0") + len(b"second version")
        assert printed["reason"] == "court order 42" and printed["time"].endswith("Z")
        assert marker not in result.stdout + result.stderr
        for path in data.rglob("*"):
            if path.is_file():
                assert marker.encode() not in path.read_bytes(), path

        # The chunk files are gone from disk; the unrelated one stays.
        for cid in (*v1, v2):
            assert not chunk_path(data, cid).exists()
        assert chunk_path(data, keep).is_file()
        # The chunks and the two versions' manifests are given back; the node (and its meta) stays.
        assert alice.account()["used"] == used_before - printed["bytes_deleted"] - 2 * len(b"manifest")
        assert carol.account()["used"] == len(unb64(carol.signup["root"]["meta"]))

        # 451 everywhere the content was; the node itself stays visible, marked removed.
        nid = f["node_id"]
        for r in (
            anon.get(f"/v1/l/{link_id}"),
            anon.get(f"/v1/l/{link_id}/chunks/{v2}"),
            alice.client.get(f"/v1/nodes/{nid}/manifest"),
            alice.client.get(f"/v1/nodes/{nid}/versions/2"),
            alice.client.get(f"/v1/nodes/{nid}/versions"),
            alice.client.get(f"/v1/chunks/{v2}"),
            bob.client.get(f"/v1/nodes/{nid}/manifest"),
            alice.put_chunk(b"second version")[1],  # cannot be stored again
            alice.commit(nid, 2, []),
            alice.client.post("/v1/links", json={"node_id": nid, "blob": b64(b"again")}),
        ):
            assert_json_error(r, 451, "unavailable_for_legal_reasons")
        assert not chunk_path(data, v2).exists()
        changes = alice.changes(cursor)["changes"]
        assert [(n["node_id"], n["removed"]) for n in changes] == [(nid, True)]
        shared = bob.client.get("/v1/changes", params={"owner": alice.user_id, "since": cursor}).json()
        assert [(n["node_id"], n["removed"]) for n in shared["changes"]] == [(nid, True)]
        assert alice.node(nid).json()["node"]["removed"] is True
        assert alice.client.get(f"/v1/chunks/{keep}").status_code == 200
        # The owner can still clear it away.
        assert alice.client.delete(f"/v1/nodes/{nid}", params={"purge": 1}).json() == {"purged": 1}

        # By node id (a folder: everything in it), and refusals.
        g = alice.mkfile(folder["node_id"])
        gc_, _ = alice.put_chunk(b"in the folder")
        assert alice.commit(g["node_id"], 0, [gc_]).status_code == 201
        r = alice.client.post("/v1/links", json={"node_id": folder["node_id"], "blob": b64(b"sealed")})
        folder_link = r.json()["link"]["link_id"]
        assert anon.get(f"/v1/l/{folder_link}/nodes").status_code == 200
        result = run_takedown(folder["node_id"], "--data", str(data))
        assert result.returncode == 0, result.stderr
        record = json.loads(result.stdout)
        assert record["nodes_removed"] == 2 and record["chunks_deleted"] == 1 and record["reason"] == ""
        assert record["operator"]  # the OS user by default
        assert len((data / "audit.log").read_text().splitlines()) == 2
        assert_json_error(alice.client.get(f"/v1/nodes/{g['node_id']}/manifest"), 451)
        for path in ("", "/nodes", f"/nodes/{g['node_id']}/manifest"):
            assert_json_error(anon.get(f"/v1/l/{folder_link}{path}"), 451, "unavailable_for_legal_reasons")
        for bad in ("Z" * 22, "0" * 32, "nonsense", alice.root):
            result = run_takedown(bad, "--data", str(data))
            assert result.returncode == 1 and result.stdout == "" and "error:" in result.stderr, bad
            assert "Traceback" not in result.stderr
        assert len((data / "audit.log").read_text().splitlines()) == 2

        # One file taken down under a linked folder: listed as removed, its content refused, the rest served.
        other = alice.mkdir()["node_id"]
        h, k = alice.mkfile(other), alice.mkfile(other)
        hc, _ = alice.put_chunk(b"taken down later")
        kc, _ = alice.put_chunk(b"kept online")
        assert alice.commit(h["node_id"], 0, [hc]).status_code == 201
        assert alice.commit(k["node_id"], 0, [kc]).status_code == 201
        r = alice.client.post("/v1/links", json={"node_id": other, "blob": b64(b"sealed")})
        other_link = r.json()["link"]["link_id"]
        assert run_takedown(h["node_id"], "--data", str(data)).returncode == 0
        listed = anon.get(f"/v1/l/{other_link}/nodes").json()["nodes"]
        assert {(n["node_id"], n["removed"]) for n in listed} == {(h["node_id"], True), (k["node_id"], False)}
        assert_json_error(anon.get(f"/v1/l/{other_link}/nodes/{h['node_id']}/manifest"), 451)
        assert_json_error(anon.get(f"/v1/l/{other_link}/chunks/{hc}", params={"node": h["node_id"]}), 451)
        assert anon.get(f"/v1/l/{other_link}/chunks/{kc}", params={"node": k["node_id"]}).content == b"kept online"
    finally:
        for user in (alice, bob, carol):
            user.client.close()
        anon.close()


def test_takedown_function(tmp_path: Path) -> None:
    assert resolve_target("https://h/l/" + "A" * 22 + "#key") == (None, "A" * 22)
    assert resolve_target("0" * 32 + "#x") == ("0" * 32, None)
    try:
        takedown(ServerConfig(data_dir=tmp_path / "none"), "0" * 32)
    except TakedownError as exc:
        assert "no MegaDrive data" in str(exc)
    else:
        raise AssertionError("expected TakedownError")
    assert not (tmp_path / "none").exists()  # nothing created
