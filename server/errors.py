"""Typed server errors and their one mapping to JSON responses.

Every refusal the server makes is a :class:`ServerError` subclass carrying
its HTTP status and the stable ``error`` code of docs/SERVER_API.md. The
stores raise them too, so a rule is enforced where the data lives and the
HTTP layer never has to translate. :func:`install_error_handlers` is the only
place where exceptions become response bodies: it also turns Falcon's own
errors (unknown route, bad method) into the same JSON shape and answers any
unexpected exception with a logged, trace-free 500.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover - typing only
    import falcon

log = logging.getLogger("megadrive.server")


class ServerError(Exception):
    """Base of every deliberate refusal; ``extra`` fields join the JSON body."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    default_message: ClassVar[str] = "internal server error"

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or self.default_message
        self.extra: dict[str, Any] = extra
        self.headers: dict[str, str] = {}
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        """The JSON object sent to the client."""
        return {"error": self.code, "message": self.message, **self.extra}


class BadRequest(ServerError):
    status = 400
    code = "bad_request"
    default_message = "bad request"


class Unauthorized(ServerError):
    status = 401
    code = "unauthorized"
    default_message = "authentication required"

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.headers["WWW-Authenticate"] = "Bearer"


class Forbidden(ServerError):
    status = 403
    code = "forbidden"
    default_message = "forbidden"


class NotFound(ServerError):
    status = 404
    code = "not_found"
    default_message = "not found"


class MethodNotAllowed(ServerError):
    status = 405
    code = "method_not_allowed"
    default_message = "method not allowed"


class Exists(ServerError):
    status = 409
    code = "exists"
    default_message = "already exists"


class Conflict(ServerError):
    status = 409
    code = "conflict"
    default_message = "conflict"


class MissingChunks(ServerError):
    status = 409
    code = "missing_chunks"
    default_message = "the version names chunks that are not stored"

    def __init__(self, missing: list[str]) -> None:
        super().__init__(None, missing=missing)
        self.missing = missing


class PreconditionFailed(ServerError):
    status = 412
    code = "precondition_failed"
    default_message = "If-Match does not match the current version"

    def __init__(self, version: int) -> None:
        super().__init__(None, version=version)
        self.version = version


class StaleMeta(ServerError):
    """A node's ``meta`` built on a state the node has left: its ``seq`` moved on.

    Answers ``base_seq`` on PATCH and ``meta_seq`` on a commit; the body carries
    the node's current ``seq`` so the client re-reads and retries.
    """

    status = 412
    code = "stale_meta"
    default_message = "the node changed since the state this meta was based on; read it again"

    def __init__(self, seq: int) -> None:
        super().__init__(None, seq=seq)
        self.seq = seq


class TooLarge(ServerError):
    status = 413
    code = "too_large"
    default_message = "request body too large"


class UnsupportedMediaType(ServerError):
    status = 415
    code = "unsupported_media_type"
    default_message = "unsupported content type"


class Gone(ServerError):
    status = 410
    code = "gone"
    default_message = "this link has expired"


class PreconditionRequired(ServerError):
    status = 428
    code = "precondition_required"
    default_message = "If-Match header required"


class RateLimited(ServerError):
    status = 429
    code = "rate_limited"
    default_message = "too many failed logins, retry later"

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after
        self.headers["Retry-After"] = str(retry_after)


class QuotaExceeded(ServerError):
    status = 507
    code = "quota_exceeded"
    default_message = "storage quota exceeded"

    def __init__(self, quota: int, used: int) -> None:
        super().__init__(None, quota=quota, used=used)
        self.quota = quota
        self.used = used


class NodeLimit(ServerError):
    """The account holds as many nodes as the server allows (trashed ones count until purged)."""

    status = 507
    code = "node_limit"

    def __init__(self, limit: int) -> None:
        super().__init__(f"node limit reached: an account holds at most {limit} nodes (trash included)", limit=limit)
        self.limit = limit


class RecordLimit(ServerError):
    """The account holds as many sealed records as the server allows."""

    status = 507
    code = "record_limit"

    def __init__(self, limit: int) -> None:
        super().__init__(f"record limit reached: an account holds at most {limit} records", limit=limit)
        self.limit = limit


class Unavailable(ServerError):
    """Content taken down after an abuse notice (see server/takedown.py)."""

    status = 451
    code = "unavailable_for_legal_reasons"
    default_message = "this content was removed after an abuse notice"


class Busy(ServerError):
    """A moment's contention the server could not wait out (say, a blob being deleted as it is stored)."""

    status = 503
    code = "busy"
    default_message = "busy, retry shortly"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = "1"


class NotInstalled(ServerError):
    """A part of the server that is not installed here (the web client's libsodium, from npm)."""

    status = 503
    code = "not_installed"
    default_message = "not installed on this server"


# Falcon raises its own HTTPError for routing problems and malformed headers;
# they are answered with the same codes as ours.
_FALCON_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    411: "length_required",
    412: "precondition_failed",
    413: "too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    428: "precondition_required",
    429: "rate_limited",
    431: "headers_too_large",
}


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]


def _error_response(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]) -> None:
    import falcon

    headers: dict[str, str] = {}
    if isinstance(ex, ServerError):
        status, body = ex.status, ex.body()
        headers.update(ex.headers)
    elif isinstance(ex, falcon.HTTPError):
        status = falcon.http_status_to_code(ex.status)
        code = _FALCON_CODES.get(status, "internal" if status >= 500 else "http_error")
        message = ex.title or "error"
        if ex.description:
            message = f"{message}: {ex.description}"
        body = {"error": code, "message": _one_line(message)}
        raw = ex.headers
        if isinstance(raw, dict):
            headers.update({str(k): str(v) for k, v in raw.items()})
        elif isinstance(raw, list):
            headers.update({str(k): str(v) for k, v in raw})
    else:
        # Never leak internals: the trace goes to the log, the client gets
        # a fixed sentence.
        log.error("unhandled error on %s %s", req.method, req.path, exc_info=ex)
        status = 500
        body = {"error": "internal", "message": "internal server error"}
    resp.status = status
    resp.media = body
    for name, value in headers.items():
        resp.set_header(name, value)


def install_error_handlers(app: falcon.App) -> None:
    """Route every exception through :func:`_error_response` (the one mapping)."""
    import falcon

    app.add_error_handler(Exception, _error_response)
    app.add_error_handler(falcon.HTTPError, _error_response)
    app.add_error_handler(ServerError, _error_response)
