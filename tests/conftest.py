"""Shared fixtures: a real server process on port 0, accounts, a Drive, the CLI.

Like borg's autouse ``clean_env``: every test gets its own MEGADRIVE_HOME and
the KDF at its floor (INTERACTIVE), which only the tests choose.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from serverproc import running_server  # noqa: E402

from megadrive import account  # noqa: E402
from megadrive.api import Api  # noqa: E402
from megadrive.drive import Drive  # noqa: E402
from megadrive.state import save_session  # noqa: E402

BIN = Path(sys.executable).parent
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEGADRIVE_KDF", "interactive")
    monkeypatch.setenv("MEGADRIVE_HOME", str(tmp_path / "client-home"))
    monkeypatch.delenv("MEGADRIVE_PASSWORD", raising=False)


@dataclass
class Server:
    url: str
    data: Path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    data = tmp_path / "server-data"
    with running_server(data) as url:
        yield Server(url, data)


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[Server]:
    """A server whose accounts get a 3 MiB quota."""
    data = tmp_path / "server-data"
    with running_server(data, quota=3 << 20) as url:
        yield Server(url, data)


def new_home(tmp_path: Path) -> Path:
    h = tmp_path / f"home-{secrets.token_hex(4)}"
    h.mkdir()
    return h


def make_drive(url: str, home: Path, user: str | None = None, *, signup: bool = True) -> Drive:
    """Sign up (or log in) ``user`` with state under ``home`` and open its Drive."""
    user = user or f"u{secrets.token_hex(4)}"
    api = Api(url)
    s = account.signup(api, home, user, PASSWORD) if signup else account.login(api, home, user, PASSWORD)
    save_session(home, s)
    api.close()
    return Drive.open(home)


@pytest.fixture
def drive(server: Server, tmp_path: Path) -> Iterator[Drive]:
    d = make_drive(server.url, Path(os.environ["MEGADRIVE_HOME"]))
    yield d
    d.close()


def megadrive(*args: str, input: str | None = None, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real console script."""
    e = dict(os.environ)
    e.setdefault("MEGADRIVE_PASSWORD", PASSWORD)
    e.update(env or {})
    return subprocess.run([str(BIN / "megadrive"), *args], capture_output=True, text=True, input=input,
                          env=e, timeout=timeout)


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    """A failed command prints one clear line and no traceback."""
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("megadrive: error:"), lines[0]
    return lines[0]
