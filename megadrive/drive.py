"""The Drive: the one API every front-end (CLI, WebDAV, FUSE) calls.

"What MegaDrive looks like as a file system", defined once (borg's vfs.py
idea). Paths are absolute POSIX strings from the drive's root. Lookups,
listings and stat are answered from the local index (kept current by the
change feed) and decrypted in memory, every meta verified by
:class:`~megadrive.tree.Tree` on the path it was reached by; content goes
through :class:`~megadrive.content.FileReader` /
:class:`~megadrive.content.FileWriter`.

Keys never wander: a key this client holds is sealed only under the parent
it was verified under (or where the user moved it), a copy gets fresh keys,
and a commit refuses to seal a file's key into a meta that names other keys.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from . import crypto, format
from .api import Api, MetaChanged, MissingChunks, RemoteNode
from .cache import DEFAULT_MAX_BYTES, ChunkCache
from .chunkio import ServerChunks
from .content import FileKeys, FileReader, FileWriter
from .errors import (
    AlreadyExists,
    Conflict,
    FileTooLarge,
    IntegrityError,
    InvalidPath,
    IsADirectory,
    MegaDriveError,
    NetworkError,
    NotADirectory,
    NotEmpty,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    ServerError,
    StaleVersion,
    TakenDown,
)
from .format import CHUNK_SIZE, Manifest, NodeMeta
from .index import Index, IndexRow
from .journal import Journal, LocalVersion
from .names import check_name
from .sharing import PENDING_SUFFIX, SHARED_DIR, Sharing
from .state import Session, home, load_session
from .tree import Orphan, Tree, short

log = logging.getLogger(__name__)

VIRTUAL = "virtual:"  # node ids of the synthetic "Shared with me" folders
MAX_FILE_SIZE = 1 << 44  # 16 TiB: what a manifest of 1 MiB chunks reasonably holds (and far past any quota)


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

    def __init__(self, index: Index, master: bytes, owner: str, ns: str) -> None:
        self._index = index
        self._master = master
        self._owner = owner
        self.ns = ns

    def put(self, key: str, value: bytes) -> None:
        h = format.record_key_hash(self._master, self.ns, key)
        self._index.record_put(self.ns, h, format.seal_record(self._master, self._owner, self.ns, h, value))

    def delete(self, key: str) -> None:
        self._index.record_delete(self.ns, format.record_key_hash(self._master, self.ns, key))

    def values(self) -> list[bytes]:
        """Every record that still authenticates (a tampered one is dropped and logged)."""
        out = []
        for h, blob in self._index.record_all(self.ns):
            try:
                out.append(format.open_record(self._master, self._owner, self.ns, h, blob))
            except IntegrityError as e:
                log.error("dropping local %s record: %s", self.ns, e)
                self._index.record_delete(self.ns, h)
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


class Drive:
    """One logged-in account's drive. Thread-safe."""

    def __init__(self, api: Api, session: Session, index: Index, cache: ChunkCache) -> None:
        self.api = api
        self.session = session
        self.owner = session.user_id
        self._master = session.master
        self._hkey = format.name_hash_key(self._master)
        self.index = index
        self.chunks = ServerChunks(api, cache, self.owner)
        self.journal = Journal(index, self._master, self.owner)
        self._lock = threading.RLock()
        self._quota: tuple[float, Quota] | None = None
        self._bad: dict[str, bytes] = {}  # node id -> the meta blob that failed (logged once per blob)
        self.last_refresh = 0.0
        self.sharing = Sharing(self)
        self.tree = Tree(index, self.owner, self._master, session.root_node_id, self.sharing.root_meta)
        self._load_root()

    @classmethod
    def open(cls, base: Path | None = None, *, cache_bytes: int = DEFAULT_MAX_BYTES,
             refresh: bool = True) -> Drive:
        """The drive of the session saved under ``base`` (MEGADRIVE_HOME)."""
        base = base or home()
        s = load_session(base)
        d = s.account_dir(base)
        drive = cls(Api(s.server, s.token), s, Index(d / "index.sqlite3"), ChunkCache(d / "cache", cache_bytes))
        if refresh:
            try:
                drive.refresh()
            except BaseException:
                drive.close()
                raise
        return drive

    def __enter__(self) -> Drive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.chunks.close()
        self.index.close()
        self.api.close()

    @property
    def master_key(self) -> bytes:
        return self._master

    # -- sync -----------------------------------------------------------------------------------

    def refresh(self) -> int:
        """Pull the change feeds (ours, and each sharing owner's) into the index.

        Returns how many node changes arrived in our own feed.
        """
        with self._lock:
            count = self.pull_feed(None)
            self.sharing.sync()
            self._check_root()
            for row in self.index.pending_hash():
                self._hash_row(row)
            self.last_refresh = time.monotonic()
            return count

    def pull_feed(self, owner: str | None) -> int:
        key = f"seq:{owner}" if owner else "seq"
        since = int(self.index.get_state(key) or 0)
        count = 0
        while True:
            nodes, seq, more = self.api.changes(since, owner=owner)
            with self.index.transaction():
                for n in nodes:
                    if owner and n.owner != owner:
                        log.error("ignoring node %s in a shared feed that claims another owner", short(n.node_id))
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
            meta = self.tree.meta(row)
        except Orphan:
            return  # its parent has not arrived yet: stays pending, tried again at the next refresh
        except IntegrityError as e:
            self._failed(row, e)
            self.index.set_name_hash(row.node_id, None, True)
            return
        self.index.set_name_hash(row.node_id, format.name_hash(self._hkey, row.parent_id or "", meta.name), False)

    def _failed(self, row: IndexRow, e: IntegrityError) -> None:
        """Report an entry that fails its checks once (by node id), and hide it: never its siblings."""
        if self._bad.get(row.node_id) != row.meta:
            self._bad[row.node_id] = row.meta
            log.error("hiding node %s: %s", short(row.node_id), e.message)

    def _apply(self, n: RemoteNode, meta: NodeMeta | None = None, parent_key: bytes | None = None) -> IndexRow:
        """Record a node the server returned after our own change (and the meta we sealed for it)."""
        self._ingest(n)
        row = self.index.get(n.node_id)
        if row is None:
            raise NotFound("the node vanished while it was being changed")
        if meta is not None and parent_key is not None and row.meta == n.meta:
            self.tree.note(row, meta, parent_key)
            self.index.set_name_hash(n.node_id, format.name_hash(self._hkey, row.parent_id or "", meta.name), False)
        elif row.name_hash is None:
            self._hash_row(row)
        return row

    # -- the root -------------------------------------------------------------------------------

    def _load_root(self) -> None:
        """Trust the root meta verified in an earlier run, so a later forgery cannot take it away."""
        saved = self.index.get_state("root-meta")
        if not saved:
            return
        seq, _, blob = saved.partition(":")
        row = IndexRow(self.session.root_node_id, None, "dir", 0, 0, False, int(seq), bytes.fromhex(blob), None,
                       False)
        try:
            self.tree.trust_root(row)
        except IntegrityError as e:
            log.error("the saved root folder fails its checks: %s", e.message)

    def _check_root(self) -> None:
        row = self.index.get(self.session.root_node_id)
        if row is None:
            return
        try:
            self.tree.meta(row)  # a forged root is refused (and logged) here; the verified one stays
        except IntegrityError as e:
            log.error("root folder: %s", e.message)
            return
        good = self.tree.verified_root
        if good is not None:
            saved = f"{good.seq}:{good.meta.hex()}"
            if self.index.get_state("root-meta") != saved:
                self.index.set_state("root-meta", saved)

    def _root(self) -> tuple[IndexRow, NodeMeta]:
        row = self.index.get(self.session.root_node_id)
        if row is None:
            self.refresh()
            row = self.index.get(self.session.root_node_id)
            if row is None:
                raise IntegrityError("integrity check failed: the server does not show this account's root folder")
        return row, self.tree.meta(row)

    # -- keys and metadata ----------------------------------------------------------------------

    def verified_meta(self, row: IndexRow) -> NodeMeta:
        """A node's meta, verified on its whole chain of parents up to a trusted root."""
        if row.node_id.startswith(VIRTUAL):
            raise PermissionDenied(f"{SHARED_DIR!r} only lists what others share with you; it cannot be changed")
        return self.tree.meta(row)

    def _owner_of(self, row: IndexRow) -> str:
        """Whose tree a node is in: ours, or a sharing owner's (their id is bound into every AAD)."""
        return row.owner or self.owner

    def _virtual(self, path: str) -> Located:
        return Located(IndexRow(VIRTUAL + path, None, "dir", 0, 0, False, 0, b"", None, False), path, None)

    def resolve(self, path: str) -> Located:
        parts = split_path(path)
        if parts and parts[0] == SHARED_DIR:
            return self._resolve_shared(parts)
        row, meta = self._root()
        return self._walk(row, meta, "/", parts)

    def _resolve_shared(self, parts: list[str]) -> Located:
        if len(parts) == 1:
            return self._virtual("/" + SHARED_DIR)
        owners = {s.owner_name for s in self.sharing.all_incoming()}
        if parts[1] not in owners:
            raise NotFound(f"no such file or folder: /{SHARED_DIR}/{parts[1]}")
        base = f"/{SHARED_DIR}/{parts[1]}"
        if len(parts) == 2:
            return self._virtual(base)
        pending = self.sharing.pending_by_path(parts[1], parts[2])
        if pending is not None:
            if len(parts) > 3:
                raise NotFound(f"no such file or folder: {join(base, parts[2])}/{parts[3]}")
            return self._virtual(join(base, parts[2]))
        share = self.sharing.by_path(parts[1], parts[2])
        root = self.index.get(share.node_id) if share else None
        if root is None:
            raise NotFound(f"no such file or folder: {join(base, parts[2])}")
        return self._walk(root, self.tree.meta(root), join(base, parts[2]), parts[3:])

    def _walk(self, row: IndexRow, meta: NodeMeta, cur: str, names: list[str]) -> Located:
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
                raise NotFound(f"no such file or folder: {cur}")
            meta = self.tree.child_meta(child, row, meta)
            row = child
        return Located(row, cur, meta)

    def _entry(self, row: IndexRow, path: str, meta: NodeMeta | None) -> Entry:
        if meta is None:
            return Entry(path=path, name=PurePosixPath(path).name, node_id=row.node_id, kind="dir", size=0,
                         mtime_ns=0, mode=0o555, version=0)
        size, mtime, version = meta.size, meta.mtime_ns, meta.version
        lv = self._local(row.node_id) if row.kind == "file" else None
        if lv is not None:  # written here, not uploaded yet: what this machine shows is the newest
            size, mtime, version = lv.size, lv.mtime_ns, lv.base_version + 1
        return Entry(path=path, name=meta.name, node_id=row.node_id, kind=row.kind, size=size, mtime_ns=mtime,
                     mode=meta.mode, version=version, props=dict(meta.props), removed=row.removed, link=meta.link)

    def _local(self, node_id: str) -> LocalVersion | None:
        """The node's version journaled on this machine and not committed yet, if any (a broken one is
        reported and set aside: the server's version is shown)."""
        try:
            return self.journal.get(node_id)
        except IntegrityError as e:
            log.error("journaled version of node %s: %s", short(node_id), e.message)
            return None

    # -- reading the tree -----------------------------------------------------------------------

    def stat(self, path: str) -> Entry:
        loc = self.resolve(path)
        return self._entry(loc.row, loc.path, loc.meta)

    def exists(self, path: str) -> bool:
        try:
            self.resolve(path)
            return True
        except NotFound:
            return False

    def listdir(self, path: str) -> list[Entry]:
        """A folder's entries; one that fails its checks is hidden (and logged once), never its siblings."""
        loc = self.resolve(path)
        if loc.row.kind != "dir":
            raise NotADirectory(f"not a folder: {loc.path}")
        if loc.meta is None:
            return self._list_virtual(loc.path)
        out = []
        for child in self.index.children(loc.row.node_id):
            if child.bad:
                continue
            try:
                meta = self.tree.child_meta(child, loc.row, loc.meta)
            except Orphan:
                continue
            except IntegrityError as e:
                self._failed(child, e)
                continue
            out.append(self._entry(child, join(loc.path, meta.name), meta))
        if loc.row.node_id == self.session.root_node_id and self.sharing.all_incoming() \
                and all(e.name != SHARED_DIR for e in out):
            out.append(self._entry(self._virtual("/" + SHARED_DIR).row, "/" + SHARED_DIR, None))
        out.sort(key=lambda e: e.name)
        return out

    def hidden(self, path: str) -> list[str]:
        """Node ids of a folder's entries that fail their checks (hidden from its listing)."""
        loc = self.resolve(path)
        if loc.meta is None or loc.row.kind != "dir":
            return []
        out = []
        for child in self.index.children(loc.row.node_id):
            try:
                if child.bad:
                    raise IntegrityError("integrity check failed")
                self.tree.child_meta(child, loc.row, loc.meta)
            except Orphan:
                continue
            except IntegrityError:
                out.append(child.node_id)
        return sorted(out)

    def _list_virtual(self, p: str) -> list[Entry]:
        shares = self.sharing.all_incoming()
        if p == "/" + SHARED_DIR:
            owners = sorted({s.owner_name for s in shares})
            return [self._entry(self._virtual(f"{p}/{o}").row, f"{p}/{o}", None) for o in owners]
        owner = PurePosixPath(p).name
        out = []
        for s in self.sharing.pending_from(owner):
            vp = join(p, s.name + PENDING_SUFFIX)
            out.append(self._entry(self._virtual(vp).row, vp, None))
        for s in self.sharing.incoming.values():
            row = self.index.get(s.node_id)
            if s.owner_name != owner or row is None:
                continue
            try:
                out.append(self._entry(row, join(p, s.name), self.tree.meta(row)))
            except IntegrityError as e:
                self._failed(row, e)
        return sorted(out, key=lambda e: e.name)

    def local_records(self, ns: str) -> LocalRecords:
        return LocalRecords(self.index, self._master, self.owner, ns)

    def pending_uploads(self) -> int:
        """Files with a version (or a creation) saved on this machine that the server does not have yet."""
        return len(set(self.journal.nodes()) | set(self.journal.creates()))

    def quota(self, max_age: float = 5.0) -> Quota:
        now = time.monotonic()
        if self._quota is None or now - self._quota[0] > max_age:
            a = self.api.account()
            self._quota = (now, Quota(int(a["used"]), int(a["quota"])))
        return self._quota[1]

    # -- changing the tree ----------------------------------------------------------------------

    def _parent_for_new(self, path: str) -> tuple[Located, str]:
        parts = split_path(path)
        if not parts:
            raise AlreadyExists("the root folder already exists")
        parent = self.resolve("/" + "/".join(parts[:-1]))
        if parent.row.kind != "dir":
            raise NotADirectory(f"not a folder: /{'/'.join(parts[:-1])}")
        parent.verified()
        return parent, parts[-1]

    def _existing(self, parent: Located, name: str) -> IndexRow | None:
        return self.index.lookup(parent.row.node_id, format.name_hash(self._hkey, parent.row.node_id, name))

    def _create_node(self, parent: IndexRow, pmeta: NodeMeta, meta: NodeMeta, node_id: str | None = None) -> IndexRow:
        """Seal a new node's meta under its parent's key, create it on the server, record it."""
        node_id = node_id or crypto.random_id().hex()
        owner = self._owner_of(parent)
        n = self.api.create_node(node_id, parent.node_id, meta.kind,
                                 format.seal_meta(pmeta.key, owner, parent.node_id, node_id, meta))
        return self._apply(n, meta, pmeta.key)

    def mkdir(self, path: str, *, exist_ok: bool = False, mtime_ns: int | None = None) -> Entry:
        parent, name = self._parent_for_new(path)
        existing = self._existing(parent, name)
        if existing is not None:
            if exist_ok and existing.kind == "dir":
                return self.stat(join(parent.path, name))
            raise AlreadyExists(f"already exists: {path}")
        meta = NodeMeta(name=name, kind="dir", key=crypto.random_key(), mtime_ns=mtime_ns or time.time_ns(),
                        mode=0o755)
        self._create_node(parent.row, parent.verified(), meta)
        return self.stat(path)

    def makedirs(self, path: str) -> Entry:
        cur = "/"
        for name in split_path(path):
            cur = join(cur, name)
            self.mkdir(cur, exist_ok=True)
        return self.stat(cur)

    def path_of(self, row: IndexRow) -> str:
        """Where a node is now, from its verified chain (under "Shared with me" for a shared owner's node)."""
        if row.node_id.startswith(VIRTUAL):
            return row.node_id[len(VIRTUAL):]
        chain = self.tree.chain(row)
        top = chain[0][0]
        names = [m.name for _, m in chain[1:]]
        if top.node_id == self.session.root_node_id and not top.owner:
            return "/" + "/".join(names)
        share = self.sharing.incoming[top.node_id]
        return f"/{SHARED_DIR}/{share.owner_name}/" + "/".join([share.name, *names])

    def _parent_of(self, row: IndexRow) -> tuple[IndexRow, NodeMeta]:
        """The verified parent of a node, as its chain reaches it (not the root, not a share root)."""
        chain = self.tree.chain(row)
        if len(chain) < 2:
            if row.node_id == self.session.root_node_id:
                raise Conflict("the root folder has no parent")
            raise PermissionDenied("the root of a share is managed by its owner")
        return chain[-2]

    def rewrite_meta(self, row: IndexRow, change: Callable[[NodeMeta], NodeMeta], *,
                     parent: tuple[IndexRow, NodeMeta] | None = None, move: bool = False, replace: str | None = None,
                     verify: Callable[[IndexRow], NodeMeta] | None = None) -> NodeMeta:
        """Re-seal a node's meta as ``change`` makes it from the current one, with rev+1, under its parent.

        Compare-and-swap on the node's change seq: if another client changed
        the node meanwhile, the node is read again and ``change`` applied to
        what is there now (nothing another device wrote is overwritten with an
        older state). ``parent``: seal under this verified parent instead (the
        new folder of a ``move``, or the node's own folder just re-keyed);
        ``verify``: how to verify the node's current meta (default: its chain).
        """
        verify = verify or self.tree.meta
        for _ in range(8):
            cur = verify(row)
            new = change(dataclasses.replace(cur, props=dict(cur.props)))
            new = dataclasses.replace(new, rev=cur.rev + 1)
            if parent is not None:
                key, pid = parent[1].key, parent[0].node_id
            elif row.node_id == self.session.root_node_id and not row.owner:
                key, pid = self._master, ""
            else:
                prow, pmeta = self._parent_of(row)
                key, pid = pmeta.key, prow.node_id
            blob = format.seal_meta(key, self._owner_of(row), pid, row.node_id, new)
            try:
                n = self.api.update_node(row.node_id, blob, parent_id=pid if move else None, replace=replace,
                                         base_seq=row.seq)
            except MetaChanged:
                row = self._apply(self.api.get_node(row.node_id))
                continue
            self._apply(n, new, key)
            return new
        raise Conflict("the node keeps changing on the server; try again")

    def rename(self, src: str, dst: str, *, overwrite: bool = False, replace_nonempty: bool = False) -> Entry:
        """Move and/or rename; metadata only, nothing is re-uploaded.

        With ``overwrite`` an existing destination (a file, or an empty folder
        as POSIX rename allows; any folder with ``replace_nonempty``, as WebDAV
        MOVE wants) goes to the trash in the same server transaction as the
        move, so it is never lost half-way.
        """
        loc = self.resolve(src)
        meta = loc.verified()
        if loc.row.node_id == self.session.root_node_id or loc.row.parent_id is None:
            raise Conflict("cannot move the root folder")
        new_parent, name = self._parent_for_new(dst)
        dst_path = join(new_parent.path, name)
        if dst_path == loc.path:
            return self._entry(loc.row, loc.path, meta)
        if (dst_path + "/").startswith(loc.path + "/"):
            raise Conflict("cannot move a folder into itself")
        existing = self._existing(new_parent, name)
        replace = None
        if existing is not None and existing.node_id != loc.row.node_id:
            if not overwrite:
                raise AlreadyExists(f"already exists: {dst_path}")
            if not replace_nonempty:
                if existing.kind == "dir" and loc.row.kind != "dir":
                    raise IsADirectory(f"is a folder: {dst_path}")
                if existing.kind != "dir" and loc.row.kind == "dir":
                    raise NotADirectory(f"not a folder: {dst_path}")
                if existing.kind == "dir" and self.index.children(existing.node_id):
                    raise NotEmpty(f"folder not empty: {dst_path}")
            replace = existing.node_id
        moved = new_parent.row.node_id != loc.row.parent_id
        self.rewrite_meta(loc.row, lambda m: dataclasses.replace(m, name=name),
                          parent=(new_parent.row, new_parent.verified()) if moved else None, move=moved,
                          replace=replace)
        if replace:
            self._apply(self.api.get_node(replace))
        if moved:
            self.sharing.after_move(loc.row.node_id, loc.row.parent_id, new_parent.row.node_id)
        return self.stat(dst_path)

    def delete(self, path: str) -> None:
        """Move a file or folder (with its contents) to the trash."""
        loc = self.resolve(path)
        loc.verified()
        if loc.row.parent_id is None or loc.row.node_id == self.session.root_node_id:
            raise Conflict("cannot delete the root folder")
        self.api.trash_node(loc.row.node_id)
        self._apply(self.api.get_node(loc.row.node_id))

    def remove(self, path: str) -> None:
        """Delete a file (not a folder)."""
        loc = self.resolve(path)
        if loc.row.kind == "dir":
            raise IsADirectory(f"is a folder: {loc.path}")
        self.delete(loc.path)

    def rmdir(self, path: str) -> None:
        loc = self.resolve(path)
        if loc.row.kind != "dir":
            raise NotADirectory(f"not a folder: {loc.path}")
        if self.index.children(loc.row.node_id):
            raise NotEmpty(f"folder not empty: {loc.path}")
        self.delete(loc.path)

    def set_attrs(self, path: str, *, mtime_ns: int | None = None, mode: int | None = None,
                  props: dict[str, str | None] | None = None) -> Entry:
        """Change mtime, mode and/or dead properties (encrypted in the node's meta)."""
        loc = self.resolve(path)
        loc.verified()
        self._set_attrs_row(loc.row, mtime_ns, mode, props)
        return self.stat(loc.path)

    def set_attrs_id(self, node_id: str, *, mtime_ns: int | None = None, mode: int | None = None) -> None:
        self._set_attrs_row(self._row_by_id(node_id), mtime_ns, mode, None)

    def _set_attrs_row(self, row: IndexRow, mtime_ns: int | None, mode: int | None,
                       props: dict[str, str | None] | None) -> None:
        def change(new: NodeMeta) -> NodeMeta:
            if mtime_ns is not None:
                new.mtime_ns = mtime_ns
            if mode is not None:
                new.mode = mode & 0o7777
            for k, v in (props or {}).items():
                if v is None:
                    new.props.pop(k, None)
                else:
                    new.props[k] = v
            return new

        self.rewrite_meta(row, change)

    def create_file(self, path: str, *, mode: int = 0o644, exclusive: bool = True, offline: bool = False) -> Entry:
        """Create an empty file (version 0) now, so it is visible before any content is committed.

        ``offline``: if the server cannot be reached, create it on this machine
        (journaled, its meta sealed as usual) and on the server before its first
        version is committed (the FUSE mount, whose writes are journaled too).
        """
        parent, name = self._parent_for_new(path)
        if self._existing(parent, name) is not None:
            if exclusive:
                raise AlreadyExists(f"already exists: {path}")
            return self.stat(path)
        meta = NodeMeta(name=name, kind="file", key=crypto.random_key(), file_id=crypto.random_id(),
                        mtime_ns=time.time_ns(), mode=mode & 0o7777)
        node_id = crypto.random_id().hex()
        try:
            self._create_node(parent.row, parent.verified(), meta, node_id=node_id)
        except (NetworkError, ServerError):
            if not offline:
                raise
            self._create_local(parent.row, parent.verified(), meta, node_id)
        return self.stat(path)

    def _create_local(self, parent: IndexRow, pmeta: NodeMeta, meta: NodeMeta, node_id: str) -> None:
        owner = self._owner_of(parent)
        blob = format.seal_meta(pmeta.key, owner, parent.node_id, node_id, meta)
        self.journal.put_create(node_id, parent.node_id, meta.kind, blob)
        row = IndexRow(node_id, parent.node_id, meta.kind, 0, 0, False, 0, blob, None, False, parent.owner)
        self.index.upsert(row)
        self.tree.note(row, meta, pmeta.key)
        self.index.set_name_hash(node_id, format.name_hash(self._hkey, parent.node_id, meta.name), False)

    def _ensure_created(self, node_id: str) -> None:
        """A node created on this machine while offline is created on the server first (same id and meta)."""
        rec = self.journal.create_of(node_id)
        if rec is None:
            return
        parent_id, kind, blob = rec
        try:
            n = self.api.create_node(node_id, parent_id, kind, blob)
        except AlreadyExists:  # created just before a crash
            n = self.api.get_node(node_id)
        except NotFound:  # its folder was removed meanwhile: keep it in the root, under its name
            row = self._row_by_id(node_id)
            meta = self.tree.meta(row)
            root, rmeta = self._root()
            blob = format.seal_meta(rmeta.key, self.owner, root.node_id, node_id, meta)
            self.index.remove(node_id)
            n = self.api.create_node(node_id, root.node_id, kind, blob)
        self._apply(n)
        self.journal.created(node_id)

    def symlink(self, path: str, target: str) -> Entry:
        """A symbolic link: a node whose encrypted meta holds the target (like its name, never in clear)."""
        if not target or "\0" in target or len(target.encode("utf-8", "surrogateescape")) > 4095:
            raise InvalidPath("invalid symbolic link target")
        parent, name = self._parent_for_new(path)
        if self._existing(parent, name) is not None:
            raise AlreadyExists(f"already exists: {path}")
        meta = NodeMeta(name=name, kind="file", key=crypto.random_key(), file_id=crypto.random_id(),
                        mtime_ns=time.time_ns(), mode=0o777, size=0, link=target)
        self._create_node(parent.row, parent.verified(), meta)
        return self.stat(path)

    # -- content --------------------------------------------------------------------------------

    def _file_keys(self, row: IndexRow, meta: NodeMeta) -> FileKeys:
        return FileKeys(self._owner_of(row), row.node_id, meta.file_id, meta.key)

    def _manifest(self, row: IndexRow, meta: NodeMeta) -> Manifest | None:
        if meta.version == 0:
            return None
        if row.removed:
            raise TakenDown(f"node {short(row.node_id)} was removed by the operator after an abuse notice")
        version, blob = self.api.get_manifest(row.node_id, meta.version)
        if version != meta.version:
            raise IntegrityError("integrity check failed: server returned another version's manifest")
        m = format.open_manifest(meta.key, self._owner_of(row), row.node_id, meta.version, meta.file_id, blob)
        if m.size != meta.size:
            raise IntegrityError("integrity check failed: file size does not match its manifest")
        return m

    def manifest(self, path: str) -> Manifest | None:
        """The verified manifest of a file's current version (None before its first version)."""
        loc = self.resolve(path)
        if loc.row.kind == "dir":
            raise IsADirectory(f"is a folder: {loc.path}")
        return self._manifest(loc.row, loc.verified())

    def open_read(self, path: str, *, cache: bool = True) -> FileReader:
        """A verified random-access reader of the file's current version.

        ``cache=False`` for one-shot streaming (``megadrive get``): nothing is kept.
        """
        loc = self.resolve(path)
        if loc.row.kind == "dir":
            raise IsADirectory(f"is a folder: {loc.path}")
        return self._reader(loc.row, loc.verified(), cache=cache)

    def _reader(self, row: IndexRow, meta: NodeMeta, *, cache: bool = True) -> FileReader:
        return FileReader(self.chunks, self._file_keys(row, meta), self._manifest(row, meta), cache=cache)

    def _content(self, row: IndexRow, meta: NodeMeta) -> Iterator[bytes]:
        """A file's current plaintext, chunk by chunk (verified as it streams)."""
        if meta.link is not None or not meta.version:
            return
        src = self._reader(row, meta, cache=False)
        try:
            yield from src.iter_range()
        finally:
            src.close()

    def read_file(self, path: str) -> bytes:
        r = self.open_read(path)
        try:
            return r.read()
        finally:
            r.close()

    def _new_writer(self, keys: FileKeys, base: Manifest | None, *, truncate: bool, parent_id: str, name: str,
                    create: bool, parent_key: bytes | None, origin: NodeMeta | None = None,
                    mtime_ns: int | None = None, journal: bool = False) -> FileWriter:
        w = FileWriter(self.chunks, self, keys, base, truncate=truncate, parent_id=parent_id, name=name,
                       create=create, mtime_ns=mtime_ns, journal=self.journal if journal else None,
                       origin=(origin.key, origin.file_id) if origin is not None else None,
                       parent_key=parent_key)
        w.room = self._room
        return w

    def _room(self, old_size: int, new_size: int) -> None:
        """A file may grow by a hole only up to the size cap and the quota left: refused before it costs."""
        if new_size > MAX_FILE_SIZE:
            raise FileTooLarge(f"file too large: {new_size} bytes (the limit is {MAX_FILE_SIZE})")
        q = self.quota()
        if new_size - old_size > q.available:
            raise QuotaExceeded(f"storage quota exceeded: growing a file by {new_size - old_size} bytes, "
                                f"{q.available} available")

    def _writer(self, row: IndexRow, meta: NodeMeta, parent: tuple[IndexRow, NodeMeta], *, truncate: bool,
                journal: bool = False, mtime_ns: int | None = None) -> FileWriter:
        """A writer for an existing file; after a share was revoked (meta.rekey) the new version gets a
        fresh content key and file id, so its content is sealed under keys the former recipient never had."""
        prow, pmeta = parent
        if not meta.rekey:
            base = None if truncate else self._manifest(row, meta)  # a truncating writer needs no old content
            w = self._new_writer(self._file_keys(row, meta), base, truncate=truncate, parent_id=prow.node_id,
                                 name=meta.name, create=False, parent_key=pmeta.key, origin=meta, mtime_ns=mtime_ns,
                                 journal=journal)
            w.base_version = meta.version
            return w
        keys = FileKeys(self._owner_of(row), row.node_id, crypto.random_id(), crypto.random_key())
        w = self._new_writer(keys, None, truncate=True, parent_id=prow.node_id, name=meta.name, create=False,
                             parent_key=pmeta.key, origin=meta, mtime_ns=mtime_ns, journal=journal)
        w.base_version = meta.version
        if not truncate:
            for piece in self._content(row, meta):
                w.write(piece)
            w.pos = 0
        return w

    def open_write(self, path: str, *, truncate: bool = True, create: bool = True, exclusive: bool = False,
                   mtime_ns: int | None = None) -> FileWriter:
        """Stage a new version of ``path`` (created at commit if it does not exist)."""
        parent, name = self._parent_for_new(path)
        pmeta = parent.verified()
        existing = self._existing(parent, name)
        if existing is not None:
            if exclusive:
                raise AlreadyExists(f"already exists: {path}")
            if existing.kind == "dir":
                raise IsADirectory(f"is a folder: {path}")
            meta = self.tree.child_meta(existing, parent.row, pmeta)
            return self._writer(existing, meta, (parent.row, pmeta), truncate=truncate, mtime_ns=mtime_ns)
        if not create:
            raise NotFound(f"no such file: {path}")
        keys = FileKeys(self._owner_of(parent.row), crypto.random_id().hex(), crypto.random_id(),
                        crypto.random_key())
        return self._new_writer(keys, None, truncate=True, parent_id=parent.row.node_id, name=name, create=True,
                                parent_key=pmeta.key, mtime_ns=mtime_ns)

    # -- by node id (for front-ends that hold open files across renames and unlinks) -----------

    def _row_by_id(self, node_id: str) -> IndexRow:
        row = self.index.get(node_id)
        if row is None:
            raise NotFound("the file no longer exists")
        return row

    def stat_id(self, node_id: str) -> Entry:
        """Attributes of a node held open, wherever it now is (even in the trash)."""
        row = self._row_by_id(node_id)
        return self._entry(row, "", self.tree.meta(row))

    def open_read_id(self, node_id: str) -> FileReader:
        row = self._row_by_id(node_id)
        if row.kind == "dir":
            raise IsADirectory("is a folder")
        meta = self.tree.meta(row)
        lv = self._local(node_id)
        if lv is not None:
            return FileReader(_JournalFirst(self), lv.keys, lv.manifest)
        return self._reader(row, meta)

    def open_write_id(self, node_id: str, *, truncate: bool = False, journal: bool = False) -> FileWriter:
        """Stage a new version of an existing file node (renames meanwhile are fine).

        ``journal``: keep every sealed chunk, and the version once sealed, in the
        local journal until the server has committed it (the FUSE mount).
        """
        row = self._row_by_id(node_id)
        if row.kind == "dir":
            raise IsADirectory("is a folder")
        chain = self.tree.chain(row)
        if len(chain) < 2:
            raise IsADirectory("is a folder")
        lv = self._local(node_id) if journal else None
        if lv is not None:  # build on the version this machine has not uploaded yet
            w = FileWriter(self.chunks, self, lv.keys, None if truncate else lv.manifest, truncate=truncate,
                           parent_id=lv.parent_id, name=chain[-1][1].name, create=False, journal=self.journal,
                           origin=lv.origin, parent_key=lv.parent_key)
            w.base_version, w.room = lv.base_version, self._room
            return w
        return self._writer(row, chain[-1][1], chain[-2], truncate=truncate, journal=journal)

    # -- committing (called by FileWriter) ------------------------------------------------------

    def commit(self, w: FileWriter, manifest: Manifest) -> None:
        """Create the node if new, then compare-and-swap the new version (FileWriter.commit calls this).

        The meta sealed here carries the writer's content key: it goes only into
        a meta whose current keys are the ones the writer started from, under the
        folder the node is verified in now.
        """
        node_id = w.keys.node_id
        mtime = w.mtime_ns or time.time_ns()
        if w.create:
            self._create_for(w, mtime)
        sealed_manifest = format.seal_manifest(w.keys.content_key, w.keys.owner, manifest)
        self._ensure_created(node_id)
        for _ in range(8):
            row = self.index.get(node_id)
            if row is None:
                raise NotFound("the file was removed while it was being written")
            chain = self.tree.chain(row)
            if len(chain) < 2:
                raise IntegrityError(f"integrity check failed: node {short(node_id)} is not a file in a folder")
            (parent, pmeta), (_, cur) = chain[-2], chain[-1]
            if w.origin is not None and (not crypto.ct_equal(cur.key, w.origin[0]) or cur.file_id != w.origin[1]):
                if cur.version != w.base_version:
                    raise StaleVersion("the file was changed elsewhere; this version was not committed")
                raise IntegrityError(f"integrity check failed: node {short(node_id)}'s keys changed while it was "
                                     "open")
            new = dataclasses.replace(cur, props=dict(cur.props), size=manifest.size, version=manifest.version,
                                      mtime_ns=mtime, rev=cur.rev + 1, key=w.keys.content_key,
                                      file_id=w.keys.file_id, rekey=False)
            blob = format.seal_meta(pmeta.key, self._owner_of(parent), parent.node_id, node_id, new)
            try:
                n = self.api.commit_version(node_id, manifest.version - 1, sealed_manifest, manifest.chunk_ids(),
                                            meta=blob, meta_seq=row.seq)
            except MetaChanged:  # renamed or re-moded elsewhere meanwhile: keep that, commit on top of it
                self._apply(self.api.get_node(node_id))
                continue
            except MissingChunks as e:  # chunks of a version journaled here earlier, not uploaded yet
                self._upload_from_journal(e.missing, w.keys.owner)
                continue
            self._apply(n, new, pmeta.key)
            self._quota = None
            return
        raise Conflict("the file keeps changing on the server; try again")

    def _upload_from_journal(self, chunk_ids: list[str], owner: str) -> None:
        for cid in chunk_ids:
            blob = self.journal.get_chunk(cid)
            if blob is None:
                raise IntegrityError(f"integrity check failed: chunk {cid[:12]}… is neither on the server nor "
                                     "in the local journal")
            self.chunks.put(cid, blob, owner)

    def _create_for(self, w: FileWriter, mtime: int) -> None:
        parent = self.index.get(w.parent_id)
        if parent is None:
            raise NotFound("the folder was removed while the file was being written")
        pmeta = self.tree.meta(parent)
        if w.parent_key is not None and not crypto.ct_equal(pmeta.key, w.parent_key):
            raise IntegrityError(f"integrity check failed: folder {short(parent.node_id)}'s key changed while a "
                                 "file was being written into it")
        if self.index.lookup(parent.node_id, format.name_hash(self._hkey, parent.node_id, w.name)):
            raise AlreadyExists(f"a file named {w.name!r} appeared while this one was being written")
        meta = NodeMeta(name=w.name, kind="file", key=w.keys.content_key, file_id=w.keys.file_id,
                        mtime_ns=mtime, mode=w.mode, props=dict(w.props), link=w.link)
        self._create_node(parent, pmeta, meta, node_id=w.keys.node_id)
        w.create = False

    def keep_conflict(self, w: FileWriter, manifest: Manifest) -> str:
        """A staged version lost its compare-and-swap: keep it beside the file, under fresh keys.

        It goes into the folder the writer started in if that folder still has
        the key it had then, otherwise into the root: never into a folder the
        node was moved to behind the writer's back.
        """
        home = self._conflict_home(w.parent_id, w.parent_key)
        cur = self.index.get(w.keys.node_id)
        try:
            meta = self.tree.meta(cur) if cur is not None else None
        except IntegrityError:
            meta = None
        name = conflict_name(meta.name if meta is not None else w.name)
        size = manifest.size

        def staged() -> Iterator[bytes]:
            for off in range(0, size, CHUNK_SIZE):
                yield w.pread(off, CHUNK_SIZE)

        mode, props = (meta.mode, dict(meta.props)) if meta is not None else (0o644, {})
        self._new_file(home, name, staged(), w.mtime_ns or time.time_ns(), mode, props)
        return name

    def _conflict_home(self, parent_id: str, parent_key: bytes | None) -> tuple[IndexRow, NodeMeta]:
        parent = self.index.get(parent_id)
        if parent is not None and parent_key is not None:
            try:
                pmeta = self.tree.meta(parent)
                if crypto.ct_equal(pmeta.key, parent_key):
                    return parent, pmeta
            except IntegrityError:
                pass
        log.warning("the folder of node %s changed its key: keeping the conflicted copy in the root folder",
                    short(parent_id))
        return self._root()

    def _new_file(self, parent: tuple[IndexRow, NodeMeta], name: str, content: Iterator[bytes], mtime_ns: int,
                  mode: int = 0o644, props: dict[str, str] | None = None, link: str | None = None) -> str:
        """A new file node under fresh keys holding ``content`` (re-encrypted: no key is shared with another
        node). Returns its node id."""
        prow, pmeta = parent
        keys = FileKeys(self._owner_of(prow), crypto.random_id().hex(), crypto.random_id(), crypto.random_key())
        w = self._new_writer(keys, None, truncate=True, parent_id=prow.node_id, name=name, create=True,
                             parent_key=pmeta.key, mtime_ns=mtime_ns)
        w.mode, w.props, w.link = mode, dict(props or {}), link
        try:
            for piece in content:
                w.write(piece)
            w.commit()
        finally:
            w.close()
        return keys.node_id

    # -- the journal: versions sealed on this machine but not yet committed ----------------------

    def replay_journal(self, skip: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Upload and commit the versions this machine journaled (a killed mount's, or ones written while
        the server was unreachable), except those of ``skip`` (files still open here).

        A version whose base was overtaken meanwhile is kept as a conflicted
        copy beside the file (under fresh keys), never dropped. Returns one
        line per file, naming nodes by id (the lines go to the mount's log).
        A network failure stops the replay and leaves the rest journaled.
        """
        report: list[str] = []
        for node_id in self.journal.creates():
            if node_id not in skip:
                self._ensure_created(node_id)
        for node_id in self.journal.nodes():
            if node_id in skip:
                continue
            try:
                lv = self.journal.get(node_id)
                if lv is None:
                    continue
                report.append(self._replay_one(lv))
            except (NetworkError, ServerError):
                raise
            except MegaDriveError as e:
                log.error("could not recover a journaled version of node %s: %s", short(node_id), e.log_text())
                report.append(f"lost a journaled version of node {short(node_id)}: {e.log_text()}")
            self.journal.done(node_id)
        for node_id in self.journal.orphans():
            if node_id in skip:
                continue
            log.warning("dropping chunks of a write to node %s that never reached close() or fsync()",
                        short(node_id))
            self.journal.done(node_id)
        return report

    def _replay_one(self, lv: LocalVersion) -> str:
        node_id, base = lv.node_id, lv.base_version
        self._ensure_created(node_id)
        row = self._row_by_id(node_id)
        chain = self.tree.chain(row)
        if len(chain) < 2:
            raise NotFound("the file's folder is gone")
        (parent, pmeta), (_, meta) = chain[-2], chain[-1]
        owner = self._owner_of(row)
        missing = self.api.missing_chunks(list(lv.chunk_ids), owner=row.owner or None)
        self._upload_from_journal(missing, owner)
        continuous = lv.origin is None or (crypto.ct_equal(meta.key, lv.origin[0]) and meta.file_id == lv.origin[1])
        if meta.version > base and crypto.ct_equal(meta.key, lv.keys.content_key):
            _, blob = self.api.get_manifest(node_id, base + 1)
            done = format.open_manifest(meta.key, owner, node_id, base + 1, meta.file_id, blob)
            if done.chunks == lv.manifest.chunks and done.size == lv.size:
                return f"node {short(node_id)} was already committed (version {base + 1})"
        if meta.version == base and continuous:
            # Key continuity: the meta still names the keys the version started from, so the content key
            # goes back where it was (never into a meta the server swapped in).
            new = dataclasses.replace(meta, props=dict(meta.props), size=lv.size, version=base + 1,
                                      mtime_ns=lv.mtime_ns, rev=meta.rev + 1, key=lv.keys.content_key,
                                      file_id=lv.keys.file_id, rekey=False)
            try:
                n = self.api.commit_version(node_id, base, lv.sealed_manifest, list(lv.chunk_ids),
                                            meta=format.seal_meta(pmeta.key, self._owner_of(parent), parent.node_id,
                                                                  node_id, new), meta_seq=row.seq)
                self._apply(n, new, pmeta.key)
                return f"recovered node {short(node_id)} (version {base + 1})"
            except MetaChanged:
                self._apply(self.api.get_node(node_id))
                return self._replay_one(lv)
            except StaleVersion:
                pass
        home = (parent, pmeta) if continuous else self._conflict_home(lv.parent_id, lv.parent_key)
        reader = FileReader(_JournalFirst(self), lv.keys, lv.manifest, cache=False)
        try:
            copy = self._new_file(home, conflict_name(meta.name), reader.iter_range(), lv.mtime_ns, meta.mode,
                                  dict(meta.props))
        finally:
            reader.close()
        return f"kept unsaved changes of node {short(node_id)} as node {short(copy)} (the file changed meanwhile)"

    # -- whole-file helpers and copies ----------------------------------------------------------

    def write_file(self, path: str, data: bytes, *, mtime_ns: int | None = None) -> Entry:
        w = self.open_write(path, mtime_ns=mtime_ns)
        try:
            w.write(data)
            w.commit()
        finally:
            w.close()
        return self.stat(path)

    def truncate(self, path: str, size: int) -> Entry:
        w = self.open_write(path, truncate=False, create=False)
        try:
            w.truncate(size)
            w.commit()
        finally:
            w.close()
        return self.stat(path)

    def copy(self, src: str, dst: str, *, overwrite: bool = False, recursive: bool = True) -> Entry:
        """Copy a file or folder; every file copy gets a fresh content key and file id (re-encrypted).

        No key is ever shared by two nodes, so whatever later happens to the
        copy (shared, linked, revoked) says nothing about the original. An
        existing destination is replaced only once the whole copy exists
        (built under a temporary name, then moved over it in one transaction).
        """
        loc = self.resolve(src)
        loc.verified()
        parent, name = self._parent_for_new(dst)
        dst_path = join(parent.path, name)
        if dst_path == loc.path or (dst_path + "/").startswith(loc.path + "/"):
            raise Conflict("cannot copy a folder into itself")
        existing = self._existing(parent, name)
        if existing is not None and not overwrite:
            raise AlreadyExists(f"already exists: {dst_path}")
        tmp = f".megadrive-copy-{crypto.random_id().hex()}" if existing is not None else name
        self._copy_node(loc.row, (parent.row, parent.verified()), tmp, recursive)
        if existing is not None:
            self.rename(join(parent.path, tmp), dst_path, overwrite=True, replace_nonempty=True)
        return self.stat(dst_path)

    def _copy_node(self, row: IndexRow, parent: tuple[IndexRow, NodeMeta], name: str, recursive: bool) -> None:
        meta = self.tree.meta(row)
        prow, pmeta = parent
        if row.kind == "dir":
            new = NodeMeta(name=name, kind="dir", key=crypto.random_key(), mtime_ns=meta.mtime_ns, mode=meta.mode,
                           props=dict(meta.props))
            copy_row = self._create_node(prow, pmeta, new)
            if recursive:
                for child in self.index.children(row.node_id):
                    if child.bad:
                        raise IntegrityError("integrity check failed: cannot copy an entry that fails authentication")
                    self._copy_node(child, (copy_row, new), self.tree.child_meta(child, row, meta).name, True)
            return
        self._new_file(parent, name, self._content(row, meta), meta.mtime_ns, meta.mode, dict(meta.props),
                       meta.link)


class _JournalFirst:
    """Chunk I/O that looks in the local journal before the server (replaying a killed mount's version)."""

    def __init__(self, drive: Drive) -> None:
        self._chunks = drive.chunks
        self._index = drive.index

    def fetch(self, chunk_id: str, *, use_cache: bool = True) -> bytes:
        blob = self._index.journal_get(chunk_id)
        return blob if blob is not None else self._chunks.fetch(chunk_id, use_cache=use_cache)

    def discard(self, chunk_id: str) -> None:
        self._chunks.discard(chunk_id)

    def put(self, chunk_id: str, blob: bytes, owner: str) -> None:
        self._chunks.put(chunk_id, blob, owner)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._chunks.submit(fn, *args)
