"""Run a real MegaDrive server process for tests.

Shared by every test folder (server, client, CLI tests)::

    from support.server import running_server

    with running_server(tmp_path / "srv", quota=10 * 2**20) as url:
        httpx.get(url + "/v1/health")

The server is started as ``python -m megadrive.server --data DIR --listen
127.0.0.1:0``; the URL is read from its one "listening on" line, and the
process is always terminated (then killed if it lingers) on exit.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

READY_PREFIX = "MegaDrive server listening on "
# For servers shared by many tests (module or session fixtures), which sign up more accounts from 127.0.0.1
# than the default limit of 10 per address per hour allows. Tests of the limit start their own servers.
NO_SIGNUP_LIMIT = ("--signup-limit", "0")


class ServerProcess:
    """A started server process: ``url``, ``data_dir``, ``proc``; ``stop()`` ends it."""

    def __init__(
        self,
        data_dir: Path,
        quota: int | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)  # the server creates it (mode 0700) if missing
        cmd = [
            sys.executable,
            "-m",
            "megadrive.server",
            "--data",
            str(self.data_dir),
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "WARNING",
        ]
        if quota is not None:
            cmd += ["--quota", str(quota)]
        cmd += list(extra_args)
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL, text=True, env=env
        )
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None or not line.startswith(READY_PREFIX):
            self.stop()
            raise RuntimeError(f"server did not start (got {line!r}); stderr:\n{self.stderr()}")
        self.url = line[len(READY_PREFIX) :].strip()

    def _pump(self, lines: queue.Queue[str | None]) -> None:
        # Keep reading so the pipe never fills; only the first line matters.
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            lines.put(line)
        lines.put(None)

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, SIGKILL if needed. Returns the exit code."""
        return terminate(self.proc, timeout)


@contextlib.contextmanager
def running_server(data_dir: Path | str, quota: int | None = None, extra_args: Sequence[str] = ()) -> Iterator[str]:
    """Context manager yielding the base URL (e.g. 'http://127.0.0.1:41234')."""
    server = ServerProcess(Path(data_dir), quota=quota, extra_args=extra_args)
    try:
        yield server.url
    finally:
        server.stop()


def terminate(proc: subprocess.Popen[Any], timeout: float) -> int:
    """SIGTERM a child, wait, SIGKILL it if it lingers; its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode  # type: ignore[no-any-return]
