"""WebDAV throughput of the MegaDrive gateway, side by side with plain wsgidav and rclone crypt.

In one run, each of three WebDAV servers on loopback gets the same workloads:

- megadrive     the real `megadrive webdav` gateway (with its per-run password from gateway.json),
                logged in (real `megadrive signup`)
                to a real server process (tests/support/server.py) on local storage;
- wsgidav       the plain `wsgidav` CLI serving a plain folder, no auth, no crypto;
- rclone-crypt  `rclone serve webdav` over an rclone crypt remote on the local backend
                (both peers configured as ../shared/peers/peer_bench.sh does).

Workloads: PUT of a SIZE MiB random file (curl -T), GET of it (curl -o /dev/null,
then an untimed GET checked against the source's sha256), and upload / list /
download of the Python stdlib tree (~700 .py files, built as peer_bench.sh does)
with ../shared/peers/dav_tree.py (8 threads, every download verified).
Peak RSS of the gateway and server processes is polled every 20 ms during the
MegaDrive run. Not a test: figures are printed, never asserted.

usage: python benchmarks/webdav_throughput.py [SIZE_MIB] [--json PATH]   (default 256)
A peer whose tool is not installed is skipped with a line saying so.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import IO
from urllib.parse import quote

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.server import running_server  # noqa: E402

BIN = Path(sys.executable).parent
PASSWORD = "benchmark password"  # noqa: S105 - a throwaway account on a throwaway server
REPO = Path(__file__).resolve().parent.parent
DAV_TREE = Path(os.environ.get("DAV_TREE", REPO.parent / "shared" / "peers" / "dav_tree.py"))
MIB = 1 << 20
START_TIMEOUT = 30.0  # seconds for a server to come up
OP_TIMEOUT = 900.0  # seconds for any one workload
TREE_PRUNE = {"site-packages", "__pycache__", "test", "idlelib", "tkinter"}


class PeakRss:
    """Poll one process's RSS every 20 ms and keep the maximum."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        try:
            p = psutil.Process(self.pid)
            while True:
                self.peak = max(self.peak, p.memory_info().rss)
                if self._stop.wait(0.02):
                    return
        except psutil.Error:
            return

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


# ---------------------------------------------------------------- processes


class Procs:
    """Every long-running process this script starts; all are ended on exit, whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def start_piped(self, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "wb") as err:
            p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        self.procs.append(p)
        return p

    @staticmethod
    def stop(p: subprocess.Popen[bytes]) -> None:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        if p.stdout:
            p.stdout.close()

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until URL answers any HTTP status (the process may still be binding)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{log.stem} exited {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            httpx.request("OPTIONS", url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT:.0f} s:\n{log.read_text(errors='replace')}")


def read_served_url(proc: subprocess.Popen[bytes], log: Path) -> str:
    """The URL from the gateway's "MegaDrive is served at URL" line; stdout keeps being drained."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump(out: IO[bytes]) -> None:
        for raw in out:
            lines.put(raw.decode("utf-8", "replace"))
        lines.put(None)

    assert proc.stdout is not None
    threading.Thread(target=pump, args=(proc.stdout,), daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:
            raise RuntimeError(f"gateway did not report its URL; stderr:\n{log.read_text(errors='replace')}")
        m = re.match(r"MegaDrive is served at (\S+)", line)
        if m:
            return m.group(1)


# ---------------------------------------------------------------- the three servers


@contextmanager
def megadrive_dav(tmp: Path, procs: Procs, rss: dict[str, PeakRss]) -> Iterator[str]:
    env = dict(
        os.environ, MEGADRIVE_HOME=str(tmp / "md-home"), MEGADRIVE_PASSWORD=PASSWORD, MEGADRIVE_KDF="interactive"
    )
    with running_server(tmp / "md-server") as server_url:
        server_pid = _server_pid(tmp / "md-server")
        if server_pid:
            rss["server"] = PeakRss(server_pid)
        subprocess.run(
            [str(BIN / "megadrive"), "signup", "--server", server_url, "--user", "bench"],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        log = tmp / "md-gateway.log"
        gw = procs.start_piped([str(BIN / "megadrive"), "webdav", "--listen", "127.0.0.1:0"], env, log)
        rss["gateway"] = PeakRss(gw.pid)
        profile = os.environ.get("MEGADRIVE_PROFILE")  # a folder: py-spy samples gateway and server into it
        if profile:
            for what, pid in (("gateway", gw.pid), ("server", server_pid)):
                if pid:
                    procs.start([str(BIN / "py-spy"), "record", "--pid", str(pid), "--format", "raw", "-r", "200",
                                 "-o", str(Path(profile) / f"{what}.txt")], dict(os.environ), tmp / f"spy-{what}.log")
        try:
            url = read_served_url(gw, log)
            # Every request logs in: the run's password is in MEGADRIVE_HOME/gateway.json. A URL with
            # user:password@ makes curl, httpx and dav_tree.py send it (HTTP Basic, preemptively).
            state = json.loads((tmp / "md-home" / "gateway.json").read_text())
            yield url.replace("://", f"://{quote(state['user'], safe='')}:{quote(state['password'], safe='')}@", 1)
        finally:
            procs.stop(gw)


@contextmanager
def plain_wsgidav(tmp: Path, procs: Procs, rss: dict[str, PeakRss]) -> Iterator[str]:
    port, root = free_port(), tmp / "wd-plain"
    root.mkdir()
    conf = tmp / "wd.yaml"
    conf.write_text(
        "host: 127.0.0.1\n"
        f"port: {port}\n"
        f'provider_mapping: {{"/": "{root}"}}\n'
        "http_authenticator: {domain_controller: null, accept_basic: true, accept_digest: false,"
        " default_to_digest: false}\n"
        'simple_dc: {user_mapping: {"*": true}}\n'
        "verbose: 0\n"
        "logging: {enable: false}\n"
    )
    log = tmp / "wd.log"
    p = procs.start([str(BIN / "wsgidav"), "--config", str(conf)], dict(os.environ), log)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url, p, log)
        yield url
    finally:
        procs.stop(p)


@contextmanager
def rclone_crypt_dav(tmp: Path, procs: Procs, rss: dict[str, PeakRss]) -> Iterator[str]:
    port, conf = free_port(), tmp / "rclone.conf"
    pw = subprocess.run(
        ["rclone", "obscure", "benchpass"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    conf.write_text(
        f"[loc]\ntype = local\n[sec]\ntype = crypt\nremote = loc:{tmp}/rl\npassword = {pw}\n"
        "filename_encryption = standard\n"
    )
    env = dict(os.environ, RCLONE_CONFIG=str(conf), RCLONE_CACHE_DIR=str(tmp / "rcache"))
    log = tmp / "rc.log"
    p = procs.start(["rclone", "serve", "webdav", "sec:", "--addr", f"127.0.0.1:{port}"], env, log)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url, p, log)
        yield url
    finally:
        procs.stop(p)


PEERS: list[tuple[str, Callable[[Path, Procs, dict[str, PeakRss]], AbstractContextManager[str]]]] = [
    ("megadrive", megadrive_dav),
    ("wsgidav", plain_wsgidav),
    ("rclone-crypt", rclone_crypt_dav),
]


def _server_pid(data_dir: Path) -> int | None:
    """The `python -m megadrive.server --data DATA_DIR` child that running_server started."""
    for c in psutil.Process().children():
        try:
            cmd = c.cmdline()
        except psutil.Error:
            continue
        if "megadrive.server" in cmd and str(data_dir) in cmd:
            return c.pid
    return None


# ---------------------------------------------------------------- workloads

Row = tuple[str, str, float | None, str]  # peer, operation, seconds, rate text (or failure)


def run_peer(name: str, url: str, src: Path, digest: str, size: int, tree: Path) -> tuple[list[Row], dict[str, float]]:
    rows: list[Row] = []
    rates: dict[str, float] = {}
    target = url.rstrip("/") + "/big.bin"

    def op(label: str, cmd: list[str]) -> float | None:
        t = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=OP_TIMEOUT)
        except subprocess.TimeoutExpired:
            rows.append((name, label, None, f"FAILED: timed out after {OP_TIMEOUT:.0f} s"))
            return None
        elapsed = time.perf_counter() - t
        if p.returncode:
            rows.append((name, label, None, f"FAILED: exit {p.returncode} {p.stderr.strip()[-200:]}"))
            return None
        return elapsed

    curl = ["curl", "-sS", "-f", "--max-time", str(int(OP_TIMEOUT))]
    s = op("PUT", [*curl, "-T", str(src), target])
    if s is not None:
        rates["PUT"] = size / s
        rows.append((name, f"PUT {size} MiB", s, f"{size / s:8.1f} MiB/s"))
        s = op("GET", [*curl, "-o", "/dev/null", target])
        if s is not None:
            rates["GET"] = size / s
            rows.append((name, f"GET {size} MiB", s, f"{size / s:8.1f} MiB/s"))
        ok = _get_sha256(target) == digest
        rows.append((name, "GET round trip", None, "sha256 identical" if ok else "sha256 DIFFERS"))

    t = time.perf_counter()
    try:
        p = subprocess.run(
            [sys.executable, str(DAV_TREE), url, str(tree), "--threads", "8"],
            capture_output=True,
            text=True,
            timeout=OP_TIMEOUT,
        )
        out, rc, err = p.stdout, p.returncode, p.stderr
    except subprocess.TimeoutExpired:
        out, rc, err = "", -1, f"timed out after {OP_TIMEOUT:.0f} s"
    total = time.perf_counter() - t
    m = re.search(r"files=(\d+) up=(\d+) files/s list=([\d.]+)s down=(\d+) files/s \(verified\)", out)
    if rc or not m:
        rows.append((name, "tree (dav_tree.py)", total, f"FAILED: exit {rc} {err.strip()[-300:]}"))
    else:
        n, up, lst, down = int(m[1]), int(m[2]), float(m[3]), int(m[4])
        rates["tree-up"], rates["tree-down"] = up, down
        rows.append((name, f"tree upload ({n})", n / up if up else None, f"{up:8d} files/s"))
        rows.append((name, "tree list", lst, ""))
        rates["tree-list-s"] = lst
        rows.append((name, f"tree download ({n})", n / down if down else None, f"{down:8d} files/s (verified)"))
    return rows, rates


def _get_sha256(url: str) -> str:
    h = hashlib.sha256()
    try:
        with httpx.stream("GET", url, timeout=OP_TIMEOUT) as r:
            if r.status_code != 200:
                return f"status {r.status_code}"
            for block in r.iter_bytes(1 << 20):
                h.update(block)
    except httpx.HTTPError as e:
        return f"error {e}"
    return h.hexdigest()


# ---------------------------------------------------------------- inputs


def make_big(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size):
            block = os.urandom(MIB)
            h.update(block)
            f.write(block)
    return h.hexdigest()


def make_tree(dst: Path) -> int:
    """The stdlib .py files, pruned as peer_bench.sh's `find` does."""
    std = Path(sysconfig.get_paths()["stdlib"])
    n = 0
    for root, dirs, files in os.walk(std):
        dirs[:] = [d for d in dirs if d not in TREE_PRUNE and not d.startswith("config-")]
        for f in files:
            p = Path(root) / f
            if f.endswith(".py") and f not in TREE_PRUNE and p.is_file() and not p.is_symlink():
                out = dst / p.relative_to(std)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, out)
                n += 1
    return n


def _raise_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


PEER_TOOLS = {"rclone-crypt": "rclone", "wsgidav": "wsgidav"}


def main() -> None:
    args = sys.argv[1:]
    json_out = None
    if "--json" in args:
        i = args.index("--json")
        json_out = Path(args[i + 1])
        del args[i : i + 2]
    size = int(args[0]) if args else 256
    if not shutil.which("curl"):
        raise SystemExit("curl not found (apt-get install -y curl)")
    peers = []
    for name, serve in PEERS:
        tool = PEER_TOOLS.get(name)
        if tool and not shutil.which(tool) and not (BIN / tool).exists():
            print(f"skipping {name}: {tool} is not installed", file=sys.stderr)
            continue
        peers.append((name, serve))
    if not DAV_TREE.is_file():
        raise SystemExit(f"{DAV_TREE} not found (set DAV_TREE=path/to/dav_tree.py)")
    signal.signal(signal.SIGTERM, _raise_on_term)  # so the finally blocks below run on kill too
    procs = Procs()
    rows: list[Row] = []
    rates: dict[str, dict[str, float]] = {}
    peaks: dict[str, int] = {}
    tmp = Path(tempfile.mkdtemp(prefix="md-webdav-bench-"))
    try:
        src = tmp / "big.bin"
        digest = make_big(src, size)
        tree = tmp / "tree"
        nfiles = make_tree(tree)
        tree_mib = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file()) / MIB
        for name, serve in peers:
            rss: dict[str, PeakRss] = {}
            try:
                with ExitStack() as stack:
                    url = stack.enter_context(serve(tmp, procs, rss))
                    peer_rows, rates[name] = run_peer(name, url, src, digest, size, tree)
                    rows += peer_rows
            except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                rows.append((name, "start", None, f"FAILED: {str(e).strip()[-400:]}"))
            finally:
                for what, r in rss.items():
                    peaks[what] = r.stop()
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"file {size} MiB random; tree {nfiles} .py files, {tree_mib:.1f} MiB (Python stdlib); loopback only")
    print(f"{'server':<14} {'operation':<22} {'seconds':>8}   rate")
    for name, opname, secs, rate in rows:
        s = f"{secs:8.2f}" if secs is not None else f"{'-':>8}"
        print(f"{name:<14} {opname:<22} {s}   {rate}".rstrip())
    md = rates.get("megadrive", {})
    for peer in ("wsgidav", "rclone-crypt"):
        other = rates.get(peer, {})
        parts = [
            f"{k} {md[k] / other[k]:.2f}" for k in ("PUT", "GET", "tree-up", "tree-down") if k in md and other.get(k)
        ]
        print(f"ratio megadrive/{peer:<13} " + ("  ".join(parts) if parts else "(n/a)"))
    for what in ("gateway", "server"):
        print(f"megadrive {what} peak RSS: " + (f"{peaks[what] / MIB:.0f} MiB" if what in peaks else "n/a"))
    if json_out is not None:
        json_out.write_text(json.dumps({"size_mib": size, "files": nfiles, "rates": rates, "peak_rss": peaks,
                                        "rows": [list(r) for r in rows]}, indent=1))


if __name__ == "__main__":
    main()
