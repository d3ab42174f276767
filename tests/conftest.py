"""Shared fixtures: a real server process on port 0, accounts, a Drive.

Like borg's autouse ``clean_env``: every test gets its own MEGADRIVE_HOME and
the KDF at its floor (INTERACTIVE), which only the tests choose.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.accounts import Server, make_drive  # noqa: E402
from support.server import running_server  # noqa: E402

from megadrive.drive import Drive  # noqa: E402


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEGADRIVE_KDF", "interactive")
    monkeypatch.setenv("MEGADRIVE_HOME", str(tmp_path / "client-home"))
    monkeypatch.delenv("MEGADRIVE_PASSWORD", raising=False)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    data = tmp_path / "server-data"
    with running_server(data) as url:
        yield Server(url, data)


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[Server]:
    """A server whose accounts get a 3 MiB quota."""
    data = tmp_path / "server-data"
    with running_server(data, quota=3 << 20) as url:
        yield Server(url, data)


@pytest.fixture
def drive(server: Server, tmp_path: Path) -> Iterator[Drive]:
    d = make_drive(server.url, Path(os.environ["MEGADRIVE_HOME"]))
    yield d
    d.close()
