"""CLI put/get throughput of one large file, with peak RSS of client and server.

Runs a real server process and the real `megadrive` console script, then the
same copy through rclone crypt (local backend) when rclone is installed, and
prints MiB/s and the ratio to rclone. Not a test: numbers, not assertions.

usage: python benchmarks/cli_throughput.py [SIZE_MIB]   (default 256)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.server import running_server  # noqa: E402

BIN = Path(sys.executable).parent
PASSWORD = "benchmark password"


class PeakRss:
    """Poll a process tree's RSS every 20 ms and keep the maximum."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                p = psutil.Process(self.pid)
                self.peak = max(self.peak, p.memory_info().rss)
            except psutil.Error:
                return

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rss = PeakRss(p.pid)
    _, err = p.communicate()
    elapsed = time.perf_counter() - t
    peak = rss.stop()
    if p.returncode:
        raise SystemExit(f"{cmd[1]} failed: {err.decode()}")
    return elapsed, peak


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    mib = 1 << 20
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        src = tmp / "big.bin"
        with open(src, "wb") as f:
            for _ in range(size):
                f.write(os.urandom(mib))
        env = dict(os.environ, MEGADRIVE_HOME=str(tmp / "home"), MEGADRIVE_PASSWORD=PASSWORD)
        rows = []
        with running_server(tmp / "server") as url:
            server_pid = _server_pid(url)
            srv = PeakRss(server_pid) if server_pid else None
            subprocess.run([str(BIN / "megadrive"), "signup", "--server", url, "--user", "bench"], env=env,
                           check=True, capture_output=True)
            put_s, put_rss = timed([str(BIN / "megadrive"), "put", str(src), "/big.bin"], env)
            get_s, get_rss = timed([str(BIN / "megadrive"), "get", "/big.bin", str(tmp / "out.bin")], env)
            srv_peak = srv.stop() if srv else 0
            same = _same(src, tmp / "out.bin")
            rows.append(("megadrive CLI put", size / put_s, put_rss))
            rows.append(("megadrive CLI get", size / get_s, get_rss))
        peer = _rclone(tmp, src, size)
        print(f"file {size} MiB, round trip identical: {same}; server peak RSS {srv_peak / mib:.0f} MiB")
        for name, rate, rss in rows:
            print(f"{name:<24} {rate:8.1f} MiB/s   client peak RSS {rss / mib:6.0f} MiB")
        for name, rate in peer:
            print(f"{name:<24} {rate:8.1f} MiB/s")
        if len(peer) == 2:
            print(f"ratio megadrive/rclone-crypt: put {rows[0][1] / peer[0][1]:.2f}  get {rows[1][1] / peer[1][1]:.2f}")


def _server_pid(url: str) -> int | None:
    port = int(url.rsplit(":", 1)[1].strip("/"))
    for c in psutil.net_connections("tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port:
            return c.pid
    return None


def _same(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 22), fb.read(1 << 22)
            if x != y:
                return False
            if not x:
                return True


def _rclone(tmp: Path, src: Path, size: int) -> list[tuple[str, float]]:
    if not shutil.which("rclone"):
        print("(rclone not installed: no peer figures; apt-get install -y rclone)")
        return []
    conf = tmp / "rclone.conf"
    pw = subprocess.run(["rclone", "obscure", "benchpass"], capture_output=True, text=True, check=True).stdout.strip()
    conf.write_text(f"[loc]\ntype = local\n[sec]\ntype = crypt\nremote = loc:{tmp}/rcl\npassword = {pw}\n")
    env = dict(os.environ, RCLONE_CONFIG=str(conf))
    t = time.perf_counter()
    subprocess.run(["rclone", "copyto", str(src), "sec:big.bin"], env=env, check=True)
    put = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run(["rclone", "copyto", "sec:big.bin", str(tmp / "rc-out.bin")], env=env, check=True)
    get = time.perf_counter() - t
    return [("rclone crypt put (local)", size / put), ("rclone crypt get (local)", size / get)]


if __name__ == "__main__":
    main()
