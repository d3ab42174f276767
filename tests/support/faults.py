"""Helpers for the fault-injection tests: a server process we may SIGKILL, pause points, raw requests.

:class:`FaultServer` starts ``python -m megadrive.server`` like support/server.py does, but
with its own environment: ``MEGADRIVE_TEST_PAUSE_DIR`` (server/testhooks.py, test-only) is
set for it alone, never in the test process, and ``kill()`` is a SIGKILL.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from megadrive.server.testhooks import ENV as PAUSE_ENV
from support.server import ServerProcess

BIN = Path(sys.executable).parent


def child_env(pause_dir: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(PAUSE_ENV, None)
    if pause_dir is not None:
        env[PAUSE_ENV] = str(pause_dir)
    return env


class FaultServer(ServerProcess):
    """A server process on port 0 (no signup limit, no background GC), whose pause points ``pause_dir``
    arms; ``kill()`` (SIGKILL) besides ``stop()`` (SIGTERM)."""

    def __init__(self, data_dir: Path, *, pause_dir: Path | None = None, extra_args: Sequence[str] = ()) -> None:
        super().__init__(data_dir, extra_args=["--signup-limit", "0", "--gc-interval", "0", *extra_args],
                         env=child_env(pause_dir))

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the server."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def arm(pause_dir: Path, point: str) -> None:
    (pause_dir / point).write_text("armed")


def wait_reached(pause_dir: Path, point: str, timeout: float = 30.0) -> int:
    """Wait until a process sleeps at ``point``; returns its pid."""
    marker = pause_dir / f"{point}.reached"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text():
            return int(marker.read_text())
        time.sleep(0.02)
    raise AssertionError(f"nothing reached the pause point {point} within {timeout} s")


def chunk_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_chunk(client: httpx.Client, data: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/octet-stream"}
    return client.put(f"/v1/chunks/{chunk_id(data)}", content=data, headers=headers)


def half_sent(url: str, method: str, path: str, headers: dict[str, str], body: bytes, sent: int) -> socket.socket:
    """Open a raw connection and send the request line, the headers (Content-Length: the
    whole body) and only the first ``sent`` bytes of the body; the rest never comes."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    sock = socket.create_connection((host, port), timeout=30)
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body[:sent])
    return sock


def blob_path(data_dir: Path, cid: str) -> Path:
    return data_dir / "chunks" / cid[:2] / cid[2:4] / cid


def megadrive(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real console script (never with the pause variable)."""
    return subprocess.run(
        [str(BIN / "megadrive"), *args], capture_output=True, text=True, timeout=timeout, env=child_env(None)
    )
