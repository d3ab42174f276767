"""Accounts: the KDF floor and pinning, a lying server, sessions, the chunk cache bound."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from support.accounts import PASSWORD, Server, make_drive, megadrive, new_home, ok, one_line_error

from megadrive import account, crypto
from megadrive.api import Api
from megadrive.cache import ChunkCache
from megadrive.errors import AuthError, IntegrityError, NotLoggedIn, WeakKdf
from megadrive.state import load_session


def _set_kdf(server: Server, user: str, kdf: dict[str, object]) -> None:
    conn = sqlite3.connect(server.data / "meta.sqlite3", isolation_level=None, timeout=10)
    conn.execute("UPDATE users SET kdf=? WHERE name=?", (json.dumps(kdf), user))
    conn.close()


def test_server_cannot_lower_pinned_kdf(server: Server, tmp_path: Path) -> None:
    home = new_home(tmp_path)
    api = Api(server.url)
    account.signup(api, home, "alice", PASSWORD, kdf=crypto.KDF_MODERATE)
    # The server now claims the account uses cheaper parameters (to speed up a guessing attack
    # on the auth key it will receive).
    _set_kdf(server, "alice", crypto.KDF_INTERACTIVE.to_json())
    with pytest.raises(WeakKdf, match="pinned"):
        account.login(api, home, "alice", PASSWORD)


def test_client_refuses_parameters_below_the_floor(server: Server, tmp_path: Path) -> None:
    api = Api(server.url)
    account.signup(api, new_home(tmp_path), "bob", PASSWORD)
    _set_kdf(server, "bob", {"alg": "argon2id13", "opslimit": 1, "memlimit": 8192})
    with pytest.raises(WeakKdf):
        account.login(api, new_home(tmp_path), "bob", PASSWORD)  # a fresh machine: no pin, floor still holds
    _set_kdf(server, "bob", {"alg": "argon2id13", "opslimit": 2, "memlimit": 1 << 40})
    with pytest.raises(WeakKdf, match="absurd"):
        account.login(api, new_home(tmp_path), "bob", PASSWORD)


def test_wrong_salt_from_server_fails_cleanly(server: Server, tmp_path: Path) -> None:
    api = Api(server.url)
    account.signup(api, new_home(tmp_path), "carol", PASSWORD)
    conn = sqlite3.connect(server.data / "meta.sqlite3", isolation_level=None, timeout=10)
    conn.execute("UPDATE users SET salt=? WHERE name='carol'", (os.urandom(16),))
    conn.close()
    with pytest.raises(AuthError):
        account.login(api, new_home(tmp_path), "carol", PASSWORD)


def test_wrong_password(server: Server, tmp_path: Path) -> None:
    api = Api(server.url)
    account.signup(api, new_home(tmp_path), "dave", PASSWORD)
    with pytest.raises(AuthError):
        account.login(api, new_home(tmp_path), "dave", "not the password")


def test_logout_revokes_the_token(server: Server, tmp_path: Path) -> None:
    ok(megadrive("signup", "--server", server.url, "--user", "erin"))
    token = load_session(Path(os.environ["MEGADRIVE_HOME"])).token
    ok(megadrive("logout"))
    with pytest.raises(AuthError):
        Api(server.url, token).account()
    with pytest.raises(NotLoggedIn):
        load_session(Path(os.environ["MEGADRIVE_HOME"]))
    assert "Not logged in" in one_line_error(megadrive("status"))


def test_expired_session_says_what_to_do(server: Server, tmp_path: Path) -> None:
    home = Path(os.environ["MEGADRIVE_HOME"])
    d = make_drive(server.url, home, "frank")
    d.close()
    Api(server.url, load_session(home).token).logout()  # the token dies server-side
    line = one_line_error(megadrive("ls"))
    assert "megadrive login" in line


def test_password_never_sent(server: Server, tmp_path: Path) -> None:
    """The server's store holds neither the password nor anything derived without a slow hash."""
    api = Api(server.url)
    account.signup(api, new_home(tmp_path), "gina", PASSWORD)
    raw = b"".join(p.read_bytes() for p in server.data.rglob("*") if p.is_file())
    assert PASSWORD.encode() not in raw


def test_chunk_cache_is_bounded_lru(tmp_path: Path) -> None:
    c = ChunkCache(tmp_path / "cache", max_bytes=3000)
    for i in range(5):
        c.put(f"{i:064x}", bytes([i]) * 1000)
        c.get(f"{0:064x}")  # keep chunk 0 hot
    assert c.total_bytes <= 3000
    assert c.get(f"{0:064x}") == bytes([0]) * 1000
    assert c.get(f"{1:064x}") is None
    assert c.get(f"{4:064x}") == bytes([4]) * 1000
    assert sum(p.stat().st_size for p in (tmp_path / "cache").iterdir()) <= 3000
    again = ChunkCache(tmp_path / "cache", max_bytes=3000)  # survives a restart
    assert again.get(f"{4:064x}") == bytes([4]) * 1000


def test_fresh_client_floor_is_its_configured_default(server: Server, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A server cannot talk a fresh machine down to the cheapest parameters either."""
    api = Api(server.url)
    account.signup(api, new_home(tmp_path), "hank", PASSWORD, kdf=crypto.KDF_INTERACTIVE)
    monkeypatch.setenv("MEGADRIVE_KDF", "moderate")
    with pytest.raises(WeakKdf):
        account.login(api, new_home(tmp_path), "hank", PASSWORD)


def test_pinned_salt(server: Server, tmp_path: Path) -> None:
    home = new_home(tmp_path)
    api = Api(server.url)
    account.signup(api, home, "ivan", PASSWORD)
    conn = sqlite3.connect(server.data / "meta.sqlite3", isolation_level=None, timeout=10)
    conn.execute("UPDATE users SET salt=? WHERE name='ivan'", (os.urandom(16),))
    conn.close()
    with pytest.raises(IntegrityError, match="salt"):
        account.login(api, home, "ivan", PASSWORD)


def test_substituted_box_key_is_refused(server: Server, tmp_path: Path) -> None:
    home = new_home(tmp_path)
    api = Api(server.url)
    account.signup(api, home, "judy", PASSWORD)
    conn = sqlite3.connect(server.data / "meta.sqlite3", isolation_level=None, timeout=10)
    conn.execute("UPDATE users SET box_pub=? WHERE name='judy'", (os.urandom(32),))
    conn.close()
    with pytest.raises(IntegrityError):
        account.login(api, home, "judy", PASSWORD)
