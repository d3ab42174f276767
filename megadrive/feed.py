"""The change feeds: what the server says changed, brought into the local index (unverified), and the rows
verified as they arrive (a name hash for path lookups, or the row hidden and reported once).
"""

from __future__ import annotations

import logging

from .api import RemoteNode
from .context import DriveContext
from .errors import IntegrityError, NotFound
from .format import NodeMeta
from .index import IndexRow
from .tree import Orphan, short

log = logging.getLogger(__name__)


class Feed:
    """Pulls our feed and each sharing owner's, and records the server's answers to our own changes."""

    def __init__(self, ctx: DriveContext) -> None:
        self.ctx = ctx
        self._bad: dict[str, bytes] = {}  # node id -> the meta blob that failed (reported once per blob)

    def pull(self, owner: str | None) -> int:
        """Bring one feed up to date (``owner``: a sharing owner's); returns how many changes arrived."""
        index = self.ctx.index
        key = f"seq:{owner}" if owner else "seq"
        since = int(index.get_state(key) or 0)
        count = 0
        while True:
            nodes, seq, more = self.ctx.api.changes(since, owner=owner)
            with index.transaction():
                for n in nodes:
                    if owner and n.owner != owner:
                        log.error("ignoring node %s in a shared feed that claims another owner", short(n.node_id))
                        continue
                    self.ingest(n)
                if seq > since:
                    index.set_state(key, str(seq))
            count += len(nodes)
            since = max(since, seq)
            if not more or not nodes:
                break
        return count

    def ingest(self, n: RemoteNode) -> None:
        old = self.ctx.index.get(n.node_id)
        if n.gone:
            self.ctx.index.remove(n.node_id)
            if old is not None:
                self.ctx.entries_changed(old.parent_id)
            return
        owner = "" if not n.owner or n.owner == self.ctx.owner else n.owner
        if self.ctx.index.upsert(IndexRow(n.node_id, n.parent_id, n.kind, n.version, n.size, n.trashed, n.seq,
                                          n.meta, None, False, owner, n.removed)):
            # A known node that moved or was trashed changes its folders now; a node new to this index may be
            # years old (a first catch-up), so creations count only where this process makes them.
            if old is not None and (old.parent_id != n.parent_id or old.trashed != n.trashed):
                self.ctx.entries_changed(n.parent_id, old.parent_id)

    def hash_pending(self, parent_id: str | None = None) -> int:
        """Verify rows that arrived since (all, or one folder's); returns how many there were."""
        rows = self.ctx.index.pending_hash(parent_id)
        for row in rows:
            self.hash_row(row)
        return len(rows)

    def hash_row(self, row: IndexRow) -> None:
        try:
            meta = self.ctx.tree.meta(row)
        except Orphan:
            return  # its parent has not arrived yet: stays pending, tried again at the next refresh
        except IntegrityError as e:
            self.failed(row, e)
            self.ctx.index.set_name_hash(row.node_id, None, True)
            return
        self.ctx.index.set_name_hash(row.node_id, self.ctx.name_hash(row.parent_id or "", meta.name), False)

    def failed(self, row: IndexRow, e: IntegrityError) -> None:
        """Report an entry that fails its checks once (by node id), and hide it: never its siblings."""
        if self._bad.get(row.node_id) != row.meta:
            self._bad[row.node_id] = row.meta
            log.error("hiding node %s: %s", short(row.node_id), e.message)

    def apply(self, n: RemoteNode, meta: NodeMeta | None = None, parent_key: bytes | None = None) -> IndexRow:
        """Record a node the server returned after our own change (and the meta we sealed for it)."""
        self.ingest(n)
        row = self.ctx.index.get(n.node_id)
        if row is None:
            raise NotFound("the node vanished while it was being changed")
        if meta is not None and parent_key is not None and row.meta == n.meta:
            self.ctx.tree.note(row, meta, parent_key)
            self.ctx.index.set_name_hash(n.node_id, self.ctx.name_hash(row.parent_id or "", meta.name), False)
        elif row.name_hash is None:
            self.hash_row(row)
        return row

    # -- the root ---------------------------------------------------------------------------------

    def load_root(self) -> None:
        """Trust the root meta verified in an earlier run, so a later forgery cannot take it away."""
        saved = self.ctx.index.get_state("root-meta")
        if not saved:
            return
        seq, _, blob = saved.partition(":")
        row = IndexRow(self.ctx.root_id, None, "dir", 0, 0, False, int(seq), bytes.fromhex(blob), None, False)
        try:
            self.ctx.tree.trust_root(row)
        except IntegrityError as e:
            log.error("the saved root folder fails its checks: %s", e.message)

    def check_root(self) -> None:
        row = self.ctx.index.get(self.ctx.root_id)
        if row is None:
            return
        try:
            self.ctx.tree.meta(row)  # a forged root is refused (and logged) here; the verified one stays
        except IntegrityError as e:
            log.error("root folder: %s", e.message)
            return
        good = self.ctx.tree.verified_root
        if good is not None:
            saved = f"{good.seq}:{good.meta.hex()}"
            if self.ctx.index.get_state("root-meta") != saved:
                self.ctx.index.set_state("root-meta", saved)
