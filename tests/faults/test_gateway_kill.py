"""SIGKILL of `megadrive webdav`: what a client was told is stored stays stored; nothing half is ever visible.

A real gateway over a real server is killed with SIGKILL (no cleanup of any kind) and started again on the
same MEGADRIVE_HOME. Every PUT answered 2xx before the kill reads back byte for byte after the restart;
every PUT whose body was in flight at the kill is either all there (its last bytes had arrived and the
commit went through) or not at all (the file's previous content, or no file); never a partial file, never
another file's bytes. Locks granted before the kill still hold after it.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from support.dav import (  # noqa: E402
    Account,
    GatewayProcess,
    MiB,
    href,
    if_token,
    lock,
    raw_connect,
    read_response,
    seeded_bytes,
    signup,
)
from support.server import NO_SIGNUP_LIMIT, ServerProcess  # noqa: E402

ROUNDS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path_factory.mktemp("gateway-kill") / "data", extra_args=NO_SIGNUP_LIMIT)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def account(server: ServerProcess, tmp_path: Path) -> Account:
    return signup(server.url, tmp_path)


class Gateways:
    """The account's gateway, killed and started again; always stopped at the end."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.gw = GatewayProcess(home)
        self.logs: list[str] = []

    def kill_and_restart(self) -> GatewayProcess:
        self.gw.proc.kill()  # SIGKILL
        self.gw.proc.wait(10)
        self.logs.append(self.gw.stderr())
        self.gw = GatewayProcess(self.home)
        return self.gw

    def stop(self) -> None:
        self.gw.stop()
        self.logs.append(self.gw.stderr())


@pytest.fixture
def gateways(account: Account) -> Iterator[Gateways]:
    g = Gateways(account.home)
    try:
        yield g
    finally:
        g.stop()
        for log in g.logs:
            assert "Traceback" not in log, log[-3000:]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_back(gw: GatewayProcess, path: str) -> bytes | None:
    with gw.client() as c:
        r = c.get(href(path))
    if r.status_code == 404:
        return None
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return r.content


@dataclass
class Upload:
    path: str
    data: bytes
    before: bytes | None  # what the path held before this PUT (None: nothing)
    acked: bool = False
    error: str = ""


def slow_put(gw: GatewayProcess, up: Upload, pace: float) -> None:
    """PUT in 64 KiB pieces, ``pace`` seconds apart; ``acked`` once a 2xx came back."""
    u = urlsplit(gw.url)
    try:
        with raw_connect(gw.url) as s:
            s.sendall(f"PUT {href(up.path)} HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: {gw.authorization}\r\n"
                      f"Content-Length: {len(up.data)}\r\n\r\n".encode())
            for i in range(0, len(up.data), 64 * 1024):
                s.sendall(up.data[i:i + 64 * 1024])
                time.sleep(pace)
            code = read_response(s)[0]
            up.acked = code in (201, 204)
            if not up.acked:
                up.error = f"status {code}"
    except (OSError, ConnectionError) as e:
        up.error = repr(e)


def check_all_or_nothing(gw: GatewayProcess, uploads: list[Upload]) -> tuple[int, int, int]:
    """(acknowledged, in flight and committed, in flight and not committed)."""
    acked = committed = dropped = 0
    for up in uploads:
        got = read_back(gw, up.path)
        if up.acked:
            assert got is not None and sha(got) == sha(up.data), (up.path, "an acknowledged PUT was lost or changed")
            acked += 1
        elif got is not None and sha(got) == sha(up.data):
            committed += 1
        else:
            assert (got is None and up.before is None) or (got is not None and up.before is not None
                                                           and sha(got) == sha(up.before)), \
                (up.path, len(got or b""), len(up.data), "a half or foreign file is visible after the kill")
            dropped += 1
    return acked, committed, dropped


def test_acknowledged_puts_survive_sigkill_byte_exact(gateways: Gateways) -> None:
    gw = gateways.gw
    files = {f"/f{i}.bin": seeded_bytes(i, n) for i, n in
             enumerate([0, 1, 1000, MiB - 1, MiB, MiB + 3, 3 * MiB + 17])}
    with gw.client() as c:
        assert c.request("MKCOL", "/docs").status_code == 201
        for path, data in files.items():
            assert c.put(path, content=data).status_code == 201
        files["/docs/report.txt"] = b"first version\n" * 1000
        assert c.put("/docs/report.txt", content=files["/docs/report.txt"]).status_code == 201
        files["/docs/report.txt"] = b"second version\n" * 3000
        assert c.put("/docs/report.txt", content=files["/docs/report.txt"]).status_code == 204
        files["/f3.bin"] = seeded_bytes(99, 2 * MiB)  # an overwrite, chunked (no Content-Length)
        r = c.put("/f3.bin", content=iter([files["/f3.bin"][i:i + 100_000]
                                           for i in range(0, 2 * MiB, 100_000)]))
        assert r.status_code == 204
    gw = gateways.kill_and_restart()  # at once after the last answer
    for path, data in files.items():
        got = read_back(gw, path)
        assert got is not None and sha(got) == sha(data), path


class Summary:
    """Prints a test's figures at the end of the test session."""

    def __init__(self, line: str) -> None:
        self.line = line

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_line(self.line)


def test_puts_in_flight_at_sigkill_are_all_or_nothing(gateways: Gateways, request: pytest.FixtureRequest) -> None:
    """Rounds of uploads killed at random moments: mid-body, between the last byte and the answer, after."""
    rng = random.Random(4242)
    gw = gateways.gw
    totals = [0, 0, 0]
    state: dict[str, bytes] = {}
    for rnd in range(ROUNDS):
        uploads = []
        for i in range(6):
            path = f"/round-file-{i}.bin"  # the same paths each round: overwrites of committed content
            data = seeded_bytes(rnd * 100 + i, rng.choice([200_000, MiB + 5, 3 * MiB]))
            uploads.append(Upload(path, data, state.get(path)))
        threads = [threading.Thread(target=slow_put, args=(gw, up, rng.choice([0.0, 0.005, 0.02])), daemon=True)
                   for up in uploads]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.2, 1.2))
        gw = gateways.kill_and_restart()
        for t in threads:
            t.join(30)
        counts = check_all_or_nothing(gw, uploads)
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        for up in uploads:
            got = read_back(gw, up.path)
            if got is not None:
                state[up.path] = got
    line = (f"gateway SIGKILL: {ROUNDS} kills with 6 PUTs each: {totals[0]} acknowledged and intact, {totals[1]} "
            f"in flight and committed whole, {totals[2]} in flight and not committed (previous content intact)")
    request.config.pluginmanager.register(Summary(line), "gateway-kill-summary")
    assert sum(totals) == ROUNDS * 6
    assert totals[2] > 0, "no PUT was in flight at a kill: the test did not test anything"


def test_a_body_cut_by_sigkill_leaves_the_old_file(gateways: Gateways) -> None:
    gw = gateways.gw
    old = seeded_bytes(1, 2 * MiB)
    with gw.client() as c:
        assert c.put("/doc.bin", content=old).status_code == 201
    new = seeded_bytes(2, 8 * MiB)
    up = Upload("/doc.bin", new, old)
    fresh = Upload("/new.bin", new, None)
    threads = [threading.Thread(target=slow_put, args=(gw, u, 0.01), daemon=True) for u in (up, fresh)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # about half of each body sent
    gw = gateways.kill_and_restart()
    for t in threads:
        t.join(30)
    assert not up.acked and not fresh.acked
    assert read_back(gw, "/doc.bin") == old
    assert read_back(gw, "/new.bin") is None
    with gw.client() as c:
        listing = c.request("PROPFIND", "/", headers={"Depth": "1"}).text
    assert "new.bin" not in listing


def test_locks_survive_sigkill(gateways: Gateways) -> None:
    gw = gateways.gw
    with gw.client() as c:
        assert c.put("/locked.txt", content=b"mine").status_code == 201
        token = lock(c, "/locked.txt")
        shared = lock(c, "/unmapped.txt")  # a lock on a new name makes an empty file
    gw = gateways.kill_and_restart()
    with gw.client() as c:
        assert c.put("/locked.txt", content=b"theirs").status_code == 423
        assert c.put("/unmapped.txt", content=b"theirs").status_code == 423
        assert c.put("/locked.txt", content=b"mine, again", headers=if_token(token)).status_code == 204
        assert c.request("UNLOCK", "/locked.txt", headers={"Lock-Token": f"<{token}>"}).status_code == 204
        assert c.request("UNLOCK", "/unmapped.txt", headers={"Lock-Token": f"<{shared}>"}).status_code == 204
        assert c.put("/locked.txt", content=b"anyone").status_code == 204
    gw = gateways.kill_and_restart()  # the unlocks hold too
    with gw.client() as c:
        assert c.put("/unmapped.txt", content=b"free").status_code == 204
        assert c.get("/locked.txt").content == b"anyone"
