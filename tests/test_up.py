"""`megadrive up`: one process runs a local server plus the WebDAV gateway."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from support.accounts import BIN, PASSWORD


def gateway_state() -> dict[str, str]:
    """MEGADRIVE_HOME/gateway.json of the running gateway: url, user, password."""
    return json.loads((Path(os.environ["MEGADRIVE_HOME"]) / "gateway.json").read_text())  # type: ignore[no-any-return]


def logged_in(url: str) -> httpx.Client:
    state = gateway_state()
    assert state["url"] == url, state
    return httpx.Client(base_url=url, timeout=30, auth=httpx.BasicAuth(state["user"], state["password"]))


@contextmanager
def up(tmp_path: Path, *extra: str, banner: list[str] | None = None) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    env = dict(os.environ, MEGADRIVE_PASSWORD=PASSWORD)
    p = subprocess.Popen([str(BIN / "megadrive"), "up", "--data", str(tmp_path / "updata"), "--server-listen",
                          "127.0.0.1:0", "--listen", "127.0.0.1:0", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = None
        deadline = time.monotonic() + 60
        lines = []
        assert p.stdout is not None
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"MegaDrive is served at (\S+)", line)
            if m:
                url = m.group(1)
                break
        assert url, "".join(lines) + (p.stderr.read() if p.stderr and p.poll() is not None else "")
        while banner is not None and not lines[-1].startswith("Press Ctrl-C"):
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
        if banner is not None:
            banner[:] = lines
        yield url, p
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_up_serves_the_drive_over_webdav(tmp_path: Path) -> None:
    banner: list[str] = []
    with up(tmp_path, banner=banner) as (url, p):
        state = gateway_state()
        path = Path(os.environ["MEGADRIVE_HOME"]) / "gateway.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert state["user"] == "megadrive" and len(state["password"]) >= 43, state
        first_password = state["password"]
        text = "".join(banner)
        host = url.split("://", 1)[1]
        assert f"http://megadrive:{first_password}@{host}" in text, text
        assert f"net use Z: {url} /user:megadrive {first_password}" in text, text
        assert f"pass=$(rclone obscure {first_password})" in text, text
        web = re.search(r"^Web client \(encrypts in the browser, nothing to install\) at (http://\S+/)$", text, re.M)
        assert web is not None, text
        page = httpx.get(web.group(1), timeout=30)  # the local server serves the web client
        assert page.status_code == 200 and "<title>MegaDrive</title>" in page.text
        assert httpx.get(url, timeout=30).status_code == 401  # no anonymous access, even on loopback
        with logged_in(url) as c:
            assert c.request("MKCOL", "/docs").status_code == 201
            assert c.put("/docs/hello.txt", content=b"hello over webdav").status_code == 201
            r = c.get("/docs/hello.txt")
            assert r.status_code == 200 and r.content == b"hello over webdav"
            r = c.request("PROPFIND", "/docs/", headers={"Depth": "1"})
            assert r.status_code == 207 and "hello.txt" in r.text
            html = c.get("/docs/")
            assert html.status_code == 200 and "hello.txt" in html.text  # the browser view
            assert f'<a href="{web.group(1)}" rel="noreferrer">' in html.text  # which links to the web client
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 0
        assert not path.exists()  # the credentials go with the gateway
    # Second run: the account exists, it logs in and the file is still there; the password is new.
    with up(tmp_path) as (url, p):
        assert p.stdout is not None
        assert gateway_state()["password"] != first_password
        with logged_in(url) as c:
            assert c.get("/docs/hello.txt").content == b"hello over webdav"


def test_up_refuses_public_bind_without_password(tmp_path: Path) -> None:
    env = dict(os.environ, MEGADRIVE_PASSWORD=PASSWORD)
    r = subprocess.run([str(BIN / "megadrive"), "up", "--data", str(tmp_path / "d"), "--server-listen",
                        "127.0.0.1:0", "--listen", "0.0.0.0:0"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "without TLS" in r.stderr, r.stderr
    # The password never comes from the command line: --auth USER:PASSWORD is gone.
    r = subprocess.run([str(BIN / "megadrive"), "up", "--data", str(tmp_path / "d"), "--auth", "a:b"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "No such option '--auth'" in r.stderr, r.stderr
    r = subprocess.run([str(BIN / "megadrive"), "up", "--data", str(tmp_path / "d"), "--allow-other"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "--allow-other goes with --mount" in r.stderr, r.stderr


def mount_options(mountpoint: Path) -> list[str]:
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[1] == str(mountpoint):
                return fields[3].split(",")
    raise AssertionError(f"{mountpoint} is not in /proc/mounts")


def test_up_with_mount_serves_both_and_unmounts_on_exit(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    try:
        with up(tmp_path, "--mount", str(mnt)) as (url, p):
            assert os.path.ismount(mnt)
            assert "allow_other" not in mount_options(mnt)  # not even as root, unless --allow-other
            (mnt / "via-fuse.txt").write_bytes(b"written through the mount")
            with logged_in(url) as c:
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:  # the gateway's index catches up through the change feed
                    r = c.get("/via-fuse.txt")
                    if r.status_code == 200:
                        break
                    time.sleep(0.3)
                assert r.content == b"written through the mount"
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=60) == 0
        assert not os.path.ismount(mnt)
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount", "-uz", str(mnt)], check=False)
