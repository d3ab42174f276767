"""Shares, public links, abuse reports and takedowns."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from ..records import BlobDeleter, Link, Share, TakedownResult
from .unit import UnitOfWork


class SharingStore(UnitOfWork):
    @abstractmethod
    def shares_between(self, owner: str, recipient: str) -> list[Share]:
        """Every share from ``owner`` to ``recipient``, revoked ones included, oldest first."""

    @abstractmethod
    def is_share_root(self, node_id: str) -> bool:
        """Whether an active share names this node."""

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

    # -- public links ------------------------------------------------------------------
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
        """A new link (random id) to a file or folder ``owner`` owns; ``Conflict`` for the account's
        root, ``Unavailable`` for a taken-down node."""

    @abstractmethod
    def get_link(self, link_id: str) -> Link | None:
        """The link in any state (deleted ones too)."""

    @abstractmethod
    def list_links(self, owner: str) -> list[Link]:
        """``owner``'s links not deleted, oldest first."""

    @abstractmethod
    def delete_link(self, owner: str, link_id: str, now: float) -> None:
        """``NotFound`` unless it is a link of ``owner`` not yet deleted."""

    # -- abuse reports and takedown ----------------------------------------------------
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
        drop their versions (and those of any other file listing the same chunks), and
        delete every chunk those versions listed: the ownership rows of every account
        holding it (quota given back), in one unit of work that also queues the blobs
        for deletion; after it commits, the queued blobs are deleted through
        ``delete_blob``. The dropped manifests are given back to their owners' quota.
        The chunk ids are remembered so they cannot be stored again. ``NotFound`` for
        an unknown or purged node, ``Conflict`` for an account's root."""
