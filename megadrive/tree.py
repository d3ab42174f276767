"""The verified tree: each node's meta opened under the key of the parent it claims, up to a trusted root.

The server keeps the tree's shape in clear (every node's parent id) and may
rewrite it at will. A meta's AEAD tag proves it was sealed under its parent
folder's key with that parent's id in the associated data; this module checks
the rest, the *shape*, on every path a meta takes into the client (a path
walked from the root, a node held open by id, a row fresh from the change
feed, a cache hit):

* our root is a terminal: found by the id pinned at login, opened under the
  master key with an empty parent id, and never given a parent: a root row
  that claims one is refused, and a running client keeps the root meta it
  verified last (the root's key never changes);
* every other node has a parent row of the same owner, and its chain of
  parents ends at our root or at the root of an *accepted* incoming share
  within :data:`MAX_DEPTH` steps, without a cycle;
* a cached meta is reused only for the same blob under the same parent id,
  owner and parent key, so a row moved under another folder (or under a
  parent whose key changed) is opened again, and fails;
* a node's version and revision never go down along the server's order of
  changes (``seq``): an older state presented as newer is a rollback, while a
  row read just before a newer one was applied is merely stale and is re-read.

Failures are :class:`~megadrive.errors.IntegrityError` naming the node id,
never a decrypted name (log lines carry these messages).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from . import crypto, format
from .errors import IntegrityError, InvalidPath
from .format import NodeMeta
from .index import Index, IndexRow
from .names import check_name

log = logging.getLogger(__name__)

MAX_DEPTH = 4096  # deeper than any path the kernel or a WebDAV client can name
CACHE_ENTRIES = 200_000

ShareRoot = Callable[[str, str], "NodeMeta | None"]


class Orphan(IntegrityError):
    """A node whose parent is not (yet) in the index: it may arrive with the next change."""


def short(node_id: str) -> str:
    """How log lines and errors name a node: its id, never its name."""
    return node_id[:12]


@dataclass(frozen=True)
class _Cached:
    blob: bytes
    parent_id: str | None
    owner: str
    parent_key: bytes
    meta: NodeMeta


class Tree:
    """Verified metas of one account's index (its own tree and the accepted shares in it). Thread-safe."""

    def __init__(self, index: Index, owner: str, master: bytes, root_id: str,
                 share_root: ShareRoot | None = None) -> None:
        self.index = index
        self.owner = owner
        self.root_id = root_id
        self._master = master
        # The accepted incoming shares' roots (their grant's key); set once sharing is loaded.
        self.share_root: ShareRoot = share_root or (lambda node_id, owner: None)
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._seen: dict[str, tuple[int, int, int]] = {}
        self._root_meta: NodeMeta | None = None
        self._root_row: IndexRow | None = None  # the root row last verified (what a later run trusts first)
        self._root_refused: bytes | None = None  # the last root blob refused (reported once)

    # -- the two ways in --------------------------------------------------------------------------

    def meta(self, row: IndexRow) -> NodeMeta:
        """Verify a node by walking up to a trusted root, then opening each meta top-down."""
        return self.chain(row)[-1][1]

    def chain(self, row: IndexRow) -> list[tuple[IndexRow, NodeMeta]]:
        """``[(terminal, meta), ..., (row, meta)]``: the verified path from a trusted root down to ``row``."""
        rows = [row]
        ids = {row.node_id}
        cur = row
        while not self._is_terminal(cur):
            if cur.parent_id is None:
                raise IntegrityError(f"integrity check failed: node {short(cur.node_id)} claims to be a root")
            if len(rows) > MAX_DEPTH:
                raise IntegrityError(f"integrity check failed: node {short(row.node_id)} is nested too deep")
            parent = self.index.get(cur.parent_id)
            if parent is None:
                raise Orphan(f"integrity check failed: node {short(cur.node_id)} has no valid parent")
            if parent.node_id in ids:
                raise IntegrityError(f"integrity check failed: node {short(cur.node_id)} is in a cycle of folders")
            if parent.kind != "dir" or parent.owner != cur.owner:
                raise IntegrityError(f"integrity check failed: node {short(cur.node_id)} has no valid parent")
            rows.append(parent)
            ids.add(parent.node_id)
            cur = parent
        out = [(cur, self._terminal_meta(cur))]
        for child in reversed(rows[:-1]):
            prow, pmeta = out[-1]
            out.append((child, self.child_meta(child, prow, pmeta)))
        return out

    def child_meta(self, row: IndexRow, parent: IndexRow, pmeta: NodeMeta) -> NodeMeta:
        """Verify one node under a parent the caller has verified (a listing, a path walked from the root)."""
        if self._is_terminal(row):
            return self._terminal_meta(row)
        if row.parent_id != parent.node_id or row.owner != parent.owner or parent.kind != "dir":
            raise IntegrityError(f"integrity check failed: node {short(row.node_id)} is not in that folder")
        with self._lock:
            hit = self._cache.get(row.node_id)
            if (hit is not None and hit.blob == row.meta and hit.parent_id == row.parent_id
                    and hit.owner == row.owner and crypto.ct_equal(hit.parent_key, pmeta.key)):
                self._cache.move_to_end(row.node_id)
                return hit.meta
        meta = format.open_meta(pmeta.key, row.owner or self.owner, parent.node_id, row.node_id, row.meta)
        self._check(row, meta, named=True)
        if not self._fresh(row, meta):
            cur = self.index.get(row.node_id)
            if cur is None or cur.seq <= row.seq:
                raise IntegrityError(f"integrity check failed: node {short(row.node_id)} was rolled back")
            return self.meta(cur) if cur.parent_id != parent.node_id else self.child_meta(cur, parent, pmeta)
        self._remember(row, meta, pmeta.key)
        return meta

    # -- terminals --------------------------------------------------------------------------------

    def _is_terminal(self, row: IndexRow) -> bool:
        if row.node_id == self.root_id and not row.owner:
            return True
        return bool(row.owner) and self.share_root(row.node_id, row.owner) is not None

    def _terminal_meta(self, row: IndexRow) -> NodeMeta:
        if row.node_id != self.root_id or row.owner:
            shared = self.share_root(row.node_id, row.owner)
            if shared is None or row.kind != "dir":
                raise IntegrityError(f"integrity check failed: node {short(row.node_id)} is not a root")
            return shared
        if self._root_meta is not None and row.meta == self._root_refused:
            return self._root_meta
        try:
            return self._open_root(row)
        except IntegrityError as e:
            if self._root_meta is None:
                raise
            # The root's key never changes: keep the one verified before, refuse what the server claims now.
            self._root_refused = row.meta
            log.error("refusing the server's copy of the root folder (node %s): %s", short(row.node_id), e.message)
            return self._root_meta

    def _open_root(self, row: IndexRow) -> NodeMeta:
        if row.parent_id is not None:
            raise IntegrityError(f"integrity check failed: the root folder (node {short(row.node_id)}) "
                                 "was given a parent")
        if row.kind != "dir":
            raise IntegrityError("integrity check failed: the root folder is not a folder")
        with self._lock:
            hit = self._cache.get(row.node_id)
            if hit is not None and hit.blob == row.meta and hit.parent_id is None and not hit.owner:
                return hit.meta
        meta = format.open_meta(self._master, self.owner, "", row.node_id, row.meta)
        self._check(row, meta, named=False)
        if not self._fresh(row, meta):
            raise IntegrityError(f"integrity check failed: the root folder (node {short(row.node_id)}) "
                                 "was rolled back")
        if self._root_meta is not None and not crypto.ct_equal(self._root_meta.key, meta.key):
            raise IntegrityError("integrity check failed: the root folder's key changed")
        self._root_meta, self._root_row = meta, row
        self._remember(row, meta, self._master)
        return meta

    @property
    def verified_root(self) -> IndexRow | None:
        """The root row as last verified (its blob opens under the master key with no parent)."""
        return self._root_row

    def trust_root(self, row: IndexRow) -> NodeMeta:
        """Verify the root row now (at login / open), so later forgeries can be refused without losing it."""
        return self._open_root(row)

    # -- checks -----------------------------------------------------------------------------------

    def _check(self, row: IndexRow, meta: NodeMeta, *, named: bool) -> None:
        if meta.kind != row.kind:
            raise IntegrityError(f"integrity check failed: node {short(row.node_id)}'s kind does not match its "
                                 "metadata")
        if named:
            try:
                check_name(meta.name)  # a co-writer could have sealed '..' or 'a/b'
            except InvalidPath:
                raise IntegrityError(f"integrity check failed: node {short(row.node_id)} has an invalid name") \
                    from None

    def _fresh(self, row: IndexRow, meta: NodeMeta) -> bool:
        """The rollback rule. False: the row was read before a newer state of the node was verified."""
        with self._lock:
            seen = self._seen.get(row.node_id) or self.index.seen(row.node_id)
            sv, sr, ss = seen
            if meta.version < sv or meta.rev < sr:
                if row.seq >= ss:
                    raise IntegrityError(f"integrity check failed: node {short(row.node_id)} was rolled back to "
                                         "an older state")
                return False
            new = (max(sv, meta.version), max(sr, meta.rev), max(ss, row.seq))
            if new != seen:
                self.index.mark_seen(row.node_id, *new)
            self._seen[row.node_id] = new
            return True

    def note(self, row: IndexRow, meta: NodeMeta, parent_key: bytes) -> None:
        """A meta this client sealed itself and the server accepted (its answer is ``row``)."""
        with self._lock:
            seen = self._seen.get(row.node_id) or self.index.seen(row.node_id)
            new = (max(seen[0], meta.version), max(seen[1], meta.rev), max(seen[2], row.seq))
            if new != seen:
                self.index.mark_seen(row.node_id, *new)
            self._seen[row.node_id] = new
        self._remember(row, meta, parent_key)

    def cached_metas(self) -> list[NodeMeta]:
        """Every meta this client holds decrypted in memory (what a revoked recipient could have kept)."""
        with self._lock:
            return [c.meta for c in self._cache.values()]

    def _remember(self, row: IndexRow, meta: NodeMeta, parent_key: bytes) -> None:
        with self._lock:
            old = self._cache.get(row.node_id)
            if old is not None and (old.meta.version, old.meta.rev) > (meta.version, meta.rev):
                return  # a racing reader verified an older state after a newer one was cached
            self._cache[row.node_id] = _Cached(row.meta, row.parent_id, row.owner, parent_key, meta)
            self._cache.move_to_end(row.node_id)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
