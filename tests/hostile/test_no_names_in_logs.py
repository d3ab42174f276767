"""Hostile: decrypted names must never reach a log (finding 7).

Before the fix EIO/ENOSPC and journal-replay lines carried decrypted paths into MEGADRIVE_HOME/mount.log,
which outlives the session (and logout); the server could trigger such lines at will by flipping one
byte of a meta or a chunk. Logs now name nodes by id. This test makes every such line happen, in the FUSE
mount and in the WebDAV gateway, then searches the logs for the names.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from support.accounts import Server, drop_chunk_cache
from support.dav import GatewayProcess, interrupted_put  # noqa: E402
from support.evil import EvilServer
from support.mounts import Mount, drive_of, signup, wait_until  # noqa: E402

FOLDER = "Quarterly Layoff Plans"
FILE = "secret-diary-of-7f3a.txt"
NAMES = [FOLDER.encode(), FILE.encode(), b"secret-diary", b"Layoff"]


def _flip_chunk(server: Server, chunk_id: str) -> None:
    p = next((server.data / "chunks").rglob(chunk_id))
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 1
    p.write_bytes(bytes(raw))


def _flip_meta(evil: EvilServer, node_id: str) -> None:
    meta = bytearray(evil.row(node_id).meta)
    meta[-1] ^= 1
    evil.rewrite(node_id, meta=bytes(meta))


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse")
def test_the_mount_log_names_no_file(server: Server, tmp_path: Path) -> None:
    acct = signup(server.url, tmp_path)
    m = Mount(acct, tmp_path / "mnt")
    try:
        m.mount()
        (m.path / FOLDER).mkdir()
        (m.path / FOLDER / FILE).write_bytes(os.urandom(100_000))
        (m.path / FOLDER / "other.txt").write_bytes(b"x")
        with drive_of(acct) as d:
            chunk = d.manifest(f"/{FOLDER}/{FILE}").chunk_ids()[0]  # type: ignore[union-attr]
            other = d.stat(f"/{FOLDER}/other.txt").node_id
        _flip_chunk(server, chunk)
        drop_chunk_cache(acct.home)  # (the mount kept what it uploaded: the read must come from the server)
        with pytest.raises(OSError):  # EIO: logged
            (m.path / FOLDER / FILE).read_bytes()
        _flip_meta(EvilServer(server.data), other)  # hidden at the next sync: logged
        wait_until(lambda: not (m.path / FOLDER / "other.txt").exists(), 15, "the tampered entry stays listed")
        # A write the mount journals, then a crash, then the next mount replays it: logged.
        with open(m.path / FOLDER / "secret-diary-journal.txt", "wb") as f:
            f.write(b"not yet committed")
            f.flush()
            time.sleep(2.5)  # the mount journals a dirty file after it rested a second
            os.kill(m.pid, signal.SIGKILL)
    except OSError:
        pass  # the file's close after the crash fails: expected
    finally:
        m.unmount()
    try:
        m.mount()
        assert (m.path / FOLDER / "secret-diary-journal.txt").read_bytes() == b"not yet committed"
    finally:
        m.unmount()
    log = (acct.home / "mount.log").read_bytes()
    assert b"integrity check failed" in log and b"journal:" in log and b"hiding node" in log
    for name in NAMES:
        assert name not in log, f"{name!r} in mount.log"


def test_the_gateway_log_names_no_file(server: Server, tmp_path: Path) -> None:
    acct = signup(server.url, tmp_path)
    with drive_of(acct) as d:
        d.mkdir(f"/{FOLDER}")
        d.write_file(f"/{FOLDER}/{FILE}", os.urandom(100_000))
        d.write_file(f"/{FOLDER}/other.txt", b"x")
        chunk = d.manifest(f"/{FOLDER}/{FILE}").chunk_ids()[0]  # type: ignore[union-attr]
        other = d.stat(f"/{FOLDER}/other.txt").node_id
    gw = GatewayProcess(acct.home)
    try:
        _flip_chunk(server, chunk)
        _flip_meta(EvilServer(server.data), other)
        with httpx.Client(base_url=gw.url, auth=gw.auth, timeout=30) as c:
            assert c.get(f"/{FOLDER}/{FILE}").status_code == 500
            time.sleep(2.5)  # a sync poll: the tampered meta is hidden and reported
            assert c.request("PROPFIND", f"/{FOLDER}/", headers={"Depth": "1"}).status_code == 207
        interrupted_put(gw, f"/{FOLDER}/{FILE}.new", 10_000, b"abc")  # a body cut short: a log line
        time.sleep(1)
    finally:
        gw.stop()
    log = gw.stderr().encode()
    assert b"INTEGRITY FAILURE" in log and b"nothing committed" in log
    for name in NAMES:
        assert name not in log, f"{name!r} in the gateway's log"
