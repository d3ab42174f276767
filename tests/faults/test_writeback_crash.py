"""Write-back across a crash at the worst moment: the uploader committed a saved version, a newer one was
saved on top of it, and the process died before the first was settled in the journal.

The child process stops dead (``os._exit``, as a SIGKILL or a power cut would) at exactly that point;
the next start must put the newer version on top of the committed one, not keep it as a conflicted copy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.accounts import make_drive
from support.server import ServerProcess

from megadrive.drive import Drive

CHILD = r"""
import os, sys
from pathlib import Path
from megadrive.drive import Drive
from megadrive.journal import Journal

d = Drive.open(Path(sys.argv[1]))
w = d.open_write("/doc.txt", journal=True)
w.write(b"first version")
w.save()
w.close()


def crash_before_settling(self, committed):
    # The server has "first version" now; a program saves again on top of it, then the process dies.
    w2 = d.open_write("/doc.txt", journal=True)
    w2.write(b"second version, saved on top")
    w2.save()
    w2.close()
    os._exit(9)


Journal.settle = crash_before_settling  # the crash point: after the commit, before the journal hears of it
d.replay_journal()
sys.exit("the crash point was never reached")
"""


def test_a_version_saved_on_top_of_one_committed_just_before_a_crash_goes_on_top(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "server")
    try:
        home = tmp_path / "home"
        home.mkdir()
        first = make_drive(server.url, home)
        user = first.ctx.session.user
        first.close()
        r = subprocess.run([sys.executable, "-c", CHILD, str(home)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 9, r.stderr[-2000:]

        d = Drive.open(home)
        try:
            assert d.stat("/doc.txt").version == 1  # the server has the first, the journal the second
            assert d.read_file("/doc.txt") == b"second version, saved on top"  # what this machine shows
            report = d.replay_journal()
            assert report == [f"committed node {d.stat('/doc.txt').node_id[:12]} (version 2)"], report
            assert d.pending_uploads() == 0
            assert sorted(e.name for e in d.listdir("/")) == ["doc.txt"]  # no conflicted copy
        finally:
            d.close()
        fresh = make_drive(server.url, tmp_path / "other", user, signup=False)
        try:
            assert fresh.read_file("/doc.txt") == b"second version, saved on top"
            assert fresh.stat("/doc.txt").version == 2
        finally:
            fresh.close()
    finally:
        server.stop()
