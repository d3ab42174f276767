"""New small files made by write-back are created with their first versions in one request
(``POST /v1/batch/nodes``); an answer that names other nodes is refused, and a batch the server
refuses falls back to one create per file. Nothing written is lost either way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.accounts import Server, make_drive, new_home
from support.evil import EvilServer, LyingProxy

from megadrive.drive import Drive
from megadrive.errors import ServerError

FILES = {f"/f{i}.txt": f"small file {i}\n".encode() * (i + 1) for i in range(5)}


def _write_back(drive: Drive) -> None:
    for path, data in FILES.items():
        drive.create_file(path, local=True)
        w = drive.open_write(path, journal=True)
        w.write(data)
        w.save()
        w.close()
    assert drive.pending_uploads() == len(FILES)


def _requests(proxy: LyingProxy, line: str) -> int:
    return sum(1 for r in proxy.received if r.startswith(line.encode()))


def _all_there(server: Server, tmp_path: Path) -> None:
    other = make_drive(server.url, new_home(tmp_path), "victim", signup=False)
    try:
        assert sorted(e.name for e in other.listdir("/")) == sorted(p[1:] for p in FILES)  # no copies either
        for path, data in FILES.items():
            assert other.read_file(path) == data
    finally:
        other.close()


@pytest.fixture
def proxied(server: Server, tmp_path: Path):  # type: ignore[no-untyped-def]
    proxy = LyingProxy(server.url, EvilServer(server.data))
    drive = make_drive(proxy.url, new_home(tmp_path), "victim")
    try:
        yield proxy, drive
    finally:
        drive.close()
        proxy.close()


def test_new_small_files_go_up_in_one_request(proxied: tuple[LyingProxy, Drive], server: Server,
                                              tmp_path: Path) -> None:
    proxy, drive = proxied
    _write_back(drive)
    proxy.received.clear()
    report = drive.replay_journal()
    assert sorted(report) == sorted(f"created node {drive.stat(p).node_id[:12]} with version 1 (one of 5)"
                                    for p in FILES)
    assert _requests(proxy, "POST /v1/batch/nodes ") == 1
    assert _requests(proxy, "POST /v1/nodes ") == 0
    assert drive.pending_uploads() == 0
    _all_there(server, tmp_path)


def test_a_batch_answer_naming_other_nodes_is_refused_and_nothing_is_lost(
        proxied: tuple[LyingProxy, Drive], server: Server, tmp_path: Path) -> None:
    proxy, drive = proxied
    _write_back(drive)

    def reorder(method: str, path: str, out: bytes) -> bytes:
        if method == "POST" and path == "/v1/batch/nodes":
            d = json.loads(out)
            d["nodes"].reverse()  # every node the server created, in another order
            return json.dumps(d).encode()
        return out

    proxy.rewrite = reorder
    with pytest.raises(ServerError, match="answered a batch of creates with other nodes"):
        drive.replay_journal()
    assert drive.pending_uploads() == len(FILES)  # (the server has them; this client did not take its word)
    proxy.rewrite = lambda method, path, out: out
    proxy.received.clear()
    report = drive.replay_journal()  # the batch is refused now (they exist): each is settled on its own
    assert _requests(proxy, "POST /v1/batch/nodes ") == 1
    assert sorted(report) == sorted(f"node {drive.stat(p).node_id[:12]} was already committed (version 1)"
                                    for p in FILES)
    assert drive.pending_uploads() == 0
    _all_there(server, tmp_path)


def test_a_refused_batch_falls_back_to_one_create_per_file(proxied: tuple[LyingProxy, Drive], server: Server,
                                                           tmp_path: Path) -> None:
    proxy, drive = proxied
    _write_back(drive)

    def refuse(method: str, path: str, body: bytes) -> tuple[int, bytes] | None:
        if method == "POST" and path == "/v1/batch/nodes":
            return 409, json.dumps({"error": "exists", "message": "a node with this id exists"}).encode()
        return None

    proxy.forge = refuse
    proxy.received.clear()
    report = drive.replay_journal()
    assert _requests(proxy, "POST /v1/batch/nodes ") == 1
    assert _requests(proxy, "POST /v1/nodes ") == len(FILES)
    assert sorted(report) == sorted(f"created node {drive.stat(p).node_id[:12]} with version 1" for p in FILES)
    assert drive.pending_uploads() == 0
    _all_there(server, tmp_path)


def test_a_folder_trashed_elsewhere_fails_no_batch_and_loses_no_file(server: Server, tmp_path: Path) -> None:
    """Files saved here in a folder another device trashes before they go up: the batch they share with
    an unrelated file is refused for them (409 conflict), and yet every file is uploaded (the unrelated
    one in the same round, the others kept in the root under their names): nothing is lost."""
    drive = make_drive(server.url, new_home(tmp_path), "victim")
    other = make_drive(server.url, new_home(tmp_path), "victim", signup=False)
    try:
        drive.mkdir("/d")
        saved = {"/d/one.txt": b"one", "/d/two.txt": b"two", "/elsewhere.txt": b"elsewhere"}
        for path, data in saved.items():
            drive.create_file(path, local=True)
            with drive.open_write(path, journal=True) as w:
                w.write(data)
                w.save()
        other.refresh()
        other.delete("/d")  # trashed on another device before the uploader got to its new files
        drive.replay_journal()
        assert drive.pending_uploads() == 0
        other.refresh()
        assert other.read_file("/elsewhere.txt") == b"elsewhere"
        assert other.read_file("/one.txt") == b"one" and other.read_file("/two.txt") == b"two"
    finally:
        drive.close()
        other.close()
