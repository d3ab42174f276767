"""Helpers for the FUSE mount end-to-end tests (fixtures are in this folder's conftest.py).

Everything is real: a server process (``support.server``), accounts made and
logged in with the console script (``megadrive signup`` / ``megadrive
login``), and mounts made with ``megadrive mount`` (a detached child) and
removed with ``megadrive unmount``. A "peer" is a second client: another
MEGADRIVE_HOME logged in to the same account, used to check what really is
on the server.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from megadrive.drive import Drive
from support.dav import megadrive
from support.dav import settle as settle_home

MiB = 1 << 20
CHUNK = 1 << 20
CHUNK_OVERHEAD = 41  # bytes a sealed chunk adds to its plaintext (docs/FORMAT.md)
MOUNTED_RE = re.compile(r"\(pid (\d+);")


def md(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the real console script with MEGADRIVE_HOME=home (mounting can take longer than a DAV call)."""
    return megadrive(home, *args, timeout=timeout)


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"{r.args} exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


@dataclass
class Account:
    """A signed-up account whose client state lives under ``home``."""

    server_url: str
    home: Path
    user: str

    def token(self) -> str:
        return str(json.loads((self.home / "session.json").read_text())["token"])

    def server_account(self) -> dict[str, Any]:
        """GET /v1/account on the server with the session's bearer token (once the mounts have uploaded)."""
        settle()
        r = httpx.get(self.server_url.rstrip("/") + "/v1/account", timeout=30,
                      headers={"Authorization": f"Bearer {self.token()}"})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def used(self) -> int:
        return int(self.server_account()["used"])

    def quota(self) -> int:
        return int(self.server_account()["quota"])


def signup(server_url: str, parent: Path, user: str | None = None) -> Account:
    """``megadrive signup`` into a fresh MEGADRIVE_HOME under ``parent``."""
    user = user or f"fz{secrets.token_hex(4)}"
    home = parent / f"home-{user}"
    home.mkdir(parents=True)
    ok(md(home, "signup", "--server", server_url, "--user", user))
    return Account(server_url, home, user)


def login(acct: Account, parent: Path) -> Account:
    """A second client of the same account: ``megadrive login`` into a fresh MEGADRIVE_HOME."""
    home = parent / f"peer-{acct.user}-{secrets.token_hex(3)}"
    home.mkdir(parents=True)
    ok(md(home, "login", "--server", acct.server_url, "--user", acct.user))
    return Account(acct.server_url, home, acct.user)


# Homes of the mounts now up: the mount writes back (close() returns once a version is journaled), so what
# a test reads from the server it reads once they have uploaded what they hold.
MOUNTED_HOMES: set[Path] = set()


def settle(timeout: float = 90) -> None:
    """Wait until every live mount's journal is uploaded (the server has what the programs closed)."""
    deadline = time.monotonic() + timeout
    for home in list(MOUNTED_HOMES):
        settle_home(home, max(0.0, deadline - time.monotonic()))


@contextmanager
def drive_of(acct: Account) -> Iterator[Drive]:
    """The account's Drive in this process (opened fresh, so it pulls the server's current state)."""
    settle()
    d = Drive.open(acct.home)
    try:
        yield d
    finally:
        d.close()


def server_read(peer: Account, path: str) -> bytes:
    with drive_of(peer) as d:
        return d.read_file(path)


def server_names(peer: Account, path: str) -> list[str]:
    """`megadrive ls PATH` of a second client: what the server holds in that folder."""
    settle()
    return [ln.rstrip("/") for ln in ok(md(peer.home, "ls", path)).splitlines() if ln]


# -- mounts --------------------------------------------------------------------------------------


def mounted(mountpoint: Path) -> bool:
    target = str(mountpoint)
    with open("/proc/mounts") as f:
        return any(line.split()[1] == target for line in f)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purposes
    with suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


@dataclass
class Mount:
    """A ``megadrive mount`` of ``acct`` at ``path``; ``unmount()`` always leaves nothing behind."""

    acct: Account
    path: Path
    pids: list[int] = field(default_factory=list)
    last: subprocess.CompletedProcess[str] | None = None

    def mount(self, *options: str) -> Mount:
        """`megadrive mount PATH [options]` (e.g. --allow-other)."""
        if not mounted(self.path):  # (a dead mount is left for `megadrive mount` to clean)
            self.path.mkdir(parents=True, exist_ok=True)
        r = md(self.acct.home, "mount", str(self.path), *options, timeout=120)
        self.last = r
        ok(r)
        assert mounted(self.path), f"not in /proc/mounts after `megadrive mount`: {r.stdout}{r.stderr}"
        pid = self.child_pid()
        if pid is None:
            m = MOUNTED_RE.search(r.stdout)
            pid = int(m.group(1)) if m else None
        assert pid is not None, f"no mount child pid: {r.stdout}"
        self.pids.append(pid)
        MOUNTED_HOMES.add(self.acct.home)
        return self

    def child_pid(self) -> int | None:
        for p in sorted((self.acct.home / "mounts").glob("*.pid")):
            with suppress(OSError, ValueError):
                pid = int(p.read_text().strip())
                if pid_alive(pid):
                    return pid
        return None

    @property
    def pid(self) -> int:
        return self.pids[-1]

    def kill(self) -> None:
        """SIGKILL the mount child (a crash): the mount point is left dead (its journal waits for the next)."""
        MOUNTED_HOMES.discard(self.acct.home)
        os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def unmount_cli(self) -> subprocess.CompletedProcess[str]:
        return md(self.acct.home, "unmount", str(self.path), timeout=180)

    def unmount(self) -> None:
        """`megadrive unmount`, then `fusermount -uz` if still mounted, then kill the child if alive."""
        MOUNTED_HOMES.discard(self.acct.home)
        if mounted(self.path):
            with suppress(subprocess.TimeoutExpired):
                self.unmount_cli()
        if mounted(self.path):
            subprocess.run(["fusermount", "-uz", str(self.path)], capture_output=True, timeout=30)
        for pid in self.pids:
            deadline = time.monotonic() + 15
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def wait_visible(self, rel: str, timeout: float = 15) -> Path:
        """Wait until a change made by another client reaches the mount (its sync poll runs every 2 s)."""
        p = self.path / rel.lstrip("/")
        wait_until(p.exists, timeout, f"{rel} never appeared in the mount")
        return p


OWNER_FILE = ".megadrive-fuse-tests.pid"


def claim_basetemp(basetemp: Path) -> None:
    """Mark this test session's temp folder as in use, so a concurrent session's sweep leaves its mounts alone."""
    (basetemp / OWNER_FILE).write_text(str(os.getpid()))


def _owned_by_a_live_session(target: Path) -> bool:
    for parent in target.parents:
        marker = parent / OWNER_FILE
        with suppress(OSError, ValueError):
            if marker.exists():
                return pid_alive(int(marker.read_text().strip()))
    return False


def _mount_children(target: str) -> list[int]:
    """Pids of `megadrive mount --foreground TARGET` processes (the detached mount children)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"--foreground" in argv and os.fsencode(target) in argv and any(b"megadrive" in a for a in argv):
                pids.append(int(proc.name))
    return pids


def sweep_stale_mounts(roots: list[Path]) -> list[str]:
    """`fusermount -uz` every fuse.megadrive mount under ``roots`` that an earlier, interrupted test run left
    (a mount under the temp folder of a session still running is left alone), and end its mount child."""
    swept = []
    resolved = [str(r.resolve()) + "/" for r in roots if r.exists()]
    with open("/proc/mounts") as f:
        entries = [line.split() for line in f]
    for e in entries:
        if len(e) < 3 or e[2] != "fuse.megadrive":
            continue
        target = e[1].replace("\\040", " ")
        if not any(target.startswith(r) for r in resolved) or _owned_by_a_live_session(Path(target)):
            continue
        children = _mount_children(target)
        subprocess.run(["fusermount", "-uz", target], capture_output=True, timeout=30)
        for pid in children:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        swept.append(target)
    return swept


def temp_roots_of_runs(basetemp: Path) -> list[Path]:
    """Where this and earlier test runs keep their temp folders (pytest-of-USER and the basetemp)."""
    user = os.environ.get("USER") or str(os.getuid())
    roots = {basetemp, Path(tempfile.gettempdir()) / f"pytest-of-{user}"}
    with suppress(KeyError, ImportError):
        import getpass

        roots.add(Path(tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}")
    return sorted(roots)


# -- small utilities -----------------------------------------------------------------------------


def wait_until(pred: Callable[[], bool], timeout: float, msg: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(msg)
        time.sleep(0.05)


def sha256_file(path: Path, block: int = 8 * MiB) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(block):
            h.update(b)
    return h.hexdigest()


def errno_of(fn: Callable[[], object]) -> str:
    """The errno name fn() fails with ('OK' if it does not fail)."""
    try:
        fn()
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, str(e.errno))
    return "OK"


UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
AT_FDCWD = -100


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc = ctypes.CDLL(None, use_errno=True)


def utimensat(path: Path, atime: tuple[int, int], mtime: tuple[int, int]) -> None:
    """utimensat(2) with raw timespecs, so UTIME_NOW / UTIME_OMIT can be passed (os.utime cannot)."""
    times = (_Timespec * 2)(_Timespec(*atime), _Timespec(*mtime))
    if _libc.utimensat(AT_FDCWD, os.fsencode(path), times, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(path))


def hidden_files(names: list[str]) -> list[str]:
    return [n for n in names if n.startswith(".fuse_hidden")]
