"""The Falcon WSGI application: wiring, authentication, response headers.

Resources live in ``routes_*`` modules by area; this module builds the
shared :class:`ServerContext`, installs the middleware and the single error
mapping (errors.install_error_handlers) and registers the routes of
docs/SERVER_API.md.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import falcon

from . import auth, validate
from .auth import Limiter, SharedLimiter
from .config import MAX_RECORDS, SIGNUP_WINDOW, ServerConfig
from .errors import BadRequest, TooLarge, Unauthorized, install_error_handlers
from .store.chunks import ChunkStore
from .store.contract import MetaStore
from .store.records import Limits

log = logging.getLogger("megadrive.server")
TOUCH_EVERY = 60.0  # seconds: how fresh a session's "last used" is kept
TOUCHED_KEPT = 10_000


@dataclass
class ServerContext:
    """Everything a resource needs; one per app."""

    config: ServerConfig
    meta: MetaStore
    chunks: ChunkStore
    secret: bytes  # shared by every process on the store (fake prelogin salts)
    limiter: Limiter  # failed logins, per user name and per address (shared through the store)
    signup_limiter: Limiter | None  # signups per address (shared); None: no limit


class TokenAuth:
    """Fail-closed authentication middleware.

    Every resource needs a valid bearer token unless it sets
    ``public = True``; a new route is therefore protected by default.
    """

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self._touched: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        if resource is None or getattr(resource, "public", False):
            return
        header = req.get_header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not validate.is_token(token):
            raise Unauthorized("missing or malformed bearer token")
        digest = auth.token_hash(token)
        now = time.time()
        user_id = self.ctx.meta.user_for_token(digest, now)
        if user_id is None:
            raise Unauthorized("invalid or expired token")
        req.context.user_id = user_id
        req.context.token_hash = digest
        self._touch(digest, now)

    def _touch(self, digest: str, now: float) -> None:
        """A session's "last used", written at most once a minute per session (and process): not a write
        on every request."""
        with self._lock:
            if now - self._touched.get(digest, 0.0) < TOUCH_EVERY:
                return
            self._touched[digest] = now
            self._touched.move_to_end(digest)
            while len(self._touched) > TOUCHED_KEPT:
                self._touched.popitem(last=False)
        try:
            self.ctx.meta.touch_token(digest, now)
        except Exception as e:  # noqa: BLE001 - "last used" is a courtesy; it never fails a request
            log.warning("could not record a session's last use: %s", type(e).__name__)


class SecurityHeaders:
    """Responses carry per-user data: never cache them, never sniff their type."""

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "no-referrer")


access_log = logging.getLogger("megadrive.server.access")


class RefusalLog:
    """One INFO line per refused request (status 400 and up): method, route, status, error code.

    The route is the template (``/v1/nodes/{node_id}``), never the path, so a
    line names no node, chunk, share, link, record or user; never a body, a
    query or a header either. A path no route matches logs as ``-``.
    """

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        status = falcon.http_status_to_code(resp.status)
        if status < 400:
            return
        method = req.method if req.method.isalpha() and len(req.method) <= 16 else "?"
        code = resp.media.get("error") if isinstance(resp.media, dict) else None
        access_log.info(
            "refused %s %s %d %s", method, req.uri_template or "-", status, code if isinstance(code, str) else "-"
        )


CLOSE_CONNECTION_KEY = "megadrive.close_connection"
"""WSGI environ key of a callable asking the HTTP server to close the
connection after this response (set by serve.py's cheroot gateway)."""


class BodyGuard:
    """Never leave part of a request body on a kept-alive connection.

    cheroot drains an unread Content-Length body itself (without bound) but
    not a chunked one, whose remainder would then be parsed as the next
    request on the connection: a desync that a shared proxy connection turns
    into request smuggling. So the remainder of a chunked body is drained
    here, up to MAX_DRAIN_BYTES. If that is not enough, if the chunked
    framing is broken, if an unread Content-Length body is larger than that,
    or if a request carries both Content-Length and Transfer-Encoding, the
    connection is closed after the response instead.
    """

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.get_header("Transfer-Encoding") is not None and req.get_header("Content-Length") is not None:
            req.context.close_connection = True
            raise BadRequest("Content-Length and Transfer-Encoding together are not accepted")

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        close = bool(req.context.get("close_connection", False))
        if "chunked" in (req.get_header("Transfer-Encoding") or "").lower():
            try:
                close |= validate.drain(req.stream, validate.MAX_DRAIN_BYTES) and bool(req.stream.read(1))
            except (ValueError, OSError):  # broken chunked framing
                close = True
        else:
            close |= getattr(req.env.get("wsgi.input"), "remaining", 0) > validate.MAX_DRAIN_BYTES
        if not close:
            return
        hook = req.env.get(CLOSE_CONNECTION_KEY)
        if callable(hook):
            hook()
        elif resp.status != falcon.HTTP_413:
            # Without the hook (another WSGI server), a 413 is the status on
            # which servers commonly close the connection.
            error = TooLarge("request body too large")
            resp.status = error.status
            resp.text = None
            resp.data = None
            resp.media = error.body()


def prepare_data_dir(config: ServerConfig) -> None:
    """Create the data directory owner-only (if there is one); warn if an existing one is not."""
    data_dir = config.data_dir
    if data_dir is None:
        return
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = data_dir.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("data directory %s is accessible to other users (mode %o); chmod 700 it", data_dir, mode)


def store_limits(config: ServerConfig) -> Limits:
    """What the metadata store enforces per account, from the server's settings."""
    return Limits(quota=config.quota, max_nodes=config.max_nodes, max_records=MAX_RECORDS)


def open_stores(config: ServerConfig) -> tuple[MetaStore, ChunkStore]:
    """Open the stores ``config`` names (creating the data directory, 0700, if it has one)."""
    from .store.urls import open_chunks, open_meta

    prepare_data_dir(config)
    meta = open_meta(config.meta_location, store_limits(config))
    try:
        return meta, open_chunks(config.chunks_location)
    except BaseException:
        meta.close()
        raise


def shared_secret(config: ServerConfig, meta: MetaStore) -> bytes:
    """The prelogin secret every process on ``meta`` uses: stored in the database, seeded
    (once) from the data folder's ``server.secret`` if there is one, else at random."""
    path = config.secret_path
    seed = auth.load_or_create_secret(path) if path is not None else secrets.token_bytes(auth.SECRET_BYTES)
    return meta.shared_secret(seed)


def build_app(config: ServerConfig, metastore: MetaStore, chunkstore: ChunkStore) -> falcon.App:
    """The WSGI app over the given stores (see :func:`open_stores`).

    ``metastore`` must enforce the limits of ``config`` (see :func:`store_limits`).
    """
    from . import routes_account, routes_chunks, routes_nodes, routes_records, routes_sharing, routes_web

    prepare_data_dir(config)
    if metastore.limits != store_limits(config):
        raise ValueError("the metadata store's limits differ from the server configuration")
    ctx = ServerContext(
        config=config,
        meta=metastore,
        chunks=chunkstore,
        secret=shared_secret(config, metastore),
        limiter=SharedLimiter(metastore, "login", config.login_max_failures, config.login_window),
        signup_limiter=(
            SharedLimiter(
                metastore,
                "signup",
                config.signup_rate,
                SIGNUP_WINDOW,
                message="too many signups from this address, retry later",
            )
            if config.signup_rate
            else None
        ),
    )
    # process_response runs last-to-first: RefusalLog sees the status BodyGuard may still set.
    middleware: list[Any] = [RefusalLog(), BodyGuard(), SecurityHeaders(), TokenAuth(ctx)]
    app = falcon.App(middleware=middleware)
    # ASCII-only JSON out: whatever a string holds, its answer can be encoded. (Input
    # refuses lone surrogates, validate.parse_json_object; a database written before
    # that rule may still hold one, and must not turn every answer naming it into a 500.)
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(
        dumps=functools.partial(json.dumps, ensure_ascii=True)
    )
    install_error_handlers(app)
    routes_account.register(app, ctx)
    routes_nodes.register(app, ctx)
    routes_chunks.register(app, ctx)
    routes_sharing.register(app, ctx)
    routes_records.register(app, ctx)
    routes_web.register(app, ctx)
    return app
