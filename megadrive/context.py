"""What every part of a Drive shares: the account's session, its server API, index, tree and journal."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import format
from .api import Api
from .chunkio import ServerChunks
from .errors import NotFound
from .index import Index, IndexRow
from .journal import Journal
from .state import Session
from .tree import Tree


@dataclass
class DriveContext:
    """One logged-in account's handles, passed to each collaborator of the Drive (none owns another)."""

    api: Api
    index: Index
    session: Session
    chunks: ServerChunks
    journal: Journal
    tree: Tree
    _hkey: bytes = field(init=False, repr=False)
    # Folder id -> when this process last saw an entry appear in it or leave it (its POSIX mtime and
    # ctime, without a rewrite of the folder's meta that many writers of one folder would fight over).
    folder_changes: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._hkey = format.name_hash_key(self.session.master)

    @property
    def owner(self) -> str:
        return self.session.user_id

    @property
    def master(self) -> bytes:
        return self.session.master

    @property
    def root_id(self) -> str:
        return self.session.root_node_id

    def owner_of(self, row: IndexRow) -> str:
        """Whose tree a node is in: ours, or a sharing owner's (their id is bound into every AAD)."""
        return row.owner or self.owner

    def name_hash(self, parent_id: str, name: str) -> str:
        return format.name_hash(self._hkey, parent_id, name)

    def entries_changed(self, *folder_ids: str | None) -> None:
        now = time.time_ns()
        for f in folder_ids:
            if f:
                self.folder_changes[f] = now

    def row(self, node_id: str) -> IndexRow:
        row = self.index.get(node_id)
        if row is None:
            raise NotFound("the file no longer exists")
        return row
