"""The trash and older versions: listed, restored, emptied.

The server keeps trashed nodes (a flag, with the time it was set) and the
last versions of every file; their names and contents stay sealed as ever.
Here they are listed with what only this client can read (names, original
places, sizes) and brought back: a trashed node returns to where it was (or
where the user says), renamed first if its name is taken meanwhile, so a
restore never overwrites anything; an older version is copied into a new
version, so restoring one loses none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from . import format
from .content import FileReader
from .context import DriveContext
from .errors import Conflict, IntegrityError, InvalidPath, IsADirectory, NotADirectory, NotFound
from .feed import Feed
from .files import Files
from .index import IndexRow
from .namespace import Entry, Namespace
from .nodes import Nodes
from .paths import join, split_path


@dataclass(frozen=True)
class TrashItem:
    node_id: str
    name: str
    kind: str  # "dir" or "file"
    size: int
    path: str  # where it was (its folder's path now, and its name)
    trashed_at: float | None  # None: trashed before the server kept the time


@dataclass(frozen=True)
class VersionInfo:
    number: int
    size: int  # ciphertext bytes the server stores for it
    created: float
    current: bool


def restored_name(name: str, n: int) -> str:
    """'report.txt' -> 'report (restored).txt', then 'report (restored 2).txt', ..."""
    tag = "(restored)" if n == 1 else f"(restored {n})"
    stem, dot, ext = name.rpartition(".")
    return f"{stem} {tag}.{ext}" if dot and stem else f"{name} {tag}"


class History:
    def __init__(self, ctx: DriveContext, feed: Feed, ns: Namespace, nodes: Nodes, files: Files) -> None:
        self.ctx = ctx
        self.feed = feed
        self.ns = ns
        self.nodes = nodes
        self.files = files

    # -- the trash --------------------------------------------------------------------------------

    def trash(self) -> list[TrashItem]:
        """This account's trashed nodes, newest first (one that fails its checks is left out)."""
        out = []
        for d in self.ctx.api.trash():
            row = self.ctx.index.get(str(d.get("node_id")))
            if row is None or row.parent_id is None:
                continue
            try:
                meta = self.ctx.tree.meta(row)
                parent = self.ctx.index.get(row.parent_id)
                where = self.ns.path_of(parent) if parent is not None else "/"
            except (IntegrityError, NotFound, Conflict):
                continue
            at = d.get("trashed_at")
            out.append(TrashItem(row.node_id, meta.name, row.kind, meta.size, join(where, meta.name),
                                 float(at) if isinstance(at, (int, float)) else None))
        return out

    def find_trashed(self, path: str) -> TrashItem:
        """The newest trashed node that was at ``path``."""
        want = "/" + "/".join(split_path(path))
        for item in self.trash():
            if item.path == want:
                return item
        raise NotFound(f"nothing in the trash was at {want}")

    def restore(self, item: TrashItem, to: str | None = None) -> Entry:
        """Back where it was (or to ``to``); under another name if its own is taken there now."""
        row = self.ctx.row(item.node_id)
        if to is None:
            parent_row = self.ctx.index.get(row.parent_id or "")
            if parent_row is None or parent_row.trashed or self._in_trash(parent_row):
                raise Conflict(f"its folder is in the trash: restore that first, or give a place to restore to "
                               f"({item.path})")
            folder = self.ns.resolve(self.ns.path_of(parent_row))
            name = item.name
        else:
            folder, name = self.ns.parent_for_new(to)
        if folder.row.kind != "dir":
            raise NotADirectory(f"not a folder: {folder.path}")
        final, n = name, 1
        while self.ns.existing(folder, final) is not None:  # keep both: never overwrite on restore
            final, n = restored_name(name, n), n + 1
        if final != item.name or folder.row.node_id != row.parent_id:
            if folder.row.owner != row.owner:
                raise Conflict("a node cannot be restored into another account's tree")
            self.nodes.rewrite_meta(row, lambda m: dataclasses.replace(m, name=final),
                                    parent=(folder.row, folder.verified()),
                                    move=folder.row.node_id != row.parent_id)
        self.feed.apply(self.ctx.api.restore_node(item.node_id))
        self.ctx.entries_changed(folder.row.node_id)
        return self.ns.stat(join(folder.path, final))

    def _in_trash(self, row: IndexRow) -> bool:
        for _ in range(4096):
            if row.trashed:
                return True
            if row.parent_id is None:
                return False
            parent = self.ctx.index.get(row.parent_id)
            if parent is None:
                return False
            row = parent
        return True

    def empty_trash(self) -> int:
        """Purge everything in the trash for good; how many trashed nodes went (with their contents)."""
        n = 0
        for d in self.ctx.api.trash():
            try:
                self.ctx.api.purge_node(str(d["node_id"]), recursive=True)
            except NotFound:  # inside a folder purged just before
                continue
            n += 1
        self.feed.pull(None)
        return n

    # -- versions ---------------------------------------------------------------------------------

    def versions(self, path: str) -> list[VersionInfo]:
        row, meta = self._file(path)
        return [VersionInfo(int(v["version"]), int(v["size"]), float(v["created"]), int(v["version"]) == meta.version)
                for v in self.ctx.api.list_versions(row.node_id)]

    def restore_version(self, path: str, number: int) -> Entry:
        """Make version ``number`` the newest (its content copied into a new version; nothing is lost)."""
        row, meta = self._file(path)
        if number == meta.version:
            return self.ns.stat(path)
        try:
            version, blob = self.ctx.api.get_manifest(row.node_id, number)
        except NotFound:
            raise NotFound(f"{path} has no version {number} (see `megadrive versions`)") from None
        if version != number:
            raise IntegrityError("integrity check failed: server returned another version's manifest")
        try:
            manifest = format.open_manifest(meta.key, self.ctx.owner_of(row), row.node_id, number, meta.file_id, blob)
        except IntegrityError:
            raise IntegrityError(f"version {number} of {path} cannot be opened with the file's keys (it was "
                                 "re-keyed since, after a share was revoked, or the server altered it)") from None
        reader = FileReader(self.ctx.chunks, self.files.keys_of(row, meta), manifest)
        with reader:
            self._write(path, reader.iter_range())
        return self.ns.stat(path)

    def _write(self, path: str, pieces: Iterator[bytes]) -> None:
        w = self.files.open_write(path, truncate=True, create=False)
        try:
            for piece in pieces:
                w.write(piece)
            w.commit()
        finally:
            w.close()

    def _file(self, path: str) -> tuple[IndexRow, format.NodeMeta]:
        loc = self.ns.resolve(path)
        if loc.row.kind == "dir":
            raise IsADirectory(f"is a folder: {loc.path}")
        meta = loc.verified()
        if meta.link is not None or meta.special is not None or meta.link_to is not None:
            raise InvalidPath(f"not a regular file: {loc.path}")
        return loc.row, meta
