"""What every SQL implementation of the metadata store shares: units of work on an
SQLAlchemy engine, row mappers, and the tree and quota helpers the parts use.

An engine's specifics (how a writing unit begins, how an account or a chunk id
is held, which errors mean "retry") are the hooks a dialect class fills in
(server/store/sqlite.py, server/store/postgresql.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import Conflict, NotFound, QuotaExceeded
from .contract import MetaStore
from .records import MAX_DEPTH, Account, Identity, Limits, Link, Node, Share
from .tables import chunks, links, nodes, records, shares, users, versions

# Ids per statement (far below any engine's limit on bound parameters).
BATCH = 500

NODE_COLS = (
    nodes.c.node_id, nodes.c.owner, nodes.c.parent_id, nodes.c.kind, nodes.c.meta, nodes.c.version,
    nodes.c.size, nodes.c.trashed, nodes.c.gone, nodes.c.seq, nodes.c.removed,
)  # fmt: skip
ACCOUNT_COLS = (
    users.c.name, users.c.user_id, users.c.salt, users.c.kdf, users.c.auth_salt, users.c.auth_hash,
    users.c.wrapped_master, users.c.sign_pub, users.c.box_pub, users.c.box_sig, users.c.wrapped_private,
    users.c.root_node_id, users.c.seq, users.c.used, users.c.created, users.c.recovery_wrap,
    users.c.recovery_salt, users.c.recovery_hash,
)  # fmt: skip
LINK_COLS = (
    links.c.link_id, links.c.node_id, links.c.owner, links.c.blob, links.c.salt, links.c.kdf, links.c.expires,
    links.c.created, links.c.deleted,
)  # fmt: skip
_owner = users.alias("o")
_recipient = users.alias("r")
SHARE_COLS = (
    shares.c.share_id, shares.c.node_id, shares.c.owner, _owner.c.name, shares.c.recipient, _recipient.c.name,
    shares.c.access, shares.c["grant"], shares.c.created, shares.c.revoked,
)  # fmt: skip
SHARE_FROM = shares.join(_owner, _owner.c.user_id == shares.c.owner).join(
    _recipient, _recipient.c.user_id == shares.c.recipient
)


def node_row(row: Sequence[Any]) -> Node:
    return Node(
        node_id=row[0],
        owner=row[1],
        parent_id=row[2],
        kind=row[3],
        meta=bytes(row[4]),
        version=int(row[5]),
        size=int(row[6]),
        trashed=bool(row[7]),
        gone=bool(row[8]),
        seq=int(row[9]),
        removed=bool(row[10]),
    )


def share_row(row: Sequence[Any]) -> Share:
    return Share(
        share_id=row[0],
        node_id=row[1],
        owner=row[2],
        owner_name=row[3],
        recipient=row[4],
        recipient_name=row[5],
        access=row[6],
        grant=bytes(row[7]),
        created=float(row[8]),
        revoked=None if row[9] is None else float(row[9]),
    )


def link_row(row: Sequence[Any]) -> Link:
    return Link(
        link_id=row[0],
        node_id=row[1],
        owner=row[2],
        blob=bytes(row[3]),
        salt=None if row[4] is None else bytes(row[4]),
        kdf=None if row[5] is None else json.loads(row[5]),
        expires=None if row[6] is None else int(row[6]),
        created=float(row[7]),
        deleted=None if row[8] is None else float(row[8]),
    )


def account_row(row: Sequence[Any]) -> Account:
    return Account(
        name=row[0],
        user_id=row[1],
        salt=bytes(row[2]),
        kdf=json.loads(row[3]),
        auth_salt=bytes(row[4]),
        auth_hash=bytes(row[5]),
        wrapped_master=bytes(row[6]),
        identity=Identity(bytes(row[7]), bytes(row[8]), bytes(row[9]), bytes(row[10])),
        root_node_id=row[11],
        seq=int(row[12]),
        used=int(row[13]),
        created=float(row[14]),
        recovery_wrap=None if row[15] is None else bytes(row[15]),
        recovery_salt=None if row[16] is None else bytes(row[16]),
        recovery_hash=None if row[17] is None else bytes(row[17]),
    )


def batches(items: Sequence[str], size: int = BATCH) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def stored_bytes_expr(user_id: str) -> sa.ColumnElement[Any]:
    """What an account stores, counted from the data itself: chunk bytes it holds,
    the meta blob of each of its nodes not purged (trashed ones too), each retained
    version's manifest, and its sealed records. ``users.used`` is kept equal to it."""
    zero = sa.literal(0)
    held = sa.select(sa.func.coalesce(sa.func.sum(chunks.c.size), zero)).where(chunks.c.owner == user_id)
    metas = sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(nodes.c.meta)), zero)).where(
        nodes.c.owner == user_id, nodes.c.gone == 0
    )
    manifests = (
        sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(versions.c.manifest)), zero))
        .select_from(versions.join(nodes, nodes.c.node_id == versions.c.node_id))
        .where(nodes.c.owner == user_id)
    )
    sealed = sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(records.c.blob)), zero)).where(
        records.c.owner == user_id
    )
    return held.scalar_subquery() + metas.scalar_subquery() + manifests.scalar_subquery() + sealed.scalar_subquery()


def node_count_query(user_id: str) -> sa.Select[Any]:
    return sa.select(sa.func.count()).select_from(nodes).where(nodes.c.owner == user_id, nodes.c.gone == 0)


_ANCESTRY = sa.text(
    """
    WITH RECURSIVE anc(node_id, parent_id, trashed, depth) AS (
        SELECT node_id, parent_id, trashed, 0 FROM nodes WHERE node_id = :node_id
        UNION ALL
        SELECT n.node_id, n.parent_id, n.trashed, anc.depth + 1
        FROM nodes n JOIN anc ON n.node_id = anc.parent_id
        WHERE anc.depth < :max_depth
    )
    SELECT node_id, parent_id, trashed FROM anc ORDER BY depth
    """
)
_SUBTREE = sa.text(
    """
    WITH RECURSIVE sub(node_id, depth) AS (
        SELECT CAST(:node_id AS TEXT), 0
        UNION ALL
        SELECT n.node_id, sub.depth + 1
        FROM nodes n JOIN sub ON n.parent_id = sub.node_id
        WHERE n.gone = 0 AND sub.depth < :max_depth
    )
    SELECT node_id, depth FROM sub
    """
)


class SQLStoreBase(MetaStore):
    """Units of work over an SQLAlchemy engine: one per thread, nested ones as savepoints."""

    def __init__(self, engine: Engine, limits: Limits | None = None) -> None:
        self.engine = engine
        self.limits = Limits() if limits is None else limits
        self._local = threading.local()

    # -- dialect hooks ----------------------------------------------------------------
    def _connect(self, mode: str) -> Connection:
        """A pooled connection for a unit of this mode (dialect hook)."""
        return self.engine.connect()

    def _begin(self, conn: Connection, mode: str) -> None:
        """Start the outermost unit on ``conn``: ``write``, ``snapshot`` (one consistent state
        for several reads) or ``read`` (the reads of one method)."""
        conn.begin()

    def _one_writer(self, mode: str) -> AbstractContextManager[object]:
        """Held around an outermost unit of this mode (dialect hook): where the engine has one
        writer at a time, the process's writers queue here instead of polling the engine's lock."""
        return nullcontext()

    def _hold(self, conn: Connection, user_ids: Sequence[str]) -> bool:
        """Hold these accounts (sorted, not yet held) for the rest of the unit; True if it waited
        on anything (reads made before may be stale)."""
        return False

    def _hold_chunks(self, conn: Connection, chunk_ids: Sequence[str]) -> None:
        """Exclude other units recording or claiming these chunk ids, for the rest of the unit."""

    def _walk(self, c: Connection) -> None:
        """Before a recursive walk of the tree (ancestry, subtree, shared feed): make sure the
        engine follows the indexes at each step (dialect hook)."""

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT (with on_conflict_do_nothing / on_conflict_do_update)."""
        raise NotImplementedError

    # -- units of work ------------------------------------------------------------------
    @contextmanager
    def _unit(self, write: bool, snapshot: bool = False) -> Iterator[Connection]:
        local = self._local
        conn: Connection | None = getattr(local, "conn", None)
        if conn is not None:
            if write and local.read_only:
                raise RuntimeError("write inside a read snapshot")
            if not write:
                yield conn
                return
            nested = conn.begin_nested()
            # What a rolled-back savepoint undoes: the locks and settings taken inside it.
            held, walking = set(local.held), local.walking
            try:
                yield conn
            except BaseException:
                if nested.is_active:
                    nested.rollback()
                local.held, local.walking = held, walking
                raise
            nested.commit()
            return
        mode = "write" if write else "snapshot" if snapshot else "read"
        with self._one_writer(mode):
            conn = self._connect(mode)
            local.conn, local.read_only, local.held, local.walking = conn, not write, set(), False
            try:
                self._begin(conn, mode)
                try:
                    yield conn
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
            finally:
                local.conn, local.read_only, local.held = None, False, set()
                conn.close()

    def _write(self) -> Any:
        return self._unit(True)

    def _read(self) -> Any:
        """Reads of one method (inside a unit: that unit's state)."""
        return self._unit(False)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._unit(True):
            yield

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        with self._unit(False, snapshot=True):
            yield

    def hold_accounts(self, *user_ids: str) -> bool:
        return self._hold_now(user_ids)

    def _hold_now(self, user_ids: Iterable[str]) -> bool:
        local = self._local
        conn: Connection | None = getattr(local, "conn", None)
        if conn is None or local.read_only:
            return False
        wanted = sorted(set(user_ids) - local.held)
        if not wanted:
            return False
        waited = self._hold(conn, wanted)
        local.held.update(wanted)
        return waited

    def close(self) -> None:
        self.engine.dispose()

    # -- helpers shared by the parts ----------------------------------------------------
    @staticmethod
    def _bump(c: Connection, owner: str) -> int:
        seq = c.execute(
            sa.update(users).where(users.c.user_id == owner).values(seq=users.c.seq + 1).returning(users.c.seq)
        ).scalar()
        if seq is None:
            raise NotFound("account not found")
        return int(seq)

    def _charge(self, c: Connection, owner: str, delta: int) -> None:
        """Add ``delta`` bytes to ``owner``'s ``used``, refusing growth past the quota.

        Call it before the write it pays for, in the same unit, holding the owner:
        the check and the write are then one unit. Shrinking is never refused, so an
        account over its quota (say, after the operator lowered it) can still tidy up.
        """
        if delta > 0:
            used = c.execute(sa.select(users.c.used).where(users.c.user_id == owner)).scalar()
            if used is None:
                raise NotFound("account not found")
            if int(used) + delta > self.limits.quota:
                raise QuotaExceeded(quota=self.limits.quota, used=int(used))
        if delta:
            c.execute(sa.update(users).where(users.c.user_id == owner).values(used=users.c.used + delta))

    @staticmethod
    def _manifest_bytes(c: Connection, node_id: str, below: int | None = None) -> int:
        """Bytes of the node's retained manifests (only versions < ``below`` if given)."""
        q = sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(versions.c.manifest)), 0)).where(
            versions.c.node_id == node_id
        )
        if below is not None:
            q = q.where(versions.c.version < below)
        return int(c.execute(q).scalar() or 0)

    @staticmethod
    def _live(c: Connection, owner: str, node_id: str, what: str = "node") -> Node:
        """A node that exists, belongs to ``owner`` and is not purged.

        Another account's node answers exactly like an unknown one, so ids
        cannot be probed across accounts.
        """
        row = c.execute(
            sa.select(*NODE_COLS).where(nodes.c.node_id == node_id, nodes.c.owner == owner, nodes.c.gone == 0)
        ).first()
        if row is None:
            raise NotFound(f"{what} not found")
        return node_row(row)

    @staticmethod
    def _fetch_node(c: Connection, node_id: str) -> Node:
        return node_row(c.execute(sa.select(*NODE_COLS).where(nodes.c.node_id == node_id)).one())

    def _ancestry(self, c: Connection, node_id: str) -> list[tuple[str, bool]]:
        """(id, trashed) from ``node_id`` up to the root, inclusive.

        Refuses (409) a chain that does not reach a root within MAX_DEPTH,
        which also guarantees every caller sees the complete chain.
        """
        self._walk(c)
        rows = c.execute(_ANCESTRY, {"node_id": node_id, "max_depth": MAX_DEPTH + 1}).all()
        if not rows or rows[-1][1] is not None:
            raise Conflict("folder tree too deep")
        return [(r[0], bool(r[2])) for r in rows]

    def _subtree(self, c: Connection, node_id: str) -> list[tuple[str, int]]:
        """(id, depth below node_id) of the node and its live descendants."""
        self._walk(c)
        rows = c.execute(_SUBTREE, {"node_id": node_id, "max_depth": MAX_DEPTH + 1}).all()
        return [(r[0], int(r[1])) for r in rows]

    @staticmethod
    def _recount(c: Connection, user_ids: Sequence[str]) -> None:
        for user_id in user_ids:
            used = c.execute(sa.select(stored_bytes_expr(user_id))).scalar()
            count = c.execute(node_count_query(user_id)).scalar()
            c.execute(
                sa.update(users)
                .where(users.c.user_id == user_id)
                .values(used=int(used or 0), node_count=int(count or 0))
            )
