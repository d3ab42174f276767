"""Nodes, file versions and the change feed."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import falcon

from . import validate
from .errors import BadRequest, PreconditionRequired
from .metastore import Node
from .validate import (
    CHANGES_DEFAULT_LIMIT,
    CHANGES_MAX_LIMIT,
    MAX_BULK_JSON_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_META_BYTES,
    b64decode,
    b64encode,
    get_field,
)

if TYPE_CHECKING:  # pragma: no cover
    from .app import ServerContext


def node_json(node: Node) -> dict[str, Any]:
    """The API shape of a node (the owner is implied by the token)."""
    return {
        "node_id": node.node_id,
        "parent_id": node.parent_id,
        "kind": node.kind,
        "meta": b64encode(node.meta),
        "version": node.version,
        "size": node.size,
        "trashed": node.trashed,
        "gone": node.gone,
        "seq": node.seq,
    }


def _send_node(resp: falcon.Response, node: Node, status: str = falcon.HTTP_200) -> None:
    resp.status = status
    resp.set_header("ETag", f'"{node.version}"')
    resp.media = {"node": node_json(node)}


def _meta(value: object, field: str = "meta") -> bytes:
    return b64decode(value, field, max_len=MAX_META_BYTES)


def _optional_node_id(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    return None if value is None else validate.node_id(value, field)


class Nodes:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validate.read_json(req)
        node_id = validate.node_id(get_field(body, "node_id"))
        parent_id = validate.node_id(get_field(body, "parent_id"), "parent_id")
        kind = get_field(body, "kind")
        if kind not in ("dir", "file"):
            raise BadRequest('kind: expected "dir" or "file"')
        meta = _meta(get_field(body, "meta"))
        node = self.ctx.meta.create_node(req.context.user_id, node_id, parent_id, kind, meta)
        _send_node(resp, node, falcon.HTTP_201)


class NodeItem:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, node_id: str) -> None:
        node = self.ctx.meta.get_node(req.context.user_id, validate.node_id(node_id))
        _send_node(resp, node)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, node_id: str) -> None:
        nid = validate.node_id(node_id)
        body = validate.read_json(req)
        meta = _meta(get_field(body, "meta"))
        parent_id = _optional_node_id(body, "parent_id")
        replace = _optional_node_id(body, "replace")
        node = self.ctx.meta.update_node(req.context.user_id, nid, meta, parent_id=parent_id, replace=replace)
        _send_node(resp, node)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, node_id: str) -> None:
        nid = validate.node_id(node_id)
        purge = validate.bool_param(req.get_param("purge"), "purge")
        recursive = validate.bool_param(req.get_param("recursive"), "recursive")
        if purge:
            resp.media = {"purged": self.ctx.meta.purge_node(req.context.user_id, nid, recursive)}
        else:
            _send_node(resp, self.ctx.meta.trash_node(req.context.user_id, nid))


class Restore:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, node_id: str) -> None:
        node = self.ctx.meta.restore_node(req.context.user_id, validate.node_id(node_id))
        _send_node(resp, node)


class Versions:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, node_id: str) -> None:
        nid = validate.node_id(node_id)
        if_match = req.get_header("If-Match")
        if if_match is None:
            raise PreconditionRequired()
        expected = validate.parse_if_match(if_match)
        body = validate.read_json(req, MAX_BULK_JSON_BYTES)
        manifest = b64decode(get_field(body, "manifest"), "manifest", max_len=MAX_MANIFEST_BYTES)
        chunk_ids = validate.id_list(get_field(body, "chunks"), "chunks")
        raw_meta = body.get("meta")
        meta = None if raw_meta is None else _meta(raw_meta)
        node = self.ctx.meta.commit_version(
            req.context.user_id,
            nid,
            expected,
            manifest,
            chunk_ids,
            meta,
            keep=self.ctx.config.versions_kept,
            now=time.time(),
        )
        _send_node(resp, node, falcon.HTTP_201)

    def on_get(self, req: falcon.Request, resp: falcon.Response, node_id: str) -> None:
        versions = self.ctx.meta.list_versions(req.context.user_id, validate.node_id(node_id))
        resp.media = {"versions": [{"version": v.version, "size": v.size, "created": v.created} for v in versions]}


class VersionItem:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, node_id: str, number: str) -> None:
        nid = validate.node_id(node_id)
        wanted = validate.version_number(number)
        version, manifest = self.ctx.meta.get_manifest(req.context.user_id, nid, wanted)
        resp.media = {"version": version, "manifest": b64encode(manifest)}


class Manifest:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, node_id: str) -> None:
        version, manifest = self.ctx.meta.get_manifest(req.context.user_id, validate.node_id(node_id))
        resp.media = {"version": version, "manifest": b64encode(manifest)}


class Changes:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        since = validate.uint_param(req.get_param("since"), "since", default=0)
        limit = validate.uint_param(
            req.get_param("limit"), "limit", default=CHANGES_DEFAULT_LIMIT, minimum=1, maximum=CHANGES_MAX_LIMIT
        )
        nodes, more = self.ctx.meta.changes(req.context.user_id, since, limit)
        resp.media = {
            "changes": [node_json(n) for n in nodes],
            "seq": nodes[-1].seq if nodes else since,
            "more": more,
        }


def register(app: falcon.App, ctx: ServerContext) -> None:
    app.add_route("/v1/nodes", Nodes(ctx))
    app.add_route("/v1/nodes/{node_id}", NodeItem(ctx))
    app.add_route("/v1/nodes/{node_id}/restore", Restore(ctx))
    app.add_route("/v1/nodes/{node_id}/versions", Versions(ctx))
    app.add_route("/v1/nodes/{node_id}/versions/{number}", VersionItem(ctx))
    app.add_route("/v1/nodes/{node_id}/manifest", Manifest(ctx))
    app.add_route("/v1/changes", Changes(ctx))
