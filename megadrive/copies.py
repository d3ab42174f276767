"""Copies: every file copied is re-encrypted under a fresh content key and file id.

No key is ever shared by two nodes, so whatever later happens to a copy
(shared, linked, revoked) says nothing about the original. The cost: a copy
uploads its content again (the server cannot copy what it cannot read).
"""

from __future__ import annotations

from . import crypto
from .context import DriveContext
from .errors import AlreadyExists, Conflict, IntegrityError
from .files import Files
from .format import NodeMeta
from .index import IndexRow
from .namespace import Entry, Namespace
from .nodes import Nodes
from .paths import join


class Copier:
    def __init__(self, ctx: DriveContext, ns: Namespace, nodes: Nodes, files: Files) -> None:
        self.ctx = ctx
        self.ns = ns
        self.nodes = nodes
        self.files = files

    def copy(self, src: str, dst: str, *, overwrite: bool = False, recursive: bool = True) -> Entry:
        """Copy a file or folder. An existing destination is replaced only once the whole copy exists
        (built under a temporary name, then moved over it in one server transaction)."""
        loc = self.ns.resolve(src)
        loc.verified()
        parent, name = self.ns.parent_for_new(dst)
        dst_path = join(parent.path, name)
        if dst_path == loc.path or (dst_path + "/").startswith(loc.path + "/"):
            raise Conflict("cannot copy a folder into itself")
        existing = self.ns.existing(parent, name)
        if existing is not None and not overwrite:
            raise AlreadyExists(f"already exists: {dst_path}")
        tmp = f".megadrive-copy-{crypto.random_id().hex()}" if existing is not None else name
        self._copy_node(loc.row, (parent.row, parent.verified()), tmp, recursive)
        if existing is not None:
            self.nodes.rename(join(parent.path, tmp), dst_path, overwrite=True, replace_nonempty=True)
        return self.ns.stat(dst_path)

    def _copy_node(self, row: IndexRow, parent: tuple[IndexRow, NodeMeta], name: str, recursive: bool) -> None:
        meta = self.ctx.tree.meta(row)
        prow, pmeta = parent
        if row.kind == "dir":
            new = NodeMeta(name=name, kind="dir", key=crypto.random_key(), mtime_ns=meta.mtime_ns, mode=meta.mode,
                           props=dict(meta.props))
            copy_row = self.nodes.create_node(prow, pmeta, new)
            if recursive:
                for child in self.ctx.index.children(row.node_id):
                    if child.bad:
                        raise IntegrityError("integrity check failed: cannot copy an entry that fails authentication")
                    self._copy_node(child, (copy_row, new), self.ctx.tree.child_meta(child, row, meta).name, True)
            return
        if meta.special is not None:  # a fifo, socket or device node: attributes only, copied as such
            self.nodes.create_node(prow, pmeta, NodeMeta(
                name=name, kind="file", key=crypto.random_key(), file_id=crypto.random_id(), mtime_ns=meta.mtime_ns,
                mode=meta.mode, props=dict(meta.props), special=meta.special, rdev=meta.rdev))
            return
        _, _, lv = self.ns.current(row, meta)  # a version saved here and not uploaded yet is the newest
        self.files.new_file(parent, name, self.files.content(row, meta), lv.mtime_ns if lv else meta.mtime_ns,
                            meta.mode, dict(meta.props), meta.link)
