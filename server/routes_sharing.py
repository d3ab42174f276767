"""Shares, public links (owner side and the public, token-less side) and abuse reports.

Privacy of public links: a link URL's ``#fragment`` holds the key and
browsers and clients never send it. The abuse endpoint, which receives
pasted URLs in its body, scrubs every fragment from ``link`` and ``reason``
(validate.scrub_fragments) right after the JSON is decoded, before anything
else looks at them. Request bodies are never logged, and error messages
never echo a submitted value.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import falcon

from . import access, validate
from .errors import BadRequest, Forbidden, Gone, NotFound, Unavailable
from .store.chunks import ChunkNotFound
from .store.records import Link, Node, Share
from .validate import (
    CHANGES_DEFAULT_LIMIT,
    CHANGES_MAX_LIMIT,
    MAX_GRANT_BYTES,
    MAX_LINK_BLOB_BYTES,
    MAX_REASON_BYTES,
    SALT_BYTES,
    b64decode,
    b64encode,
    get_field,
)

if TYPE_CHECKING:  # pragma: no cover
    from .app import ServerContext


def share_json(share: Share) -> dict[str, Any]:
    return {
        "share_id": share.share_id,
        "node_id": share.node_id,
        "owner": share.owner,
        "owner_name": share.owner_name,
        "recipient": share.recipient,
        "recipient_name": share.recipient_name,
        "access": share.access,
        "grant": b64encode(share.grant),
        "created": share.created,
    }


def link_json(link: Link) -> dict[str, Any]:
    return {"link_id": link.link_id, "node_id": link.node_id, "expires": link.expires, "created": link.created}


# -- shares ------------------------------------------------------------------------------


class Shares:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validate.read_json(req)
        node_id = validate.node_id(get_field(body, "node_id"))
        name = validate.user_name(get_field(body, "recipient"), "recipient")
        level = get_field(body, "access")
        if level not in ("read", "write"):
            raise BadRequest('access: expected "read" or "write"')
        grant = b64decode(get_field(body, "grant"), "grant", max_len=MAX_GRANT_BYTES)
        store, caller = self.ctx.meta, req.context.user_id
        recipient = store.account_by_name(name)
        if recipient is None:
            raise NotFound("user not found")
        if recipient.user_id == caller:
            raise BadRequest("a folder cannot be shared with its owner")
        with store.transaction():
            owner = access.for_owner(store, caller, node_id)
            share = store.put_share(owner, node_id, recipient.user_id, level, grant, time.time())
        resp.status = falcon.HTTP_201
        resp.media = {"share": share_json(share)}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        outgoing, incoming = self.ctx.meta.list_shares(req.context.user_id)
        resp.media = {"outgoing": [share_json(s) for s in outgoing], "incoming": [share_json(s) for s in incoming]}


class ShareItem:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_delete(self, req: falcon.Request, resp: falcon.Response, share_id: str) -> None:
        sid = validate.node_id(share_id, "share_id")
        store, caller = self.ctx.meta, req.context.user_id
        share = store.get_share(sid)
        if share is None or not share.active or caller not in (share.owner, share.recipient):
            raise NotFound("share not found")
        if share.owner != caller:
            raise Forbidden("only the owner can end a share")
        store.revoke_share(caller, sid, time.time())
        resp.status = falcon.HTTP_204


# -- links (owner side) --------------------------------------------------------------------


class Links:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validate.read_json(req)
        node_id = validate.node_id(get_field(body, "node_id"))
        blob = b64decode(get_field(body, "blob"), "blob", max_len=MAX_LINK_BLOB_BYTES)
        raw_salt, raw_kdf = body.get("salt"), body.get("kdf")
        salt = None if raw_salt is None else b64decode(raw_salt, "salt", exact=SALT_BYTES)
        kdf = None if raw_kdf is None else validate.kdf_params(raw_kdf)
        if (salt is None) != (kdf is None):
            raise BadRequest("salt and kdf go together (a password link) or are both null")
        expires = validate.optional_int(body.get("expires"), "expires")
        store, caller = self.ctx.meta, req.context.user_id
        with store.transaction():
            owner = access.for_owner(store, caller, node_id)
            link = store.create_link(owner, node_id, blob, salt, kdf, expires, time.time())
        resp.status = falcon.HTTP_201
        resp.media = {"link": link_json(link)}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"links": [link_json(link) for link in self.ctx.meta.list_links(req.context.user_id)]}


class LinkItem:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_delete(self, req: falcon.Request, resp: falcon.Response, link_id: str) -> None:
        lid = validate.link_id(link_id)
        self.ctx.meta.delete_link(req.context.user_id, lid, time.time())
        resp.status = falcon.HTTP_204


# -- public side (no token) ----------------------------------------------------------------


def _live_link(ctx: ServerContext, link_id: str) -> tuple[Link, Node]:
    """The link and its node, or the refusal: 404 unknown or deleted, 451 taken down, 410 expired (the
    trash is the caller's to check, on the chain it walks anyway)."""
    lid = validate.link_id(link_id)
    link = ctx.meta.get_link(lid)
    if link is None or link.deleted is not None:
        raise NotFound("link not found")
    try:
        node = ctx.meta.find_node(link.node_id)
    except NotFound:
        raise NotFound("link not found") from None
    if node.removed:
        raise Unavailable()
    if link.expires is not None and time.time() >= link.expires:
        raise Gone()
    return link, node


def _public_link(ctx: ServerContext, link_id: str) -> tuple[Link, Node]:
    """A live link whose node is out of the trash (404 otherwise), and a file's with a version."""
    link, node = _live_link(ctx, link_id)
    if any(trashed for _, trashed in ctx.meta.ancestry(node.node_id)):
        raise NotFound("link not found")
    if node.kind == "file" and node.version == 0:
        raise NotFound("the file has no content yet")
    return link, node


def _folder_link(ctx: ServerContext, link_id: str) -> tuple[Link, Node]:
    link, node = _public_link(ctx, link_id)
    if node.kind != "dir":
        raise NotFound("not a folder link")
    return link, node


def _linked_file(ctx: ServerContext, link_id: str, node_id: str | None) -> Node:
    """The file a visitor asks for: the linked file itself, or a file under the linked folder with
    nothing in the trash from it up to the top (404 for anything else, exactly like an unknown id;
    451 taken down). One walk up from the file checks both that it is under the folder and the trash."""
    if node_id is None:
        _, root = _public_link(ctx, link_id)
        if root.kind != "file":
            raise NotFound("node not found")
        return root
    nid = validate.node_id(node_id, "node")
    link, root = _live_link(ctx, link_id)
    try:
        node = root if nid == root.node_id else ctx.meta.find_node(nid)
    except NotFound:
        raise NotFound("node not found") from None
    chain = ctx.meta.ancestry(nid) if node.owner == link.owner else []
    if root.node_id not in {i for i, _ in chain}:
        raise NotFound("node not found")
    if any(trashed for _, trashed in chain):
        raise NotFound("link not found" if node is root else "node not found")
    if node.kind != "file":
        raise NotFound("node not found")
    if node.removed:
        raise Unavailable()
    if node.version == 0:
        raise NotFound("the file has no content yet")
    return node


class PublicLink:
    """A link's sealed record; for a file link also the file's current manifest."""

    public = True

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, link_id: str) -> None:
        with self.ctx.meta.snapshot():
            link, node = _public_link(self.ctx, link_id)
            body: dict[str, Any] = {
                "link_id": link.link_id,
                "owner": link.owner,
                "node_id": link.node_id,
                "kind": node.kind,
                "blob": b64encode(link.blob),
                "salt": None if link.salt is None else b64encode(link.salt),
                "kdf": link.kdf,
            }
            if node.kind == "file":
                version, manifest = self.ctx.meta.get_manifest(node.owner, node.node_id)
                body.update(version=version, manifest=b64encode(manifest), size=node.size)
        resp.media = body


def _listed(node: Node) -> dict[str, Any]:
    return {"node_id": node.node_id, "parent_id": node.parent_id, "kind": node.kind, "meta": b64encode(node.meta),
            "version": node.version, "size": node.size, "removed": node.removed, "seq": node.seq}


class PublicLinkNodes:
    """A folder link's tree: the live, untrashed nodes under the folder, paged by ``seq``."""

    public = True

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, link_id: str) -> None:
        since = validate.uint_param(req.get_param("since"), "since", default=0)
        limit = validate.uint_param(
            req.get_param("limit"), "limit", default=CHANGES_DEFAULT_LIMIT, minimum=1, maximum=CHANGES_MAX_LIMIT
        )
        with self.ctx.meta.snapshot():
            link, _ = _folder_link(self.ctx, link_id)
            found, more = self.ctx.meta.link_tree(link.owner, link.node_id, since, limit)
        resp.media = {"nodes": [_listed(n) for n in found], "seq": found[-1].seq if found else since, "more": more}


class PublicLinkManifest:
    """The current manifest of a file under a folder link."""

    public = True

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, link_id: str, node_id: str) -> None:
        with self.ctx.meta.snapshot():
            node = _linked_file(self.ctx, link_id, node_id)
            version, manifest = self.ctx.meta.get_manifest(node.owner, node.node_id)
        resp.media = {"version": version, "manifest": b64encode(manifest), "size": node.size}


class PublicChunk:
    """A chunk of the current version of the linked file, or (``?node=``) of a file under a linked folder."""

    public = True

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, link_id: str, chunk_id: str) -> None:
        cid = validate.chunk_id(chunk_id)
        with self.ctx.meta.snapshot():
            node = _linked_file(self.ctx, link_id, req.get_param("node"))
            if not self.ctx.meta.version_has_chunk(node.node_id, node.version, cid):
                raise NotFound("chunk not found")
        try:
            data = self.ctx.chunks.get(cid)
        except ChunkNotFound:
            raise NotFound("chunk not found") from None
        resp.content_type = "application/octet-stream"
        resp.data = data


# -- abuse reports -------------------------------------------------------------------------


class Abuse:
    """Anyone may report a link. The answer is always 202 for a well-formed
    report, whether or not the link exists, so it is no oracle for link ids."""

    public = True

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validate.read_json(req)
        raw, reason = get_field(body, "link"), get_field(body, "reason")
        if not isinstance(raw, str):
            raise BadRequest("link: expected a string")
        if not isinstance(reason, str):
            raise BadRequest("reason: expected a string")
        # First of all: drop every fragment (a link's key), wherever it is and
        # whatever precedes it, before any parsing. ``link`` is also cut at its
        # first "#" (a link is one token; nothing after its fragment is needed).
        raw = validate.scrub_fragments(validate.strip_fragment(raw))
        reason = validate.scrub_fragments(reason)
        reason = validate.text_field(reason, "reason", MAX_REASON_BYTES)
        link_id = validate.link_reference(raw[:4096])
        if link_id is None:
            raise BadRequest("link: expected a link URL (…/l/<id>) or a link id")
        report_id = self.ctx.meta.add_abuse_report(link_id, reason, time.time())
        resp.status = falcon.HTTP_202
        resp.media = {"report_id": report_id}


def register(app: falcon.App, ctx: ServerContext) -> None:
    app.add_route("/v1/shares", Shares(ctx))
    app.add_route("/v1/shares/{share_id}", ShareItem(ctx))
    app.add_route("/v1/links", Links(ctx))
    app.add_route("/v1/links/{link_id}", LinkItem(ctx))
    app.add_route("/v1/l/{link_id}", PublicLink(ctx))
    app.add_route("/v1/l/{link_id}/chunks/{chunk_id}", PublicChunk(ctx))
    app.add_route("/v1/l/{link_id}/nodes", PublicLinkNodes(ctx))
    app.add_route("/v1/l/{link_id}/nodes/{node_id}/manifest", PublicLinkManifest(ctx))
    app.add_route("/v1/abuse", Abuse(ctx))
