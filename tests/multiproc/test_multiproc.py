"""Two server processes on one PostgreSQL database and one S3 endpoint, behind no balancer.

Clients talk to either process, concurrently: tokens, rate limits, the change
feed, compare-and-swap and quota must hold across processes exactly as they
do inside one, and nothing acknowledged may be lost. The real client writes
files through both at once; a fresh client reads them all back through the
other; fsck (against the same URLs) finds the stores consistent.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.accounts import make_drive, new_home
from support.server import ServerProcess
from support.server_api import User, assert_json_error, b64, new_user, signup_body

from megadrive.drive import Drive

QUOTA = 4 << 20


def both(tmp_path: Path, meta: str, chunks: str, *args: str) -> tuple[ServerProcess, ServerProcess]:
    """Two processes, each with its own (nearly empty) data folder, on the same two URLs."""
    extra = ["--meta", meta, "--chunks", chunks, "--gc-interval", "0", *args]
    a = ServerProcess(tmp_path / "a", quota=QUOTA, extra_args=extra)
    try:
        b = ServerProcess(tmp_path / "b", quota=QUOTA, extra_args=extra)
    except BaseException:
        a.stop()
        raise
    return a, b


@pytest.fixture
def pair(
    tmp_path: Path, pg_database: Callable[[], str], seaweed: Any
) -> Iterator[tuple[ServerProcess, ServerProcess, str, str]]:
    meta, chunks = pg_database(), seaweed.url()
    a, b = both(tmp_path, meta, chunks, "--signup-limit", "0")
    try:
        yield a, b, meta, chunks
    finally:
        for s in (a, b):
            s.stop()
            assert "Traceback" not in s.stderr(), s.stderr()


def on(user: User, url: str) -> User:
    """The same account and token, talking to another process."""
    other = User(url=url, name=user.name, auth_key=user.auth_key, signup=user.signup, token=user.token)
    other.client.headers["Authorization"] = f"Bearer {user.token}"
    return other


def run_parallel(work: list[Callable[[], object]]) -> list[object]:
    """Run every callable in its own thread, released together; results (or exceptions) in order."""
    barrier = threading.Barrier(len(work))
    out: list[object] = [None] * len(work)

    def go(i: int) -> None:
        barrier.wait()
        try:
            out[i] = work[i]()
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def fsck(meta: str, chunks: str) -> dict[str, Any]:
    r = subprocess.run(
        [sys.executable, "-m", "megadrive.server", "fsck", "--meta", meta, "--chunks", chunks, "--json",
         "--grace", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "Traceback" not in r.stderr, r.stderr
    report: dict[str, Any] = json.loads(r.stdout)
    return report


def test_tokens_feed_and_compare_and_swap_hold_across_processes(
    pair: tuple[ServerProcess, ServerProcess, str, str],
) -> None:
    a, b, _, _ = pair
    alice_a = new_user(a.url)  # signed up and logged in on A
    alice_b = on(alice_a, b.url)  # the same token works on B
    assert alice_b.account()["user_id"] == alice_a.user_id
    # Concurrent creates through both processes: every node once in the feed, seqs strictly increasing.
    made = run_parallel([(lambda u=u: [u.mkdir()["node_id"] for _ in range(15)]) for u in (alice_a, alice_b) * 3])
    created = {nid for ids in made for nid in ids}  # type: ignore[union-attr]
    assert len(created) == 90
    for reader in (alice_a, alice_b):
        feed = reader.changes(0, 10_000)["changes"]
        seqs = [n["seq"] for n in feed]
        assert seqs == sorted(set(seqs)) and {n["node_id"] for n in feed} == created | {alice_a.root}
        assert reader.account()["seq"] == seqs[-1] == 91  # one bump per change, none lost or doubled
    # Compare-and-swap across processes: of 8 commits on one base, 4 per process, exactly one wins.
    f = alice_a.mkfile()["node_id"]
    outcomes = run_parallel(
        [(lambda u=u, i=i: u.commit(f, 0, [], manifest=b"m%d" % i).status_code) for i, u in
         enumerate([alice_a, alice_b] * 4)]
    )  # fmt: skip
    assert sorted(outcomes) == [201] + [412] * 7, outcomes  # type: ignore[type-var]
    # A logout on B revokes the token on A too.
    assert alice_b.client.post("/v1/logout").status_code == 204
    assert_json_error(alice_a.client.get("/v1/account"), 401)


def test_quota_is_exact_under_concurrent_uploads_through_both(
    pair: tuple[ServerProcess, ServerProcess, str, str],
) -> None:
    a, b, meta, chunks = pair
    alice_a = new_user(a.url)
    alice_b = on(alice_a, b.url)
    used = alice_a.account()["used"]
    size = 100_000
    room = (QUOTA - used) // size
    blobs = [os.urandom(size) for _ in range(room + 12)]  # 12 more than fit
    results = run_parallel(
        [(lambda u=u, d=d: u.put_chunk(d)[1].status_code) for u, d in zip([alice_a, alice_b] * len(blobs), blobs,
                                                                          strict=False)]
    )  # fmt: skip
    assert results.count(201) == room and results.count(507) == 12, results
    account = alice_b.account()
    assert account["used"] == used + room * size <= QUOTA
    # Stored means stored: every accepted chunk is readable from either process, and fsck is clean.
    accepted = [d for d, r in zip(blobs, results, strict=True) if r == 201]
    for u in (alice_a, alice_b):
        missing = u.client.post("/v1/chunks/missing", json={"ids": [hashlib.sha256(d).hexdigest() for d in accepted]})
        assert missing.json() == {"missing": []}
    report = fsck(meta, chunks)
    assert report["clean"], report["found"]["counts"]


def test_limiters_are_shared(tmp_path: Path, pg_database: Callable[[], str], seaweed: Any) -> None:
    a, b = both(tmp_path, pg_database(), seaweed.url(), "--signup-limit", "2", "--login-max-failures", "3")
    try:
        # Signups per address: two on A, the third (on B) is refused.
        for url in (a.url, a.url):
            assert httpx.post(url + "/v1/signup", json=signup_body("u" + secrets.token_hex(5))).status_code == 201
        r = httpx.post(b.url + "/v1/signup", json=signup_body("u" + secrets.token_hex(5)))
        assert_json_error(r, 429, "rate_limited")
        assert int(r.headers["Retry-After"]) > 3000
        # Failed logins: three on B, then A refuses even the right key.
        bad = {"user": "nobody-here", "auth_key": b64(os.urandom(32))}
        for _ in range(3):
            assert httpx.post(b.url + "/v1/login", json=bad).status_code == 401
        assert_json_error(httpx.post(a.url + "/v1/login", json=bad), 429, "rate_limited")
        # The prelogin secret is shared too: an unknown name gets the same fake salt from both.
        fake = [httpx.post(u + "/v1/prelogin", json={"user": "nobody-here"}).json() for u in (a.url, b.url)]
        assert fake[0] == fake[1]
    finally:
        a.stop()
        b.stop()


def test_real_clients_on_both_processes_lose_nothing(
    pair: tuple[ServerProcess, ServerProcess, str, str], tmp_path: Path
) -> None:
    a, b, meta, chunks = pair
    user = f"u{secrets.token_hex(4)}"
    first = make_drive(a.url, new_home(tmp_path), user)  # signs up through A
    second = make_drive(b.url, new_home(tmp_path), user, signup=False)  # the same account through B
    first.mkdir("/a")
    second.mkdir("/b")
    files: dict[str, bytes] = {}
    for i in range(6):
        files[f"/a/f{i}.bin"] = os.urandom(300_000 + i)
        files[f"/b/f{i}.bin"] = os.urandom(200_000 + i)

    def write(drive: Drive, prefix: str) -> None:
        for path, data in files.items():
            if path.startswith(prefix):
                drive.write_file(path, data)

    errors = run_parallel([lambda: write(first, "/a/"), lambda: write(second, "/b/")])
    assert errors == [None, None], errors
    first.close()
    second.close()
    for url in (b.url, a.url):  # a fresh client reads everything back through each process
        fresh = make_drive(url, new_home(tmp_path), user, signup=False)
        try:
            for path, data in files.items():
                assert fresh.read_file(path) == data, path
        finally:
            fresh.close()
    report = fsck(meta, chunks)
    assert report["clean"], report["found"]["counts"]
