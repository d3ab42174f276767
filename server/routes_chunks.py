"""Chunk upload, download and the "which do you still need" query.

A writer in a folder another account shares stores chunks *for that owner*
(``X-MegaDrive-Owner`` on PUT, ``"owner"`` in ``chunks/missing``): the owner
holds them and pays for them, and the owner's commit can then list them.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

import falcon

from . import access, testhooks, validate
from .errors import BadRequest, Busy, NotFound, QuotaExceeded, ServerError, Unavailable
from .gc import blob_deleter
from .store.chunks import ChunkNotFound
from .store.contract import DeletionInProgress
from .store.records import ChunkAdded
from .validate import MAX_BULK_JSON_BYTES, MAX_CHUNK_BYTES, get_field

if TYPE_CHECKING:  # pragma: no cover
    from .app import ServerContext

# How long a PUT waits for a deletion of the same blob (claimed by a collector) to finish.
DELETION_WAIT = 10.0


class MissingChunks:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validate.read_json(req, MAX_BULK_JSON_BYTES)
        ids = validate.id_list(get_field(body, "ids"), "ids")
        raw_owner = body.get("owner")
        named = None if raw_owner is None else validate.user_id(raw_owner, "owner")
        store = self.ctx.meta
        with store.transaction():
            owner = access.chunk_owner(store, req.context.user_id, named)
            not_held = set(store.missing_chunks(owner, ids, time.time()))
        # A row whose blob is gone (a lost disk, a crash of an older collector)
        # must not pass for a stored chunk: the client would skip the upload and
        # commit a version naming bytes the server does not have. Reported
        # missing, it is uploaded again, and PUT re-stores the blob.
        chunks = self.ctx.chunks
        resp.media = {"missing": [cid for cid in dict.fromkeys(ids) if cid in not_held or not chunks.has(cid)]}


def _named_owner(req: falcon.Request) -> str | None:
    raw = req.get_header("X-MegaDrive-Owner")
    return None if raw is None else validate.user_id(raw.strip(), "X-MegaDrive-Owner")


class ChunkItem:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_put(self, req: falcon.Request, resp: falcon.Response, chunk_id: str) -> None:
        """Store a chunk the caller uploads (for itself, or for the owner named in
        ``X-MegaDrive-Owner``).

        The blob is written first, outside any unit of work (the slow part,
        fsync or an S3 PUT), then the ownership row is recorded; the store
        answers whether a deletion of the same blob ran meanwhile (then it is
        written again before the answer) or is running (then the PUT waits for
        it). So a row never names a blob that is gone. A refused upload
        deletes the blob again unless someone else owns it. The share is
        checked before anything is read and again in the unit that records
        the chunk.
        """
        cid = validate.chunk_id(chunk_id)
        named = _named_owner(req)
        ctx, caller = self.ctx, req.context.user_id
        owner = access.chunk_owner(ctx.meta, caller, named)
        validate.require_content_type(req, "application/octet-stream")
        data = validate.read_body(req, MAX_CHUNK_BYTES)
        if hashlib.sha256(data).hexdigest() != cid:
            raise BadRequest("chunk body does not hash to its id")
        size, quota = len(data), ctx.config.quota

        def record() -> ChunkAdded:
            deadline = time.monotonic() + DELETION_WAIT
            while True:
                try:
                    with ctx.meta.transaction():
                        access.chunk_owner(ctx.meta, caller, named)
                        return ctx.meta.add_chunk(owner, cid, size, quota, time.time())
                except DeletionInProgress:
                    if time.monotonic() > deadline:
                        raise Busy("this chunk is being deleted; retry shortly") from None
                    time.sleep(0.05)

        wrote = False
        owned = ctx.meta.owns_chunk(owner, cid)
        if not (owned and ctx.chunks.has(cid)):  # (a held chunk whose blob was lost is written again)
            if not owned:
                if ctx.meta.is_removed_chunk(cid):
                    raise Unavailable()
                used = ctx.meta.usage(owner)
                if used + size > quota:
                    raise QuotaExceeded(quota=quota, used=used)
            ctx.chunks.put(cid, data)
            wrote = True
            testhooks.pause("chunk.stored")
        try:
            added = record()
        except ServerError:
            if wrote:
                ctx.meta.delete_unowned([cid], blob_deleter(ctx.chunks))
            raise
        if added.restore:  # a deletion of this blob ran since it was written: write it again
            ctx.chunks.put(cid, data)
        resp.status = falcon.HTTP_201 if added.created else falcon.HTTP_200
        resp.media = {"chunk_id": cid, "size": size}

    def on_get(self, req: falcon.Request, resp: falcon.Response, chunk_id: str) -> None:
        cid = validate.chunk_id(chunk_id)
        # A chunk of an account that shares nothing with the caller answers
        # exactly like a missing one.
        access.for_chunk_read(self.ctx.meta, req.context.user_id, cid)
        try:
            data = self.ctx.chunks.get(cid)
        except ChunkNotFound:
            raise NotFound("chunk not found") from None
        resp.content_type = "application/octet-stream"
        resp.data = data


def register(app: falcon.App, ctx: ServerContext) -> None:
    app.add_route("/v1/chunks/missing", MissingChunks(ctx))
    app.add_route("/v1/chunks/{chunk_id}", ChunkItem(ctx))
