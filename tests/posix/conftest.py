"""Fixtures for the POSIX suite: one real server and one `megadrive mount --allow-other` per test session.

Modelled on pjdfstest's categories (chmod, chown, link, mkdir, mkfifo, mknod,
open, rename, rmdir, symlink, truncate, unlink, utimensat, xattr): each test
works in a fresh folder of the mount, as root and, through :func:`as_user`,
as other local users (a child process with their uid and gid), whose access
the kernel decides from the owner and mode the mount reports
(``default_permissions``). pjdfstest itself is run by scripts/pjdfstest.sh.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.mounts import Account, Mount, signup
from support.server import NO_SIGNUP_LIMIT, ServerProcess


@pytest.fixture(scope="session")
def posix_mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    if os.geteuid() != 0:
        pytest.skip("the POSIX suite switches users: it runs as root (as the test command does under CI)")
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount") is None:
        pytest.fail("FUSE is required (the test command installs it)")
    server = ServerProcess(tmp_path_factory.mktemp("posix-server") / "data", extra_args=NO_SIGNUP_LIMIT)
    # Other users must reach the mount point: pytest's own temp folders are 0700.
    top = Path(tempfile.mkdtemp(prefix="megadrive-posix-"))
    top.chmod(0o755)
    acct: Account = signup(server.url, tmp_path_factory.mktemp("posix-acct"))
    m = Mount(acct, top / "drive")
    try:
        m.mount("--allow-other")
        yield m
    finally:
        m.unmount()
        server.stop()
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def here(posix_mount: Mount, request: pytest.FixtureRequest) -> Path:
    """A fresh folder (0777, like pjdfstest's) in the mount, named after the test."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:100]
    p = posix_mount.path / name
    p.mkdir()
    p.chmod(0o777)
    return p
