"""Hostile: a network attacker, and a local user reading `ps`, against a gateway that leaves loopback.

Before the fix ``--auth USER:PASSWORD`` put the password in argv (visible to every local user in `ps`), and
off loopback the gateway served the plaintext over plain HTTP with Digest-MD5 (crackable offline from one
sniffed exchange). Now off loopback it wants TLS and an operator-set password, which comes from a file or
the environment only.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from support.accounts import BIN, one_line_error  # noqa: E402
from support.dav import Account, GatewayProcess, cli_env, get, put, signup  # noqa: E402
from support.server import NO_SIGNUP_LIMIT, ServerProcess  # noqa: E402

GATEWAY_PASSWORD = "tls-gateway-pass-6f1c2a"  # noqa: S105 - a test's throwaway password
SECRET = b"plaintext that must only travel inside TLS"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("tls-server") / "data", extra_args=NO_SIGNUP_LIMIT)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 and localhost."""
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True, timeout=60)
    return crt, key


@pytest.fixture
def account(tls_server: ServerProcess, tmp_path: Path) -> Account:
    return signup(tls_server.url, tmp_path)


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    p = tmp_path / "gateway-password"
    p.write_text(GATEWAY_PASSWORD + "\n")
    p.chmod(0o600)
    return p


def verify(cert: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert[0]))


def cmdline(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")


def webdav_cmd(acct: Account, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "megadrive"), "webdav", *args], capture_output=True, text=True,
                          env=cli_env(acct.home, **env), stdin=subprocess.DEVNULL, timeout=60)


def non_loopback_address() -> str | None:
    """This machine's address on its default route, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
            addr = str(s.getsockname()[0])
    except OSError:
        return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


def test_tls_gateway_off_loopback(account: Account, cert: tuple[Path, Path], password_file: Path) -> None:
    gw = GatewayProcess(account.home, "--tls-cert", str(cert[0]), "--tls-key", str(cert[1]), "--auth-user", "alice",
                        "--auth-password-file", str(password_file), listen="0.0.0.0:0",
                        auth=("alice", GATEWAY_PASSWORD))
    try:
        assert gw.url.startswith("https://0.0.0.0:"), gw.url
        argv = cmdline(gw.pid)
        assert b"webdav" in argv and b"--auth-user" in argv
        assert not any(GATEWAY_PASSWORD.encode() in a for a in argv), argv  # what `ps` shows
        assert GATEWAY_PASSWORD not in gw.banner()
        port = urlsplit(gw.url).port
        url = f"https://127.0.0.1:{port}/"
        with httpx.Client(base_url=url, verify=verify(cert), timeout=60) as anon:
            assert anon.get("/").status_code == 401
        with gw.client(base_url=url, verify=verify(cert)) as c:  # Basic, inside TLS
            put(c, "/secret.txt", SECRET)
            assert get(c, "/secret.txt") == SECRET
            assert c.get("/secret.txt", headers={"Host": f"attacker.example:{port}"}).status_code == 421
        with httpx.Client(base_url=url, verify=verify(cert), timeout=60,
                          auth=httpx.DigestAuth("alice", GATEWAY_PASSWORD)) as c:
            assert c.request("PROPFIND", "/", headers={"Depth": "1"}).status_code == 207
        # Plain HTTP to the TLS port gets cheroot's refusal (or a reset, if it closes first), never the drive.
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/secret.txt", timeout=10,
                          auth=httpx.BasicAuth("alice", GATEWAY_PASSWORD))
        except httpx.TransportError:
            pass
        else:
            assert r.status_code == 400, r.status_code
            assert "only speaks HTTPS" in r.text and SECRET not in r.content
    finally:
        gw.stop()


def test_password_from_the_environment_stays_out_of_argv(account: Account, cert: tuple[Path, Path]) -> None:
    gw = GatewayProcess(account.home, "--tls-cert", str(cert[0]), "--tls-key", str(cert[1]), "--auth-user", "bob",
                        listen="0.0.0.0:0", auth=("bob", GATEWAY_PASSWORD),
                        env={"MEGADRIVE_GATEWAY_PASSWORD": GATEWAY_PASSWORD})
    try:
        assert not any(GATEWAY_PASSWORD.encode() in a for a in cmdline(gw.pid))
        port = urlsplit(gw.url).port
        with gw.client(base_url=f"https://localhost:{port}/", verify=verify(cert)) as c:
            assert c.request("PROPFIND", "/", headers={"Depth": "0"}).status_code == 207
    finally:
        gw.stop()


def test_tls_on_loopback_with_the_generated_password(account: Account, cert: tuple[Path, Path]) -> None:
    gw = GatewayProcess(account.home, "--tls-cert", str(cert[0]), "--tls-key", str(cert[1]))
    try:
        assert gw.url.startswith("https://127.0.0.1:") and gw.user == "megadrive", gw.url
        assert "davs://megadrive@127.0.0.1:" in gw.banner()
        with gw.client(verify=verify(cert)) as c:
            put(c, "/t.txt", SECRET)
            assert get(c, "/t.txt") == SECRET
    finally:
        gw.stop()


@pytest.mark.parametrize("where", ["0.0.0.0", "[::]", "this machine's address"])
def test_off_loopback_without_tls_and_password_is_refused(account: Account, cert: tuple[Path, Path],
                                                          password_file: Path, where: str) -> None:
    host = non_loopback_address() if where == "this machine's address" else where
    if host is None:
        pytest.skip("no non-loopback address on this machine")
    listen = f"{host}:0"
    tls = ["--tls-cert", str(cert[0]), "--tls-key", str(cert[1])]
    user = ["--auth-user", "alice", "--auth-password-file", str(password_file)]
    for args, missing in (([], "without TLS (--tls-cert/--tls-key) and a password"),
                          (user, "without TLS (--tls-cert/--tls-key);"),
                          (tls, "without a password (--auth-user")):
        r = webdav_cmd(account, "--listen", listen, *args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        line = one_line_error(r)
        assert missing in line, line
        assert "MegaDrive is served" not in r.stdout
        assert not (account.home / "gateway.json").exists()


def test_broken_tls_options_are_one_line_errors(account: Account, cert: tuple[Path, Path], tmp_path: Path) -> None:
    r = webdav_cmd(account, "--tls-cert", str(cert[0]))
    assert r.returncode == 2
    assert "--tls-cert and --tls-key go together" in one_line_error(r)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n")
    r = webdav_cmd(account, "--listen", "127.0.0.1:0", "--tls-cert", str(junk), "--tls-key", str(junk))
    assert r.returncode == 2
    assert "cannot load the TLS certificate and key" in one_line_error(r)
