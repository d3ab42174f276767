"""`megadrive up`: one process runs a local server plus the WebDAV gateway."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from mdtest import BIN, PASSWORD


@contextmanager
def up(tmp_path: Path, *extra: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
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
    with up(tmp_path) as (url, p):
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.request("MKCOL", "/docs").status_code == 201
            assert c.put("/docs/hello.txt", content=b"hello over webdav").status_code == 201
            r = c.get("/docs/hello.txt")
            assert r.status_code == 200 and r.content == b"hello over webdav"
            r = c.request("PROPFIND", "/docs/", headers={"Depth": "1"})
            assert r.status_code == 207 and "hello.txt" in r.text
            html = c.get("/docs/")
            assert html.status_code == 200 and "hello.txt" in html.text  # the browser view
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 0
    # Second run: the account exists, it logs in and the file is still there.
    with up(tmp_path) as (url, p):
        assert p.stdout is not None
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.get("/docs/hello.txt").content == b"hello over webdav"


def test_up_refuses_public_bind_without_password(tmp_path: Path) -> None:
    env = dict(os.environ, MEGADRIVE_PASSWORD=PASSWORD)
    r = subprocess.run([str(BIN / "megadrive"), "up", "--data", str(tmp_path / "d"), "--server-listen",
                        "127.0.0.1:0", "--listen", "0.0.0.0:0"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "without --auth" in r.stderr


def test_up_with_mount_serves_both_and_unmounts_on_exit(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    try:
        with up(tmp_path, "--mount", str(mnt)) as (url, p):
            assert os.path.ismount(mnt)
            (mnt / "via-fuse.txt").write_bytes(b"written through the mount")
            with httpx.Client(base_url=url, timeout=30) as c:
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
