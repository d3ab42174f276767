"""Helpers shared by the test modules (the fixtures are in conftest.py)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from megadrive import account
from megadrive.api import Api
from megadrive.drive import Drive
from megadrive.state import save_session

BIN = Path(sys.executable).parent
PASSWORD = "correct horse battery staple"


@dataclass
class Server:
    url: str
    data: Path

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


def drop_chunk_cache(home: Path) -> int:
    """Empty the ciphertext chunk cache of every account under ``home`` (a running client notices and asks
    the server): as on a device that never had these chunks. A client keeps the chunks of small versions it
    uploaded itself, so a test of what the server serves drops them first. Returns how many went."""
    n = 0
    for f in home.glob("accounts/*/cache/*"):
        if f.is_file() and not f.name.startswith(".tmp-"):
            f.unlink(missing_ok=True)
            n += 1
    return n
