"""Acceptance: the WebDAV conformance suite litmus passes completely against a fresh gateway, logged in."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support.dav import GatewayProcess

LITMUS = shutil.which("litmus") or "/usr/bin/litmus"
SUITES = ("basic", "copymove", "props", "locks", "http")
SUMMARY_RE = re.compile(r"<- summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed")


@pytest.mark.skipif(shutil.which("litmus") is None and not os.environ.get("CI"),
                    reason="litmus is not installed (scripts/test.sh installs it); under CI its absence fails")
def test_litmus_all_suites_pass(gw: GatewayProcess, tmp_path: Path) -> None:
    r = subprocess.run([LITMUS, gw.url, gw.user, gw.password], capture_output=True, text=True, timeout=240,
                       env={"PATH": "/usr/bin:/bin", "TESTS": " ".join(SUITES)}, cwd=tmp_path)  # its debug.log
    out = r.stdout + r.stderr
    summaries = {m.group(1): tuple(int(x) for x in m.groups()[1:]) for m in SUMMARY_RE.finditer(out)}
    assert set(summaries) == set(SUITES), f"missing suites in litmus output:\n{out}"
    run = sum(s[0] for s in summaries.values())
    passed = sum(s[1] for s in summaries.values())
    failed = sum(s[2] for s in summaries.values())
    assert (run, passed, failed) == (104, 104, 0), f"litmus: {run} run, {passed} passed, {failed} failed\n{out}"
    assert r.returncode == 0, out
    assert "Traceback" not in gw.stderr(), gw.stderr()
