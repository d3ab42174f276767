"""Other local users and the mount: only the user who mounted may enter it, root included, unless
`megadrive mount --allow-other`; with it the kernel applies the mode bits (default_permissions).

Before the fix a mount made by root always had ``allow_other``, and with files at 0644 every local user
read the plaintext.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.mounts import Account, Mount, mounted, signup
from support.server import ServerProcess

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="needs root (to mount as root) and setpriv (to act as user nobody)")

PLAINTEXT = b"root's decrypted plaintext\n"


def as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd],
                          capture_output=True, text=True, timeout=60, cwd="/")


def mount_options(mountpoint: Path) -> list[str]:
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[1] == str(mountpoint):
                return fields[3].split(",")
    raise AssertionError(f"{mountpoint} is not mounted")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder every user may pass through: pytest's temp folders are 0700, which would keep other users out
    whatever the mount does. Removed only once nothing is mounted in it."""
    d = Path(tempfile.mkdtemp(prefix="megadrive-allow-other-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        if not any(mounted(p) for p in d.iterdir()):
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def acct(fuse_server: ServerProcess, tmp_path: Path) -> Account:
    return signup(fuse_server.url, tmp_path)


def test_other_users_are_kept_out_by_default(acct: Account, open_dir: Path,
                                             mounts: Callable[[Account, Path], Mount]) -> None:
    m = mounts(acct, open_dir / "mnt").mount()
    (m.path / "private.txt").write_bytes(PLAINTEXT)
    assert (m.path / "private.txt").read_bytes() == PLAINTEXT  # the user who mounted: fine
    for cmd in (["ls", str(m.path)], ["cat", str(m.path / "private.txt")], ["stat", str(m.path)]):
        r = as_nobody(*cmd)
        assert r.returncode != 0 and "Permission denied" in r.stderr, (cmd, r.returncode, r.stdout, r.stderr)
        assert PLAINTEXT.decode().strip() not in r.stdout and "private.txt" not in r.stdout
    assert "allow_other" not in mount_options(m.path)


def test_allow_other_lets_the_mode_bits_decide(acct: Account, open_dir: Path,
                                               mounts: Callable[[Account, Path], Mount]) -> None:
    m = mounts(acct, open_dir / "mnt").mount("--allow-other")
    assert "allow_other" in mount_options(m.path) and "default_permissions" in mount_options(m.path)
    (m.path / "shared.txt").write_bytes(PLAINTEXT)  # 0644: readable by every local user, as documented
    (m.path / "mine.txt").write_bytes(PLAINTEXT)
    os.chmod(m.path / "mine.txt", 0o600)
    r = as_nobody("ls", str(m.path))
    assert r.returncode == 0 and r.stdout.split() == ["mine.txt", "shared.txt"], (r.stdout, r.stderr)
    r = as_nobody("cat", str(m.path / "shared.txt"))
    assert r.returncode == 0 and r.stdout == PLAINTEXT.decode(), r.stderr
    r = as_nobody("cat", str(m.path / "mine.txt"))
    assert r.returncode != 0 and "Permission denied" in r.stderr and not r.stdout
    r = as_nobody("sh", "-c", f"echo overwritten > '{m.path / 'shared.txt'}'")
    assert r.returncode != 0 and "Permission denied" in r.stderr
    assert (m.path / "shared.txt").read_bytes() == PLAINTEXT
