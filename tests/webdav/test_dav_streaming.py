"""Streaming uploads and downloads: chunked bodies, a 512 MiB round trip (more than the RSS limit) in
bounded memory (2 GiB with MEGADRIVE_LONG_TESTS=1), Range GETs."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from support.dav import (
    GatewayProcess,
    MiB,
    SeededStream,
    get,
    inprocess_gateway,
    megadrive,
    raw_chunked_put,
    seeded_bytes,
    sha256,
    signup,
)
from support.server import ServerProcess


def test_put_chunked_transfer_encoding_20mib(dav: httpx.Client) -> None:
    body = SeededStream(seed=7, total=20 * MiB + 12345, block=256 * 1024)
    r = dav.put("/chunked.bin", content=iter(body))
    assert r.status_code == 201, r.text
    with dav.stream("GET", "/chunked.bin") as resp:
        assert resp.status_code == 200
        h = hashlib.sha256()
        n = 0
        for piece in resp.iter_bytes():
            h.update(piece)
            n += len(piece)
    assert n == body.total
    assert h.hexdigest() == body.hexdigest()


def test_put_without_content_length_raw_socket(gw: GatewayProcess) -> None:
    data = seeded_bytes(11, 3 * MiB + 777)
    pieces = [data[i:i + 100_000] for i in range(0, len(data), 100_000)]
    code, _headers, body = raw_chunked_put(gw, "/raw chunked.bin", pieces)
    assert code == 201, body
    with gw.client() as c:
        assert sha256(get(c, "/raw chunked.bin")) == sha256(data)
    # an empty chunked body makes an empty file
    code, _headers, body = raw_chunked_put(gw, "/empty.bin", [])
    assert code == 201, body
    with gw.client() as c:
        assert get(c, "/empty.bin") == b""


class PeakRss:
    """Poll a process's resident set size every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


@pytest.fixture
def big_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A private server whose gigabytes of chunks are deleted right after the test."""
    server = ServerProcess(tmp_path / "big-server")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp_path / "big-server", ignore_errors=True)


BIG_SIZE = (2 << 30) if os.environ.get("MEGADRIVE_LONG_TESTS") == "1" else (512 * MiB)  # > RSS_LIMIT either way
RSS_LIMIT = 200 * MiB


def test_gigabytes_put_and_get_in_bounded_memory(big_server: ServerProcess, tmp_path: Path,
                                            gateways: Callable[..., GatewayProcess]) -> None:
    acct = signup(big_server.url, tmp_path)
    gw = gateways(acct.home)
    body = SeededStream(seed=2024, total=BIG_SIZE, block=MiB)
    with gw.client(timeout=600) as c:
        with PeakRss(gw.pid) as rss:
            idle = rss.peak
            t0 = time.monotonic()
            r = c.put("/big.bin", content=iter(body))
            t_put = time.monotonic() - t0
            assert r.status_code == 201, r.text
            put_peak = rss.peak
            t0 = time.monotonic()
            h = hashlib.sha256()
            n = 0
            with c.stream("GET", "/big.bin") as resp:
                assert resp.status_code == 200
                assert resp.headers["content-length"] == str(BIG_SIZE)
                for piece in resp.iter_bytes(MiB):
                    h.update(piece)
                    n += len(piece)
            t_get = time.monotonic() - t0
    shutil.rmtree(acct.home / "accounts", ignore_errors=True)  # the chunk cache
    print(f"\n{BIG_SIZE >> 20} MiB: PUT {t_put:.1f}s, GET {t_get:.1f}s, gateway peak RSS {rss.peak / MiB:.0f} MiB "
          f"(during PUT {put_peak / MiB:.0f} MiB, idle {idle / MiB:.0f} MiB)")
    assert n == BIG_SIZE
    assert h.hexdigest() == body.hexdigest()
    assert rss.peak < RSS_LIMIT, f"gateway peak RSS {rss.peak / MiB:.0f} MiB"


def test_range_get_fetches_only_the_chunk_it_needs(dav_server: ServerProcess, tmp_path: Path) -> None:
    acct = signup(dav_server.url, tmp_path)
    # Written from another machine (its own MEGADRIVE_HOME), so the gateway's chunk cache is cold.
    other = tmp_path / "other-home"
    other.mkdir()
    r = megadrive(other, "login", "--server", dav_server.url, "--user", acct.user)
    assert r.returncode == 0, r.stderr
    data = seeded_bytes(16, 16 * MiB)
    local = tmp_path / "sixteen.bin"
    local.write_bytes(data)
    r = megadrive(other, "put", str(local), "/sixteen.bin")
    assert r.returncode == 0, r.stderr
    with inprocess_gateway(acct.home) as g, g.client() as c:
        g.counters.reset()
        resp = c.get("/sixteen.bin", headers={"Range": "bytes=5242880-5242889"})
        assert resp.status_code == 206, resp.text
        assert resp.content == data[5242880:5242890]
        assert resp.headers["content-range"] == f"bytes 5242880-5242889/{len(data)}"
        time.sleep(0.5)  # any read-ahead would have started by now
        assert len(g.counters.chunks) == 1, f"{len(g.counters.chunks)} chunks fetched for 10 bytes"

        g.counters.reset()
        resp = c.get("/sixteen.bin", headers={"Range": "bytes=-10"})
        assert resp.status_code == 206, resp.text
        assert resp.content == data[-10:]
        assert resp.headers["content-range"] == f"bytes {len(data) - 10}-{len(data) - 1}/{len(data)}"
        time.sleep(0.5)
        assert len(g.counters.chunks) == 1, f"{len(g.counters.chunks)} chunks fetched for the last 10 bytes"

        # A range across a chunk boundary needs exactly the two chunks.
        g.counters.reset()
        resp = c.get("/sixteen.bin", headers={"Range": f"bytes={3 * MiB - 5}-{3 * MiB + 4}"})
        assert resp.status_code == 206 and resp.content == data[3 * MiB - 5:3 * MiB + 5]
        time.sleep(0.5)
        assert len(g.counters.chunks) == 2, g.counters.chunks
