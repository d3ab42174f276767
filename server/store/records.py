"""What the metadata store hands out and takes in: frozen records, no behaviour.

Every store implementation returns these, so the HTTP layer, gc, fsck and
takedown never see a row, a cursor or an engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import DEFAULT_MAX_NODES, DEFAULT_QUOTA, MAX_RECORDS

# Deepest allowed node (the root is depth 0). Bounds every ancestor walk, so
# a hostile account cannot make tree checks arbitrarily slow.
MAX_DEPTH = 1024
# Tokens kept per account; older ones are revoked when a new one is issued.
MAX_TOKENS_PER_ACCOUNT = 100


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
    recovery_wrap: bytes | None = None  # the master key wrapped under the recovery key
    recovery_salt: bytes | None = None
    recovery_hash: bytes | None = None


def session_id(token_hash: str) -> str:
    """How a session is named to its account: a prefix of its token's hash (the token stays secret)."""
    return token_hash[:16]


@dataclass(frozen=True)
class SessionInfo:
    """A login of the account, as ``GET /v1/sessions`` lists it (never the token)."""

    session_id: str  # the first 16 hex digits of the token's hash
    created: float
    last_used: float | None
    expires: float
    device: str | None


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


def tombstone(node: Node) -> Node:
    """How a node that left a recipient's shared subtree appears in their feed."""
    return Node(node.node_id, node.owner, None, node.kind, b"", 0, 0, False, True, node.seq)


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


@dataclass(frozen=True)
class ChunkAdded:
    """What :meth:`MetaStore.add_chunk` did. ``created``: the ownership row is new.
    ``restore``: a queued deletion of this blob ran since the caller may have written
    it, so the caller must write the blob again (after the commit) before answering."""

    created: bool
    restore: bool = False


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
"""Deletes one chunk blob, returning the bytes freed, or None if it was already absent (or kept)."""
