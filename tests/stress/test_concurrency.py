"""Many programs on one account at once: nothing lost, nothing locked up, no false alarm.

50 WebDAV clients spread over two gateways of one account (two devices), and 4 writers through a FUSE
mount of the same account (a third device), for DURATION seconds: distinct files written, read back and
renamed, a shared folder everyone writes into, and shared files several writers overwrite. Afterwards:

* no 5xx answer, no failed close(), and no integrity alarm in any log (a race between a commit and a
  change-feed pull once looked like a rollback);
* every acknowledged write of a file only one writer touched is there with its exact hash;
* a shared file holds one of the acknowledged writes, and its conflicted copies hold only acknowledged
  writes (never bytes nobody wrote);
* the gateways' and the mount's memory stays under 300 MiB.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from support.accounts import make_drive
from support.dav import GatewayProcess, href
from support.mounts import Mount, login, signup
from support.server import NO_SIGNUP_LIMIT, ServerProcess

from megadrive.drive import Drive

LONG = bool(os.environ.get("MEGADRIVE_LONG_TESTS"))
DURATION = 60.0 if LONG else 8.0
DAV_CLIENTS = 50
FUSE_WRITERS = 4
SHARED_FILES = 3
RSS_LIMIT = 300 << 20


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class Ledger:
    """What was acknowledged, by whom, and what went wrong."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.own: dict[str, str] = {}  # path written by one writer only -> hash of its last acknowledged write
        self.shared: dict[str, set[str]] = defaultdict(set)  # shared path -> every acknowledged hash
        self.errors: list[str] = []
        self.ops = 0

    def ok(self, path: str, data: bytes, shared: bool) -> None:
        with self.lock:
            self.ops += 1
            if shared:
                self.shared[path].add(sha(data))
            else:
                self.own[path] = sha(data)

    def fail(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[ServerProcess, list[GatewayProcess], Mount, Path]]:
    server = ServerProcess(tmp_path / "server", extra_args=NO_SIGNUP_LIMIT)
    gws: list[GatewayProcess] = []
    mount: Mount | None = None
    try:
        first = signup(server.url, tmp_path)
        second = login(first, tmp_path)
        third = login(first, tmp_path)
        gws = [GatewayProcess(first.home), GatewayProcess(second.home)]
        mount = Mount(third, tmp_path / "mnt").mount()
        with gws[0].client() as c:
            for d in ("/dav", "/shared", "/fuse"):
                assert c.request("MKCOL", d).status_code == 201
        deadline = time.monotonic() + 15
        while not (mount.path / "fuse").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        yield server, gws, mount, first.home
    finally:
        if mount is not None:
            mount.unmount()
        for g in gws:
            g.stop()
        server.stop()


def dav_client(n: int, gw: GatewayProcess, ledger: Ledger, stop: threading.Event) -> None:
    rnd = random.Random(n)
    with gw.client(timeout=60) as c:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                if rnd.random() < 0.15:  # a shared file several clients overwrite
                    path = f"/shared/common-{rnd.randrange(SHARED_FILES)}.bin"
                    data = f"client {n} write {i} ".encode() + rnd.randbytes(rnd.randrange(1, 5000))
                    r = c.put(href(path), content=data)
                    if r.status_code >= 500:
                        ledger.fail(f"PUT {path}: {r.status_code} {r.text[:200]}")
                    elif r.status_code in (200, 201, 204):
                        ledger.ok(path, data, shared=True)
                    continue
                folder = "/shared" if rnd.random() < 0.5 else "/dav"
                path = f"{folder}/c{n:02d}-{i:04d}.bin"
                data = rnd.randbytes(rnd.randrange(1, 8000))
                r = c.put(href(path), content=data)
                if r.status_code not in (201, 204):
                    ledger.fail(f"PUT {path}: {r.status_code} {r.text[:200]}")
                    continue
                ledger.ok(path, data, shared=False)
                g = c.get(href(path))
                if g.status_code != 200 or g.content != data:
                    ledger.fail(f"GET {path}: {g.status_code}, {len(g.content)} bytes")
                if rnd.random() < 0.2:
                    p = c.request("PROPFIND", href(folder + "/"), headers={"Depth": "1"})
                    if p.status_code != 207:
                        ledger.fail(f"PROPFIND {folder}: {p.status_code} {p.text[-400:]}")
                if rnd.random() < 0.15:
                    dest = path.replace(".bin", "-moved.bin")
                    m = c.request("MOVE", href(path), headers={"Destination": gw.url.rstrip("/") + href(dest)})
                    if m.status_code not in (201, 204):
                        ledger.fail(f"MOVE {path}: {m.status_code} {m.text[:200]}")
                    else:
                        with ledger.lock:
                            ledger.own[dest] = ledger.own.pop(path)
            except httpx.HTTPError as e:
                ledger.fail(f"client {n}: {type(e).__name__}: {e}")


def fuse_writer(n: int, mount: Mount, ledger: Ledger, stop: threading.Event) -> None:
    rnd = random.Random(1000 + n)
    i = 0
    while not stop.is_set():
        i += 1
        rel = f"fuse/w{n}-{i % 7}.bin"  # each writer rewrites its own seven files
        data = rnd.randbytes(rnd.randrange(1, 300_000))
        try:
            with open(mount.path / rel, "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
                f.write(data[len(data) // 2:])
            ledger.ok("/" + rel, data, shared=False)
            if (mount.path / rel).read_bytes() != data:
                ledger.fail(f"read back {rel} differs")
        except OSError as e:
            ledger.fail(f"FUSE {rel}: {e}")


def test_many_clients_on_one_account(world: tuple[ServerProcess, list[GatewayProcess], Mount, Path]) -> None:
    server, gws, mount, home = world
    ledger, stop = Ledger(), threading.Event()
    threads = [threading.Thread(target=dav_client, args=(n, gws[n % 2], ledger, stop)) for n in range(DAV_CLIENTS)]
    threads += [threading.Thread(target=fuse_writer, args=(n, mount, ledger, stop)) for n in range(FUSE_WRITERS)]
    procs = [psutil.Process(g.pid) for g in gws] + [psutil.Process(mount.pid)]
    peaks: dict[str, int] = {}
    peak = 0
    for t in threads:
        t.start()
    end = time.monotonic() + DURATION
    while time.monotonic() < end:
        for name, p in zip(("gateway 1", "gateway 2", "mount"), procs, strict=True):
            peaks[name] = max(peaks.get(name, 0), p.memory_info().rss)
        peak = max(peaks.values())
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(120)
    print(f"\n{ledger.ops} acknowledged writes by {DAV_CLIENTS} WebDAV clients and {FUSE_WRITERS} FUSE writers "
          f"in {DURATION:.0f} s; peak RSS {peak >> 20} MiB "
          f"({', '.join(f'{k} {v >> 20} MiB' for k, v in peaks.items())}); errors: {len(ledger.errors)}")
    assert ledger.errors == [], sorted({e[:160] for e in ledger.errors})[:30]
    assert peak < RSS_LIMIT, f"peak RSS {peak >> 20} MiB"

    t0 = time.monotonic()
    for g in gws:  # write-back: what the gateways acknowledged may still be on its way to the server
        g.settle(timeout=600)
    print(f"the gateways' uploads drained {time.monotonic() - t0:.1f} s after the load stopped")
    mount.unmount()  # commits and uploads everything the mount holds
    for g in gws:
        g.stop()
    logs = [g.stderr() for g in gws] + [(mount.acct.home / "mount.log").read_text(errors="replace")]
    for log in logs:
        for alarm in ("INTEGRITY", "rolled back", "hiding node", "Traceback"):
            assert alarm not in log, log[-3000:]

    notable = [ln for log in logs for ln in log.splitlines() if "WARNING" in ln or "ERROR" in ln]
    print("\n".join(["log lines of note:", *notable[:50]]))
    fresh = make_drive(server.url, home.parent / "checker", mount.acct.user, signup=False)
    try:
        _check(fresh, ledger)
    finally:
        fresh.close()


def _check(d: Drive, ledger: Ledger) -> None:
    for path, h in ledger.own.items():
        assert sha(d.read_file(path)) == h, path
    for path, hashes in ledger.shared.items():
        assert sha(d.read_file(path)) in hashes, path
    stem_of = {p.rsplit("/", 1)[1].rsplit(".", 1)[0]: p for p in ledger.shared}
    for e in d.listdir("/shared"):
        if "conflicted copy" in e.name:
            stem = e.name.split(" (conflicted copy")[0]
            assert stem in stem_of, e.name
            assert sha(d.read_file(e.path)) in ledger.shared[stem_of[stem]], e.name
    for folder in ("/", "/dav", "/shared", "/fuse"):
        assert d.hidden(folder) == [], folder
