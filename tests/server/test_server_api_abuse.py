"""API tests (real server process): an abuse report never keeps a link's key.

The key of a link is its URL's ``#fragment``. Whatever shape a reporter
pastes it in, in ``link`` or in the free-text ``reason``, the server drops
every fragment before it parses, logs or stores anything: afterwards the key
bytes are in no file of the data directory (database, WAL, audit log) and in
no line the server logged, even at DEBUG.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from support.server import ServerProcess
from support.server_api import assert_json_error, b64, new_user


def key() -> str:
    """A link key as clients write it: 32 random bytes, url-safe base64."""
    return secrets.token_urlsafe(32)


def test_no_shape_of_pasted_key_is_kept(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(1 << 20, "--log-level", "DEBUG")
    data = Path(server.data_dir)
    alice = new_user(server.url)
    f = alice.mkfile()
    cid, _ = alice.put_chunk(b"reported content")
    assert alice.commit(f["node_id"], 0, [cid]).status_code == 201
    link_id = alice.client.post("/v1/links", json={"node_id": f["node_id"], "blob": b64(b"sealed")}).json()["link"][
        "link_id"
    ]
    keys = [key() for _ in range(16)]
    k = iter(keys)
    accepted = [  # (link as pasted, the link id the server must record)
        f"https://drive.example/l/{link_id}#{next(k)}",
        f"https://drive.example/l/{link_id}/#{next(k)}",
        f"https://drive.example/l/{link_id}?x=1#{next(k)}",
        f"https://drive.example/l/{link_id}%23{next(k)}",  # a percent-encoded "#", as mail scanners wrap links
        f"{link_id}#{next(k)}",
    ]
    refused = [
        f"https://drive.example/L/{link_id}#{next(k)}",  # not a link path: refused, and still not kept
        f"#{next(k)}",
        f"https://drive.example/x/{link_id}#{next(k)}",
    ]
    reason_keys = [next(k) for _ in range(7)]
    reason = (
        f"see /l/{link_id}/#{reason_keys[0]}, also /l/{link_id}?x#{reason_keys[1]} and /L/{link_id}#{reason_keys[2]}"
        f"\nthe key alone: #{reason_keys[3]} (l/{link_id}#{reason_keys[4]}) %23{reason_keys[5]}"
        f" https://h/l/{link_id}#{reason_keys[6]}"
    )
    scrubbed = (
        f"see /l/{link_id}/ also /l/{link_id}?x and /L/{link_id}"
        f"\nthe key alone:  (l/{link_id} "
        f" https://h/l/{link_id}"
    )
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        reports = []
        for pasted in accepted:
            r = anon.post("/v1/abuse", json={"link": pasted, "reason": reason})
            assert r.status_code == 202, (pasted, r.text)
            reports.append(r.json()["report_id"])
        for pasted in refused:
            r = anon.post("/v1/abuse", json={"link": pasted, "reason": reason})
            assert_json_error(r, 400, "bad_request")
            assert not any(secret in r.text for secret in keys)

    # What is stored: the link id and the reason without any fragment.
    conn = sqlite3.connect(data / "meta.sqlite3")
    rows = conn.execute("SELECT report_id, link_id, reason FROM abuse_reports ORDER BY created, rowid").fetchall()
    conn.close()
    assert rows == [(report, link_id, scrubbed) for report in reports]

    # The operator takes it down, pasting a keyed link as target and into the reason.
    target, operator_key = f"https://drive.example/l/{link_id}#{key()}", key()
    keys += [target.rsplit("#", 1)[1], operator_key]
    result = subprocess.run(
        [sys.executable, "-m", "megadrive.server", "takedown", target, "--data", str(data)]
        + ["--reason", f"notice about https://drive.example/l/{link_id}#{operator_key}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["report_ids"] == reports and record["link_ids"] == [link_id]
    assert record["reason"] == f"notice about https://drive.example/l/{link_id}"
    outputs = result.stdout + result.stderr

    server.stop()  # (checkpoints the WAL; the files are read both ways below)
    files = [p for p in data.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"meta.sqlite3", "audit.log", "server.secret"}
    logged = server.stderr()
    for secret in keys:
        raw = secret.encode()
        for path in files:
            assert raw not in path.read_bytes(), (path, secret)
        assert secret not in logged and secret not in outputs


def test_the_wal_never_holds_a_key(make_server: Callable[..., ServerProcess]) -> None:
    """Read while the server runs: the write-ahead log is where a stored key would land first."""
    server = make_server(1 << 20, "--log-level", "DEBUG")
    secret = key()
    r = httpx.post(
        server.url + "/v1/abuse", json={"link": "A" * 22 + "/#" + secret, "reason": f"#{secret}"}, timeout=30
    )
    assert_json_error(r, 400, "bad_request")  # "AAA…/" is no link: refused
    r = httpx.post(server.url + "/v1/abuse", json={"link": "A" * 22 + "#" + secret, "reason": f"#{secret}"}, timeout=30)
    assert r.status_code == 202
    wal = Path(server.data_dir) / "meta.sqlite3-wal"
    assert wal.is_file() and wal.stat().st_size > 0
    for path in Path(server.data_dir).rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in server.stderr()
    new_user(server.url).client.close()  # the server is healthy
