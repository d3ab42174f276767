"""Fixtures for the FUSE mount tests: a real server, accounts made by `megadrive signup`, real mounts.

Helpers live in support/mounts.py (imported by the test modules directly). Every
mount made here is unmounted at teardown even when the test fails
(`megadrive unmount`, then `fusermount -uz`, then SIGKILL of the mount child),
and mounts left by an earlier, killed run are swept when the session starts.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.mounts import (  # noqa: E402
    Account,
    Mount,
    claim_basetemp,
    login,
    signup,
    sweep_stale_mounts,
    temp_roots_of_runs,
)
from support.server import NO_SIGNUP_LIMIT, ServerProcess  # noqa: E402


def _fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount") is None:
        return "fusermount is not installed (apt-get install fuse)"
    return None


@pytest.fixture(scope="session", autouse=True)
def _sweep_stale_mounts(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Unmount (lazily) every fuse.megadrive mount an earlier, interrupted test run left in pytest's temp dirs.

    Only pytest's own temp folders are swept (not all of /tmp, where someone may have mounted a drive by hand),
    and not those of another session still running.
    """
    basetemp = tmp_path_factory.getbasetemp()
    claim_basetemp(basetemp)
    sweep_stale_mounts(temp_roots_of_runs(basetemp))


@pytest.fixture(scope="session")
def fuse_available() -> None:
    why = _fuse_missing()
    if why and os.environ.get("CI"):
        pytest.fail(f"FUSE is required under CI: {why}")  # scripts/test.sh installs it as root
    if why:
        pytest.skip(f"FUSE tests need FUSE: {why}")


@pytest.fixture(scope="session")
def fuse_server(tmp_path_factory: pytest.TempPathFactory, fuse_available: None) -> Iterator[ServerProcess]:
    """One server for the modules that do not look at or tamper with the server's files."""
    server = ServerProcess(tmp_path_factory.mktemp("fuse-server") / "data", extra_args=NO_SIGNUP_LIMIT)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def module_account(fuse_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Account:
    return signup(fuse_server.url, tmp_path_factory.mktemp("acct"))


@pytest.fixture(scope="module")
def module_peer(module_account: Account, tmp_path_factory: pytest.TempPathFactory) -> Account:
    """A second client (another MEGADRIVE_HOME) of the module's account: sees only what the server has."""
    return login(module_account, tmp_path_factory.mktemp("peer"))


@pytest.fixture(scope="module")
def module_mount(module_account: Account, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    """One mount per module; tests work in their own subfolder (the `folder` fixture)."""
    m = Mount(module_account, tmp_path_factory.mktemp("mnt") / "drive")
    try:
        m.mount()
        yield m
    finally:
        m.unmount()


@pytest.fixture
def folder(module_mount: Mount, request: pytest.FixtureRequest) -> Path:
    """A fresh folder in the module's mount, named after the test."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:100]
    p = module_mount.path / name
    p.mkdir()
    return p


@pytest.fixture
def mounts() -> Iterator[Callable[[Account, Path], Mount]]:
    """Make mounts inside a test; every one is unmounted (and its child killed) at teardown."""
    made: list[Mount] = []

    def make(acct: Account, path: Path) -> Mount:
        m = Mount(acct, path)
        made.append(m)
        return m

    try:
        yield make
    finally:
        for m in reversed(made):
            m.unmount()


@pytest.fixture
def own_server(tmp_path: Path, fuse_available: None) -> Iterator[ServerProcess]:
    """A private server, for tests that look at, stop or tamper with the server's files."""
    server = ServerProcess(tmp_path / "server-data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def small_quota_server(tmp_path: Path, fuse_available: None) -> Iterator[ServerProcess]:
    """A private server whose accounts get a 3 MiB quota."""
    server = ServerProcess(tmp_path / "server-data", quota=3 << 20)
    try:
        yield server
    finally:
        server.stop()
