"""The node tree, file versions, the change feeds and the lookups behind access decisions."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

from ..records import Node, VersionInfo
from .unit import UnitOfWork


class TreeStore(UnitOfWork):
    """Methods taking ``owner`` act on that account's nodes only, and hold it (see unit.py)."""

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
        seq, checked in the unit that writes; nothing is changed then.

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
    def trash(self, owner: str) -> list[tuple[str, float | None]]:
        """The owner's nodes moved to the trash themselves (not those inside a trashed folder), with
        when (None: trashed before the server kept the time), newest first."""

    @abstractmethod
    def purge_node(self, owner: str, node_id: str, recursive: bool, only_trashed: bool = False) -> int:
        """Delete the node, its subtree and their versions; tombstones stay. Shares of purged
        folders are revoked and links to purged files deleted; their metas and manifests are
        given back to the quota and they stop counting as nodes. Returns nodes purged.
        ``only_trashed``: ``Conflict`` unless the node itself is in the trash (checked in the
        same transaction: a node restored meanwhile is never purged by an "empty the trash")."""

    @abstractmethod
    def changes(self, owner: str, since: int, limit: int) -> tuple[list[Node], bool]:
        """Nodes whose seq > since, in seq order, at most ``limit``; and whether more follow.

        Sequence numbers become visible in order: a reader never sees seq n+1 committed
        while n is still to come (units of one account commit in seq order)."""

    @abstractmethod
    def shared_changes(self, owner: str, roots: Sequence[str], since: int, limit: int) -> tuple[list[Node], bool]:
        """Like :meth:`changes`, restricted to the subtrees under ``roots`` (share roots).

        A node is in if it, or a node on its parent chain, is one of ``roots``
        (trashed nodes and purge tombstones included: they keep their parent).
        A node moved out of every one of ``roots`` (see :meth:`update_node`)
        comes as a tombstone: ``gone``, empty ``meta``, no parent, nothing else.
        """

    @abstractmethod
    def link_tree(self, owner: str, root: str, since: int, limit: int) -> tuple[list[Node], bool]:
        """What a public folder link shows: the live nodes under ``root`` (not ``root`` itself), ordered
        by ``seq`` after ``since``, at most ``limit`` (and whether there are more).

        The walk neither lists nor enters a trashed node or a purge tombstone, so nothing a visitor
        gets was in the trash or left the folder; nodes taken down are listed (``removed``), their
        content is not served.
        """

    # -- versions ----------------------------------------------------------------------
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
        the chunks must be stored by ``owner`` (``MissingChunks``). ``Unavailable`` for a
        taken-down file.

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

    # -- lookups behind access decisions (server/access.py) ----------------------------
    @abstractmethod
    def find_node(self, node_id: str) -> Node:
        """A live (not purged) node of any account; ``NotFound`` otherwise."""

    @abstractmethod
    def ancestry(self, node_id: str) -> list[tuple[str, bool]]:
        """(id, trashed) from ``node_id`` up to its root, inclusive (purged nodes included)."""

    @abstractmethod
    def nodes_with_chunk(self, chunk_id: str) -> list[str]:
        """The live nodes whose retained versions list the chunk."""

    @abstractmethod
    def version_has_chunk(self, node_id: str, version: int, chunk_id: str) -> bool:
        """Whether that retained version lists the chunk."""
