"""The Drive: the one API every front-end (CLI, WebDAV, FUSE) calls.

"What MegaDrive looks like as a file system", defined once (borg's vfs.py
idea). Paths are absolute POSIX strings from the drive's root. Lookups,
listings and stat are answered from the local index (kept current by the
change feed) and decrypted in memory; content goes through
:class:`~megadrive.content.FileReader` / :class:`~megadrive.content.FileWriter`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from . import crypto, format
from .api import Api, RemoteNode
from .cache import DEFAULT_MAX_BYTES, ChunkCache
from .content import FileKeys, FileReader, FileWriter
from .errors import (
    AlreadyExists,
    Conflict,
    IntegrityError,
    InvalidPath,
    IsADirectory,
    MegaDriveError,
    NotADirectory,
    NotEmpty,
    NotFound,
    PermissionDenied,
    StaleVersion,
    TakenDown,
)
from .format import Manifest, NodeMeta
from .index import Index, IndexRow
from .names import check_name
from .sharing import SHARED_DIR, Sharing
from .state import Session, home, load_session

log = logging.getLogger(__name__)

VIRTUAL = "virtual:"  # node ids of the synthetic "Shared with me" folders


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

    @property
    def is_dir(self) -> bool:
        return self.kind == "dir"

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9

    @property
    def etag(self) -> str:
        """Strong validator: changes exactly when the content version changes."""
        return f"{self.node_id[:16]}-{self.version}"


@dataclass(frozen=True)
class Quota:
    used: int
    total: int

    @property
    def available(self) -> int:
        return max(0, self.total - self.used)


class LocalRecords:
    """Small records a front-end keeps on this machine (WebDAV locks), sealed under the master key.

    Keys are stored as keyed hashes and values sealed, so like the index the
    file reveals nothing without the key. Values carry their own key if the
    caller needs to list them.
    """

    def __init__(self, drive: Drive, ns: str) -> None:
        self._d = drive
        self.ns = ns

    def put(self, key: str, value: bytes) -> None:
        h = format.record_key_hash(self._d._master, self.ns, key)
        self._d.index.record_put(self.ns, h, format.seal_record(self._d._master, self._d.owner, self.ns, h, value))

    def delete(self, key: str) -> None:
        self._d.index.record_delete(self.ns, format.record_key_hash(self._d._master, self.ns, key))

    def values(self) -> list[bytes]:
        """Every record that still authenticates (a tampered one is dropped and logged)."""
        out = []
        for h, blob in self._d.index.record_all(self.ns):
            try:
                out.append(format.open_record(self._d._master, self._d.owner, self.ns, h, blob))
            except IntegrityError as e:
                log.error("dropping local %s record: %s", self.ns, e)
                self._d.index.record_delete(self.ns, h)
        return out


def split_path(path: str) -> list[str]:
    """'/a/b/' -> ['a', 'b']; refuses '.', '..', empty and over-long names."""
    if not path.startswith("/"):
        path = "/" + path
    parts = [p for p in path.split("/") if p]
    for p in parts:
        check_name(p)
    return parts


def conflict_name(name: str) -> str:
    """'report.txt' -> 'report (conflicted copy 2026-11-28 041034).txt'."""
    stem, dot, ext = name.rpartition(".")
    tag = f"(conflicted copy {time.strftime('%Y-%m-%d %H%M%S')})"
    return f"{stem} {tag}.{ext}" if dot and stem else f"{name} {tag}"


def join(parent: str, name: str) -> str:
    return str(PurePosixPath("/", parent.lstrip("/"), name))


class Drive:
    """One logged-in account's drive. Thread-safe."""

    def __init__(self, api: Api, session: Session, index: Index, cache: ChunkCache) -> None:
        self.api = api
        self.session = session
        self.owner = session.user_id
        self._master = session.master
        self._hkey = format.name_hash_key(self._master)
        self.index = index
        self._cache = cache
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="megadrive-io")
        self._lock = threading.RLock()
        self._metas: OrderedDict[str, tuple[bytes, NodeMeta]] = OrderedDict()
        self._seen: dict[str, tuple[int, int]] = {}
        self._quota: tuple[float, Quota] | None = None
        self._bad: dict[str, str] = {}  # node id -> why it failed (memory only: it may hold a name)
        self.last_refresh = 0.0
        self.sharing = Sharing(self)

    @classmethod
    def open(cls, base: Path | None = None, *, cache_bytes: int = DEFAULT_MAX_BYTES,
             refresh: bool = True) -> Drive:
        """The drive of the session saved under ``base`` (MEGADRIVE_HOME)."""
        base = base or home()
        s = load_session(base)
        d = s.account_dir(base)
        drive = cls(Api(s.server, s.token), s, Index(d / "index.sqlite3"), ChunkCache(d / "cache", cache_bytes))
        if refresh:
            drive.refresh()
        return drive

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.index.close()
        self.api.close()

    # -- sync -----------------------------------------------------------------------------------

    def refresh(self) -> int:
        """Pull the change feeds (ours, and each sharing owner's) into the index.

        Returns how many node changes arrived in our own feed.
        """
        with self._lock:
            count = self._pull_feed(None)
            self.sharing.sync()
            for row in self.index.pending_hash():
                self._hash_row(row)
            self.last_refresh = time.monotonic()
            return count

    def _pull_feed(self, owner: str | None) -> int:
        key = f"seq:{owner}" if owner else "seq"
        since = int(self.index.get_state(key) or 0)
        count = 0
        while True:
            nodes, seq, more = self.api.changes(since, owner=owner)
            with self.index.transaction():
                for n in nodes:
                    if owner and n.owner != owner:
                        log.error("ignoring node %s in %s's feed that claims another owner", n.node_id, owner)
                        continue
                    self._ingest(n)
                if seq > since:
                    self.index.set_state(key, str(seq))
            count += len(nodes)
            since = max(since, seq)
            if not more or not nodes:
                break
        return count

    def _ingest(self, n: RemoteNode) -> None:
        if n.gone:
            self.index.remove(n.node_id)
            return
        owner = "" if not n.owner or n.owner == self.owner else n.owner
        self.index.upsert(IndexRow(n.node_id, n.parent_id, n.kind, n.version, n.size, n.trashed, n.seq, n.meta,
                                   None, False, owner, n.removed))

    def _hash_row(self, row: IndexRow) -> None:
        try:
            meta = self._meta(row)
            h = format.name_hash(self._hkey, row.parent_id or "", meta.name)
            self.index.set_name_hash(row.node_id, h, False)
        except IntegrityError as e:
            log.error("node %s fails integrity checks: %s", row.node_id, e)
            self._bad[row.node_id] = e.message
            self.index.set_name_hash(row.node_id, None, True)

    def _apply(self, n: RemoteNode, meta: NodeMeta | None = None) -> None:
        """Record a node the server returned after our own change."""
        self._ingest(n)
        row = self.index.get(n.node_id)
        if row is None:
            return
        if meta is not None:
            self._metas[n.node_id] = (row.meta, meta)
            self._note_seen(n.node_id, meta.version, meta.rev)
            self.index.set_name_hash(n.node_id, format.name_hash(self._hkey, row.parent_id or "", meta.name), False)
        elif row.name_hash is None:
            self._hash_row(row)

    # -- keys and metadata ----------------------------------------------------------------------

    def _note_seen(self, node_id: str, version: int, rev: int) -> None:
        cur = self._seen.get(node_id) or self.index.seen(node_id)
        if version > cur[0] or rev > cur[1]:
            self.index.mark_seen(node_id, version, rev)
            cur = (max(version, cur[0]), max(rev, cur[1]))
        self._seen[node_id] = cur

    def _meta(self, row: IndexRow) -> NodeMeta:
        """Decrypt a node's meta under its parent's key; notices swapped blobs and rollbacks."""
        with self._lock:
            hit = self._metas.get(row.node_id)
            if hit is not None and hit[0] == row.meta:
                self._metas.move_to_end(row.node_id)
                return hit[1]
        if row.node_id.startswith(VIRTUAL):
            raise PermissionDenied(f"{SHARED_DIR!r} only lists what others share with you; it cannot be changed")
        shared_root = self.sharing.root_meta(row.node_id, row.owner)
        if shared_root is not None:
            return shared_root  # its own meta is sealed under the owner's parent key; the grant names it
        if row.parent_id is None:
            if row.node_id != self.session.root_node_id:
                raise IntegrityError("integrity check failed: unexpected root node")
            key, pid = self._master, ""
        else:
            parent = self.index.get(row.parent_id)
            if parent is None or parent.kind != "dir":
                raise IntegrityError(f"integrity check failed: node {row.node_id} has no valid parent")
            key, pid = self._meta(parent).key, row.parent_id
        meta = format.open_meta(key, self._owner_of(row), pid, row.node_id, row.meta)
        if meta.kind != row.kind:
            raise IntegrityError("integrity check failed: node kind does not match its metadata")
        if row.parent_id is not None:
            try:
                check_name(meta.name)  # a co-writer could have sealed '..' or 'a/b'
            except InvalidPath:
                raise IntegrityError(f"integrity check failed: node {row.node_id} has an invalid name") from None
        seen_v, seen_r = self._seen.get(row.node_id) or self.index.seen(row.node_id)
        if meta.rev < seen_r or meta.version < seen_v:
            raise IntegrityError(f"integrity check failed: {meta.name!r} was rolled back to an older state")
        self._note_seen(row.node_id, meta.version, meta.rev)
        with self._lock:
            self._metas[row.node_id] = (row.meta, meta)
            if len(self._metas) > 200_000:
                self._metas.popitem(last=False)
        return meta

    def _owner_of(self, row: IndexRow) -> str:
        """Whose tree a node is in: ours, or a sharing owner's (their id is bound into every AAD)."""
        return row.owner or self.owner

    def _root(self) -> IndexRow:
        row = self.index.get(self.session.root_node_id)
        if row is None:
            self.refresh()
            row = self.index.get(self.session.root_node_id)
            if row is None:
                raise IntegrityError("integrity check failed: the server does not show this account's root folder")
        return row

    def _virtual(self, path: str) -> IndexRow:
        return IndexRow(VIRTUAL + path, None, "dir", 0, 0, False, 0, b"", None, False)

    def _resolve(self, path: str) -> tuple[IndexRow, str]:
        parts = split_path(path)
        if parts and parts[0] == SHARED_DIR:
            if len(parts) == 1:
                return self._virtual("/" + SHARED_DIR), "/" + SHARED_DIR
            owners = {s.owner_name for s in self.sharing.incoming.values()}
            if parts[1] not in owners:
                raise NotFound(f"no such file or folder: /{SHARED_DIR}/{parts[1]}")
            if len(parts) == 2:
                p = f"/{SHARED_DIR}/{parts[1]}"
                return self._virtual(p), p
            share = self.sharing.by_path(parts[1], parts[2])
            root = self.index.get(share.node_id) if share else None
            if root is None:
                raise NotFound(f"no such file or folder: /{SHARED_DIR}/{parts[1]}/{parts[2]}")
            return self._walk(root, f"/{SHARED_DIR}/{parts[1]}/{parts[2]}", parts[3:])
        return self._walk(self._root(), "/", parts)

    def _walk(self, row: IndexRow, cur: str, names: list[str]) -> tuple[IndexRow, str]:
        for name in names:
            if row.kind != "dir":
                raise NotADirectory(f"not a folder: {cur}")
            h = format.name_hash(self._hkey, row.node_id, name)
            child = self.index.lookup(row.node_id, h)
            if child is None:
                pending = self.index.pending_hash(row.node_id)  # a change being ingested right now
                for p in pending:
                    self._hash_row(p)
                if pending:
                    child = self.index.lookup(row.node_id, h)
            cur = join(cur, name)
            if child is None:
                if self.index.has_bad_children(row.node_id):
                    why = self._why_bad(row.node_id)
                    raise IntegrityError(f"integrity check failed: folder {str(PurePosixPath(cur).parent)!r} "
                                         f"holds entries that fail authentication{why}")
                raise NotFound(f"no such file or folder: {cur}")
            row = child
        return row, cur

    def _why_bad(self, parent_id: str) -> str:
        reasons = sorted({self._bad[c.node_id].removeprefix("integrity check failed: ")
                          for c in self.index.children(parent_id) if c.bad and c.node_id in self._bad})
        return f" ({'; '.join(reasons)})" if reasons else ""

    def _entry(self, row: IndexRow, path: str) -> Entry:
        if row.node_id.startswith(VIRTUAL):
            return Entry(path=path, name=PurePosixPath(path).name, node_id=row.node_id, kind="dir", size=0,
                         mtime_ns=0, mode=0o555, version=0)
        m = self._meta(row)
        return Entry(path=path, name=m.name, node_id=row.node_id, kind=row.kind, size=m.size,
                     mtime_ns=m.mtime_ns, mode=m.mode, version=m.version, props=dict(m.props), removed=row.removed,
                     link=m.link)

    # -- reading the tree -----------------------------------------------------------------------

    def stat(self, path: str) -> Entry:
        row, p = self._resolve(path)
        return self._entry(row, p)

    def exists(self, path: str) -> bool:
        try:
            self._resolve(path)
            return True
        except NotFound:
            return False

    def listdir(self, path: str) -> list[Entry]:
        row, p = self._resolve(path)
        if row.kind != "dir":
            raise NotADirectory(f"not a folder: {p}")
        if row.node_id.startswith(VIRTUAL):
            return self._list_virtual(p)
        out = []
        bad = 0
        for child in self.index.children(row.node_id):
            if child.bad:
                bad += 1
                continue
            out.append(self._entry(child, join(p, self._meta(child).name)))
        if bad:
            raise IntegrityError(f"integrity check failed: {bad} entr{'y' if bad == 1 else 'ies'} in {p!r} "
                                 f"fail authentication (tampered by the server?){self._why_bad(row.node_id)}")
        if row.parent_id is None and self.sharing.incoming and all(e.name != SHARED_DIR for e in out):
            out.append(self._entry(self._virtual("/" + SHARED_DIR), "/" + SHARED_DIR))
        out.sort(key=lambda e: e.name)
        return out

    def _list_virtual(self, p: str) -> list[Entry]:
        shares = list(self.sharing.incoming.values())
        if p == "/" + SHARED_DIR:
            owners = sorted({s.owner_name for s in shares})
            return [self._entry(self._virtual(f"{p}/{o}"), f"{p}/{o}") for o in owners]
        owner = PurePosixPath(p).name
        out = []
        for s in shares:
            row = self.index.get(s.node_id)
            if s.owner_name == owner and row is not None:
                out.append(self._entry(row, f"{p}/{s.name}"))
        return sorted(out, key=lambda e: e.name)

    def local_records(self, ns: str) -> LocalRecords:
        return LocalRecords(self, ns)

    def pending_uploads(self) -> int:
        """Encrypted chunks staged locally but not yet confirmed by the server."""
        return self.index.pending_uploads()

    def quota(self, max_age: float = 5.0) -> Quota:
        now = time.monotonic()
        if self._quota is None or now - self._quota[0] > max_age:
            a = self.api.account()
            self._quota = (now, Quota(int(a["used"]), int(a["quota"])))
        return self._quota[1]

    # -- changing the tree ----------------------------------------------------------------------

    def _parent_for_new(self, path: str) -> tuple[IndexRow, NodeMeta, str]:
        parts = split_path(path)
        if not parts:
            raise AlreadyExists("the root folder already exists")
        parent, _ = self._resolve("/" + "/".join(parts[:-1]))
        if parent.kind != "dir":
            raise NotADirectory(f"not a folder: /{'/'.join(parts[:-1])}")
        return parent, self._meta(parent), parts[-1]

    def mkdir(self, path: str, *, exist_ok: bool = False, mtime_ns: int | None = None) -> Entry:
        parent, pmeta, name = self._parent_for_new(path)
        existing = self.index.lookup(parent.node_id, format.name_hash(self._hkey, parent.node_id, name))
        if existing is not None:
            if exist_ok and existing.kind == "dir":
                return self._entry(existing, join(self._path_of(parent), name))
            raise AlreadyExists(f"already exists: {path}")
        node_id = crypto.random_id().hex()
        meta = NodeMeta(name=name, kind="dir", key=crypto.random_key(), mtime_ns=mtime_ns or time.time_ns(),
                        mode=0o755)
        n = self.api.create_node(node_id, parent.node_id, "dir",
                                 format.seal_meta(pmeta.key, self._owner_of(parent), parent.node_id, node_id, meta))
        self._apply(n, meta)
        return self.stat(path)

    def makedirs(self, path: str) -> Entry:
        cur = "/"
        for name in split_path(path):
            cur = join(cur, name)
            self.mkdir(cur, exist_ok=True)
        return self.stat(cur)

    def _path_of(self, row: IndexRow) -> str:
        names = []
        if row.node_id.startswith(VIRTUAL):
            return row.node_id[len(VIRTUAL):]
        while row.parent_id is not None:
            share = self.sharing.incoming.get(row.node_id)
            if share is not None:
                names.append(share.name)
                return f"/{SHARED_DIR}/{share.owner_name}/" + "/".join(reversed(names))
            names.append(self._meta(row).name)
            parent = self.index.get(row.parent_id)
            if parent is None:
                raise NotFound("node is no longer in the tree")
            row = parent
        return "/" + "/".join(reversed(names))

    def _rewrite_meta(self, row: IndexRow, meta: NodeMeta, parent: IndexRow | None = None,
                      replace: str | None = None) -> None:
        """Re-seal a node's meta (new name/attributes and/or new parent) with rev+1."""
        target = parent or (self.index.get(row.parent_id) if row.parent_id else None)
        meta.rev += 1
        if target is None:
            key, pid = self._master, ""
        else:
            key, pid = self._meta(target).key, target.node_id
        blob = format.seal_meta(key, self._owner_of(row), pid, row.node_id, meta)
        n = self.api.update_node(row.node_id, blob, parent_id=parent.node_id if parent else None, replace=replace)
        self._apply(n, meta)

    def rename(self, src: str, dst: str, *, overwrite: bool = False, replace_nonempty: bool = False) -> Entry:
        """Move and/or rename; metadata only, nothing is re-uploaded.

        With ``overwrite`` an existing destination (a file, or an empty folder
        as POSIX rename allows; any folder with ``replace_nonempty``, as WebDAV
        MOVE wants) goes to the trash in the same server transaction as the
        move, so it is never lost half-way.
        """
        row, src_path = self._resolve(src)
        if row.parent_id is None:
            raise Conflict("cannot move the root folder")
        new_parent, _pmeta, name = self._parent_for_new(dst)
        dst_path = join(self._path_of(new_parent), name)
        if dst_path == src_path:
            return self._entry(row, src_path)
        if (dst_path + "/").startswith(src_path + "/"):
            raise Conflict("cannot move a folder into itself")
        existing = self.index.lookup(new_parent.node_id, format.name_hash(self._hkey, new_parent.node_id, name))
        replace = None
        if existing is not None and existing.node_id != row.node_id:
            if not overwrite:
                raise AlreadyExists(f"already exists: {dst_path}")
            if not replace_nonempty:
                if existing.kind == "dir" and row.kind != "dir":
                    raise IsADirectory(f"is a folder: {dst_path}")
                if existing.kind != "dir" and row.kind == "dir":
                    raise NotADirectory(f"not a folder: {dst_path}")
                if existing.kind == "dir" and self.index.children(existing.node_id):
                    raise NotEmpty(f"folder not empty: {dst_path}")
            replace = existing.node_id
        meta = self._meta(row)
        new = NodeMeta(**{**meta.__dict__, "name": name, "props": dict(meta.props)})
        self._rewrite_meta(row, new, parent=new_parent if new_parent.node_id != row.parent_id else None,
                           replace=replace)
        if replace:
            self._apply(self.api.get_node(replace))
        return self.stat(dst_path)

    def delete(self, path: str) -> None:
        """Move a file or folder (with its contents) to the trash."""
        row, p = self._resolve(path)
        if row.parent_id is None:
            raise Conflict("cannot delete the root folder")
        self.api.trash_node(row.node_id)
        self._apply(self.api.get_node(row.node_id))

    def remove(self, path: str) -> None:
        """Delete a file (not a folder)."""
        row, p = self._resolve(path)
        if row.kind == "dir":
            raise IsADirectory(f"is a folder: {p}")
        self.delete(p)

    def rmdir(self, path: str) -> None:
        row, p = self._resolve(path)
        if row.kind != "dir":
            raise NotADirectory(f"not a folder: {p}")
        if self.index.children(row.node_id):
            raise NotEmpty(f"folder not empty: {p}")
        self.delete(p)

    def set_attrs(self, path: str, *, mtime_ns: int | None = None, mode: int | None = None,
                  props: dict[str, str | None] | None = None) -> Entry:
        """Change mtime, mode and/or dead properties (encrypted in the node's meta)."""
        row, p = self._resolve(path)
        self._set_attrs_row(row, mtime_ns, mode, props)
        return self.stat(p)

    def _set_attrs_row(self, row: IndexRow, mtime_ns: int | None, mode: int | None,
                       props: dict[str, str | None] | None) -> None:
        meta = self._meta(row)
        new = NodeMeta(**{**meta.__dict__, "props": dict(meta.props)})
        if mtime_ns is not None:
            new.mtime_ns = mtime_ns
        if mode is not None:
            new.mode = mode & 0o7777
        for k, v in (props or {}).items():
            if v is None:
                new.props.pop(k, None)
            else:
                new.props[k] = v
        self._rewrite_meta(row, new)

    # -- content --------------------------------------------------------------------------------

    def _file_keys(self, row: IndexRow, meta: NodeMeta) -> FileKeys:
        return FileKeys(self._owner_of(row), row.node_id, meta.file_id, meta.key)

    def _manifest(self, row: IndexRow, meta: NodeMeta) -> Manifest | None:
        if meta.version == 0:
            return None
        if row.removed:
            raise TakenDown(f"{meta.name!r} was removed by the operator after an abuse notice")
        version, blob = self.api.get_manifest(row.node_id, meta.version)
        if version != meta.version:
            raise IntegrityError("integrity check failed: server returned another version's manifest")
        m = format.open_manifest(meta.key, self._owner_of(row), row.node_id, meta.version, meta.file_id, blob)
        if m.size != meta.size:
            raise IntegrityError("integrity check failed: file size does not match its manifest")
        return m

    def _fetch_blob(self, chunk_id: str, use_cache: bool = True) -> bytes:
        """A chunk's ciphertext, from the local cache or the server (verified by the caller)."""
        if use_cache:
            blob = self._cache.get(chunk_id)
            if blob is not None:
                return blob
        try:
            blob = self.api.get_chunk(chunk_id)
        except NotFound:
            raise IntegrityError(f"integrity check failed: chunk {chunk_id[:12]}… is missing on the server") from None
        if use_cache:
            self._cache.put(chunk_id, blob)
        return blob

    def open_read(self, path: str, *, cache: bool = True) -> FileReader:
        """A verified random-access reader of the file's current version.

        ``cache=False`` for one-shot streaming (``megadrive get``): nothing is kept.
        """
        row, p = self._resolve(path)
        if row.kind == "dir":
            raise IsADirectory(f"is a folder: {p}")
        return self._reader(row, self._meta(row), cache=cache)

    def _reader(self, row: IndexRow, meta: NodeMeta, *, cache: bool = True) -> FileReader:
        return FileReader(self, self._file_keys(row, meta), self._manifest(row, meta), cache=cache)

    def _copy_content(self, row: IndexRow, meta: NodeMeta, w: FileWriter) -> None:
        """Stream a file's current content into a writer (re-encrypting it under the writer's keys)."""
        if meta.link is not None or not meta.version:
            return
        src = self._reader(row, meta, cache=False)
        try:
            for piece in src.iter_range():
                w.write(piece)
        finally:
            src.close()

    def read_file(self, path: str) -> bytes:
        r = self.open_read(path)
        try:
            return r.read()
        finally:
            r.close()

    def _writer(self, row: IndexRow, meta: NodeMeta, *, truncate: bool, parent_id: str, name: str,
                journal: bool = False, mtime_ns: int | None = None) -> FileWriter:
        """A writer for an existing file; after a share was revoked (meta.rekey) the new version gets a
        fresh content key and file id, so its content is sealed under keys the former recipient never had."""
        if not meta.rekey:
            return FileWriter(self, self._file_keys(row, meta), self._manifest(row, meta), truncate=truncate,
                              parent_id=parent_id, name=name, create=False, mtime_ns=mtime_ns, journal=journal)
        keys = FileKeys(self._owner_of(row), row.node_id, crypto.random_id(), crypto.random_key())
        w = FileWriter(self, keys, None, truncate=True, parent_id=parent_id, name=name, create=False,
                       mtime_ns=mtime_ns, journal=journal)
        w.base_version = meta.version
        if not truncate:
            self._copy_content(row, meta, w)
            w.pos = 0
        return w

    def open_write(self, path: str, *, truncate: bool = True, create: bool = True, exclusive: bool = False,
                   mtime_ns: int | None = None) -> FileWriter:
        """Stage a new version of ``path`` (created at commit if it does not exist)."""
        parent, pmeta, name = self._parent_for_new(path)
        existing = self.index.lookup(parent.node_id, format.name_hash(self._hkey, parent.node_id, name))
        if existing is not None:
            if exclusive:
                raise AlreadyExists(f"already exists: {path}")
            if existing.kind == "dir":
                raise IsADirectory(f"is a folder: {path}")
            meta = self._meta(existing)
            return self._writer(existing, meta, truncate=truncate, parent_id=parent.node_id, name=name,
                                mtime_ns=mtime_ns)
        if not create:
            raise NotFound(f"no such file: {path}")
        keys = FileKeys(self._owner_of(parent), crypto.random_id().hex(), crypto.random_id(), crypto.random_key())
        return FileWriter(self, keys, None, truncate=True, parent_id=parent.node_id, name=name, create=True,
                          mtime_ns=mtime_ns)

    # -- by node id (for front-ends that hold open files across renames and unlinks) -----------

    def _row_by_id(self, node_id: str) -> IndexRow:
        row = self.index.get(node_id)
        if row is None:
            raise NotFound("the file no longer exists")
        return row

    def stat_id(self, node_id: str) -> Entry:
        """Attributes of a node held open, wherever it now is (even in the trash)."""
        row = self._row_by_id(node_id)
        m = self._meta(row)
        return Entry(path="", name=m.name, node_id=node_id, kind=row.kind, size=m.size, mtime_ns=m.mtime_ns,
                     mode=m.mode, version=m.version, props=dict(m.props), removed=row.removed, link=m.link)

    def open_read_id(self, node_id: str) -> FileReader:
        row = self._row_by_id(node_id)
        if row.kind == "dir":
            raise IsADirectory("is a folder")
        return self._reader(row, self._meta(row))

    def open_write_id(self, node_id: str, *, truncate: bool = False, journal: bool = False) -> FileWriter:
        """Stage a new version of an existing file node (renames meanwhile are fine).

        ``journal``: keep every sealed chunk, and the version once sealed, in the
        local journal until the server has committed it (the FUSE mount).
        """
        row = self._row_by_id(node_id)
        if row.kind == "dir":
            raise IsADirectory("is a folder")
        meta = self._meta(row)
        return self._writer(row, meta, truncate=truncate, parent_id=row.parent_id or "", name=meta.name,
                            journal=journal)

    # -- the journal: versions sealed on this machine but not yet committed ----------------------

    def _journal_pending(self, w: FileWriter, manifest: Manifest) -> None:
        self.index.pending_put(w.keys.node_id, manifest.version - 1,
                               format.seal_manifest(w.keys.content_key, w.keys.owner, manifest), manifest.chunk_ids())

    def replay_journal(self) -> list[str]:
        """Finish what a killed mount had sealed: upload its chunks and commit its versions.

        A version whose base was overtaken meanwhile is kept as a conflicted
        copy beside the file, never dropped. Returns one line per file.
        """
        report: list[str] = []
        for node_id, base, mblob, chunks in self.index.pending_all():
            mtime = time.time_ns()  # the journal keeps no plaintext attribute: a recovered version is stamped now
            try:
                row = self._row_by_id(node_id)
                meta = self._meta(row)
                manifest = format.open_manifest(meta.key, self._owner_of(row), node_id, base + 1, meta.file_id, mblob)
                for cid in self.api.missing_chunks(chunks):
                    blob = self.index.journal_get(cid)
                    if blob is None:
                        raise IntegrityError(f"integrity check failed: the journal lacks chunk {cid[:12]}…")
                    self.api.put_chunk(cid, blob)
                parent = self.index.get(row.parent_id) if row.parent_id else None
                if parent is None:
                    raise NotFound("the file's folder is gone")
                pmeta = self._meta(parent)
                if meta.version > base:
                    _, blob = self.api.get_manifest(node_id, base + 1)
                    done = format.open_manifest(meta.key, self._owner_of(row), node_id, base + 1, meta.file_id, blob)
                    if done.chunks == manifest.chunks and done.size == manifest.size:
                        report.append(f"{meta.name!r} was already committed (version {base + 1})")
                        continue  # the commit went through just before the crash
                if meta.version == base:
                    new = NodeMeta(**{**meta.__dict__, "props": dict(meta.props)})
                    new.size, new.version, new.mtime_ns, new.rev = manifest.size, base + 1, mtime, meta.rev + 1
                    try:
                        n = self.api.commit_version(node_id, base, mblob, chunks, meta=format.seal_meta(
                            pmeta.key, self._owner_of(parent), parent.node_id, node_id, new))
                        self._apply(n, new)
                        report.append(f"recovered {meta.name!r} (version {base + 1})")
                        continue
                    except StaleVersion:
                        pass
                name = conflict_name(meta.name)
                self._clone_file(meta, parent, pmeta, name, manifest, mtime)
                report.append(f"kept unsaved changes of {meta.name!r} as {name!r} (the file changed meanwhile)")
            except MegaDriveError as e:
                log.error("could not recover a journaled version of node %s: %s", node_id, e.message)
                report.append(f"lost a journaled version of node {node_id}: {e.message}")
            finally:
                self.index.journal_done(node_id)
        for node_id in self.index.journal_orphans():
            log.warning("dropping chunks of a write to node %s that never reached close() or fsync()", node_id)
            self.index.journal_done(node_id)
        return report

    def _keep_conflict(self, w: FileWriter, manifest: Manifest) -> str:
        """A staged version lost its compare-and-swap: keep it beside the file instead of dropping it."""
        row = self._row_by_id(w.keys.node_id)
        parent = self.index.get(row.parent_id) if row.parent_id else None
        if parent is None:
            raise NotFound("the file's folder is gone")
        cur = self._meta(row)
        mine = NodeMeta(**{**cur.__dict__, "key": w.keys.content_key, "file_id": w.keys.file_id,
                           "props": dict(cur.props), "rekey": False})
        name = conflict_name(cur.name)
        self._clone_file(mine, parent, self._meta(parent), name, manifest, w.mtime_ns or time.time_ns())
        return name

    def _clone_file(self, meta: NodeMeta, parent: IndexRow, pmeta: NodeMeta, name: str, m: Manifest,
                    mtime_ns: int) -> None:
        """A new file node holding version ``m``'s content (same content key: no chunk re-sent)."""
        node_id = crypto.random_id().hex()
        new = NodeMeta(**{**meta.__dict__, "name": name, "version": 0, "size": 0, "rev": 0, "mtime_ns": mtime_ns,
                          "props": dict(meta.props)})
        n = self.api.create_node(node_id, parent.node_id, "file",
                                 format.seal_meta(pmeta.key, self._owner_of(parent), parent.node_id, node_id, new))
        self._apply(n, new)
        copy = Manifest(node_id, meta.file_id, 1, m.size, list(m.chunks), m.commitment)
        final = NodeMeta(**{**new.__dict__, "version": 1, "size": m.size, "rev": 1, "props": dict(new.props)})
        owner = self._owner_of(parent)
        n = self.api.commit_version(node_id, 0, format.seal_manifest(meta.key, owner, copy), copy.chunk_ids(),
                                    meta=format.seal_meta(pmeta.key, owner, parent.node_id, node_id, final))
        self._apply(n, final)

    def create_file(self, path: str, *, mode: int = 0o644, exclusive: bool = True) -> Entry:
        """Create an empty file (version 0) now, so it is visible before any content is committed."""
        parent, pmeta, name = self._parent_for_new(path)
        if self.index.lookup(parent.node_id, format.name_hash(self._hkey, parent.node_id, name)) is not None:
            if exclusive:
                raise AlreadyExists(f"already exists: {path}")
            return self.stat(path)
        node_id = crypto.random_id().hex()
        meta = NodeMeta(name=name, kind="file", key=crypto.random_key(), file_id=crypto.random_id(),
                        mtime_ns=time.time_ns(), mode=mode & 0o7777)
        n = self.api.create_node(node_id, parent.node_id, "file",
                                 format.seal_meta(pmeta.key, self._owner_of(parent), parent.node_id, node_id, meta))
        self._apply(n, meta)
        return self.stat(path)

    def symlink(self, path: str, target: str) -> Entry:
        """A symbolic link: a node whose encrypted meta holds the target (like its name, never in clear)."""
        if not target or "\0" in target or len(target.encode("utf-8", "surrogateescape")) > 4095:
            raise InvalidPath("invalid symbolic link target")
        parent, pmeta, name = self._parent_for_new(path)
        if self.index.lookup(parent.node_id, format.name_hash(self._hkey, parent.node_id, name)) is not None:
            raise AlreadyExists(f"already exists: {path}")
        node_id = crypto.random_id().hex()
        meta = NodeMeta(name=name, kind="file", key=crypto.random_key(), file_id=crypto.random_id(),
                        mtime_ns=time.time_ns(), mode=0o777, size=0, link=target)
        n = self.api.create_node(node_id, parent.node_id, "file",
                                 format.seal_meta(pmeta.key, self._owner_of(parent), parent.node_id, node_id, meta))
        self._apply(n, meta)
        return self.stat(path)

    def set_attrs_id(self, node_id: str, *, mtime_ns: int | None = None, mode: int | None = None) -> None:
        self._set_attrs_row(self._row_by_id(node_id), mtime_ns, mode, None)

    def _commit_file(self, w: FileWriter, manifest: Manifest) -> None:
        """Called by FileWriter.commit: create the node if new, then CAS the new version."""
        node_id = w.keys.node_id
        mtime = w.mtime_ns or time.time_ns()
        if w.create:
            parent = self.index.get(w.parent_id)
            if parent is None:
                raise NotFound("the folder was removed while the file was being written")
            pmeta = self._meta(parent)
            if self.index.lookup(parent.node_id, format.name_hash(self._hkey, parent.node_id, w.name)):
                raise AlreadyExists(f"a file named {w.name!r} appeared while this one was being written")
            meta = NodeMeta(name=w.name, kind="file", key=w.keys.content_key, file_id=w.keys.file_id,
                            mtime_ns=mtime, mode=0o644)
            n = self.api.create_node(node_id, parent.node_id, "file",
                                     format.seal_meta(pmeta.key, self._owner_of(parent), parent.node_id, node_id, meta))
            self._apply(n, meta)
        row = self.index.get(node_id)
        if row is None:
            raise NotFound("the file was removed while it was being written")
        cur = self._meta(row)
        parent = self.index.get(row.parent_id) if row.parent_id else None
        if parent is None:
            raise NotFound("the file's folder is gone")
        pmeta = self._meta(parent)
        new = NodeMeta(**{**cur.__dict__, "props": dict(cur.props)})
        new.size, new.version, new.mtime_ns, new.rev = manifest.size, manifest.version, mtime, cur.rev + 1
        new.key, new.file_id, new.rekey = w.keys.content_key, w.keys.file_id, False
        blob = format.seal_meta(pmeta.key, self._owner_of(parent), parent.node_id, node_id, new)
        n = self.api.commit_version(node_id, manifest.version - 1,
                                    format.seal_manifest(w.keys.content_key, w.keys.owner, manifest),
                                    [c.hex() for c in manifest.chunks], meta=blob)
        self._apply(n, new)
        self._quota = None

    def write_file(self, path: str, data: bytes, *, mtime_ns: int | None = None) -> Entry:
        w = self.open_write(path, mtime_ns=mtime_ns)
        w.write(data)
        w.commit()
        return self.stat(path)

    def truncate(self, path: str, size: int) -> Entry:
        w = self.open_write(path, truncate=False, create=False)
        w.truncate(size)
        w.commit()
        return self.stat(path)

    def copy(self, src: str, dst: str, *, overwrite: bool = False, recursive: bool = True) -> Entry:
        """Copy without re-uploading: a file copy shares content key, file id and chunks.

        An existing destination is replaced only once the whole copy exists
        (built under a temporary name, then moved over it in one transaction).
        """
        row, p = self._resolve(src)
        parent, pmeta, name = self._parent_for_new(dst)
        dst_path = join(self._path_of(parent), name)
        if dst_path == p or (dst_path + "/").startswith(p + "/"):
            raise Conflict("cannot copy a folder into itself")
        existing = self.index.lookup(parent.node_id, format.name_hash(self._hkey, parent.node_id, name))
        if existing is not None and not overwrite:
            raise AlreadyExists(f"already exists: {dst_path}")
        tmp = f".megadrive-copy-{crypto.random_id().hex()}" if existing is not None else name
        self._copy_node(row, parent, pmeta, tmp, recursive)
        if existing is not None:
            self.rename(join(self._path_of(parent), tmp), dst_path, overwrite=True, replace_nonempty=True)
        return self.stat(dst_path)

    def _copy_node(self, row: IndexRow, parent: IndexRow, pmeta: NodeMeta, name: str, recursive: bool) -> None:
        meta = self._meta(row)
        node_id = crypto.random_id().hex()
        if row.kind == "dir":
            new = NodeMeta(name=name, kind="dir", key=crypto.random_key(), mtime_ns=meta.mtime_ns, mode=meta.mode,
                           props=dict(meta.props))
            n = self.api.create_node(node_id, parent.node_id, "dir",
                                     format.seal_meta(pmeta.key, self._owner_of(parent), parent.node_id, node_id, new))
            self._apply(n, new)
            if recursive:
                copy_row = self.index.get(node_id)
                assert copy_row is not None
                for child in self.index.children(row.node_id):
                    if child.bad:
                        raise IntegrityError("integrity check failed: cannot copy an entry that fails authentication")
                    self._copy_node(child, copy_row, new, self._meta(child).name, True)
            return
        if self._owner_of(parent) != self._owner_of(row) or meta.link is not None or meta.rekey:
            # Into or out of someone else's tree (or a file due a new key): re-encrypt under a fresh
            # content key, so no key crosses from one owner's files to another's.
            w = FileWriter(self, FileKeys(self._owner_of(parent), node_id, crypto.random_id(), crypto.random_key()),
                           None, truncate=True, parent_id=parent.node_id, name=name, create=True,
                           mtime_ns=meta.mtime_ns)
            self._copy_content(row, meta, w)
            w.commit()
            copy_row = self._row_by_id(node_id)
            done = self._meta(copy_row)
            self._rewrite_meta(copy_row, NodeMeta(**{**done.__dict__, "link": meta.link, "mode": meta.mode,
                                                     "props": dict(meta.props)}))
            return
        base = self._manifest(row, meta)
        if base is not None:
            self._clone_file(meta, parent, pmeta, name, base, meta.mtime_ns)
            return
        new = NodeMeta(**{**meta.__dict__, "name": name, "version": 0, "size": 0, "rev": 0,
                          "props": dict(meta.props)})
        n = self.api.create_node(node_id, parent.node_id, "file",
                                 format.seal_meta(pmeta.key, self._owner_of(parent), parent.node_id, node_id, new))
        self._apply(n, new)
