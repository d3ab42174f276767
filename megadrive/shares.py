"""What a drive knows of the folders others share with it: the records, and where they are shown."""

from __future__ import annotations

from dataclasses import dataclass

from .format import NodeMeta

SHARED_DIR = "Shared with me"
PENDING_SUFFIX = " (pending)"  # how a share from an account not yet accepted is shown (an empty folder)


@dataclass(frozen=True)
class IncomingShare:
    share_id: str
    owner: str
    owner_name: str
    node_id: str
    access: str
    name: str
    folder_key: bytes
    created: float


class IncomingShares:
    """The folders others share with this account, as last loaded: accepted ones, and pending ones
    (from accounts the user has not accepted: only their name is shown)."""

    def __init__(self) -> None:
        self.incoming: dict[str, IncomingShare] = {}  # share root node id -> an accepted share
        self.pending: dict[str, IncomingShare] = {}

    def all(self) -> list[IncomingShare]:
        return [*self.incoming.values(), *self.pending.values()]

    def root_meta(self, node_id: str, row_owner: str) -> NodeMeta | None:
        """The grant's key for an accepted share's root — only for a node of that owner's tree, never ours."""
        s = self.incoming.get(node_id)
        if s is None or row_owner != s.owner:
            return None
        return NodeMeta(name=s.name, kind="dir", key=s.folder_key, mtime_ns=int(s.created * 1e9), mode=0o755)

    def by_path(self, owner_name: str, name: str) -> IncomingShare | None:
        return next((s for s in self.incoming.values() if s.owner_name == owner_name and s.name == name), None)

    def pending_by_path(self, owner_name: str, shown: str) -> IncomingShare | None:
        if not shown.endswith(PENDING_SUFFIX):
            return None
        name = shown[:-len(PENDING_SUFFIX)]
        return next((s for s in self.pending.values() if s.owner_name == owner_name and s.name == name), None)

    def pending_from(self, owner_name: str) -> list[IncomingShare]:
        return [s for s in self.pending.values() if s.owner_name == owner_name]
