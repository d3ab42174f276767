"""File content: random-access readers and staged writers over encrypted chunks.

A reader opens one manifest (one version) and decrypts only the chunks a read
touches, prefetching ahead of a sequential reader. A writer stages a new
version: touched chunks are held in memory as plaintext only until sealed,
then encrypted and uploaded in the background; unchanged chunks of the base
version are reused by hash. Nothing becomes visible until :meth:`commit`,
which is a compare-and-swap on the version the writer started from.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol, Self

from . import crypto, format
from .errors import IntegrityError, InvalidPath, MegaDriveError, NetworkError, ServerError, StaleVersion
from .format import CHUNK_SIZE, Manifest

READAHEAD = 4
MAX_DIRTY = 4
MAX_INFLIGHT = 6
# Chunks of journaled versions sent early, queued or in flight, over all writers: a head start is never
# waited for by a writer, so without a bound a slow server would let the queue (and memory) grow with
# every write.
HEAD_START_LIMIT = 16


class HeadStarts:
    """Chunks of journaled versions on their way to the server ahead of the commit (at most ``limit``
    over all writers). The uploader waits for a version's before it commits it: a commit that overtook
    them would be refused for missing chunks, and the chunks sent twice."""

    def __init__(self, limit: int) -> None:
        self._room = threading.BoundedSemaphore(limit)
        self._sending: dict[str, int] = {}
        self._done = threading.Condition()

    def begin(self, cid: str) -> bool:
        """Room for one more (False: none; the uploader sends this chunk itself)."""
        if not self._room.acquire(blocking=False):
            return False
        with self._done:
            self._sending[cid] = self._sending.get(cid, 0) + 1
        return True

    def end(self, cid: str) -> None:
        with self._done:
            n = self._sending.pop(cid, 1) - 1
            if n > 0:
                self._sending[cid] = n
            self._done.notify_all()
        self._room.release()

    def wait(self, cids: Sequence[str], timeout: float) -> bool:
        """Until none of ``cids`` is still being sent (True), or ``timeout`` seconds."""
        wanted = set(cids)
        with self._done:
            return self._done.wait_for(lambda: wanted.isdisjoint(self._sending), timeout)


HEAD_STARTS = HeadStarts(HEAD_START_LIMIT)


class ChunkIO(Protocol):
    """Where ciphertext chunks come from and go to (the cache, the server, the I/O pool)."""

    def fetch(self, chunk_id: str, *, use_cache: bool = True) -> bytes: ...

    def discard(self, chunk_id: str) -> None: ...

    def put(self, chunk_id: str, blob: bytes, owner: str) -> None: ...

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]: ...


class Journal(Protocol):
    """The local journal: sealed chunks and versions kept on this machine until the server has them."""

    def put_chunk(self, chunk_id: str, node_id: str, blob: bytes) -> None: ...

    def get_chunk(self, chunk_id: str) -> bytes | None: ...

    def put_version(self, keys: FileKeys, manifest: Manifest, *, base_version: int,
                    origin: tuple[bytes, bytes] | None, parent_id: str, parent_key: bytes | None,
                    mtime_ns: int, prior: bytes | None = None) -> tuple[int, bytes]: ...

    def done(self, node_id: str) -> None: ...

    def begin_write(self, node_id: str) -> None: ...

    def end_write(self, node_id: str) -> None: ...


class Committer(Protocol):
    """What turns a staged version into the file's next version (the Drive), and keeps it if that fails."""

    def commit(self, w: FileWriter, manifest: Manifest) -> None: ...

    def keep_conflict(self, w: FileWriter, manifest: Manifest) -> str: ...

    def save_local(self, w: FileWriter) -> None: ...

    def saved(self, w: FileWriter) -> None: ...


@dataclass(frozen=True)
class FileKeys:
    """What it takes to read or write one file's content."""

    owner: str
    node_id: str
    file_id: bytes
    content_key: bytes

    @property
    def chunk_key(self) -> bytes:
        return format.chunk_key(self.content_key)


def chunk_len(size: int, index: int, chunk_size: int = CHUNK_SIZE) -> int:
    return max(0, min(chunk_size, size - index * chunk_size))


def n_chunks(size: int, chunk_size: int = CHUNK_SIZE) -> int:
    return -(-size // chunk_size)


class FileReader:
    """Random-access, verified reads of one file version. Thread-safe."""

    def __init__(self, io: ChunkIO, keys: FileKeys, manifest: Manifest | None, *, cache: bool = True) -> None:
        self._io = io
        self._use_cache = cache
        self._keys = keys
        self._ckey = keys.chunk_key
        self.manifest = manifest
        self.size = manifest.size if manifest else 0
        self.version = manifest.version if manifest else 0
        self._lock = threading.Lock()
        self._plain: OrderedDict[int, bytes] = OrderedDict()
        self._ahead: dict[int, Future[bytes]] = {}
        self._last = -1
        self.pos = 0
        self.end_hint: int | None = None  # a caller that knows where it stops (a Range GET) says so

    def _verified(self, index: int) -> bytes:
        """Fetch, verify and decrypt one chunk (runs in the I/O pool when prefetched)."""
        assert self.manifest is not None
        m = self.manifest
        cid = m.chunks[index]
        last = index == len(m.chunks) - 1
        expect = chunk_len(m.size, index, m.chunk_size)
        blob = self._io.fetch(cid.hex(), use_cache=self._use_cache)
        try:
            return format.open_chunk(self._ckey, self._keys.file_id, index, last, cid, blob, expect)
        except IntegrityError:
            # The cached copy may be the corrupt one: drop it and ask the server once more.
            self._io.discard(cid.hex())
            blob = self._io.fetch(cid.hex(), use_cache=False)
            return format.open_chunk(self._ckey, self._keys.file_id, index, last, cid, blob, expect)

    def _chunk(self, index: int) -> bytes:
        assert self.manifest is not None
        m = self.manifest
        with self._lock:
            if index in self._plain:
                self._plain.move_to_end(index)
                return self._plain[index]
            fut = self._ahead.pop(index, None)
            sequential = index == self._last + 1
            self._last = index
            if sequential:
                # Read ahead only for a sequential reader, and never past the end it announced.
                stop = len(m.chunks) if self.end_hint is None else n_chunks(self.end_hint, m.chunk_size)
                for i in range(index + 1, min(index + 1 + READAHEAD, stop)):
                    if i not in self._ahead and i not in self._plain:
                        self._ahead[i] = self._io.submit(self._verified, i)
            for stale in [i for i in self._ahead if i < index or i > index + READAHEAD]:
                self._ahead.pop(stale).cancel()
        pt = fut.result() if fut is not None else self._verified(index)
        with self._lock:
            self._plain[index] = pt
            while len(self._plain) > 2:
                self._plain.popitem(last=False)
        return pt

    def pread(self, offset: int, size: int) -> bytes:
        if self.manifest is None or offset >= self.size or size <= 0:
            return b""
        end = min(self.size, offset + size)
        cs = self.manifest.chunk_size
        out = []
        pos = offset
        while pos < end:
            idx, off = divmod(pos, cs)
            piece = self._chunk(idx)[off:off + (end - pos)]
            out.append(piece)
            pos += len(piece)
        return b"".join(out)

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = self.size - self.pos
        data = self.pread(self.pos, size)
        self.pos += len(data)
        return data

    def seek(self, pos: int) -> None:
        self.pos = pos

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the plaintext of [start, end) chunk by chunk (for streaming responses)."""
        end = self.size if end is None else min(end, self.size)
        self.end_hint = end
        pos = start
        cs = self.manifest.chunk_size if self.manifest else CHUNK_SIZE
        while pos < end:
            n = min(end - pos, cs - pos % cs)
            data = self.pread(pos, n)
            if not data:
                break
            yield data
            pos += len(data)

    def close(self) -> None:
        with self._lock:
            for f in self._ahead.values():
                f.cancel()
            self._ahead.clear()
            self._plain.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Clean:
    """A sealed chunk: its id, and the last flag and length it was sealed with."""

    cid: bytes
    last: bool
    length: int


class FileWriter:
    """Stage a new version of a file; nothing is visible until commit() succeeds."""

    def __init__(self, io: ChunkIO, committer: Committer, keys: FileKeys, base: Manifest | None, *,
                 truncate: bool, parent_id: str, name: str, create: bool, mtime_ns: int | None = None,
                 journal: Journal | None = None, origin: tuple[bytes, bytes] | None = None,
                 parent_key: bytes | None = None) -> None:
        self._io = io
        self._committer = committer
        self.journal = journal  # keeps sealed chunks on this machine until committed (FUSE)
        self.keys = keys
        self._ckey = keys.chunk_key
        self.base_version = base.version if base else 0
        # The content key and file id of the meta this writer started from: the commit refuses to seal
        # this version's key into a meta that names other keys (a node the server swapped under us).
        self.origin = origin
        self.parent_id = parent_id
        self.parent_key = parent_key  # the folder's key when the writer started (where a conflict copy may go)
        self.name = name
        self.create = create
        self.mtime_ns = mtime_ns
        self.mode = 0o644  # attributes of a file created at commit
        self.props: dict[str, str] = {}
        self.link: str | None = None
        self._clean: dict[int, _Clean] = {}  # sealed chunks by index; an index in neither map is a hole (zeros)
        self._dirty: dict[int, bytearray] = {}
        self._inflight: list[Future[None]] = []
        self._unsent: dict[str, bytes] = {}
        self._sem = threading.BoundedSemaphore(MAX_INFLIGHT)
        self._lock = threading.RLock()
        self.size = 0
        self.pos = 0
        self.closed = False
        self.modified = truncate or create
        self.uploaded_bytes = 0
        self.sealed_bytes = 0  # ciphertext this writer sealed (what the server will be sent and charge)
        self.journaled = False  # the version being committed is in the journal (a failed upload loses nothing)
        self.prior: bytes | None = None  # the journaled version this one is written on (Journal.lineage)
        # Asked (old size, new size) before a hole grows the file: the size cap and the quota left.
        self.room: Callable[[int, int], None] | None = None
        if base is not None and not truncate:
            if base.chunk_size != CHUNK_SIZE:
                raise MegaDriveError("cannot edit a file written with another chunk size")
            self.size = base.size
            n = len(base.chunks)
            self._clean = {i: _Clean(c, i == n - 1, chunk_len(base.size, i)) for i, c in enumerate(base.chunks)}
        if journal is not None:  # its chunks are not orphans while it lives, even before it saves a version
            journal.begin_write(keys.node_id)

    # -- staging ------------------------------------------------------------------------------

    def _plain(self, idx: int) -> bytes | bytearray:
        """Plaintext of chunk idx as it stands (dirty, sealed, or a hole); may be shorter than the layout."""
        if idx in self._dirty:
            return self._dirty[idx]
        c = self._clean.get(idx)
        if c is None:
            return bytes(chunk_len(self.size, idx))
        blob = self._sealed_blob(c.cid.hex())
        return format.open_chunk(self._ckey, self.keys.file_id, idx, c.last, c.cid, blob, c.length)

    def _load(self, idx: int) -> bytearray:
        """Chunk idx made dirty (editable); its sealed copy no longer counts."""
        if idx not in self._dirty:
            self._dirty[idx] = bytearray(self._plain(idx))
        self._clean.pop(idx, None)
        return self._dirty[idx]

    def pread(self, offset: int, size: int) -> bytes:
        """Read the staged version (what a reader of this open file must see)."""
        with self._lock:
            end = min(self.size, offset + max(0, size))
            out = []
            pos = offset
            while pos < end:
                idx, off = divmod(pos, CHUNK_SIZE)
                take = min(end - pos, CHUNK_SIZE - off)
                piece = bytes(self._plain(idx)[off:off + take])
                piece += bytes(take - len(piece))  # a chunk shorter than the size says is zeros
                out.append(piece)
                pos += take
            return b"".join(out)

    def write(self, data: bytes) -> int:
        n = self.pwrite(self.pos, data)
        self.pos += n
        return n

    def pwrite(self, offset: int, data: bytes | memoryview) -> int:
        if self.closed:
            raise MegaDriveError("writer is closed")
        if offset < 0:
            raise InvalidPath("negative file offset")
        mv = memoryview(data)
        total = len(mv)
        with self._lock:
            if offset > self.size:
                self._grow(offset)  # a hole: checked against the room left before anything is staged
            self.modified = True
            pos = offset
            while mv:
                idx, off = divmod(pos, CHUNK_SIZE)
                take = min(len(mv), CHUNK_SIZE - off)
                if off == 0 and take == CHUNK_SIZE:  # the whole chunk is replaced: no need to load the old one
                    self._dirty[idx] = bytearray(mv[:take])
                    self._clean.pop(idx, None)
                else:
                    buf = self._load(idx)
                    if len(buf) < off + take:
                        buf.extend(bytes(off + take - len(buf)))
                    buf[off:off + take] = mv[:take]
                mv = mv[take:]
                pos += take
                self.size = max(self.size, pos)
            self._spill()
        return total

    def _grow(self, new_size: int) -> None:
        """Extend with zeros. Costs no memory: the old last chunk reads as zero-padded, new chunks are holes."""
        if self.room is not None:
            self.room(self.size, new_size)
        self.size = new_size

    def truncate(self, size: int) -> None:
        if size < 0:
            raise InvalidPath("negative file size")
        with self._lock:
            if size > self.size:
                self._grow(size)
                self.modified = True
                return
            self.modified = True
            need = n_chunks(size)
            for idx in [i for i in self._dirty if i >= need]:
                del self._dirty[idx]
            for idx in [i for i in self._clean if i >= need]:
                del self._clean[idx]
            if need and size % CHUNK_SIZE:
                buf = self._load(need - 1)
                del buf[size - (need - 1) * CHUNK_SIZE:]
            self.size = size

    def _spill(self) -> None:
        """Seal and upload full chunks that cannot be the last one, keeping memory bounded."""
        if len(self._dirty) <= MAX_DIRTY:
            return
        last = n_chunks(self.size) - 1
        for idx in sorted(self._dirty):
            if idx < last and len(self._dirty[idx]) == CHUNK_SIZE:
                self._seal(idx)
            if len(self._dirty) <= MAX_DIRTY // 2:
                break

    def _seal(self, idx: int) -> None:
        buf = self._dirty.pop(idx)
        last = idx == n_chunks(self.size) - 1
        blob = format.seal_chunk(self._ckey, self.keys.file_id, idx, last, bytes(buf))
        cid = crypto.content_id(blob)
        self._clean[idx] = _Clean(bytes.fromhex(cid), last, len(buf))
        self.sealed_bytes += len(blob)
        if self.journal is not None:
            # Kept on this machine: the upload below is only a head start, never waited for (the uploader
            # sends whatever the server lacks when the version is committed).
            self.journal.put_chunk(cid, self.keys.node_id, blob)
            if HEAD_STARTS.begin(cid):  # at most HEAD_START_LIMIT queued, all writers together
                try:
                    self._io.submit(self._head_start, cid, blob)
                except BaseException:
                    HEAD_STARTS.end(cid)
                    raise
            return
        self._unsent[cid] = blob  # readable again before its upload is confirmed
        self._sem.acquire()
        try:
            fut = self._io.submit(self._upload, cid, blob)
        except BaseException:
            self._sem.release()
            raise
        self._inflight.append(fut)
        self._inflight = [f for f in self._inflight if not f.done() or f.exception() is not None]

    def _sealed_blob(self, cid: str) -> bytes:
        """A chunk this version reuses or sealed: still in flight, journaled, cached, or on the server."""
        blob = self._unsent.get(cid)
        if blob is None and self.journal is not None:
            blob = self.journal.get_chunk(cid)
        return blob if blob is not None else self._io.fetch(cid)

    def _upload(self, cid: str, blob: bytes) -> None:
        try:
            self._io.put(cid, blob, self.keys.owner)
            self.uploaded_bytes += len(blob)
            self._unsent.pop(cid, None)
        finally:
            self._sem.release()

    def _head_start(self, cid: str, blob: bytes) -> None:
        """A journaled chunk sent early; one that fails is sent again by the uploader, from the journal."""
        try:
            self._io.put(cid, blob, self.keys.owner)
            self.uploaded_bytes += len(blob)
        except (MegaDriveError, OSError):
            pass
        finally:
            HEAD_STARTS.end(cid)

    def _wait_uploads(self) -> None:
        err: BaseException | None = None
        for f in self._inflight:
            e = f.exception()
            if e is not None and err is None:
                err = e
        self._inflight = []
        if err is not None:
            raise err

    def _seal_layout(self) -> list[bytes]:
        """Seal every chunk of the final layout, one at a time (holes too), and return their ids in order.

        Memory stays bounded whatever the size: each chunk is built, sealed and
        handed to the uploads (at most MAX_INFLIGHT in flight) before the next.
        """
        need = n_chunks(self.size)
        for idx in [i for i in self._clean if i >= need]:
            del self._clean[idx]
        for idx in range(need):
            want_last, want_len = idx == need - 1, chunk_len(self.size, idx)
            c = self._clean.get(idx)
            if c is not None and idx not in self._dirty and c.last == want_last and c.length == want_len:
                continue
            buf = self._load(idx)
            if len(buf) < want_len:
                buf.extend(bytes(want_len - len(buf)))
            elif len(buf) > want_len:
                del buf[want_len:]
            self._seal(idx)
        return [self._clean[i].cid for i in range(need)]

    def _manifest(self, chunks: list[bytes]) -> Manifest:
        return Manifest(self.keys.node_id, self.keys.file_id, self.base_version + 1, self.size, chunks,
                        crypto.key_commitment(self.keys.content_key, self.keys.file_id))

    def checkpoint(self) -> None:
        """Seal everything staged into the local journal, as the version a crash would leave.

        Nothing becomes visible; the next mount commits the latest checkpoint if
        this process dies before close() or fsync() commits for real.
        """
        with self._lock:
            if self.closed or not self.modified or self.journal is None:
                return
            self._journal_version(self._manifest(self._seal_layout()))

    def save(self) -> int:
        """Write-back: seal what is staged into the local journal as the file's next version, and return.

        The version is durable on this machine (ciphertext only) and what reads
        of the file see here; the uploader commits it on the server in the
        background. Refused before anything is kept if the quota cannot hold it.
        Returns the version number it will have.
        """
        with self._lock:
            if self.closed or self.journal is None:
                raise MegaDriveError("only an open writer with a journal can save locally")
            manifest = self._manifest(self._seal_layout())
            self._committer.save_local(self)
            self._journal_version(manifest)
            self.journaled, self.modified, self.create = True, False, False
        self._committer.saved(self)
        return self.base_version + 1

    def _journal_version(self, manifest: Manifest) -> None:
        """Journal the staged version; what this writer saves next is written on it (its lineage, and its
        base if the journal put it on a newer one), not beside it on the base the writer opened with."""
        assert self.journal is not None
        base, self.prior = self.journal.put_version(
            self.keys, manifest, base_version=manifest.version - 1, origin=self.origin, parent_id=self.parent_id,
            parent_key=self.parent_key, mtime_ns=self.mtime_ns or time.time_ns(), prior=self.prior)
        self.base_version = base

    # -- commit -------------------------------------------------------------------------------

    def commit(self) -> int:
        """Upload what is staged and make it the file's next version (compare-and-swap)."""
        with self._lock:
            if self.closed:
                raise MegaDriveError("writer is closed")
            self.journaled = False
            try:
                manifest = self._manifest(self._seal_layout())
                version = manifest.version
                if self.journal is not None:
                    # From here a crash loses nothing: the next mount uploads and commits this version.
                    self._journal_version(manifest)
                    self.journaled = True
                self._wait_uploads()
                self._committer.commit(self, manifest)
                if self.journal is not None:
                    self.journal.done(self.keys.node_id)
            except (NetworkError, ServerError):
                # Journaled: the uploader (or the next mount) commits it. Journaling but not journaled yet
                # (a base chunk could not be fetched): the writer keeps what it staged for a later retry.
                if self.journaled or self.journal is None:
                    self.abort()
                raise
            except StaleVersion:
                self.abort()
                if self.journal is None:
                    raise
                # An open file (FUSE) lost the race: never drop what the program wrote.
                kept = self._committer.keep_conflict(self, manifest)
                self.journal.done(self.keys.node_id)
                raise StaleVersion(f"the file was changed elsewhere; this version was kept as {kept!r}") from None
            except BaseException:
                self.abort()
                if self.journal is not None:
                    self.journal.done(self.keys.node_id)
                raise
            self.base_version = version
            self.prior = None  # on the server now: nothing journaled to build on
            self.create = False
            self.modified = False
            return version

    def abort(self) -> None:
        """Drop everything staged. Chunks already sent become garbage the server collects."""
        with self._lock:
            self._dirty.clear()
            if self.journal is None:  # a journaling writer's head-start uploads are never waited for
                try:
                    self._wait_uploads()
                except (MegaDriveError, OSError, ServerError):
                    pass
            elif not self.closed:
                self.journal.end_write(self.keys.node_id)
            self.closed = True

    def close(self) -> None:
        if not self.closed:
            self.abort()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
