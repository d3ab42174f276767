"""Access: every request logs in (a fresh random password per run, or the operator's own user); the
password never comes from argv; off loopback the gateway wants TLS and a password.

The attacks themselves (DNS rebinding, other origins, planted HTML, TLS) are in tests/hostile/test_gateway_*.py.
"""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
from support.accounts import BIN, one_line_error
from support.dav import Account, GatewayProcess, assert_clean_body, cli_env, get, put


def webdav_cmd(acct: Account, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "megadrive"), "webdav", *args], capture_output=True, text=True,
                          env=cli_env(acct.home, **env), stdin=subprocess.DEVNULL, timeout=60)


def test_public_bind_without_tls_and_password_is_refused(account: Account) -> None:
    for listen in ("0.0.0.0:0", "[::]:0"):
        r = webdav_cmd(account, "--listen", listen)
        assert r.returncode == 2, r.stderr
        line = one_line_error(r)
        assert "without TLS (--tls-cert/--tls-key) and a password" in line, line
        assert "MegaDrive is served" not in r.stdout


def test_auth_options_are_checked(account: Account, tmp_path: Path) -> None:
    r = webdav_cmd(account, "--listen", "127.0.0.1:0", "--auth", "alice:s3cret-pass")
    assert r.returncode == 2 and "No such option '--auth'" in r.stderr, r.stderr
    r = webdav_cmd(account, "--listen", "127.0.0.1:0", "--auth-user", "alice")
    assert r.returncode == 2
    assert "--auth-user needs a password" in one_line_error(r)
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    r = webdav_cmd(account, "--listen", "127.0.0.1:0", "--auth-password-file", str(pw))
    assert r.returncode == 2
    assert "--auth-password-file needs --auth-user" in one_line_error(r)


def test_generated_password_every_method(account: Account, gateways: Callable[..., GatewayProcess]) -> None:
    gw = gateways(account.home)
    path = account.home / "gateway.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": gw.url, "user": "megadrive", "password": gw.password}
    assert f"login:         user megadrive, password {gw.password}" in gw.banner()
    with httpx.Client(base_url=gw.url, timeout=60) as anon:
        for method in ("GET", "HEAD", "OPTIONS", "PROPFIND", "PUT", "DELETE", "MKCOL", "LOCK"):
            r = anon.request(method, "/x.txt", content=b"x" if method == "PUT" else None)
            assert r.status_code == 401, (method, r.status_code)
            challenges = r.headers.get_list("www-authenticate")
            assert [c.split()[0] for c in challenges] == ["Digest", "Basic"], challenges
            assert_clean_body(r)
        assert anon.get("/", auth=httpx.BasicAuth("megadrive", "wrong")).status_code == 401
        assert anon.get("/", auth=httpx.BasicAuth("admin", gw.password)).status_code == 401
        assert anon.get("/", auth=httpx.DigestAuth("megadrive", "wrong")).status_code == 401
    with gw.client() as c:  # Basic
        put(c, "/secret.txt", b"behind the gateway password")
        assert c.request("PROPFIND", "/", headers={"Depth": "1"}).status_code == 207
    with gw.client(auth=httpx.DigestAuth(gw.user, gw.password)) as c:
        assert get(c, "/secret.txt") == b"behind the gateway password"
        assert c.request("MKCOL", "/d").status_code == 201
    assert gw.stop() == 0
    assert not path.exists()


def test_operator_user_from_password_file_or_environment(account: Account, tmp_path: Path,
                                                         gateways: Callable[..., GatewayProcess]) -> None:
    pw = tmp_path / "gateway-password"
    pw.write_text("pw-for-bob\n")
    gw = gateways(account.home, "--auth-user", "bob", "--auth-password-file", str(pw), auth=("bob", "pw-for-bob"))
    assert json.loads((account.home / "gateway.json").read_text()) == {"url": gw.url, "user": "bob"}
    assert "pw-for-bob" not in gw.banner()
    with httpx.Client(base_url=gw.url, timeout=60) as anon:
        assert anon.get("/").status_code == 401
        assert anon.get("/", auth=httpx.BasicAuth("megadrive", "pw-for-bob")).status_code == 401
    with gw.client(auth=httpx.DigestAuth("bob", "pw-for-bob")) as c:
        assert c.request("PROPFIND", "/", headers={"Depth": "0"}).status_code == 207
    with gw.client() as c:
        put(c, "/b.txt", b"bob's")
    gw.stop()
    gw = gateways(account.home, "--auth-user", "carol", auth=("carol", "pw-from-env"),
                  env={"MEGADRIVE_GATEWAY_PASSWORD": "pw-from-env"})
    with gw.client() as c:
        assert get(c, "/b.txt") == b"bob's"
