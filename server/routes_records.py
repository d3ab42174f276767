"""Sealed per-account records: ``GET``/``PUT``/``DELETE /v1/records/{name}``.

A record is a small opaque blob an account keeps on the server (the client
keeps its contact pins there, sealed under a key the server never sees), so
another device of the same account can read it. Names live in the token's
own account: there is no way to name another account's record, so another
account sees exactly what it would see if the record did not exist.

Writes are compare-and-swap on the record's version, as version commits are
(``If-Match`` required, ``428`` without it, ``412`` with the current version
when it is stale), so two devices never silently overwrite each other. The
record's bytes count against the account's quota.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import falcon

from . import validate
from .errors import NotFound, PreconditionRequired
from .validate import MAX_RECORD_BYTES, b64decode, b64encode, get_field

if TYPE_CHECKING:  # pragma: no cover
    from .app import ServerContext


def _expected_version(req: falcon.Request) -> int:
    """The version ``If-Match`` names (``"0"``: the record must not exist yet)."""
    raw = req.get_header("If-Match")
    if raw is None:
        raise PreconditionRequired()
    return validate.parse_if_match(raw)


class RecordItem:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        name = validate.record_name(name)
        record = self.ctx.meta.get_record(req.context.user_id, name)
        if record is None:
            raise NotFound("record not found")
        resp.set_header("ETag", f'"{record.version}"')
        resp.media = {"name": record.name, "version": record.version, "blob": b64encode(record.blob)}

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        name = validate.record_name(name)
        expected = _expected_version(req)
        body = validate.read_json(req)
        blob = b64decode(get_field(body, "blob"), "blob", max_len=MAX_RECORD_BYTES)
        version = self.ctx.meta.put_record(req.context.user_id, name, expected, blob, time.time())
        resp.set_header("ETag", f'"{version}"')
        resp.media = {"name": name, "version": version}

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        name = validate.record_name(name)
        expected = _expected_version(req)
        self.ctx.meta.delete_record(req.context.user_id, name, expected)
        resp.status = falcon.HTTP_204


def register(app: falcon.App, ctx: ServerContext) -> None:
    app.add_route("/v1/records/{name}", RecordItem(ctx))
