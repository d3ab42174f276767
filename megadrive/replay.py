"""The uploader: versions (and files) this machine journaled are committed once the server has them.

A killed mount's versions, and those written while the server was
unreachable, are uploaded and committed by node id. A version whose base was
overtaken meanwhile is kept as a conflicted copy beside the file (under fresh
keys), never dropped. Key continuity holds here too: a journaled version goes
back into its meta only if that meta still names the keys it started from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

from . import crypto, format
from .api import MetaChanged, MissingChunks, RemoteNode
from .content import HEAD_STARTS, FileReader
from .context import DriveContext
from .errors import (
    AlreadyExists,
    Conflict,
    MegaDriveError,
    NetworkError,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    ServerError,
    StaleVersion,
    log_text,
)
from .feed import Feed
from .files import Files, JournalFirst
from .index import try_exclusive
from .journal import LocalVersion
from .nodes import Nodes
from .paths import conflict_name
from .tree import short

log = logging.getLogger(__name__)
T = TypeVar("T")

UPLOAD_INTERVAL = 2.0  # seconds between rounds when nothing kicks the uploader
UPLOAD_WORKERS = 4  # files committed side by side in one round
HEAD_START_WAIT = 30.0  # seconds a commit waits for its chunks' head starts (then sends what is missing)
MISSING_ROUNDS = 3  # a commit answered "missing chunks": send them and ask again, this many times at most
CREATE_WITH_MAX_CHUNKS = 1024  # a file created with its first version in one request: up to 1 GiB
BATCH_CREATES = 64  # new small files created with their first versions in one request
BATCH_MAX_CHUNKS = 4  # ... each of at most this many chunks (the request stays far under the server's limit)


@dataclasses.dataclass(frozen=True)
class _CreatePlan:
    """A file to create on the server with its journaled first version: what the request sends and
    what the feed records once the server has it."""

    lv: LocalVersion
    parent_id: str
    parent_key: bytes
    meta: format.NodeMeta
    blob: bytes


def _results(futures: list[Future[T]]) -> list[T]:
    """Every future's result, once every one has ended, whatever any raised (none may run on after the
    caller's locks go); then the first failure, in order, is raised."""
    wait(futures)
    failure = next((e for e in map(Future.exception, futures) if e is not None), None)
    if failure is not None:
        raise failure
    return [fut.result() for fut in futures]


class Uploader:
    def __init__(self, ctx: DriveContext, feed: Feed, nodes: Nodes, files: Files) -> None:
        self.ctx = ctx
        self.feed = feed
        self.nodes = nodes
        self.files = files
        self._reported: dict[str, str] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy_sources: list[Callable[[], set[str]]] = []
        self._lock = threading.Lock()
        self._rounds, self._failed = 0, False  # rounds done; whether the last one failed
        self._executor: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._lock_file = ctx.index.path.with_name(ctx.index.path.name + ".upload-lock") if ctx.index.path else None

    # -- in the background (write-back: the mount and the gateway return once a version is journaled) ---

    def start(self, busy: Callable[[], set[str]] = set) -> None:
        """Upload what is journaled as it comes, but the files ``busy()`` names (still being written).
        Each front-end on the drive (a gateway and a mount in one process) calls it with its own."""
        self._busy_sources.append(busy)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="megadrive-uploader", daemon=True)
            self._thread.start()
        self.kick()

    def _busy(self) -> set[str]:
        return set().union(*(f() for f in self._busy_sources))

    def kick(self) -> None:
        """Something was journaled: upload it now rather than at the next round."""
        self._idle.clear()
        self._wake.set()

    def stop(self, timeout: float = 120.0) -> None:
        """Upload what can be uploaded (the server may be gone: then it waits in the journal), then stop."""
        self.wait(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.close()

    def close(self) -> None:
        """Let the upload threads go (after a round in flight, if any, is over)."""
        with self._pool_lock:
            pool, self._executor = self._executor, None
        if pool is not None:
            pool.shutdown(wait=True)

    def wait(self, timeout: float) -> bool:
        """Until nothing uploadable waits (True), or the server cannot be reached, or ``timeout`` seconds."""
        if self._thread is None:
            return not self.pending()
        deadline = time.monotonic() + timeout
        first = self._rounds + 1  # a round that starts after this kick
        self.kick()
        while time.monotonic() < deadline:
            if self._idle.wait(0.05):
                return True
            if self._rounds > first and self._failed:
                return False
        return False

    def _loop(self) -> None:
        delay = 0.0
        while not self._stop.is_set():
            self._wake.wait(delay or UPLOAD_INTERVAL)
            self._wake.clear()
            if self._stop.is_set():
                return
            failed = False
            try:
                with self._lock, self._only_uploader() as mine:
                    if not mine:  # another process on this data folder uploads this journal now
                        delay = 0.5
                        continue
                    for line in self._replay(self._busy()):
                        log.log(logging.WARNING if line.startswith(("kept", "lost")) else logging.INFO, "%s", line)
                delay = 0.0
            except (NetworkError, ServerError) as e:
                log.warning("journaled versions wait for the server: %s", e.log_text())
                delay, failed = min(max(delay * 2, 1.0), 30.0), True
            except Exception as e:  # noqa: BLE001 - the uploader must outlive any one failure
                log.error("uploader: %s", log_text(e))
                delay, failed = 5.0, True
            finally:
                self._failed = failed
                self._rounds += 1
            if not delay and not self._waiting() - self._busy() - set(self._reported):
                self._idle.set()

    def _waiting(self) -> set[str]:
        return set(self.ctx.journal.nodes()) | set(self.ctx.journal.creates.ids())

    def pending(self) -> int:
        """Files with a version (or a creation) saved on this machine that the server does not have yet."""
        return len(set(self.ctx.journal.nodes()) | set(self.ctx.journal.creates.ids()))

    @contextlib.contextmanager
    def _only_uploader(self) -> Iterator[bool]:
        """One process at a time uploads a data folder's journal (``megadrive up`` runs a mount process
        beside its gateway): two would commit one version twice, the second as a conflicted copy."""
        if self._lock_file is None:
            yield True
            return
        with open(self._lock_file, "a+b") as f, try_exclusive(f) as mine:
            yield mine

    def replay(self, skip: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Upload and commit what the journal holds, except for nodes in ``skip`` (files still open here).

        Returns one line per file, naming nodes by id (the lines go to the
        mount's log). A network failure stops it and leaves the rest journaled.
        Another process uploading the same journal right now: nothing is done.
        """
        with self._only_uploader() as mine:
            return self._replay(skip) if mine else []

    def _replay(self, skip: set[str] | frozenset[str]) -> list[str]:
        journal = self.ctx.journal
        report: list[str] = []
        versions = set(journal.nodes())
        for node_id in journal.creates.ids():
            if node_id not in skip and node_id not in versions:  # (those are created with their version)
                try:
                    self.nodes.ensure_created(node_id)
                except (QuotaExceeded, PermissionDenied) as e:
                    self._held(node_id, e)
        todo = [n for n in journal.nodes() if n not in skip]
        batched = self._create_batches(todo)
        report.extend(batched.values())
        todo = [n for n in todo if n not in batched]
        if len(todo) > 1:  # several files in flight: each is a few round trips, mostly waiting
            # (a failure is raised once all ended: the rest waits in the journal for the next round)
            lines = _results([self._pool().submit(self._replay_node, n) for n in todo])
        else:
            lines = [self._replay_node(n) for n in todo]
        report.extend(line for line in lines if line is not None)
        with self.ctx.index.alone() as alone:
            for node_id in journal.drop_orphans(skip) if alone else ():
                log.warning("dropped chunks of node %s that no saved version names (of a save a newer one "
                            "replaced, or of a write abandoned before close(), fsync() or the end of its PUT)",
                            short(node_id))
        return report

    def _replay_node(self, node_id: str) -> str | None:
        """Upload and commit the node's journaled version; its report line (None: nothing to do)."""
        journal = self.ctx.journal
        lv = None
        try:
            lv = journal.get(node_id)
            if lv is None:
                return None
            line, committed, lv = self._replay_one(lv)
        except (NetworkError, ServerError):
            raise
        except (QuotaExceeded, PermissionDenied) as e:
            # Not lost: it waits here (encrypted) until there is room, or access comes back.
            self._held(node_id, e)
            return None
        except MegaDriveError as e:
            log.error("could not recover a journaled version of node %s: %s", short(node_id), e.log_text())
            line, committed = f"lost a journaled version of node {short(node_id)}: {e.log_text()}", False
        self._reported.pop(node_id, None)
        if lv is None:
            journal.done(node_id)
        else:
            self._settled(lv, committed)
        return line

    def _settled(self, lv: LocalVersion, committed: bool) -> None:
        """The journal lets go of a version the server now has (or that was kept as a copy, or lost)."""
        if committed:
            self.files.keep_committed(lv)  # (before settling: that forgets its chunks here)
            self.ctx.journal.settle(lv)
        else:
            self.ctx.journal.drop(lv)

    def _pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(UPLOAD_WORKERS, thread_name_prefix="megadrive-upload")
            return self._executor

    def _held(self, node_id: str, e: MegaDriveError) -> None:
        if self._reported.get(node_id) != type(e).__name__:
            self._reported[node_id] = type(e).__name__
            log.error("a version of node %s waits on this machine: %s", short(node_id), e.log_text())

    def _replay_one(self, lv: LocalVersion) -> tuple[str, bool, LocalVersion]:
        """Commit one journaled version: (a report line, whether the node now has it as its next version,
        the version as it went: replay may have put it on a newer base)."""
        node_id, base = lv.node_id, lv.base_version
        HEAD_STARTS.wait(lv.chunk_ids, HEAD_START_WAIT)  # (outside the create lock: this may take a while)
        # Not deleted here meanwhile (Nodes.forget_uncreated); held for one request at most.
        with self.ctx.journal.creates.lock(node_id):
            if self.ctx.journal.get(node_id) is None:
                return f"node {short(node_id)} was deleted before it was uploaded", False, lv
            if base == 0 and self.ctx.journal.creates.of(node_id) is not None and self._create_with(lv):
                return f"created node {short(node_id)} with version 1", True, lv
            self.nodes.ensure_created(node_id)
        try:
            row = self.ctx.row(node_id)
        except NotFound:  # the file is gone from the server (purged): keep what was written, in the root
            return self._recover(lv), False, lv
        again = self.ctx.journal.get(node_id)  # after the row: a time set meanwhile is in one or the other
        if again is not None and again.sealed_manifest == lv.sealed_manifest:
            lv = again
        chain = self.ctx.tree.chain(row)
        if len(chain) < 2:
            raise NotFound("the file's folder is gone")
        (parent, pmeta), (_, meta) = chain[-2], chain[-1]
        owner = self.ctx.owner_of(row)
        continuous = lv.origin is None or (crypto.ct_equal(meta.key, lv.origin[0]) and meta.file_id == lv.origin[1])
        if meta.version > base and crypto.ct_equal(meta.key, lv.keys.content_key):
            _, blob = self.ctx.api.get_manifest(node_id, base + 1)
            done = format.open_manifest(meta.key, owner, node_id, base + 1, meta.file_id, blob)
            if done.chunks == lv.manifest.chunks and done.size == lv.size:
                return f"node {short(node_id)} was already committed (version {base + 1})", True, lv
            if meta.version == base + 1 and lv.prior is not None and hashlib.sha256(blob).digest() == lv.prior:
                # The server has the version this one was saved on top of (committed just before a crash
                # that kept it from being settled): this one goes on top of it, not beside it.
                lv = self.ctx.journal.rebase(lv, base + 1)
                base = lv.base_version
        if meta.version == base and continuous:
            new = dataclasses.replace(meta, props=dict(meta.props), size=lv.size, version=base + 1,
                                      mtime_ns=lv.mtime_ns, rev=meta.rev + 1, key=lv.keys.content_key,
                                      file_id=lv.keys.file_id, rekey=False, ctime_ns=max(meta.ctime_ns, lv.mtime_ns))
            blob = format.seal_meta(pmeta.key, self.ctx.owner_of(parent), parent.node_id, node_id, new)
            try:
                n = self._with_chunks(lv, owner, lambda: self.ctx.api.commit_version(
                    node_id, base, lv.sealed_manifest, list(lv.chunk_ids), meta=blob, meta_seq=row.seq))
                self.feed.apply(n, new, pmeta.key)
                self.files.committed()
                if self.nodes.links is not None:
                    self.nodes.links.reprove(node_id, meta, new)
                return f"committed node {short(node_id)} (version {base + 1})", True, lv
            except MetaChanged:  # changed meanwhile (a rename, a new time set here): read both again
                self.feed.apply(self.ctx.api.get_node(node_id))
                fresh = self.ctx.journal.get(node_id)
                return self._replay_one(fresh if fresh is not None and fresh.sealed_manifest == lv.sealed_manifest
                                        else lv)
            except StaleVersion:
                pass
        home = (parent, pmeta) if continuous else self.files.conflict_home(lv.parent_id, lv.parent_key)
        reader = FileReader(JournalFirst(self.ctx), lv.keys, lv.manifest, cache=False)
        try:
            copy = self.files.new_file(home, conflict_name(meta.name), reader.iter_range(), lv.mtime_ns, meta.mode,
                                       dict(meta.props))
        finally:
            reader.close()
        return f"kept unsaved changes of node {short(node_id)} as node {short(copy)} (the file changed meanwhile)", \
            False, lv

    def _create_with(self, lv: LocalVersion) -> bool:
        """A file created here whose first version is journaled: create it on the server with that version
        in one request. False (nothing done) where the usual two steps must decide (its folder or its
        keys changed meanwhile, or the server has the node already: created just before a crash)."""
        plan = self._create_plan(lv)
        if plan is None:
            return False
        try:
            n = self.ctx.api.create_node(lv.node_id, plan.parent_id, "file", plan.blob,
                                         first_version=(lv.sealed_manifest, list(lv.chunk_ids)))
        except (AlreadyExists, NotFound, Conflict, MissingChunks):  # (its folder gone or trashed: the usual
            return False  # way keeps it in the root; chunks missing: sent outside the create lock)
        self._created(plan, n)
        return True

    def _create_plan(self, lv: LocalVersion) -> _CreatePlan | None:
        """The sealed meta of version 1 of a file created here with ``lv`` as its first version; None
        where the usual steps must decide (see _create_with)."""
        row = self.ctx.index.get(lv.node_id)
        if row is None or row.parent_id is None:
            return None
        chain = self.ctx.tree.chain(row)
        if len(chain) < 2:
            return None
        (parent, pmeta), (_, meta) = chain[-2], chain[-1]
        if len(lv.chunk_ids) > CREATE_WITH_MAX_CHUNKS:  # its request would pass the server's 1 MiB for a create
            return None
        if meta.version != 0 or lv.origin is None or not (crypto.ct_equal(meta.key, lv.origin[0])
                                                          and meta.file_id == lv.origin[1]):
            return None
        new = dataclasses.replace(meta, props=dict(meta.props), size=lv.size, version=1, mtime_ns=lv.mtime_ns,
                                  key=lv.keys.content_key, file_id=lv.keys.file_id, rekey=False,
                                  ctime_ns=max(meta.ctime_ns, lv.mtime_ns))
        owner = self.ctx.owner_of(parent)
        blob = format.seal_meta(pmeta.key, owner, parent.node_id, lv.node_id, new)
        return _CreatePlan(lv, parent.node_id, pmeta.key, new, blob)

    def _created(self, plan: _CreatePlan, n: RemoteNode) -> None:
        self.feed.apply(n, plan.meta, plan.parent_key)
        self.ctx.journal.creates.done(plan.lv.node_id)
        self.files.committed()

    def _create_batches(self, todo: list[str]) -> dict[str, str]:
        """New small files created with their first versions BATCH_CREATES at a time (one request and one
        server transaction each, instead of one per file). The nodes done, with their report lines; the
        rest (and every file of a batch the server refused: all or nothing) go the usual way, which
        decides each on its own."""
        journal, done = self.ctx.journal, dict[str, str]()
        small = [lv for lv in map(journal.get, todo)
                 if lv is not None and lv.base_version == 0 and len(lv.chunk_ids) <= BATCH_MAX_CHUNKS
                 and journal.creates.of(lv.node_id) is not None]
        if len(small) < 2:
            return done
        HEAD_STARTS.wait([c for lv in small for c in lv.chunk_ids], HEAD_START_WAIT)
        for start in range(0, len(small), BATCH_CREATES):
            group = small[start:start + BATCH_CREATES]
            self._send_missing(group)  # (outside the create locks: this may take a while)
            stripes = {id(lk): lk for lk in (journal.creates.lock(lv.node_id) for lv in group)}
            with contextlib.ExitStack() as held:
                # Every stripe of the group, in one order: any other holder takes one stripe at a time.
                for lk in sorted(stripes.values(), key=id):
                    held.enter_context(lk)
                plans = [p for p in map(self._batch_plan, group) if p is not None]
                if len(plans) < 2:
                    continue
                try:
                    answer = self.ctx.api.create_nodes([(p.lv.node_id, p.parent_id, p.blob,
                                                         (p.lv.sealed_manifest, list(p.lv.chunk_ids)))
                                                        for p in plans])
                except (NetworkError, ServerError):
                    raise  # (the server is unreachable or failing: the round waits, as every other would)
                except MegaDriveError:  # any item refused (a trashed folder, quota, a takedown, ...): all of them
                    continue  # go the usual way, which decides (and reports) each alone
                for p, n in zip(plans, answer, strict=True):
                    self._created(p, n)
            for p in plans:
                self._settled(p.lv, True)
                done[p.lv.node_id] = f"created node {short(p.lv.node_id)} with version 1 (one of {len(plans)})"
        return done

    def _send_missing(self, group: list[LocalVersion]) -> None:
        """The chunks of a batch that had no head start (HEAD_START_LIMIT are in flight at most: a tree
        copied in is written faster): one question per owner, then what the server lacks is sent from
        the journal, UPLOAD_WORKERS at a time. A chunk the server still lacks fails the batch, and its
        files go the usual way."""
        wanted: dict[str, list[str]] = {}
        for lv in group:
            wanted.setdefault(lv.keys.owner, []).extend(lv.chunk_ids)
        for owner, ids in wanted.items():
            ours = set(ids)
            missing = [c for c in self.ctx.api.missing_chunks(list(dict.fromkeys(ids)),
                                                              None if owner == self.ctx.owner else owner)
                       if c in ours and self.ctx.journal.get_chunk(c) is not None]
            _results([self._pool().submit(self.files.upload_from_journal, [c], owner) for c in missing])

    def _batch_plan(self, lv: LocalVersion) -> _CreatePlan | None:
        """(Under the node's create lock.) Still journaled as it was, still to be created: its plan."""
        now = self.ctx.journal.get(lv.node_id)
        if now is None or now.sealed_manifest != lv.sealed_manifest or self.ctx.journal.creates.of(lv.node_id) is None:
            return None
        return self._create_plan(now)

    def _with_chunks(self, lv: LocalVersion, owner: str, call: Callable[[], RemoteNode]) -> RemoteNode:
        """A commit of ``lv``, sent first as if the server had every chunk (the writer gave each a head
        start as it was sealed, and _replay_one waited for those): the chunks it says it misses are sent
        from the journal, then again."""
        for attempt in range(MISSING_ROUNDS):
            try:
                return call()
            except MissingChunks as e:
                wanted = set(lv.chunk_ids)
                missing = [c for c in e.missing if c in wanted]
                if attempt == MISSING_ROUNDS - 1 or not missing or len(missing) != len(e.missing):
                    raise ServerError("the server keeps asking for chunks of a version that it has, or never "
                                      "were in it") from None
                if any(self.ctx.journal.get_chunk(c) is None for c in missing):
                    # A chunk this version shares with the server's previous one: the server had it. The
                    # version stays journaled (a server error), never dropped for the server's claim.
                    raise ServerError("the server says it lacks a chunk it already had") from None
                self.files.upload_from_journal(missing, owner)
        raise AssertionError("unreachable")

    def _recover(self, lv: LocalVersion) -> str:
        """Keep a journaled version whose file is gone from the server as a new file (where its folder
        was, if that still has the key it had, else in the root)."""
        reader = FileReader(JournalFirst(self.ctx), lv.keys, lv.manifest, cache=False)
        with reader:
            copy = self.files.new_file(self.files.conflict_home(lv.parent_id, lv.parent_key),
                                       f"recovered {short(lv.node_id)}", reader.iter_range(), lv.mtime_ns)
        return f"node {short(lv.node_id)} is gone: its unsaved version was kept as node {short(copy)}"
