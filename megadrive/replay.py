"""The uploader: versions (and files) this machine journaled are committed once the server has them.

A killed mount's versions, and those written while the server was
unreachable, are uploaded and committed by node id. A version whose base was
overtaken meanwhile is kept as a conflicted copy beside the file (under fresh
keys), never dropped. Key continuity holds here too: a journaled version goes
back into its meta only if that meta still names the keys it started from.
"""

from __future__ import annotations

import dataclasses
import logging

from . import crypto, format
from .api import MetaChanged
from .content import FileReader
from .context import DriveContext
from .errors import MegaDriveError, NetworkError, NotFound, ServerError, StaleVersion
from .feed import Feed
from .files import Files, JournalFirst
from .journal import LocalVersion
from .nodes import Nodes
from .paths import conflict_name
from .tree import short

log = logging.getLogger(__name__)


class Uploader:
    def __init__(self, ctx: DriveContext, feed: Feed, nodes: Nodes, files: Files) -> None:
        self.ctx = ctx
        self.feed = feed
        self.nodes = nodes
        self.files = files

    def pending(self) -> int:
        """Files with a version (or a creation) saved on this machine that the server does not have yet."""
        return len(set(self.ctx.journal.nodes()) | set(self.ctx.journal.creates()))

    def replay(self, skip: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Upload and commit what the journal holds, except for nodes in ``skip`` (files still open here).

        Returns one line per file, naming nodes by id (the lines go to the
        mount's log). A network failure stops it and leaves the rest journaled.
        """
        journal = self.ctx.journal
        report: list[str] = []
        for node_id in journal.creates():
            if node_id not in skip:
                self.nodes.ensure_created(node_id)
        for node_id in journal.nodes():
            if node_id in skip:
                continue
            try:
                lv = journal.get(node_id)
                if lv is None:
                    continue
                report.append(self._replay_one(lv))
            except (NetworkError, ServerError):
                raise
            except MegaDriveError as e:
                log.error("could not recover a journaled version of node %s: %s", short(node_id), e.log_text())
                report.append(f"lost a journaled version of node {short(node_id)}: {e.log_text()}")
            journal.done(node_id)
        for node_id in journal.orphans():
            if node_id in skip:
                continue
            log.warning("dropping chunks of a write to node %s that never reached close() or fsync()",
                        short(node_id))
            journal.done(node_id)
        return report

    def _replay_one(self, lv: LocalVersion) -> str:
        node_id, base = lv.node_id, lv.base_version
        self.nodes.ensure_created(node_id)
        row = self.ctx.row(node_id)
        chain = self.ctx.tree.chain(row)
        if len(chain) < 2:
            raise NotFound("the file's folder is gone")
        (parent, pmeta), (_, meta) = chain[-2], chain[-1]
        owner = self.ctx.owner_of(row)
        self.files.upload_from_journal(self.ctx.api.missing_chunks(list(lv.chunk_ids), owner=row.owner or None),
                                       owner)
        continuous = lv.origin is None or (crypto.ct_equal(meta.key, lv.origin[0]) and meta.file_id == lv.origin[1])
        if meta.version > base and crypto.ct_equal(meta.key, lv.keys.content_key):
            _, blob = self.ctx.api.get_manifest(node_id, base + 1)
            done = format.open_manifest(meta.key, owner, node_id, base + 1, meta.file_id, blob)
            if done.chunks == lv.manifest.chunks and done.size == lv.size:
                return f"node {short(node_id)} was already committed (version {base + 1})"
        if meta.version == base and continuous:
            new = dataclasses.replace(meta, props=dict(meta.props), size=lv.size, version=base + 1,
                                      mtime_ns=lv.mtime_ns, rev=meta.rev + 1, key=lv.keys.content_key,
                                      file_id=lv.keys.file_id, rekey=False)
            blob = format.seal_meta(pmeta.key, self.ctx.owner_of(parent), parent.node_id, node_id, new)
            try:
                n = self.ctx.api.commit_version(node_id, base, lv.sealed_manifest, list(lv.chunk_ids), meta=blob,
                                                meta_seq=row.seq)
                self.feed.apply(n, new, pmeta.key)
                return f"recovered node {short(node_id)} (version {base + 1})"
            except MetaChanged:
                self.feed.apply(self.ctx.api.get_node(node_id))
                return self._replay_one(lv)
            except StaleVersion:
                pass
        home = (parent, pmeta) if continuous else self.files.conflict_home(lv.parent_id, lv.parent_key)
        reader = FileReader(JournalFirst(self.ctx), lv.keys, lv.manifest, cache=False)
        try:
            copy = self.files.new_file(home, conflict_name(meta.name), reader.iter_range(), lv.mtime_ns, meta.mode,
                                       dict(meta.props))
        finally:
            reader.close()
        return f"kept unsaved changes of node {short(node_id)} as node {short(copy)} (the file changed meanwhile)"
