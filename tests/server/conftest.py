"""Fixtures for the server tests: real server processes on port 0."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.engine_fixtures import pg_cluster, pg_database, pg_template, seaweed  # noqa: E402,F401 - session engines
from support.server import ServerProcess  # noqa: E402
from support.server_api import User, new_user  # noqa: E402

# One MiB per account: small enough that quota tests need only a few chunks.
SHARED_QUOTA = 1 << 20


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the API tests that do not fail logins or run GC.

    Tests on it use fresh accounts, so they cannot see each other.
    """
    # Every test signs up fresh accounts from 127.0.0.1, far more than the
    # default 10 per hour: the signup limit is off here (tested on its own servers).
    server = ServerProcess(
        tmp_path_factory.mktemp("shared-server"), quota=SHARED_QUOTA, extra_args=["--signup-limit", "0"]
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server_url(shared_server: ServerProcess) -> str:
    return shared_server.url


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory for a private server (own data dir, options); all stopped at teardown."""
    started: list[ServerProcess] = []

    def make(quota: int | None = SHARED_QUOTA, *args: str, name: str = "srv") -> ServerProcess:
        server = ServerProcess(tmp_path / f"{name}{len(started)}", quota=quota, extra_args=args)
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def alice(server_url: str) -> Iterator[User]:
    user = new_user(server_url)
    yield user
    user.client.close()


@pytest.fixture
def bob(server_url: str) -> Iterator[User]:
    user = new_user(server_url)
    yield user
    user.client.close()

