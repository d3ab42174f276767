"""Slow clients: a client that stalls or trickles is cut off, and never ties up every worker meanwhile.

Twenty hostile clients hold connections to a real `megadrive webdav`: seven send half a request's headers
and then nothing, six send a PUT's headers and then no body, seven send a PUT body at one byte per second.
While they do, ordinary clients get their GETs and PUTs answered within seconds. The stalled headers get
408 after 10 s, the missing and trickled bodies 408 after about 20 s (mount.connection: 20 s, plus 1 s per
500 bytes), and nothing of them is committed; an upload
at 1 KiB/s (slow, but over that rate) goes through. Over TLS, clients that connect and never start the
handshake do not stall the gateway either (cheroot did the handshake in its one accept loop, so one such
client held up every other for 60 s), and a handshake trickled a byte at a time is cut off after 10 s.

Before the fix cheroot waited up to 60 s for each read, so a byte every few seconds held a worker for
ever, and 16 such clients took all 16 workers.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from support.dav import (
    Account,
    GatewayProcess,
    MiB,
    PeakRss,
    get,
    href,
    put,
    raw_connect,
    read_response,
    seeded_bytes,
    self_signed_cert,
)

STALLERS = 7  # half the headers, then nothing
SILENT = 6  # all the headers of a PUT, then no body
TRICKLERS = 7  # a PUT body at one byte per second


class Outcome:
    def __init__(self) -> None:
        self.status: int | None = None
        self.seconds = 0.0
        self.error = ""


def stall_headers(gw: GatewayProcess, out: Outcome) -> None:
    t0 = time.monotonic()
    with raw_connect(gw.url) as s:
        s.settimeout(90)
        s.sendall(f"GET / HTTP/1.1\r\nHost: {urlsplit(gw.url).netloc}\r\nAuthorization: ".encode())
        try:
            out.status = read_response(s)[0]
        except (OSError, ConnectionError) as e:
            out.error = repr(e)
    out.seconds = time.monotonic() - t0


def trickle_body(gw: GatewayProcess, path: str, out: Outcome, rate: float, size: int = 1000) -> None:
    """PUT ``size`` bytes at ``rate`` bytes per second (in pieces of max(1, rate) bytes; none if rate is 0);
    stop at the answer."""
    t0 = time.monotonic()
    piece = max(1, int(rate))
    with raw_connect(gw.url) as s:
        s.sendall(f"PUT {href(path)} HTTP/1.1\r\nHost: {urlsplit(gw.url).netloc}\r\nAuthorization: "
                  f"{gw.authorization}\r\nContent-Length: {size}\r\n\r\n".encode())
        sent = 0
        try:
            while rate and sent < size:
                s.sendall(b"x" * min(piece, size - sent))
                sent += piece
                s.settimeout(piece / rate)
                try:
                    if s.recv(1, socket.MSG_PEEK):
                        break  # the gateway answered early
                except TimeoutError:
                    pass
            s.settimeout(90)
            out.status = read_response(s)[0]
        except (OSError, ConnectionError) as e:
            out.error = repr(e)
    out.seconds = time.monotonic() - t0


def run(target: Callable[..., None], *args: object) -> threading.Thread:
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def test_slow_clients_are_cut_off_and_do_not_starve_others(gw: GatewayProcess) -> None:
    with gw.client() as c:
        put(c, "/hello.txt", b"hello")
    stalled = [Outcome() for _ in range(STALLERS)]
    trickled = [Outcome() for _ in range(TRICKLERS)]
    silent = [Outcome() for _ in range(SILENT)]
    steady = Outcome()
    threads = [run(stall_headers, gw, o) for o in stalled]
    threads += [run(trickle_body, gw, f"/slow-{i}.bin", o, 1.0) for i, o in enumerate(trickled)]
    threads += [run(trickle_body, gw, f"/silent-{i}.bin", o, 0.0) for i, o in enumerate(silent)]
    threads.append(run(trickle_body, gw, "/steady.bin", steady, 1024.0, 24 * 1024))
    time.sleep(2)  # all of them connected and holding a worker
    waits = []
    with PeakRss(gw.pid) as peak:
        for i in range(5):
            t0 = time.monotonic()
            with httpx.Client(base_url=gw.url, auth=gw.auth, timeout=30) as c:  # a new connection each time
                assert get(c, "/hello.txt") == b"hello"
                put(c, f"/normal-{i}.bin", seeded_bytes(i, MiB))
            waits.append(time.monotonic() - t0)
            time.sleep(1)
    print(f"\nnormal GET+PUT while {STALLERS + SILENT + TRICKLERS} slow clients hold connections: "
          f"{[round(w, 2) for w in waits]} s; gateway RSS {peak.mib:.0f} MiB")
    assert max(waits) < 5, waits
    for t in threads:
        t.join(90)
    print(f"stalled headers cut after {sorted(round(o.seconds, 1) for o in stalled)} s; missing bodies after "
          f"{sorted(round(o.seconds, 1) for o in silent)} s; trickled bodies after "
          f"{sorted(round(o.seconds, 1) for o in trickled)} s; 1 KiB/s upload took {steady.seconds:.1f} s")
    for o in stalled:
        assert o.status == 408 and 9 < o.seconds < 20, vars(o)
    for o in trickled + silent:
        assert o.status == 408 and 19 < o.seconds < 35, vars(o)
    assert steady.status == 201, vars(steady)
    with gw.client() as c:
        for i in range(TRICKLERS):
            assert c.head(f"/slow-{i}.bin").status_code == 404
        for i in range(SILENT):
            assert c.head(f"/silent-{i}.bin").status_code == 404
        assert get(c, "/steady.bin") == b"x" * 24 * 1024
    log = gw.stderr()
    assert log.count("refused request: 408") >= STALLERS
    assert log.count("refused PUT request: 408") >= TRICKLERS + SILENT


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_clients_silent_before_the_tls_handshake_do_not_stall_the_gateway(
        account: Account, gateways: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    crt, key = self_signed_cert(tmp_path)
    gw = gateways(account.home, "--tls-cert", str(crt), "--tls-key", str(key))
    ctx = ssl.create_default_context(cafile=str(crt))
    with gw.client(verify=ctx) as c:
        put(c, "/hello.txt", b"hello")
    silent = [raw_connect(gw.url) for _ in range(20)]
    try:
        time.sleep(1)
        t0 = time.monotonic()
        with gw.client(verify=ctx) as c:
            assert get(c, "/hello.txt") == b"hello"
        waited = time.monotonic() - t0
        print(f"\nHTTPS GET while 20 clients sit silent before their handshake: {waited:.2f} s")
        assert waited < 5
        t0 = time.monotonic()
        for s in silent:
            s.settimeout(30)
            assert s.recv(100) == b""  # closed after the handshake's 10 s
        assert time.monotonic() - t0 < 20
    finally:
        for s in silent:
            s.close()
    # A handshake sent a byte every half second is cut off after 10 s, like slow headers.
    hello_out = ssl.MemoryBIO()
    tls = ssl.create_default_context(cafile=str(crt)).wrap_bio(ssl.MemoryBIO(), hello_out,
                                                              server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = hello_out.read()
    t0 = time.monotonic()
    with raw_connect(gw.url) as s:
        s.settimeout(1)
        with pytest.raises(OSError):
            for byte in hello:
                s.sendall(bytes([byte]))
                try:
                    if s.recv(100) == b"":
                        raise ConnectionResetError("closed by the gateway")
                except TimeoutError:
                    pass
    assert time.monotonic() - t0 < 15, time.monotonic() - t0
    with gw.client(verify=ctx) as c:  # and it goes on serving
        assert get(c, "/hello.txt") == b"hello"
    assert gw.proc.poll() is None and "Traceback" not in gw.stderr() and "fatal" not in gw.stderr().lower()
    try:  # plain HTTP to the TLS port still gets a plain answer
        r = httpx.get(gw.url.replace("https:", "http:"), timeout=10)
    except httpx.TransportError:
        pass
    else:
        assert r.status_code == 400 and "only speaks HTTPS" in r.text
