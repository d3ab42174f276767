"""The node tree, versions and change feeds, in SQL. Every write holds the owner first."""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import testhooks
from ..errors import Conflict, Exists, MissingChunks, NodeLimit, NotFound, PreconditionFailed, StaleMeta, Unavailable
from .records import MAX_DEPTH, Node, VersionInfo, tombstone
from .sqlbase import NODE_COLS, SQLStoreBase, batches, node_row, unique
from .tables import chunks, links, nodes, share_exits, shares, users, version_chunks, versions

_COLS = ", ".join(c.name for c in NODE_COLS)
# Driven from the shared subtrees (one index step per node in them, each row read once), never
# from the owner's whole feed: its cost is the size of the share, not of the account. The roots
# given never lie inside one another (see shared_changes), so no node is reached twice.
_SUB_COLS = ", ".join(f"n.{c.name}" for c in NODE_COLS)
_SHARED_CHANGES = sa.text(
    f"""
    WITH RECURSIVE sub({_COLS}, depth) AS (
        SELECT {_COLS}, 0 FROM nodes WHERE owner = :owner AND node_id IN :roots
        UNION ALL
        SELECT {_SUB_COLS}, sub.depth + 1 FROM nodes n JOIN sub ON n.parent_id = sub.node_id
        WHERE sub.depth < :max_depth
    )
    SELECT * FROM (
        SELECT {_COLS}, 1 AS inside FROM sub WHERE seq > :since
        UNION ALL
        SELECT {_COLS}, 0 AS inside FROM nodes
        WHERE node_id IN (SELECT node_id FROM share_exits WHERE root_id IN :roots)
          AND node_id NOT IN (SELECT node_id FROM sub) AND owner = :owner AND seq > :since
    ) AS feed
    ORDER BY seq LIMIT :limit
    """  # noqa: S608 - the column lists are module constants; values are bound
).bindparams(sa.bindparam("roots", expanding=True))

# A folder link's listing: walks only live, untrashed nodes (a trashed folder's subtree is out of view).
_LINK_TREE = sa.text(
    f"""
    WITH RECURSIVE sub({_COLS}, depth) AS (
        SELECT {_COLS}, 0 FROM nodes WHERE owner = :owner AND node_id = :root
        UNION ALL
        SELECT {_SUB_COLS}, sub.depth + 1 FROM nodes n JOIN sub ON n.parent_id = sub.node_id
        WHERE sub.depth < :max_depth AND n.owner = :owner AND n.trashed = 0 AND n.gone = 0
    )
    SELECT {_COLS} FROM sub WHERE depth > 0 AND seq > :since ORDER BY seq LIMIT :limit
    """  # noqa: S608 - the column lists are module constants; values are bound
)


class SQLTree(SQLStoreBase):
    # -- nodes ------------------------------------------------------------------------------
    def create_node(self, owner: str, node_id: str, parent_id: str, kind: str, meta: bytes) -> Node:
        if kind not in ("dir", "file"):
            raise ValueError("kind must be 'dir' or 'file'")
        with self._write() as c:
            self._hold_now([owner])
            if c.execute(sa.select(nodes.c.node_id).where(nodes.c.node_id == node_id)).first():
                raise Exists("node id already taken")
            parent = self._live(c, owner, parent_id, "parent")
            if parent.kind != "dir":
                raise Conflict("parent is not a folder")
            if parent.removed:
                raise Unavailable("the parent folder was removed after an abuse notice")
            chain = self._ancestry(c, parent_id)
            if any(trashed for _, trashed in chain):
                raise Conflict("parent is in the trash")
            if len(chain) > MAX_DEPTH:
                raise Conflict("folder tree too deep")
            count = c.execute(sa.select(users.c.node_count).where(users.c.user_id == owner)).scalar_one()
            if count >= self.limits.max_nodes:
                raise NodeLimit(self.limits.max_nodes)
            self._charge(c, owner, len(meta))
            c.execute(sa.update(users).where(users.c.user_id == owner).values(node_count=users.c.node_count + 1))
            seq = self._bump(c, owner)
            inserted = c.execute(
                self._insert(nodes)
                .values(node_id=node_id, owner=owner, parent_id=parent_id, kind=kind, meta=meta, seq=seq)
                .on_conflict_do_nothing()
            ).rowcount
            if not inserted:  # another account's unit took the id first
                raise Exists("node id already taken")
            return self._fetch_node(c, node_id)

    def get_node(self, owner: str, node_id: str) -> Node:
        with self._read() as c:
            return self._live(c, owner, node_id)

    def update_node(
        self,
        owner: str,
        node_id: str,
        meta: bytes,
        parent_id: str | None = None,
        replace: str | None = None,
        base_seq: int | None = None,
    ) -> Node:
        with self._write() as c:
            self._hold_now([owner])
            node = self._live(c, owner, node_id)
            if base_seq is not None and base_seq != node.seq:
                raise StaleMeta(node.seq)
            dest = node.parent_id
            moved_from: list[tuple[str, bool]] = []
            moved_to: list[tuple[str, bool]] = []
            if parent_id is not None and parent_id != node.parent_id:
                if node.parent_id is None:
                    raise Conflict("the root cannot be moved")
                dest = parent_id
                parent = self._live(c, owner, parent_id, "parent")
                if parent.kind != "dir":
                    raise Conflict("parent is not a folder")
                if parent.removed:
                    raise Unavailable("the destination folder was removed after an abuse notice")
                chain = self._ancestry(c, parent.node_id)
                if any(nid == node_id for nid, _ in chain):
                    raise Conflict("cannot move a node into its own subtree")
                if any(trashed for _, trashed in chain):
                    raise Conflict("parent is in the trash")
                height = max(depth for _, depth in self._subtree(c, node_id))
                if len(chain) + height > MAX_DEPTH:
                    raise Conflict("folder tree too deep")
                moved_from, moved_to = self._ancestry(c, node.parent_id), chain
            if replace is not None:
                if replace == node_id:
                    raise Conflict("a node cannot replace itself")
                target = self._live(c, owner, replace, "replaced node")
                if target.parent_id is None or target.parent_id != dest:
                    raise Conflict("the replaced node is not in the destination folder")
                # A replaced folder goes to the trash with its whole subtree, as DELETE does; whether
                # a non-empty folder may be replaced (WebDAV MOVE: yes, POSIX rename: no) is the client's rule.
                if not target.trashed:
                    self._set_node(c, target.node_id, trashed=1, trashed_at=time.time(), seq=self._bump(c, owner))
            self._charge(c, owner, len(meta) - len(node.meta))
            if moved_to:
                self._cross_share_boundaries(c, owner, node_id, moved_from, moved_to)
            self._set_node(c, node_id, parent_id=dest, meta=meta, seq=self._bump(c, owner))
            return self._fetch_node(c, node_id)

    @staticmethod
    def _set_node(c: Connection, node_id: str, **values: object) -> None:
        c.execute(sa.update(nodes).where(nodes.c.node_id == node_id).values(**values))

    def _cross_share_boundaries(
        self,
        c: Connection,
        owner: str,
        node_id: str,
        old_chain: list[tuple[str, bool]],
        new_chain: list[tuple[str, bool]],
    ) -> None:
        """Keep recipients' feeds right when a move enters or leaves shared subtrees.

        If the active share roots above the node differ between its old and new
        place, every node below it is bumped (the moved node itself is bumped by
        the move), so a recipient sees a subtree arrive in full; the roots it
        left are recorded in ``share_exits`` so a recipient of those sees it go.
        """
        roots = set(
            c.execute(sa.select(shares.c.node_id).where(shares.c.owner == owner, shares.c.revoked.is_(None))).scalars()
        )
        if not roots:
            return
        before = roots.intersection(nid for nid, _ in old_chain)
        after = roots.intersection(nid for nid, _ in new_chain)
        if before == after:
            return
        left, kept = sorted(before - after), sorted(after)
        for nid, depth in sorted(self._subtree(c, node_id), key=lambda item: item[1]):
            if depth > 0:
                self._set_node(c, nid, seq=self._bump(c, owner))
            if left:
                c.execute(
                    self._insert(share_exits).on_conflict_do_nothing(),
                    [{"node_id": nid, "root_id": root} for root in left],
                )
            if kept:
                c.execute(sa.delete(share_exits).where(share_exits.c.node_id == nid, share_exits.c.root_id.in_(kept)))

    def trash_node(self, owner: str, node_id: str) -> Node:
        with self._write() as c:
            self._hold_now([owner])
            node = self._live(c, owner, node_id)
            if node.parent_id is None:
                raise Conflict("the root cannot be deleted")
            if not node.trashed:
                self._set_node(c, node_id, trashed=1, trashed_at=time.time(), seq=self._bump(c, owner))
            return self._fetch_node(c, node_id)

    def trash(self, owner: str) -> list[tuple[str, float | None]]:
        with self._read() as c:
            rows = c.execute(
                sa.select(nodes.c.node_id, nodes.c.trashed_at)
                .where(nodes.c.owner == owner, nodes.c.trashed == 1, nodes.c.gone == 0)
                .order_by(nodes.c.trashed_at.desc().nulls_last(), nodes.c.node_id)
            ).all()
        return [(str(r[0]), None if r[1] is None else float(r[1])) for r in rows]

    def restore_node(self, owner: str, node_id: str) -> Node:
        with self._write() as c:
            self._hold_now([owner])
            node = self._live(c, owner, node_id)
            if node.trashed:
                assert node.parent_id is not None  # the root is never trashed
                if any(trashed for _, trashed in self._ancestry(c, node.parent_id)):
                    raise Conflict("the parent folder is in the trash")
                self._set_node(c, node_id, trashed=0, trashed_at=None, seq=self._bump(c, owner))
            return self._fetch_node(c, node_id)

    def purge_node(self, owner: str, node_id: str, recursive: bool, only_trashed: bool = False) -> int:
        now = time.time()
        with self._write() as c:
            self._hold_now([owner])
            node = self._live(c, owner, node_id)
            if node.parent_id is None:
                raise Conflict("the root cannot be deleted")
            if only_trashed and not node.trashed:
                raise Conflict("not in the trash (restored meanwhile?)")
            subtree = self._subtree(c, node_id)
            if len(subtree) > 1 and not recursive:
                raise Conflict("folder not empty; purge with recursive=1")
            # Deepest first, so a folder's tombstone follows its children's in the change feed.
            subtree.sort(key=lambda item: -item[1])
            released = 0
            for nid, _ in subtree:
                meta_len = c.execute(sa.select(sa.func.length(nodes.c.meta)).where(nodes.c.node_id == nid)).scalar()
                released += int(meta_len or 0) + self._manifest_bytes(c, nid)
                c.execute(sa.delete(version_chunks).where(version_chunks.c.node_id == nid))
                c.execute(sa.delete(versions).where(versions.c.node_id == nid))
                c.execute(
                    sa.update(shares).where(shares.c.node_id == nid, shares.c.revoked.is_(None)).values(revoked=now)
                )
                c.execute(sa.update(links).where(links.c.node_id == nid, links.c.deleted.is_(None)).values(deleted=now))
                self._set_node(c, nid, gone=1, meta=b"", version=0, size=0, seq=self._bump(c, owner))
            c.execute(
                sa.update(users)
                .where(users.c.user_id == owner)
                .values(used=users.c.used - released, node_count=users.c.node_count - len(subtree))
            )
            return len(subtree)

    def changes(self, owner: str, since: int, limit: int) -> tuple[list[Node], bool]:
        with self._read() as c:
            rows = c.execute(
                sa.select(*NODE_COLS)
                .where(nodes.c.owner == owner, nodes.c.seq > since)
                .order_by(nodes.c.seq)
                .limit(limit + 1)
            ).all()
        return [node_row(r) for r in rows[:limit]], len(rows) > limit

    def shared_changes(self, owner: str, roots: Sequence[str], since: int, limit: int) -> tuple[list[Node], bool]:
        roots = unique(roots)
        if not roots:
            return [], False
        # "sub" walks down from the roots over every row, tombstones included
        # (they keep their parent); UNION (not ALL) ends any walk that repeats.
        with self._unit(False, snapshot=True) as c:  # (a walk: see _walk)
            if len(roots) > 1:  # a root inside another root's subtree is walked with that one
                inside = set(roots)
                roots = [r for r in roots if not any(a in inside for a, _ in self._ancestry(c, r)[1:])] or roots
            self._walk(c)
            rows = c.execute(
                _SHARED_CHANGES,
                {"owner": owner, "roots": roots, "since": since, "limit": limit + 1, "max_depth": MAX_DEPTH + 1},
            ).all()
        out = [node_row(r) if r[-1] else tombstone(node_row(r)) for r in rows[:limit]]
        return out, len(rows) > limit

    def link_tree(self, owner: str, root: str, since: int, limit: int) -> tuple[list[Node], bool]:
        with self._unit(False, snapshot=True) as c:  # (a walk: see _walk)
            self._walk(c)
            rows = c.execute(
                _LINK_TREE,
                {"owner": owner, "root": root, "since": since, "limit": limit + 1, "max_depth": MAX_DEPTH + 1},
            ).all()
        return [node_row(r) for r in rows[:limit]], len(rows) > limit

    # -- versions ---------------------------------------------------------------------------
    def commit_version(
        self,
        owner: str,
        node_id: str,
        expected_version: int,
        manifest: bytes,
        chunk_ids: Sequence[str],
        meta: bytes | None,
        keep: int,
        now: float,
        meta_seq: int | None = None,
    ) -> Node:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        distinct = unique(chunk_ids)
        with self._write() as c:
            self._hold_now([owner])
            node = self._live(c, owner, node_id)
            if node.kind != "file":
                raise Conflict("versions can only be committed to files")
            if node.removed:
                raise Unavailable()
            if node.version != expected_version:
                raise PreconditionFailed(node.version)  # (wins over a stale meta: the client keeps a copy)
            if meta_seq is not None and meta_seq != node.seq:
                raise StaleMeta(node.seq)
            sizes: dict[str, int] = {}
            for batch in batches(distinct):
                rows = c.execute(
                    sa.select(chunks.c.chunk_id, chunks.c.size).where(
                        chunks.c.owner == owner, chunks.c.chunk_id.in_(batch)
                    )
                ).all()
                sizes.update((r[0], int(r[1])) for r in rows)
            missing = [cid for cid in distinct if cid not in sizes]
            if missing:
                raise MissingChunks(missing)
            size = sum(sizes[cid] for cid in chunk_ids)
            version = node.version + 1
            oldest_kept = version - keep + 1
            growth = len(manifest) - self._manifest_bytes(c, node_id, below=oldest_kept)
            if meta is not None:
                growth += len(meta) - len(node.meta)
            self._charge(c, owner, growth)
            c.execute(
                sa.insert(versions).values(node_id=node_id, version=version, size=size, created=now, manifest=manifest)
            )
            for batch in batches(distinct, 5000):
                c.execute(
                    sa.insert(version_chunks),
                    [{"node_id": node_id, "version": version, "chunk_id": cid} for cid in batch],
                )
            c.execute(
                sa.delete(version_chunks).where(
                    version_chunks.c.node_id == node_id, version_chunks.c.version < oldest_kept
                )
            )
            c.execute(sa.delete(versions).where(versions.c.node_id == node_id, versions.c.version < oldest_kept))
            values: dict[str, object] = {"version": version, "size": size, "seq": self._bump(c, owner)}
            if meta is not None:
                values["meta"] = meta
            self._set_node(c, node_id, **values)
            testhooks.pause("commit.written")
            return self._fetch_node(c, node_id)

    def list_versions(self, owner: str, node_id: str) -> list[VersionInfo]:
        with self._unit(False, snapshot=True) as c:
            if self._live(c, owner, node_id).removed:
                raise Unavailable()
            rows = c.execute(
                sa.select(versions.c.version, versions.c.size, versions.c.created)
                .where(versions.c.node_id == node_id)
                .order_by(versions.c.version.desc())
            ).all()
        return [VersionInfo(int(r[0]), int(r[1]), float(r[2])) for r in rows]

    def get_manifest(self, owner: str, node_id: str, version: int | None = None) -> tuple[int, bytes]:
        with self._unit(False, snapshot=True) as c:
            node = self._live(c, owner, node_id)
            if node.removed:
                raise Unavailable()
            wanted = node.version if version is None else version
            manifest = c.execute(
                sa.select(versions.c.manifest).where(versions.c.node_id == node_id, versions.c.version == wanted)
            ).scalar()
        if manifest is None:
            raise NotFound("no such version")
        return wanted, bytes(manifest)

    # -- lookups behind access decisions ----------------------------------------------------
    def find_node(self, node_id: str) -> Node:
        with self._read() as c:
            row = c.execute(sa.select(*NODE_COLS).where(nodes.c.node_id == node_id, nodes.c.gone == 0)).first()
        if row is None:
            raise NotFound("node not found")
        return node_row(row)

    def ancestry(self, node_id: str) -> list[tuple[str, bool]]:
        with self._unit(False, snapshot=True) as c:  # (a walk: see _walk)
            return self._ancestry(c, node_id)

    def nodes_with_chunk(self, chunk_id: str) -> list[str]:
        with self._read() as c:
            return list(
                c.execute(
                    sa.select(version_chunks.c.node_id)
                    .distinct()
                    .select_from(version_chunks.join(nodes, nodes.c.node_id == version_chunks.c.node_id))
                    .where(version_chunks.c.chunk_id == chunk_id, nodes.c.gone == 0)
                ).scalars()
            )

    def version_has_chunk(self, node_id: str, version: int, chunk_id: str) -> bool:
        with self._read() as c:
            row = c.execute(
                sa.select(version_chunks.c.chunk_id).where(
                    version_chunks.c.node_id == node_id,
                    version_chunks.c.version == version,
                    version_chunks.c.chunk_id == chunk_id,
                )
            ).first()
        return row is not None
