"""Metadata store: accounts, tokens, the node tree, versions, chunk ownership,
shares, public links, abuse reports, takedowns and sealed per-account records.

The tree and versioning rules of docs/SERVER_API.md are enforced here, inside
the transaction that applies a change, so a rule can never be checked against
one state and applied to another. :class:`MetaStore` is the contract (see
tests/server/test_server_metastore.py); :class:`SQLiteMetaStore` implements it
on one SQLite file in WAL mode with one connection per thread.

Every node change bumps the owning account's sequence counter in the same
transaction and stamps the node with it, which is what the change feed reads.

Quota: an account's ``used`` counts every byte it makes the server keep, not
only chunks: node ``meta`` blobs (until purged), retained manifests and
sealed records as well, so metadata cannot be used to store data for free.
Each write checks its growth against :attr:`MetaStore.limits` and adjusts
``used`` in the transaction that writes, so check and write are one unit;
pruning, purging, takedown and garbage collection give the bytes back.

Methods taking ``owner`` act on that account's nodes only; who may act for an
owner (sharing) is decided by server/access.py, which callers run inside
:meth:`MetaStore.transaction` so the decision holds for the write that follows.
"""

# ruff: noqa: S608
# (Every statement binds values with "?"; f-strings only splice the constant
# column lists below and runs of "?" marks.)
from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import testhooks
from .config import DEFAULT_MAX_NODES, DEFAULT_QUOTA, MAX_RECORDS
from .errors import (
    BadRequest,
    Conflict,
    Exists,
    MissingChunks,
    NodeLimit,
    NotFound,
    PreconditionFailed,
    QuotaExceeded,
    RecordLimit,
    StaleMeta,
    Unavailable,
)
from .schema import NODE_COUNT_SQL, STORED_BYTES_SQL, upgrade
from .schema import SCHEMA_VERSION as SCHEMA_VERSION
from .schema import recompute_usage as recount_usage
from .validate import scrub_fragments

# Deepest allowed node (the root is depth 0). Bounds every ancestor walk, so
# a hostile account cannot make tree checks arbitrarily slow.
MAX_DEPTH = 1024
# Tokens kept per account; older ones are revoked when a new one is issued.
MAX_TOKENS_PER_ACCOUNT = 100
# Ids per SQL statement (stays far below SQLite's variable limit).
_BATCH = 500


@dataclass(frozen=True)
class Limits:
    """What one account may hold; enforced by the store on every write.

    ``quota`` bounds the bytes of chunks, node metas, retained manifests and
    records together; ``max_nodes`` the nodes not yet purged (the root and
    the trash included); ``max_records`` the sealed records.
    """

    quota: int = DEFAULT_QUOTA
    max_nodes: int = DEFAULT_MAX_NODES
    max_records: int = MAX_RECORDS


@dataclass(frozen=True)
class Identity:
    """An account's public keys and its wrapped private keys (all opaque)."""

    sign_pub: bytes
    box_pub: bytes
    box_sig: bytes
    wrapped_private: bytes


@dataclass(frozen=True)
class NewAccount:
    """What signup stores. ``auth_hash`` is scrypt(auth_key, auth_salt), never the key."""

    name: str
    user_id: str
    salt: bytes
    kdf: dict[str, Any]
    auth_salt: bytes
    auth_hash: bytes
    wrapped_master: bytes
    identity: Identity
    root_node_id: str
    root_meta: bytes


@dataclass(frozen=True)
class Account:
    name: str
    user_id: str
    salt: bytes
    kdf: dict[str, Any]
    auth_salt: bytes
    auth_hash: bytes
    wrapped_master: bytes
    identity: Identity
    root_node_id: str
    seq: int
    used: int
    created: float


@dataclass(frozen=True)
class Node:
    """A node as the API shows it; ``meta`` is the client's encrypted blob."""

    node_id: str
    owner: str
    parent_id: str | None
    kind: str
    meta: bytes
    version: int
    size: int
    trashed: bool
    gone: bool
    seq: int
    removed: bool = False  # taken down after an abuse notice


@dataclass(frozen=True)
class Share:
    """A folder an owner shares with a recipient; ``grant`` is opaque (sealed by the owner)."""

    share_id: str
    node_id: str
    owner: str
    owner_name: str
    recipient: str
    recipient_name: str
    access: str  # "read" or "write"
    grant: bytes
    created: float
    revoked: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None


@dataclass(frozen=True)
class Link:
    """A public link to one file; ``blob`` is sealed under a key the server never sees."""

    link_id: str
    node_id: str
    owner: str
    blob: bytes
    salt: bytes | None
    kdf: dict[str, Any] | None
    expires: int | None
    created: float
    deleted: float | None = None


@dataclass(frozen=True)
class TakedownResult:
    """What :meth:`MetaStore.take_down` removed."""

    node_id: str
    owner: str
    nodes: list[str]  # the node and its subtree, all now marked removed
    link_ids: list[str]  # every link to one of them
    report_ids: list[str]  # abuse reports naming one of those links
    chunks_deleted: int  # blobs deleted from the chunk store
    bytes_deleted: int
    refs_removed: int  # (account, chunk) ownership rows dropped
    same_content: list[tuple[str, str]] = field(default_factory=list)  # (node, owner) of other files that
    # listed the same ciphertext chunks: removed as well, so nobody's file silently breaks


@dataclass(frozen=True)
class Record:
    """A sealed per-account record; ``blob`` is opaque (sealed under a key the server never sees)."""

    name: str
    version: int
    blob: bytes


@dataclass(frozen=True)
class VersionInfo:
    version: int
    size: int
    created: float


@dataclass
class GarbageReport:
    """What one collection pass removed."""

    refs_removed: int = 0  # (owner, chunk) ownership rows dropped
    bytes_released: int = 0  # quota bytes given back to accounts
    chunks_deleted: int = 0  # chunk blobs removed from the chunk store
    bytes_freed: int = 0  # their size on disk
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkRow:
    """An ownership row: ``owner`` holds (and pays ``size`` bytes for) the chunk.
    ``referenced``: a retained version of one of the owner's files lists it."""

    owner: str
    chunk_id: str
    size: int
    referenced: bool = False


@dataclass(frozen=True)
class VersionRef:
    """A chunk a retained version lists; ``held_size`` is the owner's row's size (None: no row)."""

    owner: str
    node_id: str
    version: int
    chunk_id: str
    held_size: int | None


@dataclass(frozen=True)
class UsageAudit:
    """An account's recorded counters beside the same counted from its data."""

    user_id: str
    used: int
    stored: int
    node_count: int
    nodes: int

    @property
    def consistent(self) -> bool:
        return self.used == self.stored and self.node_count == self.nodes


BlobDeleter = Callable[[str], "int | None"]
"""Deletes one chunk blob, returning the bytes freed, or None if it was already absent."""


class MetaStore(ABC):
    """Contract of a metadata store. Methods raising ServerError enforce API rules.

    Every write that makes an account store more bytes (a node's ``meta``, a
    manifest, a record; chunks through :meth:`add_chunk`) refuses with
    ``QuotaExceeded`` when ``used`` plus the growth would pass
    ``limits.quota``, and changes nothing then; a write that does not grow
    ``used`` is never refused for quota. ``used`` always equals
    :meth:`stored_bytes`.
    """

    limits: Limits

    # -- transactions ------------------------------------------------------------
    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Run the enclosed calls as one atomic unit holding the write lock.

        Nests (an inner failure undoes only the inner calls). Access checks
        made inside it hold for the writes that follow them.
        """

    @abstractmethod
    def snapshot(self) -> AbstractContextManager[None]:
        """Run the enclosed reads against one consistent state (no writes inside)."""

    # -- accounts and tokens -------------------------------------------------
    @abstractmethod
    def create_account(self, account: NewAccount, now: float) -> None:
        """Create the account and its root folder (its meta charged to the new account).
        ``Exists`` if name, user id or root id is taken."""

    @abstractmethod
    def account_by_name(self, name: str) -> Account | None: ...

    @abstractmethod
    def account_by_id(self, user_id: str) -> Account | None: ...

    @abstractmethod
    def add_token(self, token_hash: str, user_id: str, now: float, expires: float) -> None:
        """Store a token's hash; keeps at most MAX_TOKENS_PER_ACCOUNT per account."""

    @abstractmethod
    def user_for_token(self, token_hash: str, now: float) -> str | None:
        """The user id of a valid, unexpired token."""

    @abstractmethod
    def revoke_token(self, token_hash: str) -> None: ...

    @abstractmethod
    def purge_expired_tokens(self, now: float) -> int: ...

    # -- nodes -----------------------------------------------------------------
    @abstractmethod
    def create_node(self, owner: str, node_id: str, parent_id: str, kind: str, meta: bytes) -> Node:
        """``Exists`` if the id is taken, ``NotFound`` for an unknown parent, ``Conflict``
        if the parent is a file or (inside) the trash, ``Unavailable`` if it was taken down;
        ``NodeLimit`` if ``owner`` already has ``limits.max_nodes`` nodes not purged,
        ``QuotaExceeded`` if ``meta`` does not fit."""

    @abstractmethod
    def get_node(self, owner: str, node_id: str) -> Node:
        """A live (not purged) node of ``owner``; ``NotFound`` otherwise."""

    @abstractmethod
    def update_node(
        self,
        owner: str,
        node_id: str,
        meta: bytes,
        parent_id: str | None = None,
        replace: str | None = None,
        base_seq: int | None = None,
    ) -> Node:
        """Rename/re-encrypt, optionally move under ``parent_id`` and trash ``replace``, atomically.

        Compare-and-swap: with ``base_seq`` (the node's ``seq`` the new ``meta`` was
        built on), ``StaleMeta`` with the current seq unless it is still the node's
        seq, checked in the transaction that writes; nothing is changed then.

        A larger ``meta`` is charged the difference (``QuotaExceeded``), a smaller one gives it back.
        A move that changes which active share roots lie above the node also
        bumps every node of its subtree (so recipients' feeds see them arrive)
        and records the share roots they left (so those feeds show them leave).
        """

    @abstractmethod
    def trash_node(self, owner: str, node_id: str) -> Node: ...

    @abstractmethod
    def restore_node(self, owner: str, node_id: str) -> Node: ...

    @abstractmethod
    def purge_node(self, owner: str, node_id: str, recursive: bool) -> int:
        """Delete the node, its subtree and their versions; tombstones stay. Shares of purged
        folders are revoked and links to purged files deleted; their metas and manifests are
        given back to the quota and they stop counting as nodes. Returns nodes purged."""

    @abstractmethod
    def changes(self, owner: str, since: int, limit: int) -> tuple[list[Node], bool]:
        """Nodes whose seq > since, in seq order, at most ``limit``; and whether more follow."""

    @abstractmethod
    def shared_changes(self, owner: str, roots: Sequence[str], since: int, limit: int) -> tuple[list[Node], bool]:
        """Like :meth:`changes`, restricted to the subtrees under ``roots`` (share roots).

        A node is in if it, or a node on its parent chain, is one of ``roots``
        (trashed nodes and purge tombstones included: they keep their parent).
        A node moved out of every one of ``roots`` (see :meth:`update_node`)
        comes as a tombstone: ``gone``, empty ``meta``, no parent, nothing else.
        """

    # -- lookups behind access decisions (server/access.py) ----------------------
    @abstractmethod
    def find_node(self, node_id: str) -> Node:
        """A live (not purged) node of any account; ``NotFound`` otherwise."""

    @abstractmethod
    def ancestry(self, node_id: str) -> list[tuple[str, bool]]:
        """(id, trashed) from ``node_id`` up to its root, inclusive (purged nodes included)."""

    @abstractmethod
    def shares_between(self, owner: str, recipient: str) -> list[Share]:
        """Every share from ``owner`` to ``recipient``, revoked ones included."""

    @abstractmethod
    def is_share_root(self, node_id: str) -> bool:
        """Whether an active share names this node."""

    @abstractmethod
    def chunk_holders(self, chunk_id: str) -> list[str]:
        """The accounts storing the chunk."""

    @abstractmethod
    def nodes_with_chunk(self, chunk_id: str) -> list[str]:
        """The live nodes whose retained versions list the chunk."""

    @abstractmethod
    def is_removed_chunk(self, chunk_id: str) -> bool:
        """Whether a takedown deleted this chunk (it can then not be stored again)."""

    # -- shares ----------------------------------------------------------------
    @abstractmethod
    def put_share(self, owner: str, node_id: str, recipient: str, access: str, grant: bytes, now: float) -> Share:
        """Share a folder ``owner`` owns (not the root) with another account.

        An active share of the same node with the same recipient is updated in
        place (access and grant; same id). ``NotFound`` for an unknown node or
        recipient, ``Conflict`` for a file or the root, ``BadRequest`` for the
        owner as recipient, ``Unavailable`` for a taken-down folder.
        """

    @abstractmethod
    def get_share(self, share_id: str) -> Share | None: ...

    @abstractmethod
    def list_shares(self, user: str) -> tuple[list[Share], list[Share]]:
        """(outgoing, incoming) active shares of ``user``, oldest first."""

    @abstractmethod
    def revoke_share(self, owner: str, share_id: str, now: float) -> None:
        """End an active share of ``owner`` at once; ``NotFound`` otherwise."""

    # -- public links ------------------------------------------------------------
    @abstractmethod
    def create_link(
        self,
        owner: str,
        node_id: str,
        blob: bytes,
        salt: bytes | None,
        kdf: dict[str, Any] | None,
        expires: int | None,
        now: float,
    ) -> Link:
        """A new link (random id) to a file ``owner`` owns; ``Conflict`` for a folder,
        ``Unavailable`` for a taken-down file."""

    @abstractmethod
    def get_link(self, link_id: str) -> Link | None:
        """The link in any state (deleted ones too)."""

    @abstractmethod
    def list_links(self, owner: str) -> list[Link]:
        """``owner``'s links not deleted, oldest first."""

    @abstractmethod
    def delete_link(self, owner: str, link_id: str, now: float) -> None:
        """``NotFound`` unless it is a link of ``owner`` not yet deleted."""

    @abstractmethod
    def version_has_chunk(self, node_id: str, version: int, chunk_id: str) -> bool:
        """Whether that retained version lists the chunk."""

    # -- abuse reports and takedown ----------------------------------------------
    @abstractmethod
    def add_abuse_report(self, link_id: str, reason: str, now: float) -> str:
        """Store a report (the link id need not exist); returns its random id.

        ``reason`` is stored without any URL fragment (validate.scrub_fragments),
        whoever calls: a pasted link's key is never kept."""

    @abstractmethod
    def abuse_reports(self, link_ids: Sequence[str]) -> list[tuple[str, str, str, float]]:
        """(report_id, link_id, reason, created) of the reports naming any of ``link_ids``."""

    @abstractmethod
    def take_down(self, node_id: str, now: float, delete_blob: BlobDeleter) -> TakedownResult:
        """Mark the node and its subtree removed (bumping the owner's seq for each),
        drop their versions, and delete every chunk those versions listed: the
        ownership rows of every account holding it (quota given back) and the
        blob, through ``delete_blob`` under the write lock. The dropped manifests are
        given back to their owners' quota. The chunk ids are
        remembered so they cannot be stored again. ``NotFound`` for an unknown or
        purged node, ``Conflict`` for an account's root."""

    # -- versions --------------------------------------------------------------
    @abstractmethod
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
        """All-or-nothing commit of version expected+1 (see POST /v1/nodes/{id}/versions);
        the chunks must be stored by ``owner``. ``Unavailable`` for a taken-down file.

        Two compare-and-swaps, in this order: ``PreconditionFailed`` unless
        ``expected_version`` is the current version, then ``StaleMeta`` if
        ``meta_seq`` is given and is not the node's current ``seq``.

        The quota is charged the net growth: the new manifest plus the change of
        ``meta``, less the manifests of the versions pruned beyond ``keep``
        (``QuotaExceeded`` if that passes the quota)."""

    @abstractmethod
    def list_versions(self, owner: str, node_id: str) -> list[VersionInfo]:
        """Retained versions, newest first; ``Unavailable`` for a taken-down file."""

    @abstractmethod
    def get_manifest(self, owner: str, node_id: str, version: int | None = None) -> tuple[int, bytes]:
        """(version, manifest) of the given or current version; ``NotFound`` if none,
        ``Unavailable`` for a taken-down file."""

    # -- chunks ----------------------------------------------------------------
    @abstractmethod
    def missing_chunks(self, owner: str, ids: Sequence[str], now: float) -> list[str]:
        """Ids ``owner`` does not store (first-seen order, no repeats). The ones it does
        store are touched so the collector leaves them alone for another grace period."""

    @abstractmethod
    def owns_chunk(self, owner: str, chunk_id: str) -> bool: ...

    @abstractmethod
    def add_chunk(
        self, owner: str, chunk_id: str, size: int, quota: int, now: float, ensure_stored: Callable[[], None]
    ) -> bool:
        """Record that ``owner`` stores the chunk, True if new. Refuses with ``QuotaExceeded``
        (``used + size > quota``; the caller passes the server's quota, the one in ``limits``),
        or ``Unavailable`` for a chunk a takedown deleted.

        ``ensure_stored`` runs inside the transaction, after the quota check; it
        must make sure the blob exists (the collector deletes blobs only while
        holding the same write lock, so the two cannot interleave).
        """

    @abstractmethod
    def usage(self, owner: str) -> int:
        """``used``: bytes ``owner`` makes the server keep (chunks, metas, manifests, records)."""

    @abstractmethod
    def stored_bytes(self, owner: str) -> int:
        """The same figure as :meth:`usage`, counted from the stored data (an audit of ``used``)."""

    # -- sealed records ----------------------------------------------------------
    @abstractmethod
    def get_record(self, owner: str, name: str) -> Record | None:
        """``owner``'s record of that name; records of other accounts are never reachable."""

    @abstractmethod
    def put_record(self, owner: str, name: str, expected_version: int, blob: bytes, now: float) -> int:
        """Replace (or, with ``expected_version`` 0, create) a record; returns its new version.

        Compare-and-swap: ``PreconditionFailed`` (with the current version, 0 if
        there is none) unless ``expected_version`` is the current one.
        ``RecordLimit`` for a new record past ``limits.max_records``;
        ``QuotaExceeded`` if the growth does not fit.
        """

    @abstractmethod
    def delete_record(self, owner: str, name: str, expected_version: int) -> None:
        """Delete a record (its bytes given back); ``NotFound`` if there is none,
        ``PreconditionFailed`` if ``expected_version`` is not the current one."""

    # -- garbage collection ----------------------------------------------------
    @abstractmethod
    def collect_garbage(self, cutoff: float, delete_blob: BlobDeleter) -> GarbageReport:
        """Drop ownership of chunks no version of the owner references and untouched since
        ``cutoff``; blobs nobody owns any more are deleted through ``delete_blob`` under
        the write lock.

        Crash order: a batch's row removal is committed *before* its blobs are
        deleted (by :meth:`delete_unowned`), so a crash can leave a blob no row
        names (swept by the next pass), never a row whose blob is gone (which
        ``chunks/missing`` would report as stored, so a client would commit a
        version naming bytes the server no longer has)."""

    @abstractmethod
    def delete_unowned(self, ids: Sequence[str], delete_blob: BlobDeleter) -> tuple[int, int]:
        """Delete the blobs among ``ids`` that no account owns: (count, bytes).

        A blob a retained version lists is never deleted, owned or not (that state
        is damage for fsck to report, and deleting would make it worse).
        Ownership is checked and the blob deleted while the write lock is held, so an
        upload recording the chunk at the same time re-stores it (``add_chunk``'s
        ``ensure_stored``)."""

    # -- consistency audit (server/fsck.py) --------------------------------------
    @abstractmethod
    def iter_chunk_rows(self) -> Iterator[ChunkRow]:
        """Every ownership row, ordered by (owner, chunk id), read page by page (no long
        transaction: other writes may interleave between pages)."""

    @abstractmethod
    def iter_version_refs(self) -> Iterator[VersionRef]:
        """Every chunk a retained version lists, ordered by (node, version, chunk), page by page."""

    @abstractmethod
    def named_chunks(self, ids: Sequence[str]) -> set[str]:
        """The ids among ``ids`` that an ownership row or a retained version names."""

    @abstractmethod
    def usage_audit(self) -> list[UsageAudit]:
        """Every account's recorded ``used`` and node count beside the same counted from the data."""

    @abstractmethod
    def recompute_usage(self, user_ids: Sequence[str]) -> None:
        """Set ``used`` and the node count of these accounts from what they store (one transaction)."""

    @abstractmethod
    def drop_unstored_chunks(
        self, rows: Sequence[tuple[str, str]], is_stored: Callable[[str], bool]
    ) -> list[ChunkRow]:
        """Drop the (owner, chunk id) ownership rows among ``rows`` whose blob is absent
        (``is_stored`` false) and that no retained version of the owner lists, giving the
        bytes back; both are re-checked under the write lock. Returns the rows dropped."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""



_NODE_COLS = "node_id, owner, parent_id, kind, meta, version, size, trashed, gone, seq, removed"
_SHARE_COLS = 's.share_id, s.node_id, s.owner, o.name, s.recipient, r.name, s.access, s."grant", s.created, s.revoked'
_SHARE_FROM = "shares s JOIN users o ON o.user_id = s.owner JOIN users r ON r.user_id = s.recipient"
_LINK_COLS = "link_id, node_id, owner, blob, salt, kdf, expires, created, deleted"
_ACCOUNT_COLS = (
    "name, user_id, salt, kdf, auth_salt, auth_hash, wrapped_master, sign_pub, box_pub, box_sig,"
    " wrapped_private, root_node_id, seq, used, created"
)


def _node(row: Sequence[Any]) -> Node:
    return Node(
        node_id=row[0],
        owner=row[1],
        parent_id=row[2],
        kind=row[3],
        meta=bytes(row[4]),
        version=row[5],
        size=row[6],
        trashed=bool(row[7]),
        gone=bool(row[8]),
        seq=row[9],
        removed=bool(row[10]),
    )


def _share(row: Sequence[Any]) -> Share:
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


def _link(row: Sequence[Any]) -> Link:
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


def _tombstone(node: Node) -> Node:
    """How a node that left a recipient's shared subtree appears in their feed."""
    return Node(node.node_id, node.owner, None, node.kind, b"", 0, 0, False, True, node.seq)


def _account(row: Sequence[Any]) -> Account:
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
        seq=row[12],
        used=row[13],
        created=row[14],
    )


def _batches(items: Sequence[str], size: int = _BATCH) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class SQLiteMetaStore(MetaStore):
    """SQLite in WAL mode: readers never block the writer, writes serialise.

    Each thread gets its own connection (sqlite3 connections are not safe to
    share). Every mutation runs in ``BEGIN IMMEDIATE`` so it holds the write
    lock from its first read: checks and changes see the same state, across
    threads and across processes (e.g. an offline ``gc`` next to a live
    server).
    """

    def __init__(self, path: Path, limits: Limits | None = None) -> None:
        self.path = Path(path)
        self.limits = Limits() if limits is None else limits
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        # Create the file owner-only before SQLite does (its -wal and -shm
        # files inherit these permissions).
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        (current,) = conn.execute("PRAGMA user_version").fetchone()
        if current > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: schema version {current} is newer than this server")
        with self._write() as c:
            upgrade(c, current)  # (re-checks the version under the write lock)

    # -- plumbing ----------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._conns_lock:
                if self._closed:
                    raise RuntimeError("metadata store is closed")
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
                conn.execute("PRAGMA busy_timeout=30000")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA trusted_schema=OFF")
                self._conns.append(conn)
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; nested, a savepoint of the enclosing one."""
        conn = self._conn()
        local = self._local
        depth: int = getattr(local, "depth", 0)
        if depth:
            if getattr(local, "read_only", False):
                raise RuntimeError("write inside a read snapshot")
            name = f"sp{depth}"
            conn.execute(f"SAVEPOINT {name}")
            local.depth = depth + 1
            try:
                yield conn
                conn.execute(f"RELEASE {name}")
            except BaseException:
                if conn.in_transaction:  # (SQLite may already have rolled everything back)
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
                raise
            finally:
                local.depth = depth
            return
        conn.execute("BEGIN IMMEDIATE")
        local.depth = 1
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            local.depth = 0

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A snapshot for reads spanning several statements (inside a transaction: that one)."""
        conn = self._conn()
        local = self._local
        if getattr(local, "depth", 0):
            yield conn
            return
        conn.execute("BEGIN")
        local.depth, local.read_only = 1, True
        try:
            yield conn
        finally:
            local.depth, local.read_only = 0, False
            if conn.in_transaction:
                conn.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._write():
            yield

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        with self._read():
            yield

    def close(self) -> None:
        with self._conns_lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    @staticmethod
    def _bump(conn: sqlite3.Connection, owner: str) -> int:
        conn.execute("UPDATE users SET seq = seq + 1 WHERE user_id = ?", (owner,))
        row = conn.execute("SELECT seq FROM users WHERE user_id = ?", (owner,)).fetchone()
        if row is None:
            raise NotFound("account not found")
        return int(row[0])

    def _charge(self, conn: sqlite3.Connection, owner: str, delta: int) -> None:
        """Add ``delta`` bytes to ``owner``'s ``used``, refusing growth past the quota.

        Call it before the write it pays for, in the same transaction: the check
        and the write are then one unit. Shrinking is never refused, so an
        account over its quota (say, after the operator lowered it) can still
        tidy up.
        """
        if delta > 0:
            row = conn.execute("SELECT used FROM users WHERE user_id = ?", (owner,)).fetchone()
            if row is None:
                raise NotFound("account not found")
            used = int(row[0])
            if used + delta > self.limits.quota:
                raise QuotaExceeded(quota=self.limits.quota, used=used)
        if delta:
            conn.execute("UPDATE users SET used = used + ? WHERE user_id = ?", (delta, owner))

    @staticmethod
    def _manifest_bytes(conn: sqlite3.Connection, node_id: str, below: int | None = None) -> int:
        """Bytes of the node's retained manifests (only versions < ``below`` if given)."""
        sql = "SELECT COALESCE(SUM(length(manifest)), 0) FROM versions WHERE node_id = ?"
        args: tuple[Any, ...] = (node_id,)
        if below is not None:
            sql, args = sql + " AND version < ?", (node_id, below)
        return int(conn.execute(sql, args).fetchone()[0])

    @staticmethod
    def _live(conn: sqlite3.Connection, owner: str, node_id: str, what: str = "node") -> Node:
        """A node that exists, belongs to ``owner`` and is not purged.

        Another account's node answers exactly like an unknown one, so ids
        cannot be probed across accounts.
        """
        row = conn.execute(
            f"SELECT {_NODE_COLS} FROM nodes WHERE node_id = ? AND owner = ? AND gone = 0",
            (node_id, owner),
        ).fetchone()
        if row is None:
            raise NotFound(f"{what} not found")
        return _node(row)

    @staticmethod
    def _ancestry(conn: sqlite3.Connection, node_id: str) -> list[tuple[str, bool]]:
        """(id, trashed) from ``node_id`` up to the root, inclusive.

        Refuses (409) a chain that does not reach a root within MAX_DEPTH,
        which also guarantees every caller sees the complete chain.
        """
        rows = conn.execute(
            """
            WITH RECURSIVE anc(node_id, parent_id, trashed, depth) AS (
                SELECT node_id, parent_id, trashed, 0 FROM nodes WHERE node_id = ?
                UNION ALL
                SELECT n.node_id, n.parent_id, n.trashed, anc.depth + 1
                FROM nodes n JOIN anc ON n.node_id = anc.parent_id
                WHERE anc.depth < ?
            )
            SELECT node_id, parent_id, trashed FROM anc ORDER BY depth
            """,
            (node_id, MAX_DEPTH + 1),
        ).fetchall()
        if not rows or rows[-1][1] is not None:
            raise Conflict("folder tree too deep")
        return [(r[0], bool(r[2])) for r in rows]

    @staticmethod
    def _subtree(conn: sqlite3.Connection, node_id: str) -> list[tuple[str, int]]:
        """(id, depth below node_id) of the node and its live descendants."""
        rows = conn.execute(
            """
            WITH RECURSIVE sub(node_id, depth) AS (
                SELECT ?, 0
                UNION ALL
                SELECT n.node_id, sub.depth + 1
                FROM nodes n JOIN sub ON n.parent_id = sub.node_id
                WHERE n.gone = 0 AND sub.depth < ?
            )
            SELECT node_id, depth FROM sub
            """,
            (node_id, MAX_DEPTH + 1),
        ).fetchall()
        return [(r[0], int(r[1])) for r in rows]

    @staticmethod
    def _has_children(conn: sqlite3.Connection, node_id: str, *, include_trashed: bool) -> bool:
        sql = "SELECT 1 FROM nodes WHERE parent_id = ? AND gone = 0"
        if not include_trashed:
            sql += " AND trashed = 0"
        return conn.execute(sql + " LIMIT 1", (node_id,)).fetchone() is not None

    def _fetch_node(self, conn: sqlite3.Connection, node_id: str) -> Node:
        row = conn.execute(f"SELECT {_NODE_COLS} FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
        return _node(row)

    # -- accounts and tokens -----------------------------------------------------
    def create_account(self, account: NewAccount, now: float) -> None:
        ident = account.identity
        with self._write() as c:
            taken = c.execute(
                "SELECT 1 FROM users WHERE user_id = ? OR name = ?", (account.user_id, account.name)
            ).fetchone()
            if taken is not None:
                raise Exists("user name or user id already taken")
            if c.execute("SELECT 1 FROM nodes WHERE node_id = ?", (account.root_node_id,)).fetchone():
                raise Exists("node id already taken")
            if len(account.root_meta) > self.limits.quota:
                raise QuotaExceeded(quota=self.limits.quota, used=0)
            c.execute(
                f"INSERT INTO users ({_ACCOUNT_COLS}) VALUES ({_marks(15)})",
                (
                    account.name,
                    account.user_id,
                    account.salt,
                    json.dumps(account.kdf, sort_keys=True),
                    account.auth_salt,
                    account.auth_hash,
                    account.wrapped_master,
                    ident.sign_pub,
                    ident.box_pub,
                    ident.box_sig,
                    ident.wrapped_private,
                    account.root_node_id,
                    1,
                    len(account.root_meta),  # the root's meta is the account's first stored bytes
                    now,
                ),
            )
            c.execute(
                "INSERT INTO nodes (node_id, owner, parent_id, kind, meta, seq) VALUES (?, ?, NULL, 'dir', ?, 1)",
                (account.root_node_id, account.user_id, account.root_meta),
            )
            c.execute("UPDATE users SET node_count = 1 WHERE user_id = ?", (account.user_id,))

    def account_by_name(self, name: str) -> Account | None:
        row = self._conn().execute(f"SELECT {_ACCOUNT_COLS} FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else _account(row)

    def account_by_id(self, user_id: str) -> Account | None:
        row = self._conn().execute(f"SELECT {_ACCOUNT_COLS} FROM users WHERE user_id = ?", (user_id,)).fetchone()
        return None if row is None else _account(row)

    def add_token(self, token_hash: str, user_id: str, now: float, expires: float) -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO tokens (token_hash, user_id, created, expires) VALUES (?, ?, ?, ?)",
                (token_hash, user_id, now, expires),
            )
            c.execute(
                """
                DELETE FROM tokens WHERE user_id = ? AND token_hash NOT IN (
                    SELECT token_hash FROM tokens WHERE user_id = ?
                    ORDER BY created DESC, rowid DESC LIMIT ?)
                """,
                (user_id, user_id, MAX_TOKENS_PER_ACCOUNT),
            )

    def user_for_token(self, token_hash: str, now: float) -> str | None:
        row = (
            self._conn()
            .execute("SELECT user_id FROM tokens WHERE token_hash = ? AND expires > ?", (token_hash, now))
            .fetchone()
        )
        return None if row is None else str(row[0])

    def revoke_token(self, token_hash: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM tokens WHERE token_hash = ?", (token_hash,))

    def purge_expired_tokens(self, now: float) -> int:
        with self._write() as c:
            return c.execute("DELETE FROM tokens WHERE expires <= ?", (now,)).rowcount

    # -- nodes -------------------------------------------------------------------
    def create_node(self, owner: str, node_id: str, parent_id: str, kind: str, meta: bytes) -> Node:
        if kind not in ("dir", "file"):
            raise ValueError("kind must be 'dir' or 'file'")
        with self._write() as c:
            if c.execute("SELECT 1 FROM nodes WHERE node_id = ?", (node_id,)).fetchone():
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
            (count,) = c.execute("SELECT node_count FROM users WHERE user_id = ?", (owner,)).fetchone()
            if count >= self.limits.max_nodes:
                raise NodeLimit(self.limits.max_nodes)
            self._charge(c, owner, len(meta))
            c.execute("UPDATE users SET node_count = node_count + 1 WHERE user_id = ?", (owner,))
            seq = self._bump(c, owner)
            c.execute(
                "INSERT INTO nodes (node_id, owner, parent_id, kind, meta, seq) VALUES (?, ?, ?, ?, ?, ?)",
                (node_id, owner, parent_id, kind, meta, seq),
            )
            return self._fetch_node(c, node_id)

    def get_node(self, owner: str, node_id: str) -> Node:
        return self._live(self._conn(), owner, node_id)

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
                    seq = self._bump(c, owner)
                    c.execute("UPDATE nodes SET trashed = 1, seq = ? WHERE node_id = ?", (seq, target.node_id))
            self._charge(c, owner, len(meta) - len(node.meta))
            if moved_to:
                self._cross_share_boundaries(c, owner, node_id, moved_from, moved_to)
            seq = self._bump(c, owner)
            c.execute("UPDATE nodes SET parent_id = ?, meta = ?, seq = ? WHERE node_id = ?", (dest, meta, seq, node_id))
            return self._fetch_node(c, node_id)

    def _cross_share_boundaries(
        self,
        c: sqlite3.Connection,
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
        roots = {r[0] for r in c.execute("SELECT node_id FROM shares WHERE owner = ? AND revoked IS NULL", (owner,))}
        if not roots:
            return
        before = roots.intersection(nid for nid, _ in old_chain)
        after = roots.intersection(nid for nid, _ in new_chain)
        if before == after:
            return
        subtree = sorted(self._subtree(c, node_id), key=lambda item: item[1])
        for nid, depth in subtree:
            if depth > 0:
                c.execute("UPDATE nodes SET seq = ? WHERE node_id = ?", (self._bump(c, owner), nid))
            c.executemany(
                "INSERT OR IGNORE INTO share_exits (node_id, root_id) VALUES (?, ?)",
                ((nid, root) for root in sorted(before - after)),
            )
            c.executemany(
                "DELETE FROM share_exits WHERE node_id = ? AND root_id = ?", ((nid, root) for root in sorted(after))
            )

    def trash_node(self, owner: str, node_id: str) -> Node:
        with self._write() as c:
            node = self._live(c, owner, node_id)
            if node.parent_id is None:
                raise Conflict("the root cannot be deleted")
            if not node.trashed:
                seq = self._bump(c, owner)
                c.execute("UPDATE nodes SET trashed = 1, seq = ? WHERE node_id = ?", (seq, node_id))
            return self._fetch_node(c, node_id)

    def restore_node(self, owner: str, node_id: str) -> Node:
        with self._write() as c:
            node = self._live(c, owner, node_id)
            if node.trashed:
                assert node.parent_id is not None  # the root is never trashed
                if any(trashed for _, trashed in self._ancestry(c, node.parent_id)):
                    raise Conflict("the parent folder is in the trash")
                seq = self._bump(c, owner)
                c.execute("UPDATE nodes SET trashed = 0, seq = ? WHERE node_id = ?", (seq, node_id))
            return self._fetch_node(c, node_id)

    def purge_node(self, owner: str, node_id: str, recursive: bool) -> int:
        now = time.time()
        with self._write() as c:
            node = self._live(c, owner, node_id)
            if node.parent_id is None:
                raise Conflict("the root cannot be deleted")
            subtree = self._subtree(c, node_id)
            if len(subtree) > 1 and not recursive:
                raise Conflict("folder not empty; purge with recursive=1")
            # Deepest first, so a folder's tombstone follows its children's
            # in the change feed.
            subtree.sort(key=lambda item: -item[1])
            released = 0
            for nid, _ in subtree:
                (meta_len,) = c.execute("SELECT length(meta) FROM nodes WHERE node_id = ?", (nid,)).fetchone()
                released += int(meta_len) + self._manifest_bytes(c, nid)
                c.execute("DELETE FROM version_chunks WHERE node_id = ?", (nid,))
                c.execute("DELETE FROM versions WHERE node_id = ?", (nid,))
                c.execute("UPDATE shares SET revoked = ? WHERE node_id = ? AND revoked IS NULL", (now, nid))
                c.execute("UPDATE links SET deleted = ? WHERE node_id = ? AND deleted IS NULL", (now, nid))
                seq = self._bump(c, owner)
                c.execute(
                    "UPDATE nodes SET gone = 1, meta = x'', version = 0, size = 0, seq = ? WHERE node_id = ?",
                    (seq, nid),
                )
            c.execute(
                "UPDATE users SET used = used - ?, node_count = node_count - ? WHERE user_id = ?",
                (released, len(subtree), owner),
            )
            return len(subtree)

    def changes(self, owner: str, since: int, limit: int) -> tuple[list[Node], bool]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {_NODE_COLS} FROM nodes WHERE owner = ? AND seq > ? ORDER BY seq LIMIT ?",
                (owner, since, limit + 1),
            )
            .fetchall()
        )
        return [_node(r) for r in rows[:limit]], len(rows) > limit

    # -- versions ----------------------------------------------------------------
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
        distinct = _unique(chunk_ids)
        with self._write() as c:
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
            for batch in _batches(distinct):
                rows = c.execute(
                    f"SELECT chunk_id, size FROM chunks WHERE owner = ? AND chunk_id IN ({_marks(len(batch))})",
                    (owner, *batch),
                ).fetchall()
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
                "INSERT INTO versions (node_id, version, size, created, manifest) VALUES (?, ?, ?, ?, ?)",
                (node_id, version, size, now, manifest),
            )
            c.executemany(
                "INSERT INTO version_chunks (node_id, version, chunk_id) VALUES (?, ?, ?)",
                ((node_id, version, cid) for cid in distinct),
            )
            c.execute("DELETE FROM version_chunks WHERE node_id = ? AND version < ?", (node_id, oldest_kept))
            c.execute("DELETE FROM versions WHERE node_id = ? AND version < ?", (node_id, oldest_kept))
            seq = self._bump(c, owner)
            c.execute(
                "UPDATE nodes SET version = ?, size = ?, meta = COALESCE(?, meta), seq = ? WHERE node_id = ?",
                (version, size, meta, seq, node_id),
            )
            testhooks.pause("commit.written")
            return self._fetch_node(c, node_id)

    def list_versions(self, owner: str, node_id: str) -> list[VersionInfo]:
        with self._read() as c:
            if self._live(c, owner, node_id).removed:
                raise Unavailable()
            rows = c.execute(
                "SELECT version, size, created FROM versions WHERE node_id = ? ORDER BY version DESC", (node_id,)
            ).fetchall()
        return [VersionInfo(int(r[0]), int(r[1]), float(r[2])) for r in rows]

    def get_manifest(self, owner: str, node_id: str, version: int | None = None) -> tuple[int, bytes]:
        with self._read() as c:
            node = self._live(c, owner, node_id)
            if node.removed:
                raise Unavailable()
            wanted = node.version if version is None else version
            row = c.execute(
                "SELECT manifest FROM versions WHERE node_id = ? AND version = ?", (node_id, wanted)
            ).fetchone()
        if row is None:
            raise NotFound("no such version")
        return wanted, bytes(row[0])

    # -- chunks ------------------------------------------------------------------
    def missing_chunks(self, owner: str, ids: Sequence[str], now: float) -> list[str]:
        distinct = _unique(ids)
        owned: set[str] = set()
        with self._write() as c:
            for batch in _batches(distinct):
                marks = _marks(len(batch))
                rows = c.execute(
                    f"SELECT chunk_id FROM chunks WHERE owner = ? AND chunk_id IN ({marks})",
                    (owner, *batch),
                ).fetchall()
                found = [r[0] for r in rows]
                owned.update(found)
                if found:
                    c.execute(
                        f"UPDATE chunks SET touched = ? WHERE owner = ? AND chunk_id IN ({_marks(len(found))})",
                        (now, owner, *found),
                    )
        return [cid for cid in distinct if cid not in owned]

    def owns_chunk(self, owner: str, chunk_id: str) -> bool:
        row = (
            self._conn().execute("SELECT 1 FROM chunks WHERE owner = ? AND chunk_id = ?", (owner, chunk_id)).fetchone()
        )
        return row is not None

    def add_chunk(
        self, owner: str, chunk_id: str, size: int, quota: int, now: float, ensure_stored: Callable[[], None]
    ) -> bool:
        with self._write() as c:
            if c.execute("SELECT 1 FROM chunks WHERE owner = ? AND chunk_id = ?", (owner, chunk_id)).fetchone():
                ensure_stored()
                c.execute("UPDATE chunks SET touched = ? WHERE owner = ? AND chunk_id = ?", (now, owner, chunk_id))
                return False
            row = c.execute("SELECT used FROM users WHERE user_id = ?", (owner,)).fetchone()
            if row is None:
                raise NotFound("account not found")
            if c.execute("SELECT 1 FROM removed_chunks WHERE chunk_id = ?", (chunk_id,)).fetchone():
                raise Unavailable()
            used = int(row[0])
            if used + size > quota:
                raise QuotaExceeded(quota=quota, used=used)
            ensure_stored()
            c.execute(
                "INSERT INTO chunks (owner, chunk_id, size, created, touched) VALUES (?, ?, ?, ?, ?)",
                (owner, chunk_id, size, now, now),
            )
            c.execute("UPDATE users SET used = used + ? WHERE user_id = ?", (size, owner))
            return True

    def usage(self, owner: str) -> int:
        row = self._conn().execute("SELECT used FROM users WHERE user_id = ?", (owner,)).fetchone()
        if row is None:
            raise NotFound("account not found")
        return int(row[0])

    def stored_bytes(self, owner: str) -> int:
        with self._read() as c:
            if c.execute("SELECT 1 FROM users WHERE user_id = ?", (owner,)).fetchone() is None:
                raise NotFound("account not found")
            return int(c.execute(f"SELECT {STORED_BYTES_SQL}", (owner,) * 4).fetchone()[0])

    # -- sealed records ----------------------------------------------------------
    def get_record(self, owner: str, name: str) -> Record | None:
        row = (
            self._conn()
            .execute("SELECT version, blob FROM records WHERE owner = ? AND name = ?", (owner, name))
            .fetchone()
        )
        return None if row is None else Record(name, int(row[0]), bytes(row[1]))

    def put_record(self, owner: str, name: str, expected_version: int, blob: bytes, now: float) -> int:
        with self._write() as c:
            row = c.execute(
                "SELECT version, length(blob) FROM records WHERE owner = ? AND name = ?", (owner, name)
            ).fetchone()
            current, old_len = (0, 0) if row is None else (int(row[0]), int(row[1]))
            if current != expected_version:
                raise PreconditionFailed(current)
            if row is None:
                (count,) = c.execute("SELECT COUNT(*) FROM records WHERE owner = ?", (owner,)).fetchone()
                if count >= self.limits.max_records:
                    raise RecordLimit(self.limits.max_records)
            self._charge(c, owner, len(blob) - old_len)
            c.execute(
                "INSERT INTO records (owner, name, version, blob, updated) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (owner, name) DO UPDATE SET version = excluded.version, blob = excluded.blob,"
                " updated = excluded.updated",
                (owner, name, current + 1, blob, now),
            )
            return current + 1

    def delete_record(self, owner: str, name: str, expected_version: int) -> None:
        with self._write() as c:
            row = c.execute(
                "SELECT version, length(blob) FROM records WHERE owner = ? AND name = ?", (owner, name)
            ).fetchone()
            if row is None:
                raise NotFound("record not found")
            if int(row[0]) != expected_version:
                raise PreconditionFailed(int(row[0]))
            c.execute("DELETE FROM records WHERE owner = ? AND name = ?", (owner, name))
            self._charge(c, owner, -int(row[1]))

    # -- garbage collection ------------------------------------------------------
    def collect_garbage(self, cutoff: float, delete_blob: BlobDeleter) -> GarbageReport:
        report = GarbageReport()
        last_rowid = 0
        while True:
            unowned: list[str] = []
            with self._write() as c:
                rows = c.execute(
                    """
                    SELECT rowid, owner, chunk_id, size, touched FROM chunks
                    WHERE rowid > ? ORDER BY rowid LIMIT ?
                    """,
                    (last_rowid, _BATCH),
                ).fetchall()
                if not rows:
                    return report
                last_rowid = rows[-1][0]
                for rowid, owner, cid, size, touched in rows:
                    if touched >= cutoff:
                        continue
                    referenced = c.execute(
                        """
                        SELECT 1 FROM version_chunks vc JOIN nodes n ON n.node_id = vc.node_id
                        WHERE vc.chunk_id = ? AND n.owner = ? LIMIT 1
                        """,
                        (cid, owner),
                    ).fetchone()
                    if referenced is not None:
                        continue
                    c.execute("DELETE FROM chunks WHERE rowid = ?", (rowid,))
                    c.execute("UPDATE users SET used = used - ? WHERE user_id = ?", (size, owner))
                    report.refs_removed += 1
                    report.bytes_released += int(size)
                    if c.execute("SELECT 1 FROM chunks WHERE chunk_id = ? LIMIT 1", (cid,)).fetchone() is None:
                        unowned.append(cid)
            # Committed: now the blobs (see the contract for why in this order).
            testhooks.pause("gc.rows_removed")
            deleted, freed = self.delete_unowned(unowned, delete_blob)
            report.chunks_deleted += deleted
            report.bytes_freed += freed

    def delete_unowned(self, ids: Sequence[str], delete_blob: BlobDeleter) -> tuple[int, int]:
        count = freed = 0
        for batch in _batches(_unique(ids)):
            with self._write() as c:
                named = self._named(c, batch)
                for cid in batch:
                    if cid not in named:
                        size = delete_blob(cid)
                        if size is not None:
                            count += 1
                            freed += size
        return count, freed

    # -- consistency audit -------------------------------------------------------------
    def iter_chunk_rows(self) -> Iterator[ChunkRow]:
        after = ("", "")
        while True:
            rows = (
                self._conn()
                .execute(
                    """
                    SELECT c.owner, c.chunk_id, c.size, EXISTS (
                        SELECT 1 FROM version_chunks vc JOIN nodes n ON n.node_id = vc.node_id
                        WHERE vc.chunk_id = c.chunk_id AND n.owner = c.owner)
                    FROM chunks c WHERE (c.owner, c.chunk_id) > (?, ?)
                    ORDER BY c.owner, c.chunk_id LIMIT ?
                    """,
                    (*after, _BATCH),
                )
                .fetchall()
            )
            yield from (ChunkRow(r[0], r[1], int(r[2]), bool(r[3])) for r in rows)
            if len(rows) < _BATCH:
                return
            after = (rows[-1][0], rows[-1][1])

    def iter_version_refs(self) -> Iterator[VersionRef]:
        after: tuple[str, int, str] = ("", -1, "")
        while True:
            rows = (
                self._conn()
                .execute(
                    """
                    SELECT n.owner, vc.node_id, vc.version, vc.chunk_id, c.size
                    FROM version_chunks vc JOIN nodes n ON n.node_id = vc.node_id
                    LEFT JOIN chunks c ON c.owner = n.owner AND c.chunk_id = vc.chunk_id
                    WHERE (vc.node_id, vc.version, vc.chunk_id) > (?, ?, ?)
                    ORDER BY vc.node_id, vc.version, vc.chunk_id LIMIT ?
                    """,
                    (*after, _BATCH),
                )
                .fetchall()
            )
            yield from (VersionRef(r[0], r[1], int(r[2]), r[3], None if r[4] is None else int(r[4])) for r in rows)
            if len(rows) < _BATCH:
                return
            after = (rows[-1][1], int(rows[-1][2]), rows[-1][3])

    @staticmethod
    def _named(c: sqlite3.Connection, batch: Sequence[str]) -> set[str]:
        marks = _marks(len(batch))
        rows = c.execute(
            f"SELECT chunk_id FROM chunks WHERE chunk_id IN ({marks})"
            f" UNION SELECT chunk_id FROM version_chunks WHERE chunk_id IN ({marks})",
            (*batch, *batch),
        ).fetchall()
        return {r[0] for r in rows}

    def named_chunks(self, ids: Sequence[str]) -> set[str]:
        named: set[str] = set()
        with self._read() as c:
            for batch in _batches(_unique(ids)):
                named |= self._named(c, batch)
        return named

    def usage_audit(self) -> list[UsageAudit]:
        audits: list[UsageAudit] = []
        with self._read() as c:
            users = c.execute("SELECT user_id, used, node_count FROM users ORDER BY user_id").fetchall()
            for user_id, used, node_count in users:
                (stored,) = c.execute(f"SELECT {STORED_BYTES_SQL}", (user_id,) * 4).fetchone()
                (nodes,) = c.execute(NODE_COUNT_SQL, (user_id,)).fetchone()
                audits.append(UsageAudit(user_id, int(used), int(stored), int(node_count), int(nodes)))
        return audits

    def recompute_usage(self, user_ids: Sequence[str]) -> None:
        with self._write() as c:
            recount_usage(c, user_ids)

    def drop_unstored_chunks(
        self, rows: Sequence[tuple[str, str]], is_stored: Callable[[str], bool]
    ) -> list[ChunkRow]:
        dropped: list[ChunkRow] = []
        unique = list(dict.fromkeys(rows))
        for start in range(0, len(unique), _BATCH):
            with self._write() as c:
                for owner, cid in unique[start : start + _BATCH]:
                    row = c.execute(
                        "SELECT rowid, size FROM chunks WHERE owner = ? AND chunk_id = ?", (owner, cid)
                    ).fetchone()
                    if row is None:
                        continue
                    referenced = c.execute(
                        """
                        SELECT 1 FROM version_chunks vc JOIN nodes n ON n.node_id = vc.node_id
                        WHERE vc.chunk_id = ? AND n.owner = ? LIMIT 1
                        """,
                        (cid, owner),
                    ).fetchone()
                    if referenced is not None or is_stored(cid):
                        continue
                    c.execute("DELETE FROM chunks WHERE rowid = ?", (row[0],))
                    c.execute("UPDATE users SET used = used - ? WHERE user_id = ?", (row[1], owner))
                    dropped.append(ChunkRow(owner, cid, int(row[1])))
        return dropped

    # -- lookups behind access decisions -----------------------------------------------
    def find_node(self, node_id: str) -> Node:
        row = (
            self._conn()
            .execute(f"SELECT {_NODE_COLS} FROM nodes WHERE node_id = ? AND gone = 0", (node_id,))
            .fetchone()
        )
        if row is None:
            raise NotFound("node not found")
        return _node(row)

    def ancestry(self, node_id: str) -> list[tuple[str, bool]]:
        return self._ancestry(self._conn(), node_id)

    def shares_between(self, owner: str, recipient: str) -> list[Share]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {_SHARE_COLS} FROM {_SHARE_FROM} WHERE s.recipient = ? AND s.owner = ? ORDER BY s.rowid",
                (recipient, owner),
            )
            .fetchall()
        )
        return [_share(r) for r in rows]

    def is_share_root(self, node_id: str) -> bool:
        row = (
            self._conn()
            .execute("SELECT 1 FROM shares WHERE node_id = ? AND revoked IS NULL LIMIT 1", (node_id,))
            .fetchone()
        )
        return row is not None

    def chunk_holders(self, chunk_id: str) -> list[str]:
        rows = self._conn().execute("SELECT owner FROM chunks WHERE chunk_id = ?", (chunk_id,)).fetchall()
        return [r[0] for r in rows]

    def nodes_with_chunk(self, chunk_id: str) -> list[str]:
        rows = self._conn().execute(
            "SELECT DISTINCT v.node_id FROM version_chunks v JOIN nodes n ON n.node_id = v.node_id "
            "WHERE v.chunk_id = ? AND n.gone = 0", (chunk_id,)).fetchall()
        return [r[0] for r in rows]

    def is_removed_chunk(self, chunk_id: str) -> bool:
        row = self._conn().execute("SELECT 1 FROM removed_chunks WHERE chunk_id = ?", (chunk_id,)).fetchone()
        return row is not None

    # -- shares --------------------------------------------------------------------------
    def put_share(self, owner: str, node_id: str, recipient: str, access: str, grant: bytes, now: float) -> Share:
        if access not in ("read", "write"):
            raise BadRequest('access: expected "read" or "write"')
        if recipient == owner:
            raise BadRequest("a folder cannot be shared with its owner")
        with self._write() as c:
            node = self._live(c, owner, node_id)
            if node.kind != "dir":
                raise Conflict("only folders can be shared")
            if node.parent_id is None:
                raise Conflict("the root cannot be shared")
            if node.removed:
                raise Unavailable()
            if c.execute("SELECT 1 FROM users WHERE user_id = ?", (recipient,)).fetchone() is None:
                raise NotFound("user not found")
            row = c.execute(
                "SELECT share_id FROM shares WHERE node_id = ? AND recipient = ? AND revoked IS NULL",
                (node_id, recipient),
            ).fetchone()
            if row is not None:
                share_id = str(row[0])
                c.execute('UPDATE shares SET access = ?, "grant" = ? WHERE share_id = ?', (access, grant, share_id))
            else:
                share_id = secrets.token_hex(16)
                c.execute(
                    'INSERT INTO shares (share_id, node_id, owner, recipient, access, "grant", created)'
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (share_id, node_id, owner, recipient, access, grant, now),
                )
            return self._fetch_share(c, share_id)

    @staticmethod
    def _fetch_share(conn: sqlite3.Connection, share_id: str) -> Share:
        row = conn.execute(f"SELECT {_SHARE_COLS} FROM {_SHARE_FROM} WHERE s.share_id = ?", (share_id,)).fetchone()
        return _share(row)

    def get_share(self, share_id: str) -> Share | None:
        row = (
            self._conn()
            .execute(f"SELECT {_SHARE_COLS} FROM {_SHARE_FROM} WHERE s.share_id = ?", (share_id,))
            .fetchone()
        )
        return None if row is None else _share(row)

    def list_shares(self, user: str) -> tuple[list[Share], list[Share]]:
        with self._read() as c:
            out = c.execute(
                f"SELECT {_SHARE_COLS} FROM {_SHARE_FROM} WHERE s.owner = ? AND s.revoked IS NULL ORDER BY s.rowid",
                (user,),
            ).fetchall()
            inc = c.execute(
                f"SELECT {_SHARE_COLS} FROM {_SHARE_FROM} WHERE s.recipient = ? AND s.revoked IS NULL ORDER BY s.rowid",
                (user,),
            ).fetchall()
        return [_share(r) for r in out], [_share(r) for r in inc]

    def revoke_share(self, owner: str, share_id: str, now: float) -> None:
        with self._write() as c:
            done = c.execute(
                "UPDATE shares SET revoked = ? WHERE share_id = ? AND owner = ? AND revoked IS NULL",
                (now, share_id, owner),
            ).rowcount
            if not done:
                raise NotFound("share not found")

    def shared_changes(self, owner: str, roots: Sequence[str], since: int, limit: int) -> tuple[list[Node], bool]:
        roots = _unique(roots)
        if not roots:
            return [], False
        marks = _marks(len(roots))
        # "sub" walks down from the roots over every row, tombstones included
        # (they keep their parent); UNION (not ALL) ends any walk that repeats.
        rows = (
            self._conn()
            .execute(
                f"""
                WITH RECURSIVE sub(node_id) AS (
                    SELECT node_id FROM nodes WHERE owner = ? AND node_id IN ({marks})
                    UNION
                    SELECT n.node_id FROM nodes n JOIN sub ON n.parent_id = sub.node_id
                )
                SELECT {_NODE_COLS}, node_id IN (SELECT node_id FROM sub) FROM nodes
                WHERE owner = ? AND seq > ? AND (
                    node_id IN (SELECT node_id FROM sub)
                    OR node_id IN (SELECT node_id FROM share_exits WHERE root_id IN ({marks}))
                )
                ORDER BY seq LIMIT ?
                """,
                (owner, *roots, owner, since, *roots, limit + 1),
            )
            .fetchall()
        )
        nodes = [_node(r) if r[-1] else _tombstone(_node(r)) for r in rows[:limit]]
        return nodes, len(rows) > limit

    # -- public links --------------------------------------------------------------------
    def create_link(
        self,
        owner: str,
        node_id: str,
        blob: bytes,
        salt: bytes | None,
        kdf: dict[str, Any] | None,
        expires: int | None,
        now: float,
    ) -> Link:
        with self._write() as c:
            node = self._live(c, owner, node_id)
            if node.kind != "file":
                raise Conflict("only files can be linked")
            if node.removed:
                raise Unavailable()
            link_id = secrets.token_urlsafe(16)
            c.execute(
                f"INSERT INTO links ({_LINK_COLS}) VALUES ({_marks(9)})",
                (
                    link_id,
                    node_id,
                    owner,
                    blob,
                    salt,
                    None if kdf is None else json.dumps(kdf, sort_keys=True),
                    expires,
                    now,
                    None,
                ),
            )
            row = c.execute(f"SELECT {_LINK_COLS} FROM links WHERE link_id = ?", (link_id,)).fetchone()
            return _link(row)

    def get_link(self, link_id: str) -> Link | None:
        row = self._conn().execute(f"SELECT {_LINK_COLS} FROM links WHERE link_id = ?", (link_id,)).fetchone()
        return None if row is None else _link(row)

    def list_links(self, owner: str) -> list[Link]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {_LINK_COLS} FROM links WHERE owner = ? AND deleted IS NULL ORDER BY created, rowid",
                (owner,),
            )
            .fetchall()
        )
        return [_link(r) for r in rows]

    def delete_link(self, owner: str, link_id: str, now: float) -> None:
        with self._write() as c:
            done = c.execute(
                "UPDATE links SET deleted = ? WHERE link_id = ? AND owner = ? AND deleted IS NULL",
                (now, link_id, owner),
            ).rowcount
            if not done:
                raise NotFound("link not found")

    def version_has_chunk(self, node_id: str, version: int, chunk_id: str) -> bool:
        row = (
            self._conn()
            .execute(
                "SELECT 1 FROM version_chunks WHERE node_id = ? AND version = ? AND chunk_id = ?",
                (node_id, version, chunk_id),
            )
            .fetchone()
        )
        return row is not None

    # -- abuse reports and takedown ------------------------------------------------------
    def add_abuse_report(self, link_id: str, reason: str, now: float) -> str:
        reason = scrub_fragments(reason)
        report_id = secrets.token_hex(16)
        with self._write() as c:
            c.execute(
                "INSERT INTO abuse_reports (report_id, link_id, reason, created) VALUES (?, ?, ?, ?)",
                (report_id, link_id, reason, now),
            )
        return report_id

    def abuse_reports(self, link_ids: Sequence[str]) -> list[tuple[str, str, str, float]]:
        found: list[tuple[str, str, str, float]] = []
        with self._read() as c:
            for batch in _batches(_unique(link_ids)):
                rows = c.execute(
                    f"SELECT report_id, link_id, reason, created FROM abuse_reports"
                    f" WHERE link_id IN ({_marks(len(batch))}) ORDER BY created, rowid",
                    tuple(batch),
                ).fetchall()
                found.extend((str(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows)
        return found

    def take_down(self, node_id: str, now: float, delete_blob: BlobDeleter) -> TakedownResult:
        with self._write() as c:
            row = c.execute(f"SELECT {_NODE_COLS} FROM nodes WHERE node_id = ? AND gone = 0", (node_id,)).fetchone()
            if row is None:
                raise NotFound("node not found")
            node = _node(row)
            if node.parent_id is None:
                raise Conflict("an account's root cannot be taken down")
            subtree = [nid for nid, _ in sorted(self._subtree(c, node_id), key=lambda item: item[1])]
            chunk_ids: list[str] = []
            link_ids: list[str] = []
            for batch in _batches(subtree):
                marks = _marks(len(batch))
                chunk_ids.extend(
                    r[0]
                    for r in c.execute(
                        f"SELECT DISTINCT chunk_id FROM version_chunks WHERE node_id IN ({marks})", tuple(batch)
                    )
                )
                link_ids.extend(
                    r[0]
                    for r in c.execute(
                        f"SELECT link_id FROM links WHERE node_id IN ({marks}) ORDER BY created, rowid", tuple(batch)
                    )
                )
            inside = set(subtree)
            same_content: list[tuple[str, str]] = []
            for batch in _batches(_unique(chunk_ids)):
                marks = _marks(len(batch))
                query = f"SELECT DISTINCT node_id FROM version_chunks WHERE chunk_id IN ({marks})"
                for (other,) in c.execute(query, tuple(batch)).fetchall():
                    if other not in inside:
                        inside.add(other)
                        owner_row = c.execute("SELECT owner FROM nodes WHERE node_id = ?", (other,)).fetchone()
                        same_content.append((other, owner_row[0] if owner_row else ""))
            for nid, nid_owner in [(n, node.owner) for n in subtree] + same_content:
                self._charge(c, nid_owner, -self._manifest_bytes(c, nid))
                c.execute("DELETE FROM version_chunks WHERE node_id = ?", (nid,))
                c.execute("DELETE FROM versions WHERE node_id = ?", (nid,))
                c.execute("UPDATE nodes SET removed = 1, seq = ? WHERE node_id = ?", (self._bump(c, nid_owner), nid))
            refs = deleted = freed = 0
            for cid in _unique(chunk_ids):
                for holder, size in c.execute("SELECT owner, size FROM chunks WHERE chunk_id = ?", (cid,)).fetchall():
                    c.execute("UPDATE users SET used = used - ? WHERE user_id = ?", (size, holder))
                    refs += 1
                c.execute("DELETE FROM chunks WHERE chunk_id = ?", (cid,))
                c.execute(
                    "INSERT OR IGNORE INTO removed_chunks (chunk_id, node_id, created) VALUES (?, ?, ?)",
                    (cid, node_id, now),
                )
                size = delete_blob(cid)
                if size is not None:
                    deleted += 1
                    freed += size
            report_ids: list[str] = []
            for batch in _batches(link_ids):
                report_ids.extend(
                    r[0]
                    for r in c.execute(
                        f"SELECT report_id FROM abuse_reports WHERE link_id IN ({_marks(len(batch))})"
                        " ORDER BY created, rowid",
                        tuple(batch),
                    )
                )
            return TakedownResult(
                node_id=node_id,
                owner=node.owner,
                nodes=subtree,
                link_ids=link_ids,
                report_ids=report_ids,
                chunks_deleted=deleted,
                bytes_deleted=freed,
                refs_removed=refs,
                same_content=same_content,
            )
