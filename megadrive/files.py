"""File content through the Drive: verified readers, staged writers, and the commit that ends a writer.

A key stays where it was verified: a commit re-seals a file's content key
only into a meta that still names the keys the writer started from; a new
file is sealed under its folder's key only if that folder still has the key
it had when the write began; a version that lost its compare-and-swap is kept
as a conflicted copy, re-encrypted under fresh keys, in the folder the writer
started in (never one the node was moved to behind its back).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from . import crypto, format
from .api import MetaChanged, MissingChunks
from .content import FileKeys, FileReader, FileWriter
from .context import DriveContext
from .errors import (
    AlreadyExists,
    Conflict,
    FileTooLarge,
    IntegrityError,
    IsADirectory,
    NotFound,
    QuotaExceeded,
    StaleVersion,
    TakenDown,
)
from .feed import Feed
from .format import CHUNK_SIZE, Manifest, NodeMeta
from .index import IndexRow
from .journal import LocalVersion
from .namespace import Namespace
from .nodes import Nodes
from .paths import conflict_name
from .tree import short

log = logging.getLogger(__name__)

# A version this small, just uploaded from the journal, stays readable here without a round trip: its
# sealed manifest in memory, its chunks (ciphertext) in the local cache. (A tree copied in and straight
# back out, or an editor reopening what it saved, would otherwise fetch every file from the server.)
KEEP_COMMITTED_CHUNKS = 4
MANIFESTS_KEPT = 4096
MAX_FILE_SIZE = 1 << 44  # 16 TiB: what a manifest of 1 MiB chunks reasonably holds (and far past any quota)


class JournalFirst:
    """Chunk I/O that looks in the local journal before the server (a version not uploaded yet)."""

    def __init__(self, ctx: DriveContext) -> None:
        self._ctx = ctx

    def fetch(self, chunk_id: str, *, use_cache: bool = True) -> bytes:
        blob = self._ctx.journal.get_chunk(chunk_id)
        return blob if blob is not None else self._ctx.chunks.fetch(chunk_id, use_cache=use_cache)

    def discard(self, chunk_id: str) -> None:
        self._ctx.chunks.discard(chunk_id)

    def put(self, chunk_id: str, blob: bytes, owner: str) -> None:
        self._ctx.chunks.put(chunk_id, blob, owner)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._ctx.chunks.submit(fn, *args)


class Files:
    """Readers and writers of file content, and the :class:`~megadrive.content.Committer` they commit with."""

    def __init__(self, ctx: DriveContext, feed: Feed, ns: Namespace, nodes: Nodes,
                 available: Callable[[], int], committed: Callable[[], None] = lambda: None) -> None:
        self.ctx = ctx
        self.feed = feed
        self.ns = ns
        self.nodes = nodes
        self._available = available  # bytes of quota left (cached a few seconds)
        self.committed = committed  # a version reached the server: the quota figures changed
        self.on_saved: Callable[[], None] = lambda: None  # a version was saved here for the uploader
        self._manifests: OrderedDict[tuple[str, int], bytes] = OrderedDict()  # (node, version) -> sealed
        self._manifests_lock = threading.Lock()

    def keep_committed(self, lv: LocalVersion) -> None:
        """``lv`` is on the server now (as version base + 1): keep what reading it needs, if it is small.
        Both are ciphertext, opened and checked on every read as if they came from the server."""
        if len(lv.chunk_ids) > KEEP_COMMITTED_CHUNKS:
            return
        with self._manifests_lock:
            self._manifests[(lv.node_id, lv.base_version + 1)] = lv.sealed_manifest
            while len(self._manifests) > MANIFESTS_KEPT:
                self._manifests.popitem(last=False)
        for cid in lv.chunk_ids:
            blob = self.ctx.journal.get_chunk(cid)
            if blob is not None:
                self.ctx.chunks.cache.put(cid, blob)

    # -- reading ----------------------------------------------------------------------------------

    def keys_of(self, row: IndexRow, meta: NodeMeta) -> FileKeys:
        return FileKeys(self.ctx.owner_of(row), row.node_id, meta.file_id, meta.key)

    def manifest(self, row: IndexRow, meta: NodeMeta) -> Manifest | None:
        """The verified manifest of the version ``meta`` names (None before a first version)."""
        if meta.version == 0:
            return None
        if row.removed:
            raise TakenDown(f"node {short(row.node_id)} was removed by the operator after an abuse notice")
        with self._manifests_lock:
            kept = self._manifests.get((row.node_id, meta.version))
        m = None
        if kept is not None:
            try:
                m = format.open_manifest(meta.key, self.ctx.owner_of(row), row.node_id, meta.version, meta.file_id,
                                         kept)
            except IntegrityError:  # (keys changed since: ask the server)
                m = None
        if m is None:
            version, blob = self.ctx.api.get_manifest(row.node_id, meta.version)
            if version != meta.version:
                raise IntegrityError("integrity check failed: server returned another version's manifest")
            m = format.open_manifest(meta.key, self.ctx.owner_of(row), row.node_id, meta.version, meta.file_id, blob)
        if m.size != meta.size:
            raise IntegrityError("integrity check failed: file size does not match its manifest")
        return m

    def reader(self, row: IndexRow, meta: NodeMeta, *, cache: bool = True) -> FileReader:
        return FileReader(self.ctx.chunks, self.keys_of(row, meta), self.manifest(row, meta), cache=cache)

    def open_read(self, path: str, *, cache: bool = True) -> FileReader:
        loc = self.ns.resolve(path)
        if loc.row.kind == "dir":
            raise IsADirectory(f"is a folder: {loc.path}")
        return self.current_reader(loc.row, loc.verified(), cache=cache)

    def open_read_id(self, node_id: str) -> FileReader:
        """A node held open by a front-end."""
        row = self.ctx.row(node_id)
        if row.kind == "dir":
            raise IsADirectory("is a folder")
        return self.current_reader(row, self.ctx.tree.meta(row))

    def current_reader(self, row: IndexRow, meta: NodeMeta, *, cache: bool = True) -> FileReader:
        """The version this machine shows: one saved here and not uploaded yet, if any (of the file a hard
        link names, for a link)."""
        row, meta = self.ns.content_node(row, meta)
        row, meta, lv = self.ns.current(row, meta)
        if lv is not None:
            return FileReader(JournalFirst(self.ctx), lv.keys, lv.manifest, cache=cache)
        return self.reader(row, meta, cache=cache)

    def content(self, row: IndexRow, meta: NodeMeta) -> Iterator[bytes]:
        """A file's current plaintext, chunk by chunk (verified as it streams)."""
        row, meta = self.ns.content_node(row, meta)
        if meta.link is not None or meta.special is not None:
            return
        row, meta, lv = self.ns.current(row, meta)
        if lv is None and not meta.version:
            return
        src = self.current_reader(row, meta, cache=False)
        try:
            yield from src.iter_range()
        finally:
            src.close()

    # -- writers ----------------------------------------------------------------------------------

    def new_writer(self, keys: FileKeys, base: Manifest | None, *, truncate: bool, parent_id: str, name: str,
                   create: bool, parent_key: bytes | None, origin: NodeMeta | None = None,
                   mtime_ns: int | None = None, journal: bool = False) -> FileWriter:
        w = FileWriter(self.ctx.chunks, self, keys, base, truncate=truncate, parent_id=parent_id, name=name,
                       create=create, mtime_ns=mtime_ns, journal=self.ctx.journal if journal else None,
                       origin=(origin.key, origin.file_id) if origin is not None else None, parent_key=parent_key)
        w.room = self.room
        return w

    def room(self, old_size: int, new_size: int) -> None:
        """A file may grow by a hole only up to the size cap and the quota left: refused before it costs."""
        if new_size > MAX_FILE_SIZE:
            raise FileTooLarge(f"file too large: {new_size} bytes (the limit is {MAX_FILE_SIZE})")
        available = self._available()
        if new_size - old_size > available:
            raise QuotaExceeded(f"storage quota exceeded: growing a file by {new_size - old_size} bytes, "
                                f"{available} available")

    def writer(self, row: IndexRow, meta: NodeMeta, parent: tuple[IndexRow, NodeMeta], *, truncate: bool,
               journal: bool = False, mtime_ns: int | None = None) -> FileWriter:
        """A writer for an existing file; after a share was revoked (meta.rekey) the new version gets a
        fresh content key and file id, so its content is sealed under keys the former recipient never had."""
        prow, pmeta = parent
        if not meta.rekey:
            base = None if truncate else self.manifest(row, meta)  # a truncating writer needs no old content
            w = self.new_writer(self.keys_of(row, meta), base, truncate=truncate, parent_id=prow.node_id,
                                name=meta.name, create=False, parent_key=pmeta.key, origin=meta, mtime_ns=mtime_ns,
                                journal=journal)
            w.base_version = meta.version
            return w
        keys = FileKeys(self.ctx.owner_of(row), row.node_id, crypto.random_id(), crypto.random_key())
        w = self.new_writer(keys, None, truncate=True, parent_id=prow.node_id, name=meta.name, create=False,
                            parent_key=pmeta.key, origin=meta, mtime_ns=mtime_ns, journal=journal)
        w.base_version = meta.version
        if not truncate:
            for piece in self.content(row, meta):
                w.write(piece)
            w.pos = 0
        return w

    def open_write(self, path: str, *, truncate: bool = True, create: bool = True, exclusive: bool = False,
                   mtime_ns: int | None = None, journal: bool = False) -> FileWriter:
        """Stage a new version of ``path`` (created at commit if it does not exist); ``journal``: for
        write-back (:meth:`FileWriter.save`), keeping what it seals on this machine until uploaded."""
        parent, name = self.ns.parent_for_new(path)
        pmeta = parent.verified()
        existing = self.ns.existing(parent, name)
        if existing is not None:
            if exclusive:
                raise AlreadyExists(f"already exists: {path}")
            if existing.kind == "dir":
                raise IsADirectory(f"is a folder: {path}")
            meta = self.ctx.tree.child_meta(existing, parent.row, pmeta)
            return self.current_writer(existing, meta, (parent.row, pmeta), truncate=truncate, journal=journal,
                                       mtime_ns=mtime_ns)
        if not create:
            raise NotFound(f"no such file: {path}")
        keys = FileKeys(self.ctx.owner_of(parent.row), crypto.random_id().hex(), crypto.random_id(),
                        crypto.random_key())
        return self.new_writer(keys, None, truncate=True, parent_id=parent.row.node_id, name=name, create=True,
                               parent_key=pmeta.key, mtime_ns=mtime_ns, journal=journal)

    def open_write_id(self, node_id: str, *, truncate: bool = False, journal: bool = False) -> FileWriter:
        """Stage a new version of a node held open (renames meanwhile are fine); ``journal``: keep every
        sealed chunk, and the version once sealed, on this machine until the server has it (FUSE)."""
        row = self.ctx.row(node_id)
        if row.kind == "dir":
            raise IsADirectory("is a folder")
        chain = self.ctx.tree.chain(row)
        if len(chain) < 2:
            raise IsADirectory("is a folder")
        return self.current_writer(row, chain[-1][1], chain[-2], truncate=truncate, journal=journal)

    def current_writer(self, row: IndexRow, meta: NodeMeta, parent: tuple[IndexRow, NodeMeta], *, truncate: bool,
                       journal: bool, mtime_ns: int | None = None) -> FileWriter:
        """A writer on the version this machine shows (a journaling one builds on a version saved here and
        not uploaded yet: it replaces that one, or follows it if the uploader commits it meanwhile).
        A hard link's writer writes the file it names; a symbolic link, fifo, socket or device node has
        no content to write (a PUT or a put onto one is refused, it is not turned into a file)."""
        if meta.link_to is not None:
            row, meta = self.ns.content_node(row, meta)
            parent = self.ctx.tree.chain(row)[-2]
        if meta.link is not None or meta.special is not None:
            raise Conflict("not a regular file: a symbolic link or special file has no content to write")
        fresh, meta, lv = self.ns.current(row, meta)
        if lv is not None and journal:
            w = FileWriter(self.ctx.chunks, self, lv.keys, None if truncate else lv.manifest, truncate=truncate,
                           parent_id=lv.parent_id, name=meta.name, create=False, journal=self.ctx.journal,
                           origin=lv.origin, parent_key=lv.parent_key, mtime_ns=mtime_ns)
            w.base_version, w.room, w.prior = lv.base_version, self.room, self.ctx.journal.lineage(lv)
            return w
        if fresh is not row:
            parent = self.ctx.tree.chain(fresh)[-2]
        return self.writer(fresh, meta, parent, truncate=truncate, journal=journal, mtime_ns=mtime_ns)

    # -- committing (the Committer protocol) ------------------------------------------------------

    def commit(self, w: FileWriter, manifest: Manifest) -> None:
        """Create the node if new, then compare-and-swap the new version (FileWriter.commit calls this)."""
        node_id = w.keys.node_id
        mtime = w.mtime_ns or time.time_ns()
        if w.create:
            self._create_for(w, mtime)
        sealed_manifest = format.seal_manifest(w.keys.content_key, w.keys.owner, manifest)
        self.nodes.ensure_created(node_id)
        for _ in range(8):
            row = self.ctx.row(node_id)
            chain = self.ctx.tree.chain(row)
            if len(chain) < 2:
                raise IntegrityError(f"integrity check failed: node {short(node_id)} is not a file in a folder")
            (parent, pmeta), (_, cur) = chain[-2], chain[-1]
            self._check_continuity(w, cur)
            new = dataclasses.replace(cur, props=dict(cur.props), size=manifest.size, version=manifest.version,
                                      mtime_ns=mtime, rev=cur.rev + 1, key=w.keys.content_key,
                                      file_id=w.keys.file_id, rekey=False, ctime_ns=time.time_ns())
            blob = format.seal_meta(pmeta.key, self.ctx.owner_of(parent), parent.node_id, node_id, new)
            try:
                n = self.ctx.api.commit_version(node_id, manifest.version - 1, sealed_manifest,
                                                manifest.chunk_ids(), meta=blob, meta_seq=row.seq)
            except MetaChanged:  # renamed or re-moded elsewhere meanwhile: keep that, commit on top of it
                self.feed.apply(self.ctx.api.get_node(node_id))
                continue
            except MissingChunks as e:  # chunks of a version journaled here earlier, not uploaded yet
                self.upload_from_journal(e.missing, w.keys.owner)
                continue
            self.feed.apply(n, new, pmeta.key)
            self.committed()
            if self.nodes.links is not None:
                self.nodes.links.reprove(node_id, cur, new)
            return
        raise Conflict("the file keeps changing on the server; try again")

    @staticmethod
    def _check_continuity(w: FileWriter, cur: NodeMeta) -> None:
        """The meta the version goes into must name the keys the writer started from."""
        if w.origin is None or (crypto.ct_equal(cur.key, w.origin[0]) and cur.file_id == w.origin[1]):
            return
        if cur.version != w.base_version:
            raise StaleVersion("the file was changed elsewhere; this version was not committed")
        raise IntegrityError(f"integrity check failed: node {short(w.keys.node_id)}'s keys changed while it was "
                             "open")

    def upload_from_journal(self, chunk_ids: list[str], owner: str) -> None:
        for cid in chunk_ids:
            blob = self.ctx.journal.get_chunk(cid)
            if blob is None:
                raise IntegrityError(f"integrity check failed: chunk {cid[:12]}… is neither on the server nor "
                                     "in the local journal")
            self.ctx.chunks.put(cid, blob, owner)

    def _create_for(self, w: FileWriter, mtime: int, *, local: bool = False) -> None:
        parent = self.ctx.index.get(w.parent_id)
        if parent is None:
            raise NotFound("the folder was removed while the file was being written")
        pmeta = self.ctx.tree.meta(parent)
        if w.parent_key is not None and not crypto.ct_equal(pmeta.key, w.parent_key):
            raise IntegrityError(f"integrity check failed: folder {short(parent.node_id)}'s key changed while a "
                                 "file was being written into it")
        if self.ns.child(parent.node_id, w.name):
            raise AlreadyExists(f"a file named {w.name!r} appeared while this one was being written")
        meta = NodeMeta(name=w.name, kind="file", key=w.keys.content_key, file_id=w.keys.file_id,
                        mtime_ns=mtime, mode=w.mode, props=dict(w.props), link=w.link)
        if local:
            self.nodes.create_local(parent, pmeta, meta, w.keys.node_id)
        else:
            self.nodes.create_node(parent, pmeta, meta, node_id=w.keys.node_id)
        w.create = False

    def save_local(self, w: FileWriter) -> None:
        """Before a version is kept on this machine for the uploader (FileWriter.save): is there room for
        it in the quota, beside what already waits to be uploaded? A new file is created here too."""
        folder = self.ctx.index.get(w.parent_id)
        if folder is not None:
            self.ns.check_writable(folder)
        waiting = self.ctx.journal.pending_bytes() + max(0, w.sealed_bytes - w.uploaded_bytes)
        available = self._available()
        if waiting > available:
            raise QuotaExceeded(f"storage quota exceeded: {waiting} bytes to upload, {available} available")
        if w.create:
            self._create_for(w, w.mtime_ns or time.time_ns(), local=True)

    def saved(self, w: FileWriter) -> None:
        self.on_saved()

    def keep_conflict(self, w: FileWriter, manifest: Manifest) -> str:
        """A staged version lost its compare-and-swap: keep it beside the file, under fresh keys."""
        home = self.conflict_home(w.parent_id, w.parent_key)
        cur = self.ctx.index.get(w.keys.node_id)
        try:
            meta = self.ctx.tree.meta(cur) if cur is not None else None
        except IntegrityError:
            meta = None
        name = conflict_name(meta.name if meta is not None else w.name)
        size = manifest.size

        def staged() -> Iterator[bytes]:
            for off in range(0, size, CHUNK_SIZE):
                yield w.pread(off, CHUNK_SIZE)

        mode, props = (meta.mode, dict(meta.props)) if meta is not None else (0o644, {})
        self.new_file(home, name, staged(), w.mtime_ns or time.time_ns(), mode, props)
        return name

    def conflict_home(self, parent_id: str, parent_key: bytes | None) -> tuple[IndexRow, NodeMeta]:
        """The folder a writer started in, if it still has the key it had then; else the root."""
        parent = self.ctx.index.get(parent_id)
        if parent is not None and parent_key is not None:
            try:
                pmeta = self.ctx.tree.meta(parent)
                if crypto.ct_equal(pmeta.key, parent_key):
                    return parent, pmeta
            except IntegrityError:
                pass
        log.warning("the folder of node %s changed its key: keeping the conflicted copy in the root folder",
                    short(parent_id))
        return self.ns.root()

    def new_file(self, parent: tuple[IndexRow, NodeMeta], name: str, content: Iterator[bytes], mtime_ns: int,
                 mode: int = 0o644, props: dict[str, str] | None = None, link: str | None = None) -> str:
        """A new file node under fresh keys holding ``content`` (re-encrypted: no key is shared with another
        node). Returns its node id."""
        prow, pmeta = parent
        keys = FileKeys(self.ctx.owner_of(prow), crypto.random_id().hex(), crypto.random_id(), crypto.random_key())
        w = self.new_writer(keys, None, truncate=True, parent_id=prow.node_id, name=name, create=True,
                            parent_key=pmeta.key, mtime_ns=mtime_ns)
        w.mode, w.props, w.link = mode, dict(props or {}), link
        try:
            for piece in content:
                w.write(piece)
            w.commit()
        finally:
            w.close()
        return keys.node_id
