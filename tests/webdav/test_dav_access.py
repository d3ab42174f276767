"""Access: never serve the decrypted drive off loopback without a password; Digest authentication works."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from davtest import Account, GatewayProcess, assert_clean_body, cli_env, get, put
from mdtest import BIN, one_line_error


def webdav_cmd(acct: Account, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "megadrive"), "webdav", *args], capture_output=True, text=True,
                          env=cli_env(acct.home), stdin=subprocess.DEVNULL, timeout=60)


def test_public_bind_without_auth_is_refused(account: Account) -> None:
    r = webdav_cmd(account, "--listen", "0.0.0.0:0")
    line = one_line_error(r)
    assert "--auth" in line, line
    assert "MegaDrive is served" not in r.stdout
    r = webdav_cmd(account, "--listen", "[::]:0")
    assert "--auth" in one_line_error(r)


def test_malformed_auth_is_a_one_line_error(account: Account) -> None:
    r = webdav_cmd(account, "--listen", "127.0.0.1:0", "--auth", "no-colon")
    assert "USER:PASSWORD" in one_line_error(r)


def test_digest_auth(account: Account, gateways: Callable[..., GatewayProcess]) -> None:
    gw = gateways(account.home, "--auth", "alice:s3cret-pass")
    with httpx.Client(base_url=gw.url, timeout=60) as anon:
        r = anon.request("PROPFIND", "/", headers={"Depth": "0"})
        assert r.status_code == 401, r.text
        challenge = r.headers.get("www-authenticate", "")
        assert challenge.lower().startswith("digest"), challenge
        assert_clean_body(r)
        assert anon.get("/").status_code == 401
        assert anon.put("/x.txt", content=b"x").status_code == 401
        # Basic is not accepted (it would send the password in clear over plain HTTP)
        assert anon.get("/", auth=httpx.BasicAuth("alice", "s3cret-pass")).status_code == 401
        assert anon.get("/", auth=httpx.DigestAuth("alice", "wrong")).status_code == 401
    with httpx.Client(base_url=gw.url, timeout=60, auth=httpx.DigestAuth("alice", "s3cret-pass")) as c:
        assert c.request("PROPFIND", "/", headers={"Depth": "1"}).status_code == 207
        put(c, "/secret.txt", b"behind digest")
        assert get(c, "/secret.txt") == b"behind digest"
        assert c.request("MKCOL", "/d").status_code == 201


def test_public_bind_with_auth_serves(account: Account, gateways: Callable[..., GatewayProcess]) -> None:
    gw = gateways(account.home, "--auth", "bob:pw-for-bob", listen="0.0.0.0:0")
    port = urlsplit(gw.url).port
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/", timeout=60) as anon:
        assert anon.get("/").status_code == 401
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/", timeout=60,
                      auth=httpx.DigestAuth("bob", "pw-for-bob")) as c:
        assert c.request("PROPFIND", "/", headers={"Depth": "0"}).status_code == 207
