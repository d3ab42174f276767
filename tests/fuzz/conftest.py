"""Fuzzing of the server API: one real server process per module, a fuzzing account and a
marker account whose secret bytes must never reach the fuzzer.

Helpers and the world the fuzzer plays in live in support/fuzzworld.py.
"""

from __future__ import annotations

import pytest
from support.fuzzworld import ACCEPTED, STATS  # noqa: E402


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not STATS:
        return
    total = sum(STATS.values())
    terminalreporter.write_line(f"server fuzz: {total} requests ({len(STATS)} routes), sent / accepted (2xx):")
    for route, n in sorted(STATS.items()):
        terminalreporter.write_line(f"  {n:6d} {ACCEPTED[route]:6d}  {route}")
