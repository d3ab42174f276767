"""Fixtures for the WebDAV gateway tests: a real server, accounts made by `megadrive signup`, real gateways.

Helpers live in support/dav.py (imported by the test modules directly).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.dav import Account, GatewayProcess, signup  # noqa: E402
from support.server import NO_SIGNUP_LIMIT, ServerProcess  # noqa: E402


@pytest.fixture(scope="module")
def dav_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per test module; every test gets its own account on it."""
    server = ServerProcess(tmp_path_factory.mktemp("dav-server") / "data", extra_args=NO_SIGNUP_LIMIT)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A private server, for tests that look at (or tamper with) the server's files."""
    server = ServerProcess(tmp_path / "server-data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def account(dav_server: ServerProcess, tmp_path: Path) -> Account:
    return signup(dav_server.url, tmp_path)


@pytest.fixture
def gateways() -> Iterator[Callable[..., GatewayProcess]]:
    """Start `megadrive webdav` processes (logged in with the credentials of their gateway.json, or ``auth=``);
    all are stopped (SIGTERM, then kill) at teardown."""
    started: list[GatewayProcess] = []

    def start(home: Path, *args: str, listen: str = "127.0.0.1:0", **kw: Any) -> GatewayProcess:
        gw = GatewayProcess(home, *args, listen=listen, **kw)
        started.append(gw)
        return gw

    try:
        yield start
    finally:
        for gw in started:
            gw.stop()


@pytest.fixture
def gw(account: Account, gateways: Callable[..., GatewayProcess]) -> GatewayProcess:
    return gateways(account.home)


@pytest.fixture
def dav(gw: GatewayProcess) -> Iterator[httpx.Client]:
    with gw.client() as c:
        yield c


@pytest.fixture(scope="module")
def shared_account(dav_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Account:
    return signup(dav_server.url, tmp_path_factory.mktemp("shared-account"))


@pytest.fixture(scope="module")
def shared_gw(shared_account: Account) -> Iterator[GatewayProcess]:
    """One gateway for a module's property-based tests (hypothesis wants no function-scoped fixture)."""
    gw = GatewayProcess(shared_account.home)
    try:
        yield gw
    finally:
        gw.stop()
