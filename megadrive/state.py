"""Where the client keeps its state, and the login session.

Layout (docs/FORMAT.md, "Client state"): ``MEGADRIVE_HOME`` or the
platformdirs user data folder holds ``session.json`` (0600; the master key
while logged in), ``pins.json`` (per account: the KDF parameters this client
has accepted, so a server can never lower them) and ``accounts/<user_id>/``
with the encrypted index and the ciphertext chunk cache.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import platformdirs

from .errors import ConfigError, NotLoggedIn


def home() -> Path:
    env = os.environ.get("MEGADRIVE_HOME")
    path = Path(env).expanduser() if env else platformdirs.user_data_path("megadrive")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Atomically write a 0600 file (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Session:
    """A logged-in account: where, who, the bearer token and the master key."""

    server: str
    user: str
    user_id: str
    token: str
    expires: float
    root_node_id: str
    master_hex: str
    sign_pub_hex: str = ""
    identity_hex: str = ""  # the identity keys as wrapped under the master key (for sharing)

    @property
    def master(self) -> bytes:
        return bytes.fromhex(self.master_hex)

    def account_dir(self, base: Path) -> Path:
        d = base / "accounts" / self.user_id
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        return d


def load_session(base: Path) -> Session:
    p = base / "session.json"
    if not p.exists():
        raise NotLoggedIn()
    try:
        return Session(**json.loads(p.read_text()))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"corrupt session file {p}: {e}; run `megadrive login` again") from None


def save_session(base: Path, s: Session) -> None:
    write_private(base / "session.json", json.dumps(asdict(s), indent=1).encode())


def clear_session(base: Path) -> None:
    (base / "session.json").unlink(missing_ok=True)


def _pins(base: Path) -> dict[str, Any]:
    p = base / "pins.json"
    if not p.exists():
        return {}
    try:
        return dict(json.loads(p.read_text()))
    except (ValueError, TypeError):
        raise ConfigError(f"corrupt pin file {p}") from None


def get_pin(base: Path, server: str, user: str) -> dict[str, Any] | None:
    return _pins(base).get(f"{server}|{user}")


def set_pin(base: Path, server: str, user: str, pin: dict[str, Any]) -> None:
    pins = _pins(base)
    pins[f"{server}|{user}"] = pin
    write_private(base / "pins.json", json.dumps(pins, indent=1).encode())
