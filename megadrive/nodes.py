"""Changing the tree: creating, renaming, moving, trashing nodes and their attributes.

Every change seals a meta under the verified parent's key and is a
compare-and-swap on the node's change seq, so a concurrent change by another
client is read again and kept, never overwritten with an older state.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import crypto, format
from .api import MetaChanged
from .context import DriveContext
from .errors import (
    AlreadyExists,
    Conflict,
    CrossDevice,
    IntegrityError,
    InvalidPath,
    IsADirectory,
    NoSpace,
    NoSuchAttribute,
    NotADirectory,
    NotEmpty,
    NotFound,
)
from .feed import Feed
from .format import NodeMeta
from .index import IndexRow
from .namespace import Entry, Located, Namespace
from .paths import join, split_path
from .tree import MAX_DEPTH, Orphan

if TYPE_CHECKING:
    from .hardlinks import HardLinks

Owner = tuple["int | None", "int | None"]  # (uid, gid) as stored; None: the mounting user / their group
NO_OWNER: Owner = (None, None)
log = logging.getLogger(__name__)

MoveHook = Callable[[str, "str | None", str], None]  # (node id, old parent, new parent) after a move


class Nodes:
    """The tree-changing half of the Drive."""

    def __init__(self, ctx: DriveContext, feed: Feed, ns: Namespace) -> None:
        self.ctx = ctx
        self.feed = feed
        self.ns = ns
        self.after_move: MoveHook | None = None  # set by sharing: a node that left a share is re-keyed
        self.links: HardLinks | None = None  # set by the Drive: names going away keep linked files alive

    # -- creating ---------------------------------------------------------------------------------

    def create_node(self, parent: IndexRow, pmeta: NodeMeta, meta: NodeMeta, node_id: str | None = None) -> IndexRow:
        """Seal a new node's meta under its parent's key, create it on the server, record it."""
        node_id = node_id or crypto.random_id().hex()
        owner = self.ctx.owner_of(parent)
        n = self.ctx.api.create_node(node_id, parent.node_id, meta.kind,
                                     format.seal_meta(pmeta.key, owner, parent.node_id, node_id, meta))
        self.ctx.entries_changed(parent.node_id)
        return self.feed.apply(n, meta, pmeta.key)

    def mkdir(self, path: str, *, exist_ok: bool = False, mtime_ns: int | None = None, mode: int = 0o755,
              owner: Owner = NO_OWNER) -> Entry:
        parent, name = self.ns.parent_for_new(path)
        existing = self.ns.existing(parent, name)
        if existing is not None:
            if exist_ok and existing.kind == "dir":
                return self.ns.stat(join(parent.path, name))
            raise AlreadyExists(f"already exists: {path}")
        meta = NodeMeta(name=name, kind="dir", key=crypto.random_key(), mtime_ns=mtime_ns or time.time_ns(),
                        mode=mode & 0o7777, uid=owner[0], gid=owner[1])
        self.create_node(parent.row, parent.verified(), meta)
        return self.ns.stat(path)

    def makedirs(self, path: str) -> Entry:
        cur = "/"
        for name in split_path(path):
            cur = join(cur, name)
            self.mkdir(cur, exist_ok=True)
        return self.ns.stat(cur)

    def create_file(self, path: str, *, mode: int = 0o644, exclusive: bool = True, local: bool = False,
                    owner: Owner = NO_OWNER, special: str | None = None, rdev: int = 0) -> Entry:
        """Create an empty file (version 0) now, so it is visible before any content is committed.

        ``local``: create it on this machine (journaled, its meta sealed as usual), and on the server
        when the uploader gets to it, before its first version (write-back: the FUSE mount's creates
        cost no round trip, and work offline). ``special``: a fifo, socket or device node (mknod), a
        file that never has content.
        """
        if special is not None and special not in format.SPECIAL_KINDS:
            raise InvalidPath(f"unknown kind of special file: {special!r}")
        parent, name = self.ns.parent_for_new(path)
        if self.ns.existing(parent, name) is not None:
            if exclusive:
                raise AlreadyExists(f"already exists: {path}")
            return self.ns.stat(path)
        meta = NodeMeta(name=name, kind="file", key=crypto.random_key(), file_id=crypto.random_id(),
                        mtime_ns=time.time_ns(), mode=mode & 0o7777, uid=owner[0], gid=owner[1], special=special,
                        rdev=rdev if special in ("chr", "blk") else 0)
        node_id = crypto.random_id().hex()
        if local:  # write-back: the uploader creates it on the server (before its first version)
            self.ns.check_writable(parent.row)
            self.create_local(parent.row, parent.verified(), meta, node_id)
            return self.ns.stat(path)
        self.create_node(parent.row, parent.verified(), meta, node_id=node_id)
        return self.ns.stat(path)

    def create_local(self, parent: IndexRow, pmeta: NodeMeta, meta: NodeMeta, node_id: str) -> None:
        """A node created on this machine first: in the index and the journal now, on the server when the
        uploader gets to it (see :meth:`ensure_created`)."""
        blob = format.seal_meta(pmeta.key, self.ctx.owner_of(parent), parent.node_id, node_id, meta)
        self.ctx.journal.creates.put(node_id, parent.node_id, meta.kind, blob)
        row = IndexRow(node_id, parent.node_id, meta.kind, 0, 0, False, 0, blob, None, False, parent.owner)
        self.ctx.index.upsert(row)
        self.ctx.entries_changed(parent.node_id)
        self.ctx.tree.note(row, meta, pmeta.key)
        self.ctx.index.set_name_hash(node_id, self.ctx.name_hash(parent.node_id, meta.name), False)

    def ensure_created(self, node_id: str) -> bool:
        """A node created on this machine first (write-back, or offline) is created on the server before
        anything else is asked of the server about it (same id and meta). True if it was created now."""
        with self.ctx.journal.creates.lock(node_id):
            rec = self.ctx.journal.creates.of(node_id)
            if rec is None:
                return False
            self._create_on_server(node_id, *rec)
            return True

    def _create_on_server(self, node_id: str, parent_id: str, kind: str, blob: bytes) -> None:
        try:
            n = self.ctx.api.create_node(node_id, parent_id, kind, blob)
        except AlreadyExists:  # created just before a crash
            n = self.ctx.api.get_node(node_id)
        except (NotFound, Conflict):  # its folder was removed, or trashed, meanwhile: keep it in the root
            meta = self.ctx.tree.meta(self.ctx.row(node_id))
            root, rmeta = self.ns.root()
            blob = format.seal_meta(rmeta.key, self.ctx.owner, root.node_id, node_id, meta)
            self.ctx.index.remove(node_id)
            n = self.ctx.api.create_node(node_id, root.node_id, kind, blob)
        self.feed.apply(n)
        self.ctx.journal.creates.done(node_id)

    def ensure_all_created(self, under: str | None = None) -> None:
        """Before a folder is moved or trashed: files created in it (``under``: that folder; None: any)
        on this machine exist on the server first (or the uploader would later create them where the
        folder no longer is)."""
        for node_id in self.ctx.journal.creates.ids():
            if under is None or self.inside(node_id, under):
                self.ensure_created(node_id)

    def inside(self, node_id: str, folder_id: str) -> bool:
        """Whether the index has ``node_id`` somewhere below ``folder_id`` (a local walk up its parents)."""
        row = self.ctx.index.get(node_id)
        for _ in range(MAX_DEPTH):
            if row is None or row.parent_id is None:
                return False
            if row.parent_id == folder_id:
                return True
            row = self.ctx.index.get(row.parent_id)
        return False

    def forget_uncreated(self, row: IndexRow) -> bool:
        """A file created here, deleted before the uploader created it on the server and not open in
        this process: forgotten here (no round trip). False if it has to be trashed on the server."""
        journal = self.ctx.journal
        with journal.creates.lock(row.node_id):
            if row.kind != "file" or journal.creates.of(row.node_id) is None or journal.is_writing(row.node_id):
                return False
            journal.done(row.node_id)
            journal.creates.done(row.node_id)
            self.ctx.index.remove(row.node_id)
            self.ctx.entries_changed(row.parent_id)
            return True

    def symlink(self, path: str, target: str, *, owner: Owner = NO_OWNER) -> Entry:
        """A symbolic link: a node whose encrypted meta holds the target (like its name, never in clear)."""
        if not target or "\0" in target or len(target.encode("utf-8", "surrogateescape")) > 4095:
            raise InvalidPath("invalid symbolic link target")
        parent, name = self.ns.parent_for_new(path)
        if self.ns.existing(parent, name) is not None:
            raise AlreadyExists(f"already exists: {path}")
        meta = NodeMeta(name=name, kind="file", key=crypto.random_key(), file_id=crypto.random_id(),
                        mtime_ns=time.time_ns(), mode=0o777, size=0, link=target, uid=owner[0], gid=owner[1])
        self.create_node(parent.row, parent.verified(), meta)
        return self.ns.stat(path)

    # -- changing ---------------------------------------------------------------------------------

    def rewrite_meta(self, row: IndexRow, change: Callable[[NodeMeta], NodeMeta], *,
                     parent: tuple[IndexRow, NodeMeta] | None = None, move: bool = False, replace: str | None = None,
                     verify: Callable[[IndexRow], NodeMeta] | None = None) -> NodeMeta:
        """Re-seal a node's meta as ``change`` makes it from the current one, with rev+1, under its parent.

        Compare-and-swap on the node's change seq: if another client changed
        the node meanwhile, the node is read again and ``change`` applied to
        what is there now. ``parent``: seal under this verified parent instead
        (the new folder of a ``move``, or the node's own folder just re-keyed);
        ``verify``: how to verify the node's current meta (default: its chain).
        """
        verify = verify or self.ctx.tree.meta
        if row.kind == "dir" and move:
            self.ensure_all_created()
        if self.ensure_created(row.node_id):
            row = self.ctx.row(row.node_id)
        if replace is not None:
            self.ensure_created(replace)
        for _ in range(8):
            cur = verify(row)
            new = dataclasses.replace(change(dataclasses.replace(cur, props=dict(cur.props), xattrs=dict(cur.xattrs))),
                                      rev=cur.rev + 1, ctime_ns=time.time_ns())
            if parent is not None:
                key, pid = parent[1].key, parent[0].node_id
            elif row.node_id == self.ctx.root_id and not row.owner:
                key, pid = self.ctx.master, ""
            else:
                prow, pmeta = self.ns.parent_of(row)
                key, pid = pmeta.key, prow.node_id
            blob = format.seal_meta(key, self.ctx.owner_of(row), pid, row.node_id, new)
            try:
                n = self.ctx.api.update_node(row.node_id, blob, parent_id=pid if move else None, replace=replace,
                                             base_seq=row.seq)
            except MetaChanged:
                row = self.feed.apply(self.ctx.api.get_node(row.node_id))
                continue
            self.feed.apply(n, new, key)
            return new
        raise Conflict("the node keeps changing on the server; try again")

    def rename(self, src: str, dst: str, *, overwrite: bool = False, replace_nonempty: bool = False) -> Entry:
        """Move and/or rename; metadata only, nothing is re-uploaded.

        With ``overwrite`` an existing destination (a file, or an empty folder
        as POSIX rename allows; any folder with ``replace_nonempty``, as WebDAV
        MOVE wants) goes to the trash in the same server transaction as the
        move, so it is never lost half-way.
        """
        loc = self.ns.resolve(src)
        meta = loc.verified()
        if loc.row.node_id == self.ctx.root_id or loc.row.parent_id is None:
            raise Conflict("cannot move the root folder")
        new_parent, name = self.ns.parent_for_new(dst)
        dst_path = join(new_parent.path, name)
        if dst_path == loc.path:
            return self.ns.entry(loc.row, loc.path, meta)
        self.ns.parent_of(loc.row)  # the root of a share with us is its owner's to move (PermissionDenied)
        if self.ctx.owner_of(loc.row) != self.ctx.owner_of(new_parent.row):
            # Another account's tree (a share, either way) is another file system: mv copies, then deletes.
            raise CrossDevice("a move cannot cross into another account's tree; copy it, then delete it")
        if (dst_path + "/").startswith(loc.path + "/"):
            raise Conflict("cannot move a folder into itself")
        existing = self.ns.existing(new_parent, name)
        replaced_meta = self._replaced_meta(existing, new_parent) if existing is not None else None
        if replaced_meta is not None and existing is not None and \
                self._same_file(loc.row, meta, existing, replaced_meta):
            return self.ns.entry(loc.row, loc.path, meta)  # two names of one file: POSIX rename does nothing
        replace = self._replaced(loc.row, existing, dst_path, overwrite, replace_nonempty)
        if replace is not None and existing is not None and replaced_meta is not None and replaced_meta.hard_links \
                and self.links is not None and self.links.keep_alive(existing, replaced_meta):
            replace = None  # the replaced file lives on under another of its names; its old name is free
        moved = new_parent.row.node_id != loc.row.parent_id
        self.rewrite_meta(loc.row, lambda m: dataclasses.replace(m, name=name),
                          parent=(new_parent.row, new_parent.verified()) if moved else None, move=moved,
                          replace=replace)
        if replace:
            self.feed.apply(self.ctx.api.get_node(replace))
            if existing is not None and replaced_meta is not None and replaced_meta.link_to is not None \
                    and self.links is not None:
                self.links.unlisted(existing, replaced_meta)
        self.ctx.entries_changed(loc.row.parent_id, new_parent.row.node_id)  # a new name is a change too
        if moved and self.after_move is not None:
            self.after_move(loc.row.node_id, loc.row.parent_id, new_parent.row.node_id)
        return self.ns.stat(dst_path)

    def _replaced_meta(self, existing: IndexRow, parent: Located) -> NodeMeta | None:
        try:
            return self.ctx.tree.child_meta(existing, parent.row, parent.verified())
        except (Orphan, IntegrityError):
            return None

    def _same_file(self, row: IndexRow, meta: NodeMeta, other: IndexRow, other_meta: NodeMeta) -> bool:
        """Whether two nodes are names of one file (hard links, or a link and its file)."""
        if meta.link_to is None and other_meta.link_to is None:
            return False
        try:
            return self.ns.content_node(row, meta)[0].node_id == self.ns.content_node(other, other_meta)[0].node_id
        except (IntegrityError, NotFound):
            return False

    def _replaced(self, row: IndexRow, existing: IndexRow | None, dst_path: str, overwrite: bool,
                  replace_nonempty: bool) -> str | None:
        """The node a rename replaces at its destination (trashed in the same transaction), if allowed."""
        if existing is None or existing.node_id == row.node_id:
            return None
        if not overwrite:
            raise AlreadyExists(f"already exists: {dst_path}")
        if not replace_nonempty:
            if existing.kind == "dir" and row.kind != "dir":
                raise IsADirectory(f"is a folder: {dst_path}")
            if existing.kind != "dir" and row.kind == "dir":
                raise NotADirectory(f"not a folder: {dst_path}")
            if existing.kind == "dir" and self.ctx.index.children(existing.node_id):
                raise NotEmpty(f"folder not empty: {dst_path}")
        return existing.node_id

    def delete(self, path: str) -> None:
        """Move a file or folder (with its contents) to the trash."""
        loc = self.ns.resolve(path)
        if loc.row.parent_id is None or loc.row.node_id == self.ctx.root_id:
            raise Conflict("cannot delete the root folder")
        meta = loc.verified()
        if self.forget_uncreated(loc.row):
            return
        if meta.hard_links and self.links is not None and self.links.keep_alive(loc.row, meta):
            return  # the file lives on under another of its names
        if loc.row.kind == "dir":
            self.ensure_all_created(under=loc.row.node_id)
            if self.links is not None:
                self.links.rescue(loc.row)
        self.ensure_created(loc.row.node_id)
        self.feed.apply(self.ctx.api.trash_node(loc.row.node_id))
        if meta.link_to is not None and self.links is not None:
            self.links.unlisted(loc.row, meta)

    def remove(self, path: str) -> None:
        """Delete a file (not a folder)."""
        loc = self.ns.resolve(path)
        if loc.row.kind == "dir":
            raise IsADirectory(f"is a folder: {loc.path}")
        self.delete(loc.path)

    def rmdir(self, path: str) -> None:
        loc = self.ns.resolve(path)
        if loc.row.kind != "dir":
            raise NotADirectory(f"not a folder: {loc.path}")
        if self.ctx.index.children(loc.row.node_id):
            raise NotEmpty(f"folder not empty: {loc.path}")
        self.delete(loc.path)

    def set_attrs(self, row: IndexRow, *, mtime_ns: int | None = None, mode: int | None = None,
                  props: dict[str, str | None] | None = None, atime_ns: int | None = None,
                  owner: Owner | None = None, xattr: XattrChange | None = None) -> None:
        """Change times, mode, owner, dead properties or one extended attribute (all encrypted in the meta).

        The status change time (ctime) is set by every rewrite of the meta.
        """
        def change(new: NodeMeta) -> NodeMeta:
            if mtime_ns is not None:
                new.mtime_ns = mtime_ns
            if atime_ns is not None:
                new.atime_ns = atime_ns
            if mode is not None:
                new.mode = mode & 0o7777
            if owner is not None:
                new.uid, new.gid = owner
            for k, v in (props or {}).items():
                if v is None:
                    new.props.pop(k, None)
                else:
                    new.props[k] = v
            if xattr is not None:
                xattr.apply(new.xattrs)
            return new

        self.rewrite_meta(row, change)


@dataclass(frozen=True)
class XattrChange:
    """Set (``value``) or remove (None) one extended attribute; ``create``/``replace`` as setxattr's flags."""

    name: str
    value: bytes | None
    create: bool = False
    replace: bool = False

    def apply(self, xattrs: dict[str, bytes]) -> None:
        present = self.name in xattrs
        if self.value is None or self.replace:
            if not present:
                raise NoSuchAttribute("no such extended attribute")
        if self.value is None:
            del xattrs[self.name]
            return
        if self.create and present:
            raise AlreadyExists("the extended attribute exists")
        xattrs[self.name] = self.value
        used = sum(len(k.encode("utf-8", "surrogateescape")) + len(v) for k, v in xattrs.items())
        if used > format.MAX_XATTR_BYTES:
            raise NoSpace(f"extended attributes are limited to {format.MAX_XATTR_BYTES} bytes per file")
