"""Running the server: in a background thread, in the foreground, or one GC pass.

``start`` is what tests and embedding code use; ``serve_forever`` is the CLI
(``python -m megadrive.server``); ``run_gc`` is ``megadrive server gc``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from cheroot import wsgi

from . import gc, testhooks
from .app import CLOSE_CONNECTION_KEY, build_app, open_stores
from .config import ServerConfig
from .store.chunks import ChunkStore
from .store.contract import MetaStore

log = logging.getLogger("megadrive.server")

NUM_THREADS = 16
SOCKET_TIMEOUT = 30  # seconds a connection may stall mid-request
MAX_HEADER_BYTES = 64 * 1024


class _Gateway(wsgi.Gateway_10):
    """cheroot's WSGI 1.0 gateway, plus a way for the app to close the connection.

    The app (app.BodyGuard) calls ``environ[CLOSE_CONNECTION_KEY]()`` when
    the request body cannot be consumed safely, so the next bytes on the
    socket are never parsed as another request.
    """

    def get_environ(self) -> dict[str, Any]:  # type: ignore[override]  # cheroot stub says None
        env: dict[str, Any] = super().get_environ()  # type: ignore[func-returns-value]
        req = self.req

        def close_connection() -> None:
            req.close_connection = True

        env[CLOSE_CONNECTION_KEY] = close_connection
        return env


@dataclass
class RunningServer:
    """A server listening in a background thread; ``stop()`` shuts it down."""

    url: str
    config: ServerConfig
    _server: wsgi.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _gc: gc.GCThread | None = field(repr=False)
    _meta: MetaStore = field(repr=False)
    _chunks: ChunkStore = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Stop accepting, finish in-flight requests, stop GC, close the stores. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._server.stop()
        self._thread.join(15)
        if self._gc is not None:
            self._gc.stop()
        self._meta.close()
        self._chunks.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _url(scheme: str, host: str, port: int) -> str:
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def start(config: ServerConfig) -> RunningServer:
    """Bind (port 0 picks a free port), start serving in a thread and start GC."""
    testhooks.warn_if_armed()
    meta, chunks = open_stores(config)
    try:
        app = build_app(config, meta, chunks)
        server = wsgi.Server(
            (config.host, config.port),
            app,
            numthreads=NUM_THREADS,
            server_name="megadrive",
            timeout=SOCKET_TIMEOUT,
            max=NUM_THREADS,
            request_queue_size=64,
        )
        server.gateway = _Gateway
        server.max_request_header_size = MAX_HEADER_BYTES
        # cheroot's select loop only notices stop() after this many seconds.
        server.expiration_interval = 0.1
        scheme = "http"
        if config.tls_cert is not None and config.tls_key is not None:
            from cheroot.ssl.builtin import BuiltinSSLAdapter

            server.ssl_adapter = BuiltinSSLAdapter(str(config.tls_cert), str(config.tls_key))
            scheme = "https"
        server.prepare()
    except BaseException:
        meta.close()
        chunks.close()
        raise
    host, port = server.bind_addr[:2]
    thread = threading.Thread(target=server.serve, name="megadrive-http", daemon=True)
    thread.start()
    collector = None
    if config.gc_interval > 0:
        collector = gc.GCThread(meta, chunks, grace=config.gc_grace, interval=config.gc_interval)
        collector.start()
    return RunningServer(_url(scheme, host, port), config, server, thread, collector, meta, chunks)


def serve_forever(config: ServerConfig, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly. Call from the main thread."""
    done = threading.Event()

    def _signalled(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {sig: signal.signal(sig, _signalled) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        running = start(config)
        try:
            log.info("listening on %s", running.url)
            if on_ready is not None:
                on_ready(running.url)
            while not done.wait(1.0):
                if not running._thread.is_alive():
                    raise RuntimeError("HTTP server thread died")
        finally:
            running.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_gc(config: ServerConfig, grace: float | None = None) -> dict[str, Any]:
    """One collection pass over the stores of ``config`` (safe next to running servers)."""
    meta, chunks = open_stores(config)
    try:
        return gc.collect(meta, chunks, config.gc_grace if grace is None else grace)
    finally:
        meta.close()
        chunks.close()
