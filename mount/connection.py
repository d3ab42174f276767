"""The gateway's HTTP connections: how much a client may send, and how slowly, before the app sees it.

cheroot, left to itself, reads request headers of any size; waits up to its
``timeout`` for *each* read, so a client sending a byte every few seconds
holds a worker thread for ever; after an early answer (a 401, a 409) reads
the unread rest of a request body into memory in one call, whatever its
Content-Length says; reads a chunked body one whole chunk at a time, whatever
size the chunk announces; and does the TLS handshake in its one accept loop,
so a client that connects and stays silent stalls every other client. Here:

- the request line and headers together are at most ``MAX_HEADER_BYTES``
  (414 for an over-long request line, 431 for the headers);
- ``Content-Length`` is plain digits, and never comes with
  ``Transfer-Encoding`` (400);
- the time spent waiting for a client is bounded, as Apache's mod_reqtimeout
  does it: the TLS handshake and the headers within ``HEADER_SECONDS``; a
  body gets ``BODY_GRACE_SECONDS`` and one more second for every
  ``MIN_BODY_RATE`` bytes (credit capped at ``BODY_MAX_CREDIT_SECONDS``).
  Only waiting for the client counts, never time the gateway spends working
  (uploading to the storage server). A client over its time gets 408 (or, in
  a body, :class:`ClientTooSlow` raised from ``wsgi.input``) and the
  connection is closed;
- a chunked body is read in pieces no larger than the reader asked for, chunk
  size lines and trailers are bounded (:class:`ChunkedBody`);
- an answer sent before the body was read closes the connection, unless at
  most ``DRAIN_BYTES`` of it remain (read and dropped, so the connection can
  be kept);
- the TLS handshake runs on a worker thread (:class:`DeferredTLSAdapter`),
  and is cut off after ``HEADER_SECONDS`` however its bytes trickle in.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from contextlib import suppress
from typing import Any

from cheroot import errors, wsgi
from cheroot.makefile import MakeFile, StreamReader, StreamWriter
from cheroot.server import HTTPConnection, HTTPRequest, KnownLengthRFile
from cheroot.ssl.builtin import BuiltinSSLAdapter

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
HEADER_SECONDS = 10.0
BODY_GRACE_SECONDS = 20.0
MIN_BODY_RATE = 500  # bytes per second
BODY_MAX_CREDIT_SECONDS = 60.0
DRAIN_BYTES = 64 * 1024
MAX_CHUNK_LINE = 4096  # a chunk-size line with its extensions, or one trailer line
MAX_TRAILER_LINES = 64
MAX_CONTENT_LENGTH_DIGITS = 19  # < 2**63


class ClientTooSlow(TimeoutError):
    """The client did not send its request fast enough."""

    def __init__(self) -> None:
        super().__init__("timed out")  # the words cheroot looks for to answer 408


class MalformedBody(ValueError):
    """The request body is not valid chunked transfer coding, or ended before its end."""


class Pace:
    """Seconds a client may still keep us waiting, earning more as its bytes arrive."""

    def __init__(self, seconds: float, rate: float = 0.0, cap: float | None = None) -> None:
        self.budget = seconds
        self.rate = rate
        self.cap = seconds if cap is None else cap

    def spent(self, waited: float, received: int) -> None:
        earned = received / self.rate if self.rate else 0.0
        self.budget = min(self.budget - waited + earned, self.cap)

    @classmethod
    def headers(cls) -> Pace:
        return cls(HEADER_SECONDS)

    @classmethod
    def body(cls) -> Pace:
        return cls(BODY_GRACE_SECONDS, MIN_BODY_RATE, BODY_MAX_CREDIT_SECONDS)


class PacedSocketIO(socket.SocketIO):
    """The raw reader under a connection's buffered reader: every wait is charged to the current ``pace``."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        super().__init__(sock, "rb")
        self.timeout = timeout
        self.pace: Pace | None = None
        self.too_slow = False

    def readinto(self, b: Any) -> int | None:
        pace = self.pace
        if pace is None:
            return super().readinto(b)
        if pace.budget <= 0:
            self.too_slow = True
            raise ClientTooSlow
        sock = self._sock  # type: ignore[attr-defined]
        sock.settimeout(min(self.timeout, pace.budget))
        start = time.monotonic()
        try:
            n = super().readinto(b)
        except TimeoutError:
            pace.spent(time.monotonic() - start, 0)
            if pace.budget <= 0:
                self.too_slow = True
                raise ClientTooSlow from None
            raise
        finally:
            with suppress(OSError):  # (closed meanwhile)
                sock.settimeout(self.timeout)
        pace.spent(time.monotonic() - start, n or 0)
        return n


class PacedReader(StreamReader):  # type: ignore[misc]
    """cheroot's buffered socket reader over a :class:`PacedSocketIO`."""

    def __init__(self, sock: socket.socket, bufsize: int, timeout: float) -> None:
        self.paced = PacedSocketIO(sock, timeout)
        super(StreamReader, self).__init__(self.paced, bufsize)
        self.bytes_read = 0


class ChunkedBody:
    """``wsgi.input`` for ``Transfer-Encoding: chunked``: holds no more than what ``read`` asked for."""

    def __init__(self, rfile: Any) -> None:
        self.rfile = rfile
        self.left = 0  # bytes still to come in the current chunk
        self.done = False

    def _line(self) -> bytes:
        line = self.rfile.readline(MAX_CHUNK_LINE + 1)
        if not line:
            raise MalformedBody("the request body ended before its last chunk")
        if not line.endswith(b"\r\n"):
            raise MalformedBody("malformed chunked request body (a chunk-size or trailer line is too long)")
        return line  # type: ignore[no-any-return]

    def _next_chunk(self) -> None:
        size = self._line().split(b";", 1)[0].strip()
        if not size or len(size) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in size):
            raise MalformedBody("malformed chunked request body (bad chunk size)")
        self.left = int(size, 16)
        if self.left == 0:
            for _ in range(MAX_TRAILER_LINES + 1):
                if self._line() == b"\r\n":
                    self.done = True
                    return
            raise MalformedBody("malformed chunked request body (too many trailer lines)")

    def read(self, size: int | None = -1) -> bytes:
        want = None if size is None or size < 0 else size
        out: list[bytes] = []
        got = 0
        while not self.done and (want is None or got < want):
            if self.left == 0:
                self._next_chunk()
                continue
            n = self.left if want is None else min(self.left, want - got)
            data = self.rfile.read(min(n, 1 << 20))
            if not data:
                raise MalformedBody("the request body ended before its last chunk")
            self.left -= len(data)
            got += len(data)
            out.append(data)
            if self.left == 0 and self.rfile.read(2) != b"\r\n":
                raise MalformedBody("malformed chunked request body (no CRLF after a chunk)")
        return b"".join(out)

    def readline(self, size: int | None = -1) -> bytes:
        limit = DRAIN_BYTES if size is None or size < 0 else size
        out = bytearray()
        while len(out) < limit:
            c = self.read(1)
            if not c:
                break
            out += c
            if c == b"\n":
                break
        return bytes(out)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = []
        while line := self.readline():
            lines.append(line)
        return lines

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def close(self) -> None:
        pass


class BoundedRequest(HTTPRequest):  # type: ignore[misc]
    conn: BoundedConnection

    def parse_request(self) -> None:
        paced = self.conn.rfile.paced
        paced.pace = Pace.headers()
        try:
            super().parse_request()
        finally:
            paced.pace = None

    def simple_response(self, status: str, msg: str = "") -> None:
        """cheroot's own answers (malformed request line or headers, 408, 414, 431...), logged."""
        text = "".join(c for c in str(msg)[:120] if c.isprintable())
        log.warning("refused request: %s%s", status, f": {text}" if text else "")
        super().simple_response(status, msg)

    def read_request_headers(self) -> bool:
        try:
            if not super().read_request_headers():
                return False
        except errors.MaxSizeExceeded:
            self.simple_response("431 Request Header Fields Too Large",
                                 f"The request headers exceed {MAX_HEADER_BYTES} bytes.")
            self.close_connection = True
            return False
        length = self.inheaders.get(b"Content-Length")
        problem = None
        if length is not None and not (length.isdigit() and len(length) <= MAX_CONTENT_LENGTH_DIGITS):
            problem = "Malformed Content-Length header."
        elif length is not None and self.inheaders.get(b"Transfer-Encoding"):
            problem = "Content-Length and Transfer-Encoding together."
        if problem:
            self.simple_response("400 Bad Request", problem)
            self.close_connection = True
            return False
        return True

    def respond(self) -> None:
        """cheroot's respond() with a paced body, and a chunked body read in bounded pieces."""
        paced = self.conn.rfile.paced
        paced.pace = Pace.body()
        try:
            if self.chunked_read:
                self.rfile = ChunkedBody(self.conn.rfile)
            else:
                self.rfile = KnownLengthRFile(self.conn.rfile, int(self.inheaders.get(b"Content-Length", 0)))
            self.server.gateway(self).respond()
            if self.ready:
                self.ensure_headers_sent()
            if self.chunked_write:
                self.conn.wfile.write(b"0\r\n\r\n")
        finally:
            paced.pace = None

    def send_headers(self) -> None:
        """Close rather than read an unread body into memory (cheroot would read all of it in one call)."""
        if self.conn.rfile.paced.too_slow:
            self.close_connection = True
        elif isinstance(self.rfile, ChunkedBody):
            self.close_connection = self.close_connection or not self.rfile.done
        elif getattr(self.rfile, "remaining", 0) > DRAIN_BYTES:
            self.close_connection = True
        super().send_headers()


class BoundedConnection(HTTPConnection):  # type: ignore[misc]
    RequestHandlerClass = BoundedRequest
    rfile: PacedReader

    def __init__(self, server: Any, sock: Any, makefile: Any = MakeFile) -> None:
        def files(s: Any, mode: str = "r", bufsize: int = -1) -> Any:
            return PacedReader(s, bufsize, server.timeout) if "r" in mode else makefile(s, mode, bufsize)

        super().__init__(server, sock, files)
        self.tls_pending = isinstance(server.ssl_adapter, DeferredTLSAdapter)

    def communicate(self) -> bool:
        if self.tls_pending and not self._handshake():
            return False
        return super().communicate()  # type: ignore[no-any-return]

    def _handshake(self) -> bool:
        """The TLS handshake, on this worker thread and within HEADER_SECONDS."""
        adapter: DeferredTLSAdapter = self.server.ssl_adapter
        raw = self.socket
        raw.settimeout(HEADER_SECONDS)
        spare = raw.dup()  # a failed handshake closes (and detaches) raw: the connection is ended through this
        watchdog = threading.Timer(HEADER_SECONDS, _shut, args=(spare,))  # a byte at a time is no way around it
        watchdog.daemon = True
        watchdog.start()
        try:
            sock, env = adapter.handshake(raw)
        except errors.NoSSLError:
            self.socket = spare
            msg = b"The client sent a plain HTTP request, but this server only speaks HTTPS on this port."
            with suppress(OSError):
                spare.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n"
                              b"Connection: close\r\n\r\n%s" % (len(msg), msg))
            return False
        except (errors.FatalSSLAlert, OSError):
            self.socket = spare
            return False
        finally:
            watchdog.cancel()
        spare.close()
        sock.settimeout(self.server.timeout)
        self.socket = sock
        self.ssl_env = env
        self.rfile = PacedReader(sock, self.rbufsize, self.server.timeout)
        self.wfile = StreamWriter(sock, "wb", self.wbufsize)
        self.tls_pending = False
        return True


def _shut(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class DeferredTLSAdapter(BuiltinSSLAdapter):  # type: ignore[misc]
    """cheroot's TLS adapter, with the handshake moved out of the accept loop (see BoundedConnection)."""

    def wrap(self, sock: Any) -> tuple[Any, dict[str, Any]]:
        return sock, {}

    def handshake(self, sock: Any) -> tuple[Any, dict[str, Any]]:
        return super().wrap(sock)  # type: ignore[no-any-return]


class BoundedServer(wsgi.Server):  # type: ignore[misc]
    """cheroot's WSGI server with the bounds above."""

    ConnectionClass = BoundedConnection
    max_request_header_size = MAX_HEADER_BYTES
