"""Fuzzing of the server API: one real server process per module, a fuzzing account and a
marker account whose secret bytes must never reach the fuzzer.

Helpers and the world the fuzzer plays in live in fuzzworld.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
for _path in (str(_TESTS), str(_TESTS / "server")):  # serverproc.py; the small HTTP helpers of mdserver_helpers.py
    if _path not in sys.path:
        sys.path.insert(0, _path)

from fuzzworld import ACCEPTED, STATS  # noqa: E402


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not STATS:
        return
    total = sum(STATS.values())
    terminalreporter.write_line(f"server fuzz: {total} requests ({len(STATS)} routes), sent / accepted (2xx):")
    for route, n in sorted(STATS.items()):
        terminalreporter.write_line(f"  {n:6d} {ACCEPTED[route]:6d}  {route}")
