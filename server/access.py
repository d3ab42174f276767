"""Who may do what to whose nodes and chunks: the one place the sharing rule lives.

A caller may *read* a node of owner O if the caller is O, or if an active
share from O to the caller names that node or one of its ancestors; *writing*
needs such a share with access ``write``. Purging, sharing, linking, and
moving, renaming, trashing or restoring the root of a share stay with the
owner. A move never leaves its owner's tree (``409 conflict``).

Refusals: a node the caller has no share path to at all answers ``404``,
exactly like an unknown id, so ids cannot be probed; a node the caller can
see (or could, before a revocation) but may not act on answers ``403``.

Every function returns the *effective owner*: the account the route handler
then passes to the metadata store as ``owner``, so sequence bumps, quota and
chunk ownership land on the owner whoever acts. Handlers of writes call
these inside ``MetaStore.transaction()`` so a decision holds for the write
(a revocation cannot slip between check and change): as soon as a check
learns whose data it decides about, it holds that account
(``MetaStore.hold_accounts``) and, if the engine says the state may have
moved meanwhile, reads the node again, so the shares and the ancestry it
looks at are the ones the write will see.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import Conflict, Forbidden, NotFound, Unavailable
from .store.contract import MetaStore
from .store.records import Node


class Level(enum.IntEnum):
    NONE = 0  # can see the node exists (a revoked share), nothing more
    READ = 1
    WRITE = 2
    OWNER = 3


@dataclass(frozen=True)
class NodeAccess:
    node: Node
    level: Level

    @property
    def owner(self) -> str:
        return self.node.owner

    @property
    def is_owner(self) -> bool:
        return self.level is Level.OWNER


def node_access(meta: MetaStore, caller: str, node_id: str, what: str = "node") -> NodeAccess:
    """The caller's access to a live node; ``NotFound`` if it has none and never had."""
    try:
        node = meta.find_node(node_id)
        if meta.hold_accounts(node.owner):  # the owner's data is now fixed until the unit ends
            node = meta.find_node(node_id)
    except NotFound:
        raise NotFound(f"{what} not found") from None
    if node.owner == caller:
        return NodeAccess(node, Level.OWNER)
    shares = meta.shares_between(node.owner, caller)
    if not shares:
        raise NotFound(f"{what} not found")
    chain = {nid for nid, _ in meta.ancestry(node_id)}
    covering = [s for s in shares if s.node_id in chain]
    if not covering:
        raise NotFound(f"{what} not found")
    active = [s for s in covering if s.active]
    if not active:
        return NodeAccess(node, Level.NONE)
    return NodeAccess(node, Level.WRITE if any(s.access == "write" for s in active) else Level.READ)


def require(meta: MetaStore, caller: str, node_id: str, level: Level, what: str = "node") -> NodeAccess:
    acc = node_access(meta, caller, node_id, what)
    if acc.level < level:
        if acc.level is Level.NONE:
            raise Forbidden("access to this shared folder was revoked")
        if level is Level.OWNER:
            raise Forbidden("only the owner can do this")
        raise Forbidden("this folder is shared with you read-only")
    return acc


def _not_share_root(meta: MetaStore, acc: NodeAccess) -> None:
    if not acc.is_owner and meta.is_share_root(acc.node.node_id):
        raise Forbidden("the root of a share is managed by its owner")


# -- nodes ---------------------------------------------------------------------------------


def for_read(meta: MetaStore, caller: str, node_id: str) -> NodeAccess:
    return require(meta, caller, node_id, Level.READ)


def for_create(meta: MetaStore, caller: str, parent_id: str) -> str:
    return require(meta, caller, parent_id, Level.WRITE, "parent").owner


def for_update(meta: MetaStore, caller: str, node_id: str, parent_id: str | None, replace: str | None) -> str:
    """PATCH: write access to the node, the new parent and the replaced node, one owner."""
    acc = require(meta, caller, node_id, Level.WRITE)
    _not_share_root(meta, acc)
    if parent_id is not None and parent_id != acc.node.parent_id:
        dest = node_access(meta, caller, parent_id, "parent")
        if dest.owner != acc.owner:
            raise Conflict("a node cannot move into another account's tree")
        require(meta, caller, parent_id, Level.WRITE, "parent")
    if replace is not None:
        target = node_access(meta, caller, replace, "replaced node")
        if target.owner != acc.owner:
            raise Conflict("the replaced node is not in the destination folder")
        target = require(meta, caller, replace, Level.WRITE, "replaced node")
        _not_share_root(meta, target)
    return acc.owner


def for_trash_or_restore(meta: MetaStore, caller: str, node_id: str) -> str:
    acc = require(meta, caller, node_id, Level.WRITE)
    _not_share_root(meta, acc)
    return acc.owner


def for_owner(meta: MetaStore, caller: str, node_id: str) -> str:
    """Purge, share, link: the owner only (a recipient gets 403, anyone else 404)."""
    return require(meta, caller, node_id, Level.OWNER).owner


def for_commit(meta: MetaStore, caller: str, node_id: str) -> str:
    return require(meta, caller, node_id, Level.WRITE).owner


# -- chunks and feeds ----------------------------------------------------------------------


def chunk_owner(meta: MetaStore, caller: str, owner: str | None) -> str:
    """The account chunks are stored (and counted) for: the caller, or ``owner`` if the
    caller holds an active write share from it (``403`` otherwise, whoever ``owner`` is)."""
    if owner is None or owner == caller:
        return caller
    meta.hold_accounts(owner)
    if not any(s.active and s.access == "write" for s in meta.shares_between(owner, caller)):
        raise Forbidden("no write share from this account")
    return owner


def for_chunk_read(meta: MetaStore, caller: str, chunk_id: str) -> None:
    """A chunk is readable by an account storing it, or through a node the caller may read now.

    Not merely because its holder shares *something* with the caller: a
    recipient reaches only the chunks of the files inside its active shares.
    """
    holders = meta.chunk_holders(chunk_id)
    if caller in holders:
        return
    revoked = False
    for node_id in meta.nodes_with_chunk(chunk_id):
        try:
            acc = node_access(meta, caller, node_id, "chunk")
        except NotFound:
            continue
        if acc.level >= Level.READ:
            return
        revoked = True
    if revoked:
        raise Forbidden("access to this shared folder was revoked")
    if not holders and meta.is_removed_chunk(chunk_id):
        raise Unavailable()
    raise NotFound("chunk not found")


def feed_roots(meta: MetaStore, caller: str, owner: str) -> list[str]:
    """Roots of the owner's active shares to the caller (``403`` if none)."""
    roots = [s.node_id for s in meta.shares_between(owner, caller) if s.active]
    if not roots:
        raise Forbidden("no active share from this account")
    return roots
