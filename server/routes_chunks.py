"""Chunk upload, download and the "which do you still need" query."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

import falcon

from . import validate
from .chunkstore import ChunkNotFound
from .errors import BadRequest, NotFound, QuotaExceeded
from .gc import blob_deleter
from .validate import MAX_BULK_JSON_BYTES, MAX_CHUNK_BYTES, get_field

if TYPE_CHECKING:  # pragma: no cover
    from .app import ServerContext


class MissingChunks:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validate.read_json(req, MAX_BULK_JSON_BYTES)
        ids = validate.id_list(get_field(body, "ids"), "ids")
        resp.media = {"missing": self.ctx.meta.missing_chunks(req.context.user_id, ids, time.time())}


class ChunkItem:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_put(self, req: falcon.Request, resp: falcon.Response, chunk_id: str) -> None:
        """Store a chunk the caller uploads.

        The blob is written before the ownership row so the slow fsync
        happens outside the database write lock; ``ensure_stored`` re-writes
        it under the lock in the rare case the collector removed it in
        between. A refused upload deletes the blob again unless someone
        else owns it.
        """
        cid = validate.chunk_id(chunk_id)
        validate.require_content_type(req, "application/octet-stream")
        data = validate.read_body(req, MAX_CHUNK_BYTES)
        if hashlib.sha256(data).hexdigest() != cid:
            raise BadRequest("chunk body does not hash to its id")
        ctx, owner, size = self.ctx, req.context.user_id, len(data)
        quota = ctx.config.quota

        def ensure_stored() -> None:
            if not ctx.chunks.has(cid):
                ctx.chunks.put(cid, data)

        if ctx.meta.owns_chunk(owner, cid):
            created = ctx.meta.add_chunk(owner, cid, size, quota, time.time(), ensure_stored)
        else:
            used = ctx.meta.usage(owner)
            if used + size > quota:
                raise QuotaExceeded(quota=quota, used=used)
            ctx.chunks.put(cid, data)
            try:
                created = ctx.meta.add_chunk(owner, cid, size, quota, time.time(), ensure_stored)
            except QuotaExceeded:
                ctx.meta.delete_unowned([cid], blob_deleter(ctx.chunks))
                raise
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_200
        resp.media = {"chunk_id": cid, "size": size}

    def on_get(self, req: falcon.Request, resp: falcon.Response, chunk_id: str) -> None:
        cid = validate.chunk_id(chunk_id)
        # Someone else's chunk answers exactly like a missing one.
        if not self.ctx.meta.owns_chunk(req.context.user_id, cid):
            raise NotFound("chunk not found")
        try:
            data = self.ctx.chunks.get(cid)
        except ChunkNotFound:
            raise NotFound("chunk not found") from None
        resp.content_type = "application/octet-stream"
        resp.data = data


def register(app: falcon.App, ctx: ServerContext) -> None:
    app.add_route("/v1/chunks/missing", MissingChunks(ctx))
    app.add_route("/v1/chunks/{chunk_id}", ChunkItem(ctx))
