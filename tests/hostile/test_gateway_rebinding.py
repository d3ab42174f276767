"""Hostile: a web page whose name rebinds to 127.0.0.1, another web origin, and another local user against
the WebDAV gateway (`megadrive webdav` on loopback).

Before the fix the gateway was anonymous on loopback and checked neither Host nor Origin: with
``Host: attacker.example`` a GET returned the plaintext, PROPFIND 207, PUT 201, DELETE 204.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from support.dav import GatewayProcess, assert_clean_body, get, put, signup  # noqa: E402
from support.server import NO_SIGNUP_LIMIT, ServerProcess  # noqa: E402

PLAINTEXT = b"the decrypted plaintext of a private file"


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("hostile-server") / "data", extra_args=NO_SIGNUP_LIMIT)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gw(hostile_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    acct = signup(hostile_server.url, tmp_path_factory.mktemp("rebinding"))
    g = GatewayProcess(acct.home)
    try:
        yield g
    finally:
        g.stop()


@pytest.fixture
def planted(gw: GatewayProcess) -> Iterator[httpx.Client]:
    """A logged-in client, with /private.txt holding PLAINTEXT (and reset after the test)."""
    with gw.client() as c:
        put(c, "/private.txt", PLAINTEXT)
        yield c


def port_of(gw: GatewayProcess) -> int:
    port = urlsplit(gw.url).port
    assert port is not None
    return port


ATTACKS = [  # method, path, body
    ("GET", "/private.txt", None),
    ("HEAD", "/private.txt", None),
    ("PROPFIND", "/", None),
    ("PUT", "/private.txt", b"overwritten by a web page"),
    ("DELETE", "/private.txt", None),
    ("OPTIONS", "/", None),
    ("MKCOL", "/planted", None),
    ("MOVE", "/private.txt", None),
]


def assert_untouched(c: httpx.Client) -> None:
    assert get(c, "/private.txt") == PLAINTEXT
    assert c.request("PROPFIND", "/planted", headers={"Depth": "0"}).status_code == 404


def test_foreign_host_names_get_421_for_every_method(gw: GatewayProcess, planted: httpx.Client) -> None:
    port = port_of(gw)
    hosts = ["attacker.example", f"attacker.example:{port}", f"127.0.0.1.nip.io:{port}",
             f"localhost.attacker.example:{port}", f"127.0.0.1:{port + 1 if port < 65535 else 1}", ""]
    for auth in (gw.auth, None):  # the page would not know the password; even with it, the name decides
        with httpx.Client(base_url=gw.url, timeout=60, auth=auth) as c:
            for host in hosts:
                for method, path, body in ATTACKS:
                    headers = {"Host": host, "Depth": "0", "Destination": f"http://{host}/moved.txt"}
                    r = c.request(method, path, content=body, headers=headers)
                    assert r.status_code == 421, (host, method, r.status_code, r.text)
                    assert PLAINTEXT not in r.content
                    if method != "HEAD":
                        assert r.text.count("\n") == 1 and r.text.startswith("421 Misdirected Request"), r.text
    assert_untouched(planted)


def test_the_gateways_own_names_are_served(gw: GatewayProcess, planted: httpx.Client) -> None:
    port = port_of(gw)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        r = planted.get("/private.txt", headers={"Host": host})
        assert r.status_code == 200 and r.content == PLAINTEXT, (host, r.status_code)


def test_other_origins_get_403(gw: GatewayProcess, planted: httpx.Client) -> None:
    port = port_of(gw)
    other_port = port + 1 if port < 65535 else 1
    foreign = ["http://attacker.example", f"http://attacker.example:{port}", "null",
               f"http://127.0.0.1:{other_port}", f"https://127.0.0.1:{port}", f"http://localhost:{port}"]
    for origin in foreign:  # (the Host is 127.0.0.1:PORT, so even http://localhost:PORT is another origin)
        for method, path, body in ATTACKS:
            r = planted.request(method, path, content=body,
                                headers={"Origin": origin, "Depth": "0", "Destination": gw.url + "moved.txt",
                                         "Access-Control-Request-Method": "PUT"})
            assert r.status_code == 403, (origin, method, r.status_code)
            assert PLAINTEXT not in r.content
            if method != "HEAD":
                assert r.text == "403 Forbidden: cross-origin requests are refused\n", r.text
    assert_untouched(planted)
    # Another site's page loading the drive's URLs as sub-resources (<img>, <script>, fetch no-cors): refused.
    for site in ("cross-site", "same-site"):
        for mode in ("no-cors", "cors"):
            r = planted.get("/private.txt", headers={"Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode})
            assert r.status_code == 403, (site, mode, r.status_code)
    # The gateway's own pages, and a link followed from elsewhere (a navigation), work.
    own = f"http://127.0.0.1:{port}"
    r = planted.put("/private.txt", content=PLAINTEXT, headers={"Origin": own, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 204, r.status_code
    r = planted.get("/private.txt", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
    assert r.status_code == 200 and r.content == PLAINTEXT
    r = planted.get("/private.txt", headers={"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"})
    assert r.status_code == 200


def test_host_name_option_adds_a_name(hostile_server: ServerProcess, tmp_path: Path) -> None:
    acct = signup(hostile_server.url, tmp_path)
    g = GatewayProcess(acct.home, "--host-name", "drive.lan", "--host-name", "proxy.lan:8443")
    try:
        port = port_of(g)
        with g.client() as c:
            assert c.request("PROPFIND", "/", headers={"Depth": "0", "Host": f"drive.lan:{port}"}).status_code == 207
            assert c.request("PROPFIND", "/", headers={"Depth": "0", "Host": "proxy.lan:8443"}).status_code == 207
            assert c.request("PROPFIND", "/", headers={"Depth": "0", "Host": "proxy.lan"}).status_code == 421
            assert c.request("PROPFIND", "/", headers={"Depth": "0", "Host": f"other.lan:{port}"}).status_code == 421
    finally:
        g.stop()


def test_without_the_password_nothing_is_served(gw: GatewayProcess, planted: httpx.Client) -> None:
    with httpx.Client(base_url=gw.url, timeout=60) as anon:
        for method, path, body in ATTACKS:
            r = anon.request(method, path, content=body, headers={"Depth": "0", "Destination": gw.url + "m.txt"})
            assert r.status_code == 401, (method, r.status_code)
            assert PLAINTEXT not in r.content
            assert_clean_body(r)
        for bad in (httpx.BasicAuth("megadrive", gw.password[:-1]), httpx.BasicAuth("megadrive", ""),
                    httpx.BasicAuth("", gw.password), httpx.DigestAuth("megadrive", gw.password + "x")):
            assert anon.get("/private.txt", auth=bad).status_code == 401
        for header in ("Basic !!!not-base64", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer x",
                       "Digest username=megadrive"):
            assert anon.get("/private.txt", headers={"Authorization": header}).status_code == 401, header
    assert_untouched(planted)


def _digest_header(gw: GatewayProcess, method: str, uri: str, nonce: str, *, password: str | None = None) -> str:
    def h(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()

    ha1 = h(f"megadrive:MegaDrive:{password or gw.password}")
    response = h(f"{ha1}:{nonce}:00000001:abcdef:auth:{h(f'{method}:{uri}')}")
    return (f'Digest username="megadrive", realm="MegaDrive", nonce="{nonce}", uri="{uri}", algorithm=MD5, '
            f'qop=auth, nc=00000001, cnonce="abcdef", response="{response}"')


def test_digest_nonces_are_the_gateways_and_bound_to_the_uri(gw: GatewayProcess, planted: httpx.Client) -> None:
    with httpx.Client(base_url=gw.url, timeout=60) as anon:
        challenge = anon.get("/private.txt").headers.get_list("www-authenticate")[0]
        nonce = challenge.split('nonce="', 1)[1].split('"', 1)[0]
        r = anon.get("/private.txt", headers={"Authorization": _digest_header(gw, "GET", "/private.txt", nonce)})
        assert r.status_code == 200 and r.content == PLAINTEXT
        # A captured header does not open another resource or method ...
        hdr = _digest_header(gw, "GET", "/private.txt", nonce)
        assert anon.request("PROPFIND", "/", headers={"Authorization": hdr, "Depth": "1"}).status_code == 401
        assert anon.delete("/private.txt", headers={"Authorization": hdr}).status_code == 401
        # ... and a nonce the gateway did not make is refused.
        forged = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
        r = anon.get("/private.txt", headers={"Authorization": _digest_header(gw, "GET", "/private.txt", forged)})
        assert r.status_code == 401
        r = anon.get("/private.txt", headers={"Authorization": _digest_header(gw, "GET", "/private.txt", nonce,
                                                                               password="guess")})
        assert r.status_code == 401
    assert_untouched(planted)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("curl") is None,
                    reason="needs root, setpriv and curl to act as another local user")
def test_another_local_user_gets_nothing(gw: GatewayProcess, planted: httpx.Client) -> None:
    def as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd],
                              capture_output=True, text=True, timeout=60, cwd="/")

    r = as_nobody("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", gw.url + "private.txt")
    assert r.stdout == "401", (r.stdout, r.stderr)
    r = as_nobody("curl", "-s", "-X", "PROPFIND", "-H", "Depth: 1", "-w", "%{http_code}", gw.url)
    assert r.stdout.endswith("401") and "private.txt" not in r.stdout, r.stdout
    # The password file is the owner's alone (0600): another user cannot read it.
    r = as_nobody("cat", str(gw.home / "gateway.json"))
    assert r.returncode != 0 and "Permission denied" in r.stderr and gw.password not in r.stdout
