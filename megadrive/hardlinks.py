"""Hard links: several names, one file, without a second parent for any node.

A link is a node of its own whose meta names its file by id (``lt``) and
carries, in place of a key, a proof derived from the file's content key
(format.hard_link_proof): only who can read a file can link it, and the link
reveals no key. The file's own meta lists its links (``hl``); a link counts
only if it is listed there and its proof holds (Namespace.content_node), so
neither the server nor a co-writer can name a file through a link the file's
writer did not make.

Where a file goes when names go away never hands its key to more readers:
it takes the place of a link in its own folder, or stays where it is without
a name (``nn``, hidden from listings) at the top of its tree while links
elsewhere remain (moving up never adds a reader: sharing covers whole
subtrees); a folder going to the trash parks a linked file inside it there
too.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from . import crypto, format
from .context import DriveContext
from .errors import (
    AlreadyExists,
    CrossDevice,
    IntegrityError,
    MegaDriveError,
    NotFound,
    NotPermitted,
    TooManyLinks,
)
from .feed import Feed
from .format import NodeMeta
from .index import IndexRow
from .namespace import Entry, Namespace
from .nodes import Nodes
from .paths import join
from .tree import Orphan, short

log = logging.getLogger(__name__)


class HardLinks:
    """Making, removing and honouring hard links (Nodes calls in on unlink, rename over and folder trash)."""

    def __init__(self, ctx: DriveContext, feed: Feed, ns: Namespace, nodes: Nodes) -> None:
        self.ctx = ctx
        self.feed = feed
        self.ns = ns
        self.nodes = nodes

    def link(self, path: str, new_path: str) -> Entry:
        """A node at ``new_path`` naming the file at ``path`` (a link names its file, never another link)."""
        loc = self.ns.resolve(path)
        meta = loc.verified()
        if loc.row.kind == "dir":
            raise NotPermitted("hard links to folders are not allowed")
        target, tmeta = self.ns.content_node(loc.row, meta)
        parent, name = self.ns.parent_for_new(new_path)
        if self.ns.existing(parent, name) is not None:
            raise AlreadyExists(f"already exists: {new_path}")
        if target.owner != parent.row.owner:
            raise CrossDevice("a hard link cannot cross into another account's tree")
        if len(tmeta.hard_links) >= format.MAX_HARD_LINKS:
            raise TooManyLinks(f"a file may have at most {format.MAX_HARD_LINKS} hard links")
        self.nodes.ensure_created(target.node_id)
        link_id = crypto.random_id().hex()
        lmeta = NodeMeta(name=name, kind="file", key=format.hard_link_proof(tmeta.key, link_id),
                         file_id=crypto.random_id(), mtime_ns=time.time_ns(), link_to=target.node_id)
        lrow = self.nodes.create_node(parent.row, parent.verified(), lmeta, node_id=link_id)
        try:
            listed = self.nodes.rewrite_meta(self.ctx.row(target.node_id),
                                             lambda m: dataclasses.replace(m, hard_links=[*m.hard_links, link_id]))
        except MegaDriveError:
            self._drop(link_id)  # not listed by its file: it would never count
            raise
        if not crypto.ct_equal(listed.key, tmeta.key):  # the file got a fresh key meanwhile: prove again
            self.nodes.rewrite_meta(lrow, lambda m: dataclasses.replace(
                m, key=format.hard_link_proof(listed.key, link_id)))
        return self.ns.stat(join(parent.path, name))

    # -- names going away -------------------------------------------------------------------------

    def unlisted(self, row: IndexRow, meta: NodeMeta) -> None:
        """A link node went away: its file (if the link was a proven one) drops it, and a nameless file
        whose last link this was goes to the trash."""
        try:
            target, _ = self.ns.content_node(row, meta)
            tmeta = self.nodes.rewrite_meta(target, lambda m: dataclasses.replace(
                m, hard_links=[i for i in m.hard_links if i != row.node_id]))
            if tmeta.nameless and not tmeta.hard_links:
                self.feed.apply(self.ctx.api.trash_node(target.node_id))
        except (IntegrityError, NotFound, Orphan):
            return  # a forged or stale link: nothing of anyone else's is touched
        except MegaDriveError as e:
            log.warning("hard link %s: its file keeps counting it: %s", short(row.node_id), e.log_text())

    def keep_alive(self, row: IndexRow, meta: NodeMeta) -> bool:
        """The first name of a file with links is going away: the file takes the place of a link in its
        own folder, or else is parked without a name (:meth:`_park`). False if it has no proven link."""
        links = self.ns.proven_links(row, meta.hard_links)
        if not links:
            return False
        same = next(((lid, lmeta) for lid, lrow, lmeta in links if lrow.parent_id == row.parent_id), None)
        if same is not None:
            lid, lmeta = same
            self.nodes.rewrite_meta(row, lambda m: dataclasses.replace(
                m, name=lmeta.name, hard_links=[i for i in m.hard_links if i != lid]), replace=lid)
            self.feed.apply(self.ctx.api.get_node(lid))
            self.ctx.entries_changed(row.parent_id)
        else:
            self._park(row, set(meta.hard_links))
        return True

    def _park(self, row: IndexRow, keep: set[str]) -> None:
        """Move a file whose names are all elsewhere to the top of its tree (the root, or the root of the
        share it is in), nameless: moving up never hands its key to more readers (sharing covers whole
        subtrees), and a file that left a share is re-keyed as any move out of one is."""
        top = self.ctx.tree.chain(row)[0]
        self.nodes.rewrite_meta(row, lambda m: dataclasses.replace(
            m, name=_nameless(row), nameless=True, hard_links=[i for i in m.hard_links if i in keep]),
            parent=top, move=top[0].node_id != row.parent_id)
        self.ctx.entries_changed(row.parent_id)
        if top[0].node_id != row.parent_id and self.nodes.after_move is not None:
            self.nodes.after_move(row.node_id, row.parent_id, top[0].node_id)

    def rescue(self, folder: IndexRow) -> None:
        """Before ``folder`` goes to the trash: links in it leave their files' lists, and a file in it with
        a link outside is parked (:meth:`_park`), so its other names keep working."""
        for row in self.ctx.index.subtree_files(folder.node_id):
            try:
                meta = self.ctx.tree.meta(row)
            except (Orphan, IntegrityError):
                continue
            if meta.link_to is not None and not self.nodes.inside(meta.link_to, folder.node_id):
                self.unlisted(row, meta)
            outside = [lid for lid in meta.hard_links if not self.nodes.inside(lid, folder.node_id)]
            if outside and self.ns.proven_links(row, outside):
                self._park(row, set(outside))

    def _drop(self, link_id: str) -> None:
        try:
            self.feed.apply(self.ctx.api.trash_node(link_id))
        except MegaDriveError as e:
            log.warning("an unlisted hard link %s stays (it does not count): %s", short(link_id), e.log_text())

    # -- a fresh content key ----------------------------------------------------------------------

    def reprove(self, node_id: str, old: NodeMeta, new: NodeMeta) -> None:
        """A file's content key changed (after a revoked share or a move out of one): its proven links get
        proofs from the new key. A failure leaves that link not counting (it never blocks the commit)."""
        if crypto.ct_equal(old.key, new.key) or not new.hard_links:
            return
        for lid in new.hard_links:
            lrow = self.ctx.index.get(lid)
            if lrow is None or lrow.trashed:
                continue
            try:
                lmeta = self.ctx.tree.meta(lrow)
                if lmeta.link_to != node_id or not crypto.ct_equal(lmeta.key, format.hard_link_proof(old.key, lid)):
                    continue
                proof = format.hard_link_proof(new.key, lid)
                self.nodes.rewrite_meta(lrow, lambda m, proof=proof: dataclasses.replace(m, key=proof))  # type: ignore[misc]
            except (Orphan, MegaDriveError) as e:
                log.warning("hard link %s of node %s keeps its old proof: %s", short(lid), short(node_id),
                            e.log_text() if isinstance(e, MegaDriveError) else "its folder is not here")


def _nameless(row: IndexRow) -> str:
    """The name a file keeps while only its links name it (unique in its folder; hidden from listings)."""
    return f".megadrive-nameless-{row.node_id}"
