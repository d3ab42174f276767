"""Nodes, file versions and the change feed.

Every handler first asks server/access.py for the effective owner (the
caller, or the owner of a folder shared with the caller), then calls the
metadata store for that owner; writes do both inside one transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import falcon

from . import access, validate
from .errors import BadRequest, NotFound, PreconditionRequired
from .store.records import Node
from .validate import (
    CHANGES_DEFAULT_LIMIT,
    CHANGES_MAX_LIMIT,
    MAX_BATCH_NODES,
    MAX_BULK_JSON_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_META_BYTES,
    b64decode,
    b64encode,
    get_field,
)

if TYPE_CHECKING:  # pragma: no cover
    from .app import ServerContext
    from .store.contract import MetaStore


def node_json(node: Node) -> dict[str, Any]:
    """The API shape of a node."""
    return {
        "node_id": node.node_id,
        "owner": node.owner,
        "parent_id": node.parent_id,
        "kind": node.kind,
        "meta": b64encode(node.meta),
        "version": node.version,
        "size": node.size,
        "trashed": node.trashed,
        "gone": node.gone,
        "removed": node.removed,
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


@dataclass(frozen=True)
class Create:
    """One node to create, as ``POST /v1/nodes`` takes it (also one item of a batch)."""

    node_id: str
    parent_id: str
    kind: str
    meta: bytes
    first: tuple[bytes, list[str], bytes | None] | None


def _create_args(body: object, where: str = "") -> Create:
    if not isinstance(body, dict):
        raise BadRequest(f"{where}: expected an object")
    pre = f"{where}." if where else ""
    kind = get_field(body, "kind")
    if kind not in ("dir", "file"):
        raise BadRequest(f'{pre}kind: expected "dir" or "file"')
    return Create(validate.node_id(get_field(body, "node_id"), f"{pre}node_id"),
                  validate.node_id(get_field(body, "parent_id"), f"{pre}parent_id"), kind,
                  _meta(get_field(body, "meta"), f"{pre}meta"), _first_version(body.get("version"), kind, pre))


class Nodes:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        args = _create_args(validate.read_json(req))  # (a bigger first version is committed on its own)
        store, caller = self.ctx.meta, req.context.user_id
        with store.transaction():
            node = _create_in(store, access.for_create(store, caller, args.parent_id), args,
                              self.ctx.config.versions_kept)
        _send_node(resp, node, falcon.HTTP_201)


def _create_in(store: MetaStore, owner: str, args: Create, versions_kept: int) -> Node:
    """Create one node (and its first version) inside the caller's unit of work."""
    node = store.create_node(owner, args.node_id, args.parent_id, args.kind, args.meta)
    if args.first is not None:  # created and given its first version in one transaction (one round trip)
        manifest, chunk_ids, vmeta = args.first
        node = store.commit_version(owner, args.node_id, 0, manifest, chunk_ids, vmeta,
                                    keep=versions_kept, now=time.time())
    return node


def _parent(store: MetaStore, item: Create) -> Node | None:
    try:
        return store.find_node(item.parent_id)
    except NotFound:
        return None  # (for_create says so, in its words)


class NodesBatch:
    """Many creates in one request and one transaction (a write-back client uploading a tree of small
    files): one round trip and one commit for all. All or nothing: the first item that fails fails
    the request exactly as it would fail ``POST /v1/nodes`` alone, and nothing is created."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validate.read_json(req, MAX_BULK_JSON_BYTES)
        items = get_field(body, "nodes")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_NODES:
            raise BadRequest(f"nodes: expected a list of 1 to {MAX_BATCH_NODES} nodes to create")
        batch = [_create_args(item, f"nodes[{i}]") for i, item in enumerate(items)]
        nodes = create_all(self.ctx.meta, req.context.user_id, batch, self.ctx.config.versions_kept)
        resp.status = falcon.HTTP_201
        resp.media = {"nodes": [node_json(n) for n in nodes]}


def create_all(store: MetaStore, caller: str, batch: list[Create], versions_kept: int) -> list[Node]:
    """A batch's creates in one transaction. Every parent's owner is held at once, in one order, before
    any item's access check holds one: two batches naming each other's shared folders would otherwise
    deadlock on PostgreSQL (a node never changes owner, so the unlocked look-up names the owner the
    checks then find)."""
    with store.transaction():
        store.hold_accounts(*{n.owner for a in batch if (n := _parent(store, a)) is not None})
        owners = [access.for_create(store, caller, a.parent_id) for a in batch]
        return [_create_in(store, owner, a, versions_kept) for owner, a in zip(owners, batch, strict=True)]


def _first_version(value: object, kind: str, pre: str = "") -> tuple[bytes, list[str], bytes | None] | None:
    """The optional ``version`` of a create: what ``POST /v1/nodes/{id}/versions`` would take."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"{pre}version: expected an object")
    if kind != "file":
        raise BadRequest(f"{pre}version: only a file has versions")
    manifest = b64decode(get_field(value, "manifest"), f"{pre}version.manifest", max_len=MAX_MANIFEST_BYTES)
    chunk_ids = validate.id_list(get_field(value, "chunks"), f"{pre}version.chunks")
    raw_meta = value.get("meta")
    return manifest, chunk_ids, None if raw_meta is None else _meta(raw_meta, f"{pre}version.meta")


class NodeItem:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, node_id: str) -> None:
        _send_node(resp, access.for_read(self.ctx.meta, req.context.user_id, validate.node_id(node_id)).node)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, node_id: str) -> None:
        nid = validate.node_id(node_id)
        body = validate.read_json(req)
        meta = _meta(get_field(body, "meta"))
        parent_id = _optional_node_id(body, "parent_id")
        replace = _optional_node_id(body, "replace")
        base_seq = validate.optional_seq(body, "base_seq")
        store, caller = self.ctx.meta, req.context.user_id
        with store.transaction():
            owner = access.for_update(store, caller, nid, parent_id, replace)
            node = store.update_node(owner, nid, meta, parent_id=parent_id, replace=replace, base_seq=base_seq)
        _send_node(resp, node)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, node_id: str) -> None:
        nid = validate.node_id(node_id)
        purge = validate.bool_param(req.get_param("purge"), "purge")
        recursive = validate.bool_param(req.get_param("recursive"), "recursive")
        only_trashed = validate.bool_param(req.get_param("if_trashed"), "if_trashed")
        store, caller = self.ctx.meta, req.context.user_id
        with store.transaction():
            if purge:
                resp.media = {"purged": store.purge_node(access.for_owner(store, caller, nid), nid, recursive,
                                                         only_trashed)}
                return
            node = store.trash_node(access.for_trash_or_restore(store, caller, nid), nid)
        _send_node(resp, node)


class Restore:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, node_id: str) -> None:
        nid = validate.node_id(node_id)
        store, caller = self.ctx.meta, req.context.user_id
        with store.transaction():
            node = store.restore_node(access.for_trash_or_restore(store, caller, nid), nid)
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
        meta_seq = validate.optional_seq(body, "meta_seq")
        store, caller = self.ctx.meta, req.context.user_id
        with store.transaction():
            # The chunks must be stored by the file's owner (a writer uploads them for the owner).
            node = store.commit_version(
                access.for_commit(store, caller, nid),
                nid,
                expected,
                manifest,
                chunk_ids,
                meta,
                keep=self.ctx.config.versions_kept,
                now=time.time(),
                meta_seq=meta_seq,
            )
        _send_node(resp, node, falcon.HTTP_201)

    def on_get(self, req: falcon.Request, resp: falcon.Response, node_id: str) -> None:
        nid = validate.node_id(node_id)
        owner = access.for_read(self.ctx.meta, req.context.user_id, nid).owner
        versions = self.ctx.meta.list_versions(owner, nid)
        resp.media = {"versions": [{"version": v.version, "size": v.size, "created": v.created} for v in versions]}


class VersionItem:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, node_id: str, number: str) -> None:
        nid = validate.node_id(node_id)
        wanted = validate.version_number(number)
        owner = access.for_read(self.ctx.meta, req.context.user_id, nid).owner
        version, manifest = self.ctx.meta.get_manifest(owner, nid, wanted)
        resp.media = {"version": version, "manifest": b64encode(manifest)}


class Manifest:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, node_id: str) -> None:
        nid = validate.node_id(node_id)
        owner = access.for_read(self.ctx.meta, req.context.user_id, nid).owner
        version, manifest = self.ctx.meta.get_manifest(owner, nid)
        resp.media = {"version": version, "manifest": b64encode(manifest)}


class Changes:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        since = validate.uint_param(req.get_param("since"), "since", default=0)
        limit = validate.uint_param(
            req.get_param("limit"), "limit", default=CHANGES_DEFAULT_LIMIT, minimum=1, maximum=CHANGES_MAX_LIMIT
        )
        store, caller = self.ctx.meta, req.context.user_id
        raw_owner = req.get_param("owner")
        owner = caller if raw_owner is None else validate.user_id(raw_owner, "owner")
        if owner == caller:
            nodes, more = store.changes(caller, since, limit)
        else:
            nodes, more = store.shared_changes(owner, access.feed_roots(store, caller, owner), since, limit)
        resp.media = {
            "changes": [node_json(n) for n in nodes],
            "seq": nodes[-1].seq if nodes else since,
            "more": more,
        }


class Trash:
    """The caller's nodes moved to the trash, with when (their names are in their sealed metas)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"trash": [{"node_id": nid, "trashed_at": at}
                                for nid, at in self.ctx.meta.trash(req.context.user_id)]}


def register(app: falcon.App, ctx: ServerContext) -> None:
    app.add_route("/v1/trash", Trash(ctx))
    app.add_route("/v1/nodes", Nodes(ctx))
    app.add_route("/v1/batch/nodes", NodesBatch(ctx))
    app.add_route("/v1/nodes/{node_id}", NodeItem(ctx))
    app.add_route("/v1/nodes/{node_id}/restore", Restore(ctx))
    app.add_route("/v1/nodes/{node_id}/versions", Versions(ctx))
    app.add_route("/v1/nodes/{node_id}/versions/{number}", VersionItem(ctx))
    app.add_route("/v1/nodes/{node_id}/manifest", Manifest(ctx))
    app.add_route("/v1/changes", Changes(ctx))
