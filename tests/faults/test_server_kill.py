"""SIGKILL the server mid-upload, mid-commit and mid-GC; restart it on the same data dir.

What must hold after the restart:

* no acknowledged write is lost: every chunk and commit that got a 2xx before
  the kill is there, byte for byte, and files read back through the real
  client (a fresh :class:`megadrive.drive.Drive`, logged in from a new home);
* no half-visible version: a commit is there with all its chunks, or not at all;
* the server never calls a chunk stored that it cannot serve (no row whose blob is gone);
* nothing stays orphaned: ``fsck --repair`` or ``gc`` afterwards leaves no orphan,
  and fsck is clean.

The kill points are exact: raw sockets leave request bodies half sent, and the
test-only pause points of server/testhooks.py (armed through
``MEGADRIVE_TEST_PAUSE_DIR``, given to the server process alone) hold a thread
between a blob and its row, inside a commit's transaction, and between a GC
batch's committed row removal and its blob deletion.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.accounts import make_drive, new_home
from support.faults import (
    FaultServer,
    arm,
    blob_path,
    child_env,
    chunk_id,
    half_sent,
    megadrive,
    put_chunk,
    wait_reached,
)

from megadrive.drive import Drive
from megadrive.server import fsck
from megadrive.server.config import ServerConfig
from megadrive.state import load_session

GARBAGE_CHUNKS = 640  # more than one GC batch (500 rows)


@pytest.fixture
def pause_dir(tmp_path: Path) -> Path:
    d = tmp_path / "pause"
    d.mkdir()
    return d


class Account:
    """A user made by the real client, and an httpx client with the same session token."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.home = new_home(tmp_path)
        self.user = f"u{secrets.token_hex(4)}"
        self.drive = make_drive(url, self.home, self.user)
        session = load_session(self.home)
        self.token, self.user_id = session.token, session.user_id
        self.http = self.client(url)

    def client(self, url: str) -> httpx.Client:
        return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)

    def close(self) -> None:
        self.drive.close()
        self.http.close()


def fresh_drive(url: str, tmp_path: Path, user: str) -> Drive:
    """The real client, logged in from a new home: no local state from before the crash."""
    return make_drive(url, new_home(tmp_path), user, signup=False)


def write_files(drive: Drive) -> dict[str, bytes]:
    drive.mkdir("/dir")
    files = {
        "/a.bin": os.urandom(1_500_000),  # two chunks
        "/dir/b.txt": b"acknowledged before the crash\n" * 1000,
        "/c.bin": os.urandom(3_300_000),  # four chunks
    }
    for path, data in files.items():
        drive.write_file(path, data)
    return files


def assert_files(drive: Drive, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        assert drive.read_file(path) == data, path


def fsck_cli(data_dir: Path, *args: str) -> tuple[int, dict[str, Any]]:
    r = megadrive("server", "fsck", "--data", str(data_dir), "--json", *args)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def test_sigkill_mid_upload_and_mid_commit(tmp_path: Path, pause_dir: Path) -> None:
    data = tmp_path / "data"
    server = FaultServer(data, pause_dir=pause_dir)
    acct = Account(server.url, tmp_path)
    try:
        files = write_files(acct.drive)  # acknowledged through the real client
        a_id = acct.drive.stat("/a.bin").node_id
        acked = {}
        for i in range(12):  # acknowledged raw chunk uploads
            raw = os.urandom(20_000 + i)
            assert put_chunk(acct.http, raw).status_code == 201
            acked[chunk_id(raw)] = raw

        # In flight when the server dies:
        # (1) the client commits a new version of /a.bin; the server holds it inside the transaction.
        arm(pause_dir, "commit.written")
        v2 = os.urandom(1_200_000)
        commit_error: list[BaseException] = []

        def commit_v2() -> None:
            try:
                acct.drive.write_file("/a.bin", v2)
            except BaseException as exc:  # the connection dies with the server
                commit_error.append(exc)

        committer = threading.Thread(target=commit_v2, daemon=True)
        committer.start()
        wait_reached(pause_dir, "commit.written")
        # (2) an upload whose blob is written and whose row is not.
        arm(pause_dir, "chunk.stored")
        between = os.urandom(30_000)
        upload_error: list[BaseException] = []

        def upload_between() -> None:
            try:
                put_chunk(acct.client(server.url), between)
            except httpx.TransportError as exc:  # the connection dies with the server
                upload_error.append(exc)

        uploader = threading.Thread(target=upload_between, daemon=True)
        uploader.start()
        wait_reached(pause_dir, "chunk.stored")
        # (3) a 4 MiB chunk body, half sent; (4) a commit body, half sent.
        big = os.urandom(4 << 20)
        auth = {"Authorization": f"Bearer {acct.token}"}
        s1 = half_sent(server.url, "PUT", f"/v1/chunks/{chunk_id(big)}",
                       {**auth, "Content-Type": "application/octet-stream"}, big, 2 << 20)  # fmt: skip
        body = json.dumps({"manifest": base64.b64encode(os.urandom(500)).decode(), "chunks": sorted(acked)}).encode()
        json_headers = {**auth, "Content-Type": "application/json", "If-Match": '"1"'}
        s2 = half_sent(server.url, "POST", f"/v1/nodes/{a_id}/versions", json_headers, body, len(body) // 2)
        threading.Event().wait(0.3)  # let the server read what was sent
        server.kill()
        s1.close()
        s2.close()
        committer.join(30)
        uploader.join(30)
        assert commit_error, "the commit cannot have been acknowledged: the server died inside it"
        assert upload_error, "the upload cannot have been acknowledged: the server died before its row"
    finally:
        acct.close()
        server.kill()

    server = FaultServer(data)  # restarted on the same data dir, no pause points
    try:
        http = acct.client(server.url)  # the session token outlives the restart
        # No half-visible version: /a.bin is at version 1, alone, with the first content.
        node = http.get(f"/v1/nodes/{a_id}").json()["node"]
        assert node["version"] == 1
        assert [v["version"] for v in http.get(f"/v1/nodes/{a_id}/versions").json()["versions"]] == [1]
        assert http.get(f"/v1/nodes/{a_id}/versions/2").status_code == 404
        drive = fresh_drive(server.url, tmp_path, acct.user)
        try:
            assert_files(drive, files)  # every acknowledged commit, byte for byte, through the client
        finally:
            drive.close()
        for cid, raw in acked.items():  # every acknowledged chunk, byte for byte
            r = http.get(f"/v1/chunks/{cid}")
            assert r.status_code == 200 and r.content == raw
        # The half-sent chunk was never stored; the one killed before its row is not the caller's.
        assert http.get(f"/v1/chunks/{chunk_id(big)}").status_code == 404
        assert not blob_path(data, chunk_id(big)).exists()
        assert http.get(f"/v1/chunks/{chunk_id(between)}").status_code == 404
        missing = http.post("/v1/chunks/missing", json={"ids": [chunk_id(big), chunk_id(between), *acked]}).json()
        assert missing == {"missing": [chunk_id(big), chunk_id(between)]}
        # Its blob is an orphan, young: pending for fsck (an upload may be in flight), not a problem...
        assert blob_path(data, chunk_id(between)).exists()
        code, report = fsck_cli(data)
        assert code == 0 and report["clean"], report
        assert [o["chunk_id"] for o in report["found"]["pending"]] == [chunk_id(between)]
        # ... and fsck --repair with no grace deletes it: nothing stays orphaned.
        code, report = fsck_cli(data, "--repair", "--grace", "0")
        assert code == 0 and report["repaired"]["orphans_deleted"] == [chunk_id(between)], report
        code, report = fsck_cli(data, "--grace", "0")
        assert code == 0 and report["found"]["problems"] == 0 and not report["found"]["pending"], report
        # The client retries what was cut off, and everything works.
        for raw in (big, between):
            assert put_chunk(http, raw).status_code == 201
            assert http.get(f"/v1/chunks/{chunk_id(raw)}").content == raw
        drive = fresh_drive(server.url, tmp_path, acct.user)
        try:
            drive.write_file("/a.bin", v2)
            assert drive.read_file("/a.bin") == v2 and drive.stat("/a.bin").version == 2
        finally:
            drive.close()
        http.close()
    finally:
        server.stop()
    assert fsck.run(ServerConfig(data_dir=data)).found.clean


def upload_garbage(url: str, token: str, n: int) -> dict[str, bytes]:
    """``n`` chunks uploaded and never committed (garbage once the grace has passed)."""
    blobs = {}
    for i in range(n):
        raw = b"garbage %6d " % i + os.urandom(64)
        blobs[chunk_id(raw)] = raw

    def put_some(ids: list[str]) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            for cid in ids:
                assert put_chunk(c, blobs[cid]).status_code == 201

    ids = list(blobs)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(put_some, [ids[i::4] for i in range(4)]))
    return blobs


def check_after_gc_crash(url: str, data: Path, tmp_path: Path, acct: Account, files: dict[str, bytes],
                         garbage: dict[str, bytes]) -> None:  # fmt: skip
    http = acct.client(url)
    drive = fresh_drive(url, tmp_path, acct.user)
    try:
        assert_files(drive, files)
    finally:
        drive.close()
    # Every garbage chunk is whole or gone: one the server still calls stored, it serves byte for byte.
    missing = set(http.post("/v1/chunks/missing", json={"ids": list(garbage)}).json()["missing"])
    kept = [cid for cid in garbage if cid not in missing]
    assert missing and kept, (len(missing), len(kept))  # the kill fell between two batches
    for cid in kept:
        r = http.get(f"/v1/chunks/{cid}")
        assert r.status_code == 200 and r.content == garbage[cid]
    # fsck: rows and versions intact (nothing missing, no row without its blob, used right);
    # only blobs whose rows the crashed pass had removed are left, as orphans.
    report = fsck.run(ServerConfig(data_dir=data), grace=0).found
    assert not report.missing and not report.dead_rows and not report.wrong_size and not report.usage
    assert not report.unowned and {o.chunk_id for o in report.orphans} == missing
    # A GC pass afterwards (the real command, next to the running server) leaves no orphan.
    done = megadrive("server", "gc", "--data", str(data), "--grace", "0")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert int(stats["orphans_deleted"]) == len(missing) and int(stats["refs_removed"]) == len(kept)
    code, report_json = fsck_cli(data, "--grace", "0")
    assert code == 0 and report_json["found"]["problems"] == 0 and not report_json["found"]["pending"]
    assert not any(blob_path(data, cid).exists() for cid in garbage)
    drive = fresh_drive(url, tmp_path, acct.user)
    try:
        assert_files(drive, files)
    finally:
        drive.close()
    http.close()


def test_sigkill_the_server_during_its_gc_pass(tmp_path: Path, pause_dir: Path) -> None:
    data = tmp_path / "data"
    server = FaultServer(data)
    acct = Account(server.url, tmp_path)
    try:
        files = write_files(acct.drive)
        garbage = upload_garbage(server.url, acct.token, GARBAGE_CHUNKS)
    finally:
        acct.close()
        server.stop()
    # The same data, a server whose own collector runs at once with no grace; it dies mid-pass.
    arm(pause_dir, "gc.rows_removed")
    server = FaultServer(data, pause_dir=pause_dir, extra_args=["--gc-interval", "0.2", "--gc-grace", "0"])
    try:
        wait_reached(pause_dir, "gc.rows_removed")
        server.kill()
    finally:
        server.kill()
    server = FaultServer(data)
    try:
        check_after_gc_crash(server.url, data, tmp_path, acct, files, garbage)
    finally:
        server.stop()


def test_sigkill_megadrive_server_gc(tmp_path: Path, pause_dir: Path) -> None:
    """`megadrive server gc` next to a live server; the machine dies (both killed) mid-pass."""
    data = tmp_path / "data"
    server = FaultServer(data)
    acct = Account(server.url, tmp_path)
    try:
        files = write_files(acct.drive)
        garbage = upload_garbage(server.url, acct.token, GARBAGE_CHUNKS)
        arm(pause_dir, "gc.rows_removed")
        gc_env = child_env(pause_dir)
        collector = subprocess.Popen(
            [str(Path(sys.executable).parent / "megadrive"), "server", "gc", "--data", str(data), "--grace", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=gc_env,
        )  # fmt: skip
        try:
            assert wait_reached(pause_dir, "gc.rows_removed") == collector.pid
        finally:
            collector.kill()
            collector.wait(10)
            server.kill()
    finally:
        acct.close()
        server.kill()
    server = FaultServer(data)
    try:
        check_after_gc_crash(server.url, data, tmp_path, acct, files, garbage)
    finally:
        server.stop()


def test_pause_points_are_inert_without_the_variable(tmp_path: Path, pause_dir: Path) -> None:
    """Armed files do nothing unless the process was started with MEGADRIVE_TEST_PAUSE_DIR."""
    for point in ("chunk.stored", "commit.written", "gc.rows_removed"):
        arm(pause_dir, point)
    code = (
        "import time; from megadrive.server import testhooks as t; s = time.monotonic();"
        "[t.pause(p) for p in ('chunk.stored', 'commit.written', 'gc.rows_removed')];"
        "assert time.monotonic() - s < 1"
    )
    r = subprocess.run([sys.executable, "-c", code], env=child_env(None), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not list(pause_dir.glob("*.reached"))
    # With the variable, an unarmed point does nothing either.
    (pause_dir / "chunk.stored").unlink()
    code = "from megadrive.server import testhooks as t; t.pause('chunk.stored')"
    r = subprocess.run([sys.executable, "-c", code], env=child_env(pause_dir), capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 0 and not list(pause_dir.glob("*.reached")), r.stderr
