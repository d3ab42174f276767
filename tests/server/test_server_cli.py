"""The server command line and the serve.py entry points."""

from __future__ import annotations

import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support.server import READY_PREFIX, running_server

from megadrive.server.cli import build_config, server
from megadrive.server.config import ServerConfig
from megadrive.server.serve import start


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "megadrive.server", *args], capture_output=True, text=True, timeout=timeout
    )


def test_running_server_helper(tmp_path: Path) -> None:
    with running_server(tmp_path / "d", quota=12345) as url:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url + "/v1/health").json() == {"ok": True}
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/v1/health", timeout=2)
    names = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert {"chunks", "meta.sqlite3", "server.secret"} <= set(names)
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "d" / "meta.sqlite3").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_ready_line_and_clean_shutdown(tmp_path: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "megadrive.server", "--data", str(tmp_path / "d"), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(READY_PREFIX) and line.endswith("\n")
        url = line[len(READY_PREFIX) :].strip()
        assert httpx.get(url + "/v1/health").status_code == 200
        started = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
        assert time.monotonic() - started < 5
        assert proc.returncode == 0, err
        assert out == ""  # exactly one line on stdout
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize(
    "args",
    [
        ["--listen", "127.0.0.1:0"],  # no --data
        ["--data", "x", "--listen", "nohostport"],
        ["--data", "x", "--listen", "127.0.0.1:99999"],
        ["--data", "x", "--quota", "-5"],
        ["--data", "x", "--tls-cert", "c.pem"],
        ["--data", "x", "--versions-kept", "0"],
        ["--data", "x", "--max-nodes", "0"],
        ["--data", "x", "--max-nodes", "-1"],
        ["--data", "x", "--max-nodes", "many"],
        ["--data", "x", "--signup-limit", "-1"],
        ["--data", "x", "--signup-limit", "1.5"],
    ],
)
def test_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    result = cli(*[a.replace("x", str(tmp_path / "x"), 1) if a == "x" else a for a in args])
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr


def _config(*argv: str) -> ServerConfig:
    """What `server ARGV` would serve with: the command's own parsing, then build_config."""
    params = server.make_context("server", list(argv)).params
    params.pop("log_level")
    return build_config(params.pop("data"), **params)


def test_limit_options_reach_the_config(tmp_path: Path) -> None:
    defaults = _config("--data", str(tmp_path))
    assert (defaults.max_nodes, defaults.signup_rate, defaults.quota) == (1_000_000, 10, 50 << 30)
    set_ = _config("--data", str(tmp_path), "--max-nodes", "7", "--signup-limit", "0", "--quota", "3M")
    assert (set_.max_nodes, set_.signup_rate, set_.quota) == (7, 0, 3 << 20)
    assert _config("--data", str(tmp_path), "--quota", "12345").quota == 12345  # bytes, as the tests pass it
    help_text = cli("--help").stdout
    assert "--max-nodes" in help_text and "--signup-limit" in help_text
    with pytest.raises(ValueError):
        ServerConfig(data_dir=tmp_path, max_nodes=0)
    with pytest.raises(ValueError):
        ServerConfig(data_dir=tmp_path, signup_rate=-1)


def test_port_in_use(tmp_path: Path) -> None:
    with running_server(tmp_path / "a") as url:
        port = url.rsplit(":", 1)[1]
        result = cli("--data", str(tmp_path / "b"), "--listen", f"127.0.0.1:{port}")
        assert result.returncode == 1 and result.stdout == ""
        assert "Traceback" not in result.stderr and "error:" in result.stderr


def test_in_process_start_stop(tmp_path: Path) -> None:
    server = start(ServerConfig(data_dir=tmp_path / "d", port=0, gc_interval=0))
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(server.url + "/v1/health").json() == {"ok": True}
    finally:
        server.stop()
        server.stop()  # idempotent


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    extra = ["--tls-cert", str(cert), "--tls-key", str(key)]
    with running_server(tmp_path / "d", extra_args=extra) as url:
        assert url.startswith("https://127.0.0.1:")
        r = httpx.get(url + "/v1/health", verify=ssl.create_default_context(cafile=str(cert)))
        assert r.status_code == 200 and r.json() == {"ok": True}
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https://", "http://") + "/v1/health", timeout=3)


def test_store_urls(tmp_path: Path) -> None:
    """--data, or --meta and --chunks: refused with one line when incomplete or of an unknown kind."""
    r = cli("--meta", f"sqlite:///{tmp_path}/m.sqlite3", "--listen", "127.0.0.1:0")
    assert r.returncode == 2 and "--chunks" in r.stderr and "Traceback" not in r.stderr
    r = cli("--meta", "mysql://x/y", "--chunks", "s3://b", "--listen", "127.0.0.1:0")
    assert r.returncode == 2 and "sqlite" in r.stderr and "Traceback" not in r.stderr
    r = cli("--data", str(tmp_path / "d"), "--chunks", "ftp://x/y", "--listen", "127.0.0.1:0")
    assert r.returncode == 2 and "s3://" in r.stderr
    config = build_config(None, meta_url=f"sqlite:///{tmp_path}/m.sqlite3", chunks_url=f"file://{tmp_path}/c")
    assert config.data_dir is None and config.secret_path is None
    assert config.meta_location.endswith("/m.sqlite3") and config.chunks_location == f"file://{tmp_path}/c"
    data = ServerConfig(data_dir=tmp_path / "d")
    assert data.meta_location == f"sqlite:///{tmp_path}/d/meta.sqlite3"
    assert data.chunks_location == f"file://{tmp_path}/d/chunks"


def test_urls_override_the_data_folder(tmp_path: Path) -> None:
    """--meta and --chunks name the stores (here SQLite and a folder elsewhere); --data only seeds the secret."""
    meta, chunks = tmp_path / "db" / "m.sqlite3", tmp_path / "blobs"
    args = ["--meta", f"sqlite:///{meta}", "--chunks", f"file://{chunks}"]
    with running_server(tmp_path / "unused", extra_args=args) as url:
        assert httpx.get(url + "/v1/health").json() == {"ok": True}
    assert meta.is_file() and chunks.is_dir()
    assert not (tmp_path / "unused" / "meta.sqlite3").exists()  # --data only seeded the secret


def test_migration_head_is_the_newest_script() -> None:
    from megadrive.server.store import migrate

    assert migrate.HEAD == migrate.script_head()
