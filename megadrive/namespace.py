"""Paths to verified nodes: the drive as a tree of names, from the root (and from "Shared with me").

Every lookup walks down from a trusted root, verifying each meta under the
parent it was reached from (:class:`~megadrive.tree.Tree`); a listing
verifies every entry under the listed folder and hides one that fails. The
virtual folders "Shared with me/<owner>/" list the incoming shares (and the
pending ones, as empty folders).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from . import format
from .context import DriveContext
from .errors import AlreadyExists, Conflict, IntegrityError, NameTooLong, NotADirectory, NotFound, PermissionDenied
from .feed import Feed
from .format import NodeMeta
from .index import IndexRow
from .journal import LocalVersion
from .names import MAX_NAME_BYTES
from .paths import VIRTUAL, join, split_path
from .shares import PENDING_SUFFIX, SHARED_DIR, IncomingShares
from .tree import Orphan, short

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """A file or folder as a front-end sees it (decrypted, in memory only)."""

    path: str
    name: str
    node_id: str
    kind: str
    size: int
    mtime_ns: int
    mode: int
    version: int
    props: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    removed: bool = False  # taken down by the operator after an abuse notice
    link: str | None = None  # set for a symbolic link: its target
    revision: str = ""  # set for a version saved on this machine (it tells two such saves apart)
    uid: int | None = None  # owner as stored; None: the mounting user
    gid: int | None = None
    ctime_ns: int = 0  # status change time (never before mtime_ns)
    atime_ns: int = 0
    special: str | None = None  # fifo, sock, chr or blk: an attribute-only node (mknod)
    rdev: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict, compare=False, hash=False)
    trashed: bool = False  # no name left (unlinked, or replaced by a rename) while still open by id
    subfolders: int = 0  # folders directly in this folder (its link count is 2 + this)
    nlink: int = 1  # names of a file: 1 + its hard links

    @property
    def is_dir(self) -> bool:
        return self.kind == "dir"

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9

    @property
    def etag(self) -> str:
        """Strong validator: changes exactly when the content version changes. A version saved here has
        its revision instead of its number: two saves before an upload may share a number, and the
        number moves when the uploader puts a save on top of one it committed meanwhile."""
        return f"{self.node_id[:16]}-{f'r{self.revision}' if self.revision else self.version}"


@dataclass(frozen=True)
class Located:
    """A node reached by a path, with the meta verified on the way down (None for a virtual folder)."""

    row: IndexRow
    path: str
    meta: NodeMeta | None

    @property
    def virtual(self) -> bool:
        return self.meta is None

    def verified(self) -> NodeMeta:
        if self.meta is None:
            raise PermissionDenied(f"{SHARED_DIR!r} only lists what others share with you; it cannot be changed")
        return self.meta


class Namespace:
    """Resolves paths, lists folders and builds entries; changes nothing."""

    def __init__(self, ctx: DriveContext, feed: Feed, shares: IncomingShares, refresh: Callable[[], object]) -> None:
        self.ctx = ctx
        self.feed = feed
        self.shares = shares
        self._refresh = refresh

    # -- the root and the virtual folders ---------------------------------------------------------

    def root(self) -> tuple[IndexRow, NodeMeta]:
        row = self.ctx.index.get(self.ctx.root_id)
        if row is None:
            self._refresh()
            row = self.ctx.index.get(self.ctx.root_id)
            if row is None:
                raise IntegrityError("integrity check failed: the server does not show this account's root folder")
        return row, self.ctx.tree.meta(row)

    @staticmethod
    def virtual(path: str) -> Located:
        return Located(IndexRow(VIRTUAL + path, None, "dir", 0, 0, False, 0, b"", None, False), path, None)

    # -- resolving --------------------------------------------------------------------------------

    def resolve(self, path: str) -> Located:
        parts = split_path(path)
        if parts and parts[0] == SHARED_DIR:
            return self._resolve_shared(parts)
        row, meta = self.root()
        return self._walk(row, meta, "/", parts)

    def _resolve_shared(self, parts: list[str]) -> Located:
        if len(parts) == 1:
            return self.virtual("/" + SHARED_DIR)
        owners = {s.owner_name for s in self.shares.all()}
        if parts[1] not in owners:
            raise NotFound(f"no such file or folder: /{SHARED_DIR}/{parts[1]}")
        base = f"/{SHARED_DIR}/{parts[1]}"
        if len(parts) == 2:
            return self.virtual(base)
        if self.shares.pending_by_path(parts[1], parts[2]) is not None:
            if len(parts) > 3:
                raise NotFound(f"no such file or folder: {join(base, parts[2])}/{parts[3]}")
            return self.virtual(join(base, parts[2]))
        share = self.shares.by_path(parts[1], parts[2])
        root = self.ctx.index.get(share.node_id) if share else None
        if root is None:
            raise NotFound(f"no such file or folder: {join(base, parts[2])}")
        return self._walk(root, self.ctx.tree.meta(root), join(base, parts[2]), parts[3:])

    def _walk(self, row: IndexRow, meta: NodeMeta, cur: str, names: list[str]) -> Located:
        for name in names:
            if row.kind != "dir":
                raise NotADirectory(f"not a folder: {cur}")
            child = self.child(row.node_id, name)
            cur = join(cur, name)
            if child is None:
                if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
                    raise NameTooLong("name too long")  # no such name can exist: ENAMETOOLONG, as POSIX says
                raise NotFound(f"no such file or folder: {cur}")
            meta = self.ctx.tree.child_meta(child, row, meta)
            row = child
        return Located(row, cur, meta)

    def parent_for_new(self, path: str) -> tuple[Located, str]:
        """The verified folder a new node at ``path`` goes into, and its name."""
        parts = split_path(path)
        if not parts:
            raise AlreadyExists("the root folder already exists")
        parent = self.resolve("/" + "/".join(parts[:-1]))
        if parent.row.kind != "dir":
            raise NotADirectory(f"not a folder: /{'/'.join(parts[:-1])}")
        parent.verified()
        return parent, parts[-1]

    def existing(self, parent: Located, name: str) -> IndexRow | None:
        return self.child(parent.row.node_id, name)

    def child(self, parent_id: str, name: str) -> IndexRow | None:
        """The folder's entry of that name. A row being ingested right now (its meta stored, its name
        not verified yet) is verified first: a lookup in that window must not answer "no such file"."""
        h = self.ctx.name_hash(parent_id, name)
        child = self.ctx.index.lookup(parent_id, h)
        if child is None and self.feed.hash_pending(parent_id):
            child = self.ctx.index.lookup(parent_id, h)
        return child

    def parent_of(self, row: IndexRow) -> tuple[IndexRow, NodeMeta]:
        """The verified parent of a node, as its chain reaches it (not the root, not a share root)."""
        chain = self.ctx.tree.chain(row)
        if len(chain) < 2:
            if row.node_id == self.ctx.root_id:
                raise Conflict("the root folder has no parent")
            raise PermissionDenied("the root of a share is managed by its owner")
        return chain[-2]

    def path_of(self, row: IndexRow) -> str:
        """Where a node is now, from its verified chain (under "Shared with me" for a shared owner's node)."""
        if row.node_id.startswith(VIRTUAL):
            return row.node_id[len(VIRTUAL):]
        chain = self.ctx.tree.chain(row)
        top = chain[0][0]
        names = [m.name for _, m in chain[1:]]
        if top.node_id == self.ctx.root_id and not top.owner:
            return "/" + "/".join(names)
        share = self.shares.incoming[top.node_id]
        return f"/{SHARED_DIR}/{share.owner_name}/" + "/".join([share.name, *names])

    def check_writable(self, folder: IndexRow) -> None:
        """A change inside a folder shared with this account read-only is refused here, before it is kept
        on this machine for an upload the server would refuse (write-back)."""
        if not folder.owner:
            return
        top = self.ctx.tree.chain(folder)[0][0]
        share = self.shares.incoming.get(top.node_id)
        if share is None or share.access != "write":
            raise PermissionDenied("Permission denied: the folder is shared with you read-only")

    # -- entries and listings ---------------------------------------------------------------------

    def entry(self, row: IndexRow, path: str, meta: NodeMeta | None) -> Entry:
        if meta is None:
            return Entry(path=path, name=PurePosixPath(path).name, node_id=row.node_id, kind="dir", size=0,
                         mtime_ns=0, mode=0o555, version=0)
        lv, name = None, meta.name
        if meta.link_to is not None:
            row, meta = self.content_node(row, meta)
        if row.kind == "file":
            row, meta, lv = self.current(row, meta)
        size, mtime, version = meta.size, meta.mtime_ns, meta.version
        ctime = max(meta.ctime_ns, mtime)
        changed = self.ctx.folder_changes.get(row.node_id, 0) if row.kind == "dir" else 0
        if changed > ctime:  # entries came or went since the folder's own attributes were last set
            mtime = ctime = changed
        if lv is not None:  # written here, not uploaded yet: what this machine shows is the newest
            size, mtime, version, revision = lv.size, lv.mtime_ns, lv.base_version + 1, lv.token
        else:
            revision = self.ctx.journal.token_of(row.node_id, version) if row.kind == "file" else ""
        return Entry(path=path, name=name, node_id=row.node_id, kind=row.kind, size=size, mtime_ns=mtime,
                     mode=meta.mode, version=version, props=dict(meta.props), removed=row.removed, link=meta.link,
                     revision=revision, uid=meta.uid, gid=meta.gid, ctime_ns=max(ctime, mtime),
                     atime_ns=meta.atime_ns or mtime, special=meta.special, rdev=meta.rdev, xattrs=dict(meta.xattrs),
                     trashed=row.trashed, nlink=(not meta.nameless) + self._live_links(meta),
                     subfolders=self.ctx.index.count_subfolders(row.node_id) if row.kind == "dir" else 0)

    def content_node(self, row: IndexRow, meta: NodeMeta) -> tuple[IndexRow, NodeMeta]:
        """The file a hard link names, checked: in the same tree, not a link itself, listing the link (its
        writer made it), and the link's proof shows its maker could read the file (so a co-writer cannot
        name a file it cannot read). Any other node is its own content node."""
        if meta.link_to is None:
            return row, meta
        target = self.ctx.index.get(meta.link_to)
        if target is None:
            raise NotFound("the file this hard link names is gone")
        bad = IntegrityError(f"integrity check failed: hard link {short(row.node_id)} does not prove it may name "
                             f"node {short(meta.link_to)}")
        if target.owner != row.owner or target.kind != "file":
            raise bad
        tmeta = self.ctx.tree.meta(target)
        if not format.proves_hard_link(row.node_id, meta, tmeta):
            raise bad
        return target, tmeta

    def _live_links(self, meta: NodeMeta) -> int:
        """How many of a file's listed hard links still have a name here (a trashed folder takes some away)."""
        count = 0
        for lid in meta.hard_links:
            r = self.ctx.index.get(lid)
            count += r is not None and not r.trashed
        return count

    def names_of(self, node_id: str) -> list[str]:
        """Every path of a file: its own and its hard links' (those that check out)."""
        row, meta = self.content_node(self.ctx.row(node_id), self.ctx.tree.meta(self.ctx.row(node_id)))
        out = [] if row.trashed or meta.nameless else [self.path_of(row)]
        return out + [self.path_of(lrow) for _, lrow, _ in self.proven_links(row, meta.hard_links)]

    def proven_links(self, row: IndexRow, ids: list[str]) -> list[tuple[str, IndexRow, NodeMeta]]:
        """Of the link ids a file lists, those that exist here, are not trashed and prove they name it."""
        out = []
        for lid in ids:
            lrow = self.ctx.index.get(lid)
            if lrow is None or lrow.trashed:
                continue
            try:
                lmeta = self.ctx.tree.meta(lrow)
                if lmeta.link_to == row.node_id and self.content_node(lrow, lmeta)[0].node_id == row.node_id:
                    out.append((lid, lrow, lmeta))
            except (Orphan, IntegrityError, NotFound):
                continue
        return out

    def current(self, row: IndexRow, meta: NodeMeta) -> tuple[IndexRow, NodeMeta, LocalVersion | None]:
        """A file as this machine shows it: its version journaled here (the newest) if any, else the
        index's, read again if the uploader committed a journaled version since ``row`` was read."""
        lv = self.local(row.node_id)
        if lv is None and self.ctx.journal.forgotten_after(row.node_id, meta.version):
            fresh = self.ctx.index.get(row.node_id)
            try:
                if fresh is not None:
                    return fresh, self.ctx.tree.meta(fresh), None
            except (Orphan, IntegrityError):  # moved or gone meanwhile: what was read stands
                pass
        return row, meta, lv

    def local(self, node_id: str) -> LocalVersion | None:
        """The node's version journaled on this machine and not committed yet, if any (a broken one is
        reported and set aside: the server's version is shown)."""
        try:
            return self.ctx.journal.get(node_id)
        except IntegrityError as e:
            log.error("journaled version of node %s: %s", short(node_id), e.message)
            return None

    def stat(self, path: str) -> Entry:
        loc = self.resolve(path)
        return self.entry(loc.row, loc.path, loc.meta)

    def walk_from(self, row: IndexRow, meta: NodeMeta, cur: str, names: list[str]) -> Located:
        """Down from a verified folder (shown at ``cur``) by ``names``, verifying each step."""
        return self._walk(row, meta, cur, names)

    def listdir(self, path: str) -> list[Entry]:
        """A folder's entries; one that fails its checks is hidden (and logged once), never its siblings."""
        return self.list_located(self.resolve(path))

    def list_located(self, loc: Located) -> list[Entry]:
        """The entries of a folder already resolved (shown at ``loc.path``)."""
        if loc.row.kind != "dir":
            raise NotADirectory(f"not a folder: {loc.path}")
        if loc.meta is None:
            return self._list_virtual(loc.path)
        out = []
        for child in self.ctx.index.children(loc.row.node_id):
            if child.bad:
                continue
            try:
                meta = self.ctx.tree.child_meta(child, loc.row, loc.meta)
            except Orphan:
                continue
            except IntegrityError as e:
                self.feed.failed(child, e)
                continue
            if meta.nameless:
                continue  # a file only its hard links name
            try:
                out.append(self.entry(child, join(loc.path, meta.name), meta))
            except IntegrityError as e:  # a hard link that fails its checks: hidden like any bad entry
                self.feed.failed(child, e)
            except NotFound:
                continue  # a hard link whose file is gone from this index

        if loc.row.node_id == self.ctx.root_id and self.shares.all() \
                and all(e.name != SHARED_DIR for e in out):
            out.append(self.entry(self.virtual("/" + SHARED_DIR).row, "/" + SHARED_DIR, None))
        out.sort(key=lambda e: e.name)
        return out

    def hidden(self, path: str) -> list[str]:
        """Node ids of a folder's entries that fail their checks (hidden from its listing)."""
        loc = self.resolve(path)
        if loc.meta is None or loc.row.kind != "dir":
            return []
        out = []
        for child in self.ctx.index.children(loc.row.node_id):
            try:
                if child.bad:
                    raise IntegrityError("integrity check failed")
                self.ctx.tree.child_meta(child, loc.row, loc.meta)
            except Orphan:
                continue
            except IntegrityError:
                out.append(child.node_id)
        return sorted(out)

    def _list_virtual(self, p: str) -> list[Entry]:
        if p == "/" + SHARED_DIR:
            owners = sorted({s.owner_name for s in self.shares.all()})
            return [self.entry(self.virtual(f"{p}/{o}").row, f"{p}/{o}", None) for o in owners]
        owner = PurePosixPath(p).name
        out = []
        for s in self.shares.pending_from(owner):
            vp = join(p, s.name + PENDING_SUFFIX)
            out.append(self.entry(self.virtual(vp).row, vp, None))
        for s in self.shares.incoming.values():
            row = self.ctx.index.get(s.node_id)
            if s.owner_name != owner or row is None:
                continue
            try:
                out.append(self.entry(row, join(p, s.name), self.ctx.tree.meta(row)))
            except IntegrityError as e:
                self.feed.failed(row, e)
        return sorted(out, key=lambda e: e.name)
