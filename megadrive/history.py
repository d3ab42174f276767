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
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from . import format
from .content import FileReader
from .context import DriveContext
from .errors import (
    AlreadyExists,
    Conflict,
    IntegrityError,
    InvalidPath,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
)
from .feed import Feed
from .files import Files
from .index import IndexRow
from .namespace import Entry, Located, Namespace
from .nodes import Nodes
from .paths import join, split_path
from .tree import short as short_path


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
    size: int  # bytes of the file in that version (0 if its manifest cannot be opened)
    created: float
    current: bool


def restored_name(name: str, n: int) -> str:
    """'report.txt' -> 'report (restored).txt', then 'report (restored 2).txt', ..."""
    tag = "(restored)" if n == 1 else f"(restored {n})"
    stem, dot, ext = name.rpartition(".")
    return f"{stem} {tag}.{ext}" if dot and stem else f"{name} {tag}"


TRASH_DIR = ".trash"  # /.trash/: what is in the trash, read-only; moving an entry out restores it
VERSIONS_DIR = ".versions"  # /.versions/<path>/: the kept versions of the file at <path>, read-only
VERSION_ID_SEP = "@"  # the id of a version entry: "<node id>@<number>"
VIEW_TTL = 2.0  # seconds a listing of the views is reused (every entry of an `ls -l` is a lookup)


def version_name(name: str, number: int) -> str:
    """'report.txt', 3 -> 'report v3.txt' (the extension kept, so programs open it as before)."""
    stem, dot, ext = name.rpartition(".")
    return f"{stem} v{number}.{ext}" if dot and stem else f"{name} v{number}"


class History:
    def __init__(self, ctx: DriveContext, feed: Feed, ns: Namespace, nodes: Nodes, files: Files) -> None:
        self.ctx = ctx
        self.feed = feed
        self.ns = ns
        self.nodes = nodes
        self.files = files
        self._lock = threading.Lock()
        self._names_cache: tuple[float, dict[str, TrashItem]] | None = None
        self._versions_cache: dict[str, tuple[float, int, list[VersionInfo]]] = {}

    def forget(self) -> None:
        """The trash or a file's versions changed here: list them afresh."""
        with self._lock:
            self._names_cache = None
            self._versions_cache.clear()

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
        self.forget()
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
        moved = folder.row.node_id != row.parent_id
        if final != item.name or moved:
            if folder.row.owner != row.owner:
                raise Conflict("a node cannot be restored into another account's tree")
            self.nodes.rewrite_meta(row, lambda m: dataclasses.replace(m, name=final),
                                    parent=(folder.row, folder.verified()), move=moved)
        self.feed.apply(self.ctx.api.restore_node(item.node_id))
        if moved and self.nodes.after_move is not None:  # out of a shared or linked folder: re-keyed, as a move
            self.nodes.after_move(row.node_id, row.parent_id, folder.row.node_id)
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
        self.forget()
        n = 0
        for d in self.ctx.api.trash():
            try:
                self.ctx.api.purge_node(str(d["node_id"]), recursive=True, only_trashed=True)
            except (NotFound, Conflict):  # inside a folder purged just before, or restored meanwhile
                continue
            n += 1
        self.feed.pull(None)
        return n

    # -- the read-only views: /.trash/ and /.versions/ ---------------------------------------------

    def owns(self, path: str) -> bool:
        """Whether ``path`` is inside one of the views (reads only; a move out of them restores). A real
        file or folder of that name at the top of the drive (made before the views existed, or by an
        older client) hides the view instead of being hidden by it."""
        top = path.lstrip("/").split("/", 1)[0]  # (only the first name: never refuses a path, any length)
        if top not in (TRASH_DIR, VERSIONS_DIR):
            return False
        return self.ns.child(self.ctx.root_id, top) is None

    def stat(self, path: str) -> Entry:
        parts = split_path(path)
        if len(parts) == 1:
            return self._dir("/" + parts[0])
        if parts[0] == TRASH_DIR:
            loc, shown = self._trash_located(parts)
            return self._read_only(self.ns.entry(loc.row, loc.path, loc.meta), shown)
        return self._version_stat(parts)

    def listdir(self, path: str) -> list[Entry]:
        parts = split_path(path)
        if parts == [TRASH_DIR]:
            out = []
            for shown, item in self._trash_names().items():
                row = self.ctx.index.get(item.node_id)
                if row is None:
                    continue
                try:
                    e = self.ns.entry(row, join("/" + TRASH_DIR, shown), self.ctx.tree.meta(row))
                except (IntegrityError, NotFound):
                    continue
                out.append(self._read_only(e, shown))
            return sorted(out, key=lambda e: e.name)
        if parts[0] == TRASH_DIR:
            loc, _ = self._trash_located(parts)
            if loc.row.kind != "dir":
                raise NotADirectory(f"not a folder: {path}")
            return [self._read_only(e, e.name) for e in self.ns.list_located(loc)]
        real = "/" + "/".join(parts[1:])
        e = self.ns.stat(real)
        here = join("/" + VERSIONS_DIR, real.lstrip("/")) if len(parts) > 1 else "/" + VERSIONS_DIR
        if e.is_dir:  # the folders and files below, each a folder of its versions
            return [self._dir(join(here, c.name)) for c in self.ns.listdir(real)
                    if c.link is None and c.special is None]
        if len(parts) > 1 and not e.is_dir:
            return [self._version_entry(here, real, v) for v in self.versions(real)]
        raise NotADirectory(f"not a folder: {path}")

    def rename(self, src: str, dst: str) -> Entry:
        """A move out of a view: a trashed node is restored to ``dst``; a version becomes the newest of its
        file (``dst`` its own path) or a new file at ``dst``. Nothing is ever overwritten but that file."""
        self.forget()
        if self.owns(dst):
            raise PermissionDenied("the trash and the versions are read-only")
        parts = split_path(src)
        if len(parts) == 2 and parts[0] == TRASH_DIR:
            item = self._trash_names().get(parts[1])
            if item is None:
                raise NotFound(f"no such file or folder: {src}")
            if self.ns_exists(dst):
                raise AlreadyExists(f"already exists: {dst} (a restore never overwrites)")
            return self.restore(item, dst)
        if len(parts) >= 3 and parts[0] == VERSIONS_DIR:
            real = "/" + "/".join(parts[1:-1])
            number = self._version_number(real, parts[-1])
            if self.ns.stat(real).node_id == self._node_at(dst):
                return self.restore_version(real, number)
            if self.ns_exists(dst):
                raise AlreadyExists(f"already exists: {dst}")
            row, meta = self._file(real)
            with self._version_reader(row, meta, number, real) as reader:
                self._write(dst, reader.iter_range(), new=True)
            return self.ns.stat(dst)
        raise PermissionDenied("only a trashed item or a version can be moved out of the trash or the versions")

    def open_read_id(self, node_id: str) -> FileReader:
        """The reader of a version entry ("<node id>@<number>")."""
        real, _, number = node_id.rpartition(VERSION_ID_SEP)
        row = self.ctx.row(real)
        chain = self.ctx.tree.chain(row)
        meta = chain[-1][1]
        return self._version_reader(row, meta, int(number), short_path(real))

    def stat_id(self, node_id: str) -> Entry:
        """A version entry held open (its path is not known by id)."""
        real, _, number = node_id.rpartition(VERSION_ID_SEP)
        row = self.ctx.row(real)
        meta = self.ctx.tree.meta(row)
        for v in self.versions_of(row):
            if v.number == int(number):
                return self._version_entry("", meta.name, v, row, meta)
        raise NotFound("no such version")

    def ns_exists(self, path: str) -> bool:
        try:
            self.ns.resolve(path)
            return True
        except NotFound:
            return False

    def _node_at(self, path: str) -> str | None:
        try:
            return self.ns.resolve(path).row.node_id
        except NotFound:
            return None

    def _dir(self, path: str) -> Entry:
        # Only the mounting user may enter (with --allow-other, others would otherwise walk past the
        # modes of the folders the trashed items and versions came from).
        return dataclasses.replace(self.ns.entry(self.ns.virtual(path).row, path, None), mode=0o500)

    @staticmethod
    def _read_only(e: Entry, name: str) -> Entry:
        return dataclasses.replace(e, name=name, mode=e.mode & ~0o222)

    def _trash_names(self) -> dict[str, TrashItem]:
        """Each trashed item under the name its view shows: its own, or with its deletion time (and id) added
        when several trashed items share it. Kept for a moment: one `ls -l` asks for every entry."""
        now = time.monotonic()
        with self._lock:
            if self._names_cache is not None and now - self._names_cache[0] < VIEW_TTL:
                return self._names_cache[1]
        items = self.trash()
        counts: dict[str, int] = {}
        for item in items:
            counts[item.name] = counts.get(item.name, 0) + 1
        out: dict[str, TrashItem] = {}
        for item in items:
            shown = item.name
            if counts[item.name] > 1:
                when = time.strftime("%Y-%m-%d %H%M%S", time.localtime(item.trashed_at or 0))
                shown = f"{item.name} (deleted {when} {item.node_id[:6]})"
            out[shown] = item
        with self._lock:
            self._names_cache = (now, out)
        return out

    def _trash_located(self, parts: list[str]) -> tuple[Located, str]:
        item = self._trash_names().get(parts[1])
        if item is None:
            raise NotFound(f"no such file or folder: /{TRASH_DIR}/{parts[1]}")
        row = self.ctx.row(item.node_id)
        top = "/" + TRASH_DIR + "/" + parts[1]
        loc = self.ns.walk_from(row, self.ctx.tree.meta(row), top, parts[2:])
        return loc, parts[-1]

    def _version_stat(self, parts: list[str]) -> Entry:
        real = "/" + "/".join(parts[1:])
        try:
            e = self.ns.stat(real)
        except (NotFound, NotADirectory):  # the last part may be a version of the file at the parts before it
            file_path = "/" + "/".join(parts[1:-1])
            if len(parts) < 3 or self.ns.stat(file_path).is_dir:
                raise NotFound(f"no such file or folder: /{'/'.join(parts)}") from None
            number = self._version_number(file_path, parts[-1])
            here = join("/" + VERSIONS_DIR, file_path.lstrip("/"))
            for v in self.versions(file_path):
                if v.number == number:
                    return self._version_entry(here, file_path, v)
            raise
        if e.link is not None or e.special is not None:
            raise NotFound(f"no versions of {real}")
        return self._dir("/" + "/".join(parts))

    def _version_number(self, file_path: str, name: str) -> int:
        base = self.ns.stat(file_path).name
        for v in self.versions(file_path):
            if version_name(base, v.number) == name:
                return v.number
        raise NotFound(f"no such version: {join(join('/' + VERSIONS_DIR, file_path.lstrip('/')), name)}")

    def _version_entry(self, here: str, file_path: str, v: VersionInfo, row: IndexRow | None = None,
                       meta: format.NodeMeta | None = None) -> Entry:
        if row is None or meta is None:
            row, meta = self._file(file_path)
        size = v.size
        return Entry(path=join(here, version_name(meta.name, v.number)), name=version_name(meta.name, v.number),
                     node_id=f"{row.node_id}{VERSION_ID_SEP}{v.number}", kind="file", size=size,
                     mtime_ns=int(v.created * 1e9), mode=meta.mode & ~0o222 & 0o7777, version=v.number,
                     uid=meta.uid, gid=meta.gid)

    def _version_size(self, row: IndexRow, meta: format.NodeMeta, number: int) -> int:
        try:
            return self._manifest(row, meta, number, "").size
        except (IntegrityError, NotFound):
            return 0

    def _manifest(self, row: IndexRow, meta: format.NodeMeta, number: int, path: str) -> format.Manifest:
        try:
            version, blob = self.ctx.api.get_manifest(row.node_id, number)
        except NotFound:
            raise NotFound(f"{path} has no version {number} (see `megadrive versions`)") from None
        if version != number:
            raise IntegrityError("integrity check failed: server returned another version's manifest")
        try:
            return format.open_manifest(meta.key, self.ctx.owner_of(row), row.node_id, number, meta.file_id, blob)
        except IntegrityError:
            raise IntegrityError(f"version {number} of {path} cannot be opened with the file's keys (it was "
                                 "re-keyed since, after a share was revoked, or the server altered it)") from None

    def _version_reader(self, row: IndexRow, meta: format.NodeMeta, number: int, path: str) -> FileReader:
        return FileReader(self.ctx.chunks, self.files.keys_of(row, meta), self._manifest(row, meta, number, path))

    def _write(self, path: str, pieces: Iterator[bytes], *, new: bool) -> None:
        """A new version of the file at ``path`` (``new``: a file that must not exist yet) with this content."""
        with self.files.open_write(path, truncate=True, create=new, exclusive=new) as w:
            for piece in pieces:
                w.write(piece)
            w.commit()

    # -- versions ---------------------------------------------------------------------------------

    def versions(self, path: str) -> list[VersionInfo]:
        return self.versions_of(self._file(path)[0])

    def versions_of(self, row: IndexRow) -> list[VersionInfo]:
        """Newest first, each with its size as the file had it (read from its manifest: the server only
        knows the size of the ciphertext). Kept for a moment per file and version (a listing stats each)."""
        meta = self.ctx.tree.meta(row)
        now = time.monotonic()
        with self._lock:
            hit = self._versions_cache.get(row.node_id)
            if hit is not None and now - hit[0] < VIEW_TTL and hit[1] == meta.version:
                return hit[2]
        out = []
        for v in self.ctx.api.list_versions(row.node_id):
            number = int(v["version"])
            size = meta.size if number == meta.version else self._version_size(row, meta, number)
            out.append(VersionInfo(number, size, float(v["created"]), number == meta.version))
        with self._lock:
            if len(self._versions_cache) > 256:
                self._versions_cache.clear()
            self._versions_cache[row.node_id] = (now, meta.version, out)
        return out

    def restore_version(self, path: str, number: int) -> Entry:
        """Make version ``number`` the newest (its content copied into a new version; nothing is lost)."""
        self.forget()
        row, meta = self._file(path)
        if number == meta.version:
            return self.ns.stat(path)
        with self._version_reader(row, meta, number, path) as reader:
            self._write(path, reader.iter_range(), new=False)
        return self.ns.stat(path)

    def _file(self, path: str) -> tuple[IndexRow, format.NodeMeta]:
        loc = self.ns.resolve(path)
        if loc.row.kind == "dir":
            raise IsADirectory(f"is a folder: {loc.path}")
        meta = loc.verified()
        if meta.link is not None or meta.special is not None or meta.link_to is not None:
            raise InvalidPath(f"not a regular file: {loc.path}")
        return loc.row, meta
