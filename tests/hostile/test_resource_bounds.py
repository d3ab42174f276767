"""Hostile: sizes and counts the server (or a caller) names must not decide what the client allocates.

A server answering with an endless body, a manifest claiming a huge size or chunk count, a change feed
page longer than asked for; a program truncating a file to a petabyte or writing at a huge offset.
Each is refused with a typed error before memory is spent on it.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support.accounts import Server, make_drive, new_home

from megadrive import format
from megadrive.api import Api
from megadrive.drive import MAX_FILE_SIZE
from megadrive.errors import FileTooLarge, IntegrityError, QuotaExceeded, ServerError

MiB = 1 << 20


class _Flood(http.server.BaseHTTPRequestHandler):
    """A 'server' whose every answer is 512 MiB of zeros, with or without a Content-Length."""

    protocol_version = "HTTP/1.1"
    declare = True

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        total = 512 * MiB
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.declare:
            self.send_header("Content-Length", str(total))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        block = b"0" * MiB
        try:
            for _ in range(total // MiB):
                if self.declare:
                    self.wfile.write(block)
                else:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
        except OSError:
            return  # the client hung up: that is the point


@pytest.fixture(params=[True, False], ids=["content-length", "chunked"])
def flood(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("Flood", (_Flood,), {"declare": request.param})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_an_endless_answer_is_refused_not_buffered(flood: str) -> None:
    api = Api(flood, "token")
    rss = psutil.Process().memory_info().rss
    for call in (lambda: api.get_chunk("ab" * 32), lambda: api.changes(0), lambda: api.get_manifest("cd" * 16, 1)):
        with pytest.raises(ServerError, match="answer"):
            call()
    assert psutil.Process().memory_info().rss - rss < 200 * MiB  # the 512 MiB answers were never held
    api.close()


def test_a_manifest_claiming_a_huge_size_is_refused() -> None:
    """Sealed by a key holder (a co-writer) even: the shape check comes before any allocation."""
    huge = format.Manifest("00" * 16, bytes(16), 1, 1 << 62, [bytes(32)], bytes(32))
    with pytest.raises(IntegrityError, match="chunk count"):
        huge.check_shape()
    raw = bytearray(huge.encode())
    raw[56:60] = (2**32 - 1).to_bytes(4, "big")  # the chunk count field claims 4 billion chunks
    with pytest.raises(IntegrityError, match="malformed manifest"):
        format.Manifest.decode(bytes(raw))


def test_truncate_and_writes_past_the_room_fail_at_once(server: Server, tmp_path: Path) -> None:
    d = make_drive(server.url, new_home(tmp_path))
    d.write_file("/f.bin", b"small")
    rss = psutil.Process().memory_info().rss
    for size in (999_999_999_999_999, MAX_FILE_SIZE + 1):
        w = d.open_write("/f.bin", truncate=False)
        with pytest.raises(FileTooLarge):
            w.truncate(size)
        with pytest.raises(FileTooLarge):
            w.pwrite(size, b"x")
        w.close()
    w = d.open_write("/f.bin", truncate=False)
    with pytest.raises(QuotaExceeded):  # 50 GiB quota: a 60 GiB hole is refused
        w.truncate(60 << 30)
    w.truncate(300 * MiB)  # a hole within the quota costs no memory until it is sealed
    assert w.size == 300 * MiB and w.pread(200 * MiB, 4) == bytes(4)
    w.close()
    assert psutil.Process().memory_info().rss - rss < 100 * MiB
    assert d.read_file("/f.bin") == b"small"  # nothing was committed by the refused calls
    d.close()
