"""The kernel's page cache: kept for an unchanged file, dropped for a changed one.

Made deterministic without timing the reads: the server process is paused
(SIGSTOP). A read that reaches the mount process then blocks (the mount
fetches the manifest from the server for every first read of an open file),
while a read the kernel answers from its page cache returns at once. A file
never read before blocks, which shows the pause is effective.

Some machines (this test's VM among them) drop the whole page cache every
~20 s for reasons of their own; local files lose their cached pages too. So
a single attempt could be unlucky: a few attempts are made, and one answered
without the mount process is enough. Without keep_cache none ever is.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from support.mounts import Account, Mount, drive_of, login, signup
from support.server import ServerProcess

MiB = 1 << 20


@contextmanager
def paused(server: ServerProcess) -> Iterator[None]:
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


class Reader(threading.Thread):
    """Read a whole file in the background (a read that reaches the paused server blocks)."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.data: bytes | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.data = self.path.read_bytes()
        except BaseException as e:  # reported by the test
            self.error = e


def read_within(path: Path, timeout: float) -> tuple[bool, Reader]:
    r = Reader(path)
    r.start()
    r.join(timeout)
    return not r.is_alive(), r


def test_unchanged_file_is_read_from_the_page_cache(own_server: ServerProcess, tmp_path: Path,
                                                    mounts: Callable[[Account, Path], Mount]) -> None:
    acct = signup(own_server.url, tmp_path)
    peer = login(acct, tmp_path)
    rng = random.Random(5)
    a, b = rng.randbytes(3 * MiB + 5), rng.randbytes(2 * MiB)
    with drive_of(peer) as d:  # written by another client: the mount has never seen these bytes
        d.write_file("/a.bin", a)
        d.write_file("/b.bin", b)
    m = mounts(acct, tmp_path / "mnt").mount()
    m.wait_visible("a.bin")
    m.wait_visible("b.bin")

    # the method works: a file never read needs the server, and blocks while it is paused
    with paused(own_server):
        done, rb = read_within(m.path / "b.bin", 2.0)
        assert not done, "a first read was answered without the server"
    rb.join(60)
    assert rb.error is None and rb.data == b

    outcomes = []
    for _ in range(3):
        assert (m.path / "a.bin").read_bytes() == a  # through the mount process (or the cache)
        with paused(own_server):
            done, ra = read_within(m.path / "a.bin", 2.0)
        ra.join(60)
        assert ra.error is None and ra.data == a, ra.error
        outcomes.append(done)
        if done:
            break
    assert any(outcomes), f"every second read of an unchanged file went to the server: {outcomes}"


def test_changed_file_is_not_read_from_a_stale_page_cache(own_server: ServerProcess, tmp_path: Path,
                                                          mounts: Callable[[Account, Path], Mount]) -> None:
    acct = signup(own_server.url, tmp_path)
    peer = login(acct, tmp_path)
    v1 = b"1" * (MiB + 100)
    v2 = b"2" * (MiB + 100)  # same size: only the version tells them apart
    with drive_of(peer) as d:
        d.write_file("/f", v1, mtime_ns=1_000_000_000 * 10**9)
    m = mounts(acct, tmp_path / "mnt").mount()
    f = m.wait_visible("f")
    assert f.read_bytes() == v1
    assert f.read_bytes() == v1
    with drive_of(peer) as d:
        d.write_file("/f", v2, mtime_ns=1_000_000_000 * 10**9)  # same size and mtime, too
        d.write_file("/marker", b"")  # the change feed is ordered: once the mount sees this, it has seen v2
    m.wait_visible("marker")
    assert f.read_bytes() == v2
    fd = os.open(f, os.O_RDONLY)
    try:
        assert os.pread(fd, 10, MiB) == b"2" * 10
    finally:
        os.close(fd)

