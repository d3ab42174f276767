"""FUSE throughput and POSIX behaviour of `megadrive mount`, side by side with gocryptfs and rclone crypt mount.

In one run, five FUSE file systems get the same workloads, one after the other:

- md-mfusepy-fuse2  `megadrive mount` with MEGADRIVE_LIBFUSE=2 (mfusepy over libfuse2);
- md-mfusepy-fuse3  `megadrive mount` with MEGADRIVE_LIBFUSE=3 (mfusepy over libfuse3);
- md-fusepy-fuse2   `megadrive mount` with MEGADRIVE_FUSE_BINDING=fusepy (fusepy over libfuse2);
- gocryptfs         gocryptfs over a local cipher folder;
- rclone-crypt      `rclone mount` of an rclone crypt remote on the local backend, --vfs-cache-mode writes
                    (both peers configured as ../shared/peers/peer_bench.sh does; they run in the
                    foreground as children of this script so they can always be ended).

Each MegaDrive mount has its own real server process (tests/support/server.py), its own
MEGADRIVE_HOME, an account made with the real `megadrive signup` (MEGADRIVE_KDF=interactive),
and is mounted with the real `megadrive mount` (a detached child) and removed with
`megadrive unmount`. The libfuse each mount process really loaded is read from /proc/PID/maps.

Workloads (as peer_bench.sh): `cp` of a random SIZE MiB file in + `sync`; drop the page cache
(echo 3 > /proc/sys/vm/drop_caches) and `cat` it to /dev/null (then an untimed byte-for-byte
check); a 4 KiB `dd conv=notrunc` edit inside it + `sync` (then an untimed sha256 check of the
whole edited file); `cp -r` of the Python stdlib tree (~700 .py files, pruned as peer_bench.sh
does) in, `ls -lR`, `cp -r` out + `diff -r`, `rm -rf`. For MegaDrive the account's `used`
bytes on the server (GET /v1/account with the session's token) are read around the big write
and the edit. Peak RSS of each mount process is polled every 20 ms over its whole run.

Then a behaviour table, run on every mount in a child process with a time limit:
  (a) utimensat() mtime only (atime UTIME_OMIT) takes effect;
  (b) a descriptor still reads a file unlinked / renamed over after it was opened
      (and whether .fuse_hidden* files showed up meanwhile);
  (c) `tar x` of a tarball (Python tarfile) with 2001 mtimes restores them;
  (d) `cp -p` keeps the mtime;
  (e) `touch -m -d 2001-01-01` (mtime only) takes effect;
  (f) utimensat() atime only (mtime UTIME_OMIT) leaves the mtime alone;
  (g) for information: what symlink(), link(), setxattr() and chown() to uid 1234 return.
Each is checked right away and again after the mount's 1 s attribute cache expired.

Not a test: figures are printed, never asserted. Needs root (drop_caches, mounting), /dev/fuse,
fuse + libfuse2 + libfuse3-3, rclone and gocryptfs (apt-get install -y fuse libfuse2 libfuse3-3
rclone gocryptfs). Loopback only; every mount and process is removed on exit, failure included.

usage: python benchmarks/fuse_throughput.py [SIZE_MIB] [--only NAME,NAME...]   (default 256, all five)
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import importlib.util
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.server import running_server  # noqa: E402

BIN = Path(sys.executable).parent
PASSWORD = "benchmark password"  # noqa: S105 - a throwaway account on a throwaway server
MIB = 1 << 20
MOUNT_TIMEOUT = 60.0  # seconds for a mount to appear
OP_TIMEOUT = 900.0  # seconds for any one workload
CHECK_TIMEOUT = 300.0  # seconds for the whole behaviour table on one mount
UNMOUNT_TIMEOUT = 300.0  # seconds for `megadrive unmount` (it waits for pending commits)
ATTR_WAIT = 1.5  # seconds: past the mounts' 1 s attribute cache
T2001 = 978307200  # 2001-01-01T00:00:00Z
TREE_PRUNE = {"site-packages", "__pycache__", "test", "idlelib", "tkinter"}
EDIT_OFFSET = 1000 * 4096  # dd bs=4k seek=1000, as peer_bench.sh


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


# ---------------------------------------------------------------- processes and mounts


class Procs:
    """Every long-running process this script starts directly; all are ended on exit, whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
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

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)


def force_unmount(mp: Path) -> None:
    """Lazy unmount: never blocks on a hung file system."""
    for cmd in (["fusermount", "-uz", str(mp)], ["fusermount3", "-uz", str(mp)], ["umount", "-l", str(mp)]):
        if not os.path.ismount(mp):
            return
        with suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(cmd, capture_output=True, timeout=30)


def end_pid(pid: int | None, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, one process this script caused to exist (a detached mount child)."""
    if pid is None:
        return
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def is_mount_process(pid: int, mp: Path) -> bool:
    """Still the `megadrive mount --foreground MP` child (a pid file can outlive its process)."""
    try:
        cmd = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    return "mount" in cmd and str(mp) in cmd


def wait_mounted(mp: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + MOUNT_TIMEOUT
    while time.monotonic() < deadline:
        if os.path.ismount(mp):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{log.stem} exited {proc.returncode}: {tail(log)}")
        time.sleep(0.1)
    raise RuntimeError(f"{mp} not mounted within {MOUNT_TIMEOUT:.0f} s: {tail(log)}")


def tail(log: Path, n: int = 5) -> str:
    if not log.exists():
        return "(no log)"
    return " | ".join(log.read_text(errors="replace").strip().splitlines()[-n:])


def libfuse_of(pid: int) -> str:
    """The libfuse shared object a process has mapped."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "?"
    libs = sorted({Path(line.split()[-1]).name for line in maps.splitlines() if "libfuse" in line})
    return ",".join(libs) or "none"


@dataclass
class Mounted:
    """A mounted file system under test: where, its serving process, and (MegaDrive) the server's `used`."""

    mountpoint: Path
    pid: int | None
    info: str = ""
    used: Callable[[], int] | None = None
    log: Path | None = None


@dataclass
class Result:
    name: str
    rows: list[tuple[str, float | None, str]] = field(default_factory=list)  # operation, seconds, note
    secs: dict[str, float] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)
    info: str = ""
    peak_rss: int = 0


MEGADRIVE_VARIANTS: list[tuple[str, dict[str, str]]] = [
    ("md-mfusepy-fuse2", {"MEGADRIVE_LIBFUSE": "2"}),
    ("md-mfusepy-fuse3", {"MEGADRIVE_LIBFUSE": "3"}),
    ("md-fusepy-fuse2", {"MEGADRIVE_FUSE_BINDING": "fusepy"}),
]


def megadrive_mount(extra: dict[str, str]) -> Callable[[Path, Procs], AbstractContextManager[Mounted]]:
    @contextmanager
    def mount(work: Path, procs: Procs) -> Iterator[Mounted]:
        home, mp = work / "home", work / "mnt"
        env = {k: v for k, v in os.environ.items()
               if k not in ("MEGADRIVE_LIBFUSE", "MEGADRIVE_FUSE_BINDING", "FUSE_LIBRARY_PATH")}
        env.update(MEGADRIVE_HOME=str(home), MEGADRIVE_PASSWORD=PASSWORD, MEGADRIVE_KDF="interactive", **extra)
        md = [str(BIN / "megadrive")]
        with running_server(work / "server") as server_url:
            r = subprocess.run([*md, "signup", "--server", server_url, "--user", "bench"], env=env,
                               capture_output=True, text=True, timeout=120)
            if r.returncode:
                raise RuntimeError(f"signup failed: {r.stderr.strip()}")

            def used() -> int:
                token = json.loads((home / "session.json").read_text())["token"]
                a = httpx.get(server_url.rstrip("/") + "/v1/account", timeout=30,
                              headers={"Authorization": f"Bearer {token}"})
                a.raise_for_status()
                return int(a.json()["used"])

            def read_pid() -> int | None:
                for f in (home / "mounts").glob("*.pid") if (home / "mounts").is_dir() else []:
                    with suppress(ValueError, OSError):
                        return int(f.read_text())
                return None

            mp.mkdir()
            pid: int | None = None
            try:
                r = subprocess.run([*md, "mount", str(mp)], env=env, capture_output=True, text=True,
                                   timeout=MOUNT_TIMEOUT + 30)
                pid = read_pid()
                if r.returncode or not os.path.ismount(mp):
                    raise RuntimeError(f"megadrive mount failed: {r.stderr.strip()} {tail(home / 'mount.log')}")
                yield Mounted(mp, pid, f"libfuse mapped: {libfuse_of(pid) if pid else '?'}", used,
                              home / "mount.log")
            finally:
                if os.path.ismount(mp):
                    try:
                        r = subprocess.run([*md, "unmount", str(mp)], env=env, capture_output=True, text=True,
                                           timeout=UNMOUNT_TIMEOUT)
                        if r.returncode:
                            print(f"  megadrive unmount failed: {r.stderr.strip()}", file=sys.stderr)
                    except subprocess.TimeoutExpired:
                        print(f"  megadrive unmount timed out after {UNMOUNT_TIMEOUT:.0f} s", file=sys.stderr)
                    force_unmount(mp)
                pid = pid or read_pid()
                end_pid(pid if pid and is_mount_process(pid, mp) else None)

    return mount


@contextmanager
def gocryptfs_mount(work: Path, procs: Procs) -> Iterator[Mounted]:
    cipher, mp, pw, log = work / "cipher", work / "mnt", work / "pass", work / "gocryptfs.log"
    cipher.mkdir()
    mp.mkdir()
    pw.write_text("benchpass\n")
    subprocess.run(["gocryptfs", "-q", "-init", "-passfile", str(pw), str(cipher)], check=True,
                   capture_output=True, timeout=120)
    p = procs.start(["gocryptfs", "-fg", "-q", "-passfile", str(pw), str(cipher), str(mp)], dict(os.environ), log)
    try:
        wait_mounted(mp, p, log)
        yield Mounted(mp, p.pid, f"libfuse mapped: {libfuse_of(p.pid)} (gocryptfs speaks FUSE itself)")
    finally:
        force_unmount(mp)
        procs.stop(p)


@contextmanager
def rclone_mount(work: Path, procs: Procs) -> Iterator[Mounted]:
    mp, conf, log = work / "mnt", work / "rclone.conf", work / "rclone.log"
    mp.mkdir()
    pw = subprocess.run(["rclone", "obscure", "benchpass"], capture_output=True, text=True, check=True,
                        timeout=30).stdout.strip()
    conf.write_text(f"[loc]\ntype = local\n[sec]\ntype = crypt\nremote = loc:{work}/rl\npassword = {pw}\n"
                    "filename_encryption = standard\n")
    env = dict(os.environ, RCLONE_CONFIG=str(conf))
    p = procs.start(["rclone", "mount", "sec:", str(mp), "--vfs-cache-mode", "writes",
                     "--cache-dir", str(work / "rcache")], env, log)
    try:
        wait_mounted(mp, p, log)
        yield Mounted(mp, p.pid, "rclone mount --vfs-cache-mode writes (no libfuse)")
    finally:
        force_unmount(mp)
        procs.stop(p)


SYSTEMS: list[tuple[str, Callable[[Path, Procs], AbstractContextManager[Mounted]]]] = [
    *((name, megadrive_mount(extra)) for name, extra in MEGADRIVE_VARIANTS),
    ("gocryptfs", gocryptfs_mount),
    ("rclone-crypt", rclone_mount),
]


# ---------------------------------------------------------------- workloads


def timed(script: str, timeout: float = OP_TIMEOUT) -> tuple[float | None, str]:
    """Run one `sh -c` line; (seconds, "") or (None, why it failed)."""
    t = time.perf_counter()
    # Its own process group, so that a timeout or SIGTERM ends `cp` too, not just the shell.
    p = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except BaseException as exc:
        with suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            return None, f"FAILED: timed out after {timeout:.0f} s"
        raise
    elapsed = time.perf_counter() - t
    if p.returncode:
        return None, f"FAILED: exit {p.returncode} {(err or out).strip()[-200:]}"
    return elapsed, ""


def per_s(amount: float, secs: float | None) -> float:
    return amount / secs if secs else float("nan")


def drop_caches() -> str:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return ""
    except OSError as e:
        return f"(page cache NOT dropped: {e.strerror})"


def sha256_file(path: Path, patch: tuple[int, bytes] | None = None) -> str:
    """sha256 of a file, optionally as if `patch` (offset, bytes) had been written over it."""
    h = hashlib.sha256()
    pos = 0
    with open(path, "rb") as f:
        while block := f.read(MIB):
            if patch is not None:
                off, data = patch
                lo, hi = max(off, pos), min(off + len(data), pos + len(block))
                if lo < hi:
                    block = block[: lo - pos] + data[lo - off : hi - off] + block[hi - pos :]
            h.update(block)
            pos += len(block)
    return h.hexdigest()


def run_workloads(res: Result, m: Mounted, inputs: Inputs) -> None:
    q = shlex.quote
    mp, size = m.mountpoint, inputs.size
    big, out = mp / "big.bin", inputs.work / f"out-{res.name}"

    def row(op: str, secs: float | None, note: str) -> None:
        res.rows.append((op, secs, note))
        if secs is not None:
            res.secs[op] = secs

    def used_delta(before: int | None) -> str:
        if m.used is None or before is None:
            return ""
        try:
            return f"server used +{m.used() - before} bytes"
        except (httpx.HTTPError, OSError, KeyError, ValueError) as e:
            return f"(server used unreadable: {e})"

    def used_now() -> int | None:
        if m.used is None:
            return None
        try:
            return m.used()
        except (httpx.HTTPError, OSError, KeyError, ValueError):
            return None

    u0 = used_now()
    s, err = timed(f"cp {q(str(inputs.big))} {q(str(big))} && sync")
    row("big write (cp+sync)", s, err or f"{per_s(size, s):7.1f} MiB/s  " + used_delta(u0))
    if s is None:
        return
    dropped = drop_caches()
    s, err = timed(f"cat {q(str(big))} > /dev/null")
    row("big read (cold cat)", s, err or f"{per_s(size, s):7.1f} MiB/s  {dropped}".rstrip())
    r = subprocess.run(["cmp", str(inputs.big), str(big)], capture_output=True, text=True, timeout=OP_TIMEOUT)
    row("  read back", None, "identical" if r.returncode == 0 else f"DIFFERS: {r.stdout.strip() or r.stderr.strip()}")

    u0 = used_now()
    s, err = timed(f"dd if={q(str(inputs.edit))} of={q(str(big))} bs=4k count=1 seek=1000 conv=notrunc && sync")
    row("4 KiB edit (dd+sync)", s, err or used_delta(u0))
    if s is not None:
        try:
            r = subprocess.run(["sha256sum", str(big)], capture_output=True, text=True, timeout=OP_TIMEOUT)
            got = r.stdout.split()[0] if r.returncode == 0 else r.stderr.strip()
        except subprocess.TimeoutExpired:
            got = "timed out"
        row("  edited file", None, "sha256 as expected" if got == inputs.edited_digest else f"sha256 DIFFERS ({got})")

    tree = mp / "tree"
    s, err = timed(f"cp -r {q(str(inputs.tree))} {q(str(tree))}")
    row(f"tree cp -r in ({inputs.nfiles})", s, err or f"{per_s(inputs.nfiles, s):7.0f} files/s")
    s, err = timed(f"ls -lR {q(str(tree))}")
    row("tree ls -lR", s, err)
    shutil.rmtree(out, ignore_errors=True)
    s, err = timed(f"cp -r {q(str(tree))} {q(str(out))}")
    row("tree cp -r out", s, err or f"{per_s(inputs.nfiles, s):7.0f} files/s")
    r = subprocess.run(["diff", "-r", str(inputs.tree), str(out)], capture_output=True, text=True, timeout=OP_TIMEOUT)
    row("  diff -r", None, "identical" if r.returncode == 0 else f"DIFFERS: {r.stdout.strip()[:200]}")
    shutil.rmtree(out, ignore_errors=True)
    s, err = timed(f"rm -rf {q(str(tree))}")
    row("tree rm -rf", s, err)


# ---------------------------------------------------------------- the behaviour table

CHECKS = [
    ("a", "utimensat mtime only (atime OMIT)"),
    ("b", "read via fd after unlink / rename-over"),
    ("c", "tar x restores 2001 mtimes"),
    ("d", "cp -p keeps mtime"),
    ("e", "touch -m -d 2001-01-01"),
    ("f", "utimensat atime only keeps mtime"),
    ("g", "symlink, hard link, xattr, chown (info)"),
]


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


UTIME_OMIT = (1 << 30) - 2
AT_FDCWD = -100


def utimensat(path: Path, atime: int | None, mtime: int | None) -> None:
    """utimensat(2) with whole seconds, None = UTIME_OMIT (os.utime cannot omit one of the two)."""
    libc = ctypes.CDLL(None, use_errno=True)
    ts = (Timespec * 2)(*[Timespec(0, UTIME_OMIT) if t is None else Timespec(t, 0) for t in (atime, mtime)])
    if libc.utimensat(AT_FDCWD, os.fsencode(path), ts, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(path))


def run_checks(d: Path, tarball: Path, old_file: Path) -> dict[str, str]:
    """The behaviour table on folder d of a mount (runs in a child process: see --checks)."""
    want = T2001 * 10**9
    later: list[tuple[str, list[Path], int]] = []  # check, paths, expected mtime_ns: re-read after ATTR_WAIT
    out: dict[str, str] = {}

    def fmt(ns: int) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns / 1e9))

    def mtime_check(key: str, paths: list[Path], expected: int) -> None:
        bad = [f"{p.name}={fmt(p.stat().st_mtime_ns)}" for p in paths if p.stat().st_mtime_ns != expected]
        out[key] = "ok" if not bad else f"FAIL right away: {', '.join(bad)}"
        later.append((key, paths, expected))

    def guarded(key: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except subprocess.CalledProcessError as e:
            why = (e.stderr or b"").decode(errors="replace").strip()[-200:]
            out[key] = f"FAIL: {shlex.join(e.cmd[:2])} exit {e.returncode}: {why}"
        except (OSError, subprocess.SubprocessError) as e:
            out[key] = f"FAIL: {type(e).__name__}: {e}"

    def a() -> None:
        p = d / "a.txt"
        p.write_bytes(b"a" * 100)
        utimensat(p, None, T2001)
        mtime_check("a", [p], want)

    def b() -> None:
        p1, p2, p3 = d / "b1.txt", d / "b2.txt", d / "b3.txt"
        old1, old2, new2 = b"unlinked " * 5000, b"renamed over " * 5000, b"replacement " * 5000
        p1.write_bytes(old1)
        p2.write_bytes(old2)
        p3.write_bytes(new2)
        f1, f2 = open(p1, "rb"), open(p2, "rb")  # noqa: SIM115 - held open across the unlink / rename
        try:
            os.unlink(p1)
            os.rename(p3, p2)
            hidden = [n for n in os.listdir(d) if n.startswith(".fuse_hidden")]
            got1, got2 = f1.read(), f2.read()
        finally:
            f1.close()
            f2.close()
        fails = []
        if got1 != old1:
            fails.append(f"unlinked: read {len(got1)} bytes, not the {len(old1)} written")
        if got2 != old2:
            fails.append(f"renamed over: read {len(got2)} bytes, not the old {len(old2)}")
        if p2.read_bytes() != new2:
            fails.append("the new file under the old name is wrong")
        if p1.exists():
            fails.append("the unlinked name still exists")
        note = f"; {len(hidden)} .fuse_hidden files while open" if hidden else "; no .fuse_hidden files"
        out["b"] = ("ok" if not fails else "FAIL: " + "; ".join(fails)) + note

    def c() -> None:
        dst = d / "untar"
        dst.mkdir()
        subprocess.run(["tar", "-xf", str(tarball), "-C", str(dst)], check=True, capture_output=True, timeout=120)
        mtime_check("c", sorted(p for p in dst.rglob("*") if p.is_file()), want)

    def d_() -> None:
        p = d / "cp-p.txt"
        subprocess.run(["cp", "-p", str(old_file), str(p)], check=True, capture_output=True, timeout=120)
        mtime_check("d", [p], want)

    def e() -> None:
        p = d / "touched.txt"
        p.write_bytes(b"e" * 100)
        subprocess.run(["touch", "-m", "-d", "2001-01-01", str(p)], check=True, capture_output=True, timeout=60,
                       env=dict(os.environ, TZ="UTC"))
        mtime_check("e", [p], want)

    def f() -> None:
        p = d / "atime.txt"
        p.write_bytes(b"f" * 100)
        os.utime(p, ns=(want, want))
        utimensat(p, int(time.time()), None)
        mtime_check("f", [p], want)

    def g() -> None:
        p = d / "g.txt"
        p.write_bytes(b"g" * 100)
        ops: list[tuple[str, Callable[[], object]]] = [
            ("symlink", lambda: os.symlink("g.txt", d / "g-symlink")),
            ("link", lambda: os.link(p, d / "g-hardlink")),
            ("setxattr", lambda: os.setxattr(p, "user.bench", b"1")),
            ("chown", lambda: os.chown(p, 1234, 1234)),
        ]
        parts = []
        for label, op in ops:
            try:
                op()
                parts.append(f"{label} accepted")
            except OSError as exc:
                parts.append(f"{label} {errno.errorcode.get(exc.errno or 0, exc.errno)}")
        parts.append(f"owner after chown {p.stat().st_uid}")
        out["g"] = ", ".join(parts)

    for key, fn in (("a", a), ("b", b), ("c", c), ("d", d_), ("e", e), ("f", f), ("g", g)):
        guarded(key, fn)
    time.sleep(ATTR_WAIT)
    for key, paths, expected in later:
        try:
            bad = [f"{p.name}={fmt(p.stat().st_mtime_ns)}" for p in paths if p.stat().st_mtime_ns != expected]
        except OSError as exc:
            bad = [str(exc)]
        if bad and out.get(key) == "ok":
            out[key] = f"FAIL after {ATTR_WAIT} s: {', '.join(bad)}"
    return out


def checks_on(mp: Path, inputs: Inputs) -> dict[str, str]:
    d = mp / "checks"
    try:
        d.mkdir()
        p = subprocess.run([sys.executable, __file__, "--checks", str(d), str(inputs.tarball), str(inputs.old_file)],
                           capture_output=True, text=True, timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        return dict.fromkeys([k for k, _ in CHECKS], f"FAIL: the checks timed out after {CHECK_TIMEOUT:.0f} s")
    except OSError as e:
        return dict.fromkeys([k for k, _ in CHECKS], f"FAIL: {e}")
    if p.returncode:
        return dict.fromkeys([k for k, _ in CHECKS], f"FAIL: checker exit {p.returncode}: {p.stderr[-300:]}")
    return dict(json.loads(p.stdout))


# ---------------------------------------------------------------- inputs


@dataclass
class Inputs:
    work: Path
    size: int
    big: Path
    edit: Path
    edited_digest: str
    tree: Path
    nfiles: int
    tree_mib: float
    tarball: Path
    old_file: Path


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


def make_inputs(work: Path, size: int) -> Inputs:
    big = work / "big.bin"
    with open(big, "wb") as f:
        for _ in range(size):
            f.write(os.urandom(MIB))
    edit = work / "edit.bin"
    edit.write_bytes(os.urandom(4096))
    edited = sha256_file(big, (EDIT_OFFSET, edit.read_bytes()))
    tree = work / "tree"
    nfiles = make_tree(tree)
    tree_mib = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file()) / MIB
    tarball = work / "old.tar"
    with tarfile.open(tarball, "w") as tf:
        for name in ("old/one.txt", "old/two.txt", "old/sub/three.txt"):
            data = f"{name}\n".encode() * 100
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(data), T2001, 0o644
            tf.addfile(ti, io.BytesIO(data))
    old_file = work / "old-file.txt"
    old_file.write_bytes(b"old\n" * 100)
    os.utime(old_file, (T2001, T2001))
    return Inputs(work, size, big, edit, edited, tree, nfiles, tree_mib, tarball, old_file)


# ---------------------------------------------------------------- report


def print_report(inputs: Inputs, results: list[Result], started: float, load_before: str) -> None:
    spec = importlib.util.find_spec("megadrive")
    print(f"file {inputs.size} MiB random; tree {inputs.nfiles} .py files, {inputs.tree_mib:.1f} MiB (Python stdlib);"
          f" loopback only; {os.cpu_count()} CPUs; kernel {os.uname().release}")
    print(f"megadrive from {Path(spec.origin).parent if spec and spec.origin else '?'};"
          f" load average before {load_before}, after {loadavg()}")
    print()
    for r in results:
        print(f"{r.name}: {r.info}")
    print()
    print(f"{'mount':<17} {'operation':<24} {'seconds':>8}   rate / note")
    for r in results:
        for op, secs, note in r.rows:
            s = f"{secs:8.2f}" if secs is not None else f"{'':>8}"
            print(f"{r.name:<17} {op:<24} {s}   {note}".rstrip())
        print(f"{r.name:<17} {'peak RSS (mount proc)':<24} {'':>8}   "
              + (f"{r.peak_rss / MIB:.0f} MiB" if r.peak_rss else "n/a"))
    print()
    ops = ["big write (cp+sync)", "big read (cold cat)", "4 KiB edit (dd+sync)", f"tree cp -r in ({inputs.nfiles})",
           "tree ls -lR", "tree cp -r out", "tree rm -rf"]
    w = 17
    print("seconds (lower is better)".ljust(26) + "".join(f"{r.name:>{w}}" for r in results))
    for op in ops:
        cells = [f"{r.secs[op]:.2f}" if op in r.secs else "FAILED" for r in results]
        print(f"{op:<26}" + "".join(f"{c:>{w}}" for c in cells))
    rates = [("big write MiB/s", "big write (cp+sync)", inputs.size),
             ("big read MiB/s", "big read (cold cat)", inputs.size),
             ("tree in files/s", f"tree cp -r in ({inputs.nfiles})", inputs.nfiles),
             ("tree out files/s", "tree cp -r out", inputs.nfiles)]
    for label, op, amount in rates:
        cells = [f"{amount / r.secs[op]:.1f}" if r.secs.get(op) else "-" for r in results]
        print(f"{label:<26}" + "".join(f"{c:>{w}}" for c in cells))
    print("peak RSS MiB".ljust(26) + "".join(f"{(r.peak_rss / MIB if r.peak_rss else 0):>{w}.0f}" for r in results))
    print()
    print("behaviour")
    for key, label in CHECKS:
        print(f"({key}) {label}")
        for r in results:
            print(f"      {r.name:<17} {r.checks.get(key, 'not run')}")
    print()
    print(f"total wall time {time.monotonic() - started:.0f} s")


def remove_work(d: Path) -> None:
    """Remove a work folder, never through a mount still standing in it."""
    mounts = [d / "mnt", *d.glob("*/mnt")]  # where this script mounts: WORK/mnt
    for mp in mounts:
        force_unmount(mp)
    if any(os.path.ismount(mp) for mp in mounts):
        print(f"  left {d} in place: a mount in it would not go away", file=sys.stderr)
        return
    shutil.rmtree(d, ignore_errors=True)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _raise_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "--checks":  # child mode: the behaviour table on one folder
        print(json.dumps(run_checks(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))))
        return
    args = sys.argv[1:]
    systems = SYSTEMS
    if "--only" in args:  # e.g. --only md-fusepy-fuse2,md-mfusepy-fuse2 (runs them in that order)
        i = args.index("--only")
        known = dict(SYSTEMS)
        try:
            systems = [(n, known[n]) for n in args[i + 1].split(",")]
        except (IndexError, KeyError):
            raise SystemExit(f"--only takes a comma-separated list of: {', '.join(known)}") from None
        del args[i : i + 2]
    json_out = None
    if "--json" in args:
        i = args.index("--json")
        json_out = Path(args[i + 1])
        del args[i : i + 2]
    size = int(args[0]) if args else 256
    for tool in ("fusermount", "tar", "cmp", "diff", "dd"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (apt-get install -y fuse libfuse2 libfuse3-3)")
    for peer in ("rclone", "gocryptfs"):
        if not shutil.which(peer):
            print(f"skipping {peer}: not installed (apt-get install -y {peer})", file=sys.stderr)
            systems = [(n, m) for n, m in systems if not n.startswith(peer)]
    if not os.path.exists("/dev/fuse"):
        raise SystemExit("/dev/fuse is missing")
    signal.signal(signal.SIGTERM, _raise_on_term)  # so the finally blocks below run on kill too
    started, load_before = time.monotonic(), loadavg()
    procs = Procs()
    results: list[Result] = []
    tmp = Path(tempfile.mkdtemp(prefix="md-fuse-bench-"))
    try:
        inputs = make_inputs(tmp, size)
        for name, mount in systems:
            res = Result(name)
            results.append(res)
            work = tmp / name
            work.mkdir()
            rss: PeakRss | None = None
            print(f"... {name}", file=sys.stderr, flush=True)
            try:
                with mount(work, procs) as m:
                    res.info = m.info
                    if m.pid:
                        rss = PeakRss(m.pid)
                    run_workloads(res, m, inputs)
                    res.checks = checks_on(m.mountpoint, inputs)
                    if m.log is not None and m.log.exists():
                        errors = [ln for ln in m.log.read_text(errors="replace").splitlines()
                                  if "ERROR" in ln or "Traceback" in ln]
                        res.info += f"; mount.log: {len(errors)} error lines" + (f" (first: {errors[0][:160]})"
                                                                                 if errors else "")
            except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                res.rows.append(("mount", None, f"FAILED: {str(e).strip()[-400:]}"))
            finally:
                if rss is not None:
                    res.peak_rss = rss.stop()
                remove_work(work)
    finally:
        procs.stop_all()
        remove_work(tmp)
    print_report(inputs, results, started, load_before)
    if json_out is not None:
        json_out.write_text(json.dumps({
            "size_mib": inputs.size, "files": inputs.nfiles,
            "systems": {r.name: {"secs": r.secs, "peak_rss": r.peak_rss, "info": r.info,
                                 "rows": [list(x) for x in r.rows]} for r in results}}, indent=1))


if __name__ == "__main__":
    main()
