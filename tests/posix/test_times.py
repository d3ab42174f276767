"""utimensat and the times every change sets: atime, mtime, ctime of a node and of its folder
(pjdfstest utimensat/ and the ctime checks of every category)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from support.mounts import Mount, drive_of


def test_atime_and_mtime_are_kept_apart(here: Path, posix_mount: Mount) -> None:
    f = here / "f"
    f.write_bytes(b"x")
    os.utime(f, ns=(1_000_000_000_123, 2_000_000_000_456))
    st = os.stat(f)
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_000_123, 2_000_000_000_456)
    with drive_of(posix_mount.acct) as d:
        e = d.stat(f"/{here.name}/f")
    assert (e.atime_ns, e.mtime_ns) == (1_000_000_000_123, 2_000_000_000_456)


def test_attribute_changes_set_ctime_not_mtime(here: Path) -> None:
    f = here / "f"
    f.write_bytes(b"x")
    os.utime(f, ns=(10**18, 10**18))
    before = os.stat(f)
    time.sleep(0.05)
    f.chmod(0o600)
    after = os.stat(f)
    assert after.st_mtime_ns == before.st_mtime_ns == 10**18
    assert after.st_ctime_ns > time.time_ns() - 10 * 10**9  # now, not the mtime set above


def test_folder_times_follow_its_entries(here: Path) -> None:
    os.utime(here, ns=(10**9, 10**9))
    assert os.stat(here).st_mtime_ns == 10**9
    for change in (lambda: (here / "f").write_bytes(b"x"), lambda: os.rename(here / "f", here / "g"),
                   lambda: os.unlink(here / "g"), lambda: os.mkdir(here / "d")):
        os.utime(here, ns=(10**9, 10**9))
        change()
        st = os.stat(here)
        assert st.st_mtime_ns > 10**9 and st.st_ctime_ns >= st.st_mtime_ns
