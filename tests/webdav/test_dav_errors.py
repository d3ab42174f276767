"""Errors map to the right statuses, integrity failures never deliver bytes, and no body leaks a traceback."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from support.accounts import drop_chunk_cache
from support.dav import GatewayProcess, MiB, assert_clean_body, get, put, seeded_bytes, signup
from support.server import ServerProcess


def test_missing_things(dav: httpx.Client) -> None:
    for method, path, expected in [("GET", "/nope.txt", 404), ("HEAD", "/nope.txt", 404),
                                   ("DELETE", "/nope.txt", 404), ("PROPFIND", "/nope/", 404),
                                   ("MKCOL", "/no/such/parent", 409), ("PUT", "/no/such/file.txt", 409),
                                   ("GET", "/nope/deeper.txt", 404)]:
        r = dav.request(method, path, headers={"Depth": "0"} if method == "PROPFIND" else None,
                        content=b"x" if method == "PUT" else None)
        assert r.status_code == expected, f"{method} {path}: {r.status_code} {r.text[:500]}"
        assert_clean_body(r)
    put(dav, "/file.txt", b"f")
    for method, path, expected in [("MKCOL", "/file.txt", 405), ("MKCOL", "/file.txt/sub", 409),
                                   ("PUT", "/file.txt/sub", 409)]:
        r = dav.request(method, path, content=b"x" if method == "PUT" else None)
        assert r.status_code == expected, f"{method} {path}: {r.status_code} {r.text[:500]}"
        assert_clean_body(r)
    r = dav.request("MOVE", "/nope.txt", headers={"Destination": str(dav.base_url.join("/x.txt"))})
    assert r.status_code == 404
    r = dav.request("PROPFIND", "/", headers={"Depth": "1"}, content=b"<not xml")
    assert r.status_code == 400, r.text
    assert_clean_body(r)


def new_chunk_files(data_dir: Path, since: float) -> list[Path]:
    out = []
    for dirpath, _dirs, names in os.walk(data_dir / "chunks"):
        for n in names:
            p = Path(dirpath) / n
            if not n.startswith(".") and p.stat().st_mtime >= since:
                out.append(p)
    return sorted(out)


def flip_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))


def test_tampered_chunk_is_an_error_never_bytes(fresh_server: ServerProcess, tmp_path: Path,
                                                gateways: Callable[..., GatewayProcess]) -> None:
    acct = signup(fresh_server.url, tmp_path)
    gw = gateways(acct.home)
    small = seeded_bytes(1, 200_000)
    large = seeded_bytes(2, 3 * MiB + 10)
    with gw.client() as c:
        t0 = time.time() - 0.01
        put(c, "/small.bin", small)
        gw.settle()  # write-back: the server has it once the gateway's uploader sent it
        small_chunks = new_chunk_files(fresh_server.data_dir, t0)
        assert len(small_chunks) == 1, small_chunks
        time.sleep(0.05)
        t1 = time.time() - 0.01
        put(c, "/large.bin", large)
        gw.settle()
        large_chunks = [p for p in new_chunk_files(fresh_server.data_dir, t1) if p not in small_chunks]
        assert len(large_chunks) == 4, large_chunks
        put(c, "/intact.txt", b"untouched")
        flip_byte(small_chunks[0])
        for p in large_chunks:
            flip_byte(p)
        assert drop_chunk_cache(gw.home) == 5  # (the gateway kept what it uploaded: it must ask the server)

        r = c.get("/small.bin")
        assert r.status_code in (500, 502), f"{r.status_code}: {r.text[:500]}"
        assert small[:64] not in r.content
        assert_clean_body(r)
        r = c.get("/small.bin", headers={"Range": "bytes=10-20"})
        assert r.status_code in (500, 502), r.status_code
        assert_clean_body(r)
        r = c.get("/large.bin")
        assert r.status_code in (500, 502), r.status_code
        assert large[:64] not in r.content
        assert_clean_body(r)
        assert get(c, "/intact.txt") == b"untouched"
    assert "Traceback" not in gw.stderr(), gw.stderr()[-3000:]


def tamper_a_middle_chunk(gw: GatewayProcess, c: httpx.Client, data_dir: Path, path: str, data: bytes) -> int:
    """Upload ``data`` and corrupt one of its chunks other than the first; returns that chunk's index.

    Chunk files are content-addressed, so which file holds which chunk is found by probing:
    a Range GET inside a tampered chunk fails before its status line.
    """
    t0 = time.time() - 0.01
    put(c, path, data)
    gw.settle()
    drop_chunk_cache(gw.home)  # (kept since the upload: the reads below must come from the server)
    chunks = new_chunk_files(data_dir, t0)
    n = -(-len(data) // MiB)
    assert len(chunks) == n, chunks
    def fails(i: int) -> bool:
        return c.get(path, headers={"Range": f"bytes={i * MiB}-{i * MiB}"}).status_code >= 500

    for p in chunks:
        flip_byte(p)
        if fails(0):  # that was chunk 0: restore it, try another
            flip_byte(p)
            continue
        bad = [i for i in range(1, n) if fails(i)]  # (the intact ones are now in the gateway's cache)
        assert len(bad) == 1, bad
        return bad[0]
    raise AssertionError("no chunk could be tampered")


def test_tampered_chunk_mid_file_cuts_the_body_short(fresh_server: ServerProcess, tmp_path: Path,
                                                     gateways: Callable[..., GatewayProcess]) -> None:
    acct = signup(fresh_server.url, tmp_path)
    gw = gateways(acct.home)
    data = seeded_bytes(3, 4 * MiB)
    with gw.client() as c:
        k = tamper_a_middle_chunk(gw, c, fresh_server.data_dir, "/movie.bin", data)
        put(c, "/intact.txt", b"untouched")
        got = b""
        status = None
        with pytest.raises(httpx.HTTPError):
            with c.stream("GET", "/movie.bin") as resp:
                status = resp.status_code
                for piece in resp.iter_bytes():
                    got += piece
                if status >= 500:
                    raise httpx.HTTPError("refused before the body: fine")
        assert status is not None
        if status == 200:
            # The failure came after the status line: the body stops before the bad chunk, all of it true bytes.
            assert len(got) <= k * MiB, (k, len(got))
            assert got == data[:len(got)], "bytes that are not the file's were delivered"
    with gw.client() as c:
        assert get(c, "/intact.txt") == b"untouched"
        r = c.get("/movie.bin", headers={"Range": f"bytes={k * MiB}-{k * MiB + 9}"})
        assert r.status_code in (500, 502)
        assert_clean_body(r)


def test_mid_body_integrity_failure_logs_one_line(fresh_server: ServerProcess, tmp_path: Path,
                                                  gateways: Callable[..., GatewayProcess]) -> None:
    acct = signup(fresh_server.url, tmp_path)
    gw = gateways(acct.home)
    with gw.client() as c:
        tamper_a_middle_chunk(gw, c, fresh_server.data_dir, "/movie.bin", seeded_bytes(4, 3 * MiB))
        try:
            with c.stream("GET", "/movie.bin") as resp:
                for _ in resp.iter_bytes():
                    pass
        except httpx.HTTPError:
            pass
    time.sleep(0.5)
    gw.stop()
    log = gw.stderr()
    assert "INTEGRITY FAILURE" in log, log
    assert "Traceback" not in log, log[-3000:]
