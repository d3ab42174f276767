"""The Drive: the one API every front-end (CLI, WebDAV, FUSE) calls.

"What MegaDrive looks like as a file system", defined once (borg's vfs.py
idea). Paths are absolute POSIX strings from the drive's root. The Drive is a
facade over a few collaborators, each in its own module, that share one
:class:`~megadrive.context.DriveContext` and never reach into each other:

* :class:`~megadrive.tree.Tree` verifies every meta on the path it came by;
* :class:`~megadrive.feed.Feed` brings the change feeds into the local index;
* :class:`~megadrive.namespace.Namespace` turns paths into verified nodes and listings;
* :class:`~megadrive.nodes.Nodes` changes the tree (create, rename, trash, attributes);
* :class:`~megadrive.files.Files` reads and writes content and commits versions;
* :class:`~megadrive.copies.Copier` copies under fresh keys;
* :class:`~megadrive.replay.Uploader` commits what the local journal holds;
* :class:`~megadrive.sharing.Sharing` shares, contacts and links.

Every method here delegates in one line (or two): this is the API surface,
the logic lives in the collaborators.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .api import Api
from .cache import DEFAULT_MAX_BYTES, ChunkCache
from .chunkio import ServerChunks
from .content import FileReader, FileWriter
from .context import DriveContext
from .copies import Copier
from .errors import NetworkError, NotFound, PermissionDenied, ServerError
from .feed import Feed
from .files import MAX_FILE_SIZE, Files
from .format import Manifest, NodeMeta
from .hardlinks import HardLinks
from .history import VERSION_ID_SEP, History, TrashItem, VersionInfo
from .index import Index, IndexRow
from .journal import Journal
from .names import MAX_NAME_BYTES, check_name
from .namespace import Entry, Located, Namespace
from .nodes import NO_OWNER, Nodes, Owner, XattrChange
from .paths import conflict_name, join, split_path
from .records import LocalRecords
from .replay import Uploader
from .shares import IncomingShares
from .sharing import Sharing
from .state import Session, home, load_session, write_private
from .tree import Tree

# What front-ends may use besides the Drive itself (import-linter lets them import only this module and
# megadrive.errors): the types the Drive hands out, the name rule, and a private-file writer for their state.
__all__ = ["MAX_FILE_SIZE", "MAX_NAME_BYTES", "NO_OWNER", "Drive", "Entry", "FileReader", "FileWriter", "Located",
           "Owner", "Quota", "XattrChange", "check_name", "conflict_name", "join", "split_path", "write_private"]

QUOTA_MAX_AGE = 5.0  # seconds an answer of the account's quota is reused


@dataclass(frozen=True)
class Quota:
    used: int
    total: int

    @property
    def available(self) -> int:
        return max(0, self.total - self.used)


class Drive:
    """One logged-in account's drive. Thread-safe; a context manager (``with Drive.open() as d:``)."""

    def __init__(self, api: Api, session: Session, index: Index, cache: ChunkCache) -> None:
        tree = Tree(index, session.user_id, session.master, session.root_node_id)
        self.ctx = DriveContext(api, index, session, ServerChunks(api, cache, session.user_id),
                                Journal(index, session.master, session.user_id), tree)
        self._lock = threading.RLock()
        self._quota: tuple[float, Quota] | None = None
        self._quota_changed = False  # a commit of ours changed `used` since the last answer
        self.last_refresh = 0.0
        self.feed = Feed(self.ctx)
        shares = IncomingShares()
        tree.share_root = shares.root_meta
        self.ns = Namespace(self.ctx, self.feed, shares, self.refresh)
        self.nodes = Nodes(self.ctx, self.feed, self.ns)
        self.sharing = Sharing(self.ctx, shares, self.ns, self.nodes, self.feed, self.refresh)
        self.nodes.after_move = self.sharing.after_move
        self.links = HardLinks(self.ctx, self.feed, self.ns, self.nodes)
        self.nodes.links = self.links
        self.files = Files(self.ctx, self.feed, self.ns, self.nodes, self._available, self._forget_quota)
        self.copier = Copier(self.ctx, self.ns, self.nodes, self.files)
        self.uploader = Uploader(self.ctx, self.feed, self.nodes, self.files)
        self.history = History(self.ctx, self.feed, self.ns, self.nodes, self.files)
        self.files.on_saved = self.uploader.kick
        self.feed.load_root()

    @classmethod
    def open(cls, base: Path | None = None, *, cache_bytes: int = DEFAULT_MAX_BYTES, refresh: bool = True) -> Drive:
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
        self.uploader.close()
        self.ctx.chunks.close()
        self.ctx.index.close()
        self.ctx.api.close()

    # -- the account ------------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        return self.ctx.session

    @property
    def owner(self) -> str:
        return self.ctx.owner

    @property
    def api(self) -> Api:
        return self.ctx.api

    @property
    def index(self) -> Index:
        return self.ctx.index

    @property
    def tree(self) -> Tree:
        return self.ctx.tree

    @property
    def journal(self) -> Journal:
        return self.ctx.journal

    def refresh(self) -> int:
        """Pull the change feeds (ours, and each sharing owner's); returns how many changes arrived in ours."""
        with self._lock:
            count = self.feed.pull(None)
            self.sharing.sync()
            self.feed.check_root()
            self.feed.hash_pending()
            self.last_refresh = time.monotonic()
            return count

    def quota(self, max_age: float = QUOTA_MAX_AGE) -> Quota:
        """The account's quota, asked again if older than ``max_age`` or if a commit changed it since."""
        now = time.monotonic()
        if self._quota is None or self._quota_changed or now - self._quota[0] > max_age:
            a = self.ctx.api.account()
            self._quota, self._quota_changed = (now, Quota(int(a["used"]), int(a["quota"]))), False
        return self._quota[1]

    def has_recovery_key(self) -> bool:
        """Whether the account has a recovery key set (a password change or a recovery clears it)."""
        return bool(self.ctx.api.account().get("recovery_key"))

    def _forget_quota(self) -> None:
        self._quota_changed = True

    def _available(self) -> int:
        """Quota left before a save: the last answer serves for half a second after commits changed it (a
        tree copied in would ask once per file; what waits in the journal is counted apart anyway), and
        as last known when the server cannot be asked (writes go on offline: the journal)."""
        if self._quota is not None and time.monotonic() - self._quota[0] < 0.5:
            return self._quota[1].available
        try:
            return self.quota().available
        except (NetworkError, ServerError):
            return self._quota[1].available if self._quota is not None else 1 << 62

    def local_records(self, ns: str) -> LocalRecords:
        return LocalRecords(self.ctx.index, self.ctx.master, self.ctx.owner, ns)

    @property
    def server_url(self) -> str:
        """The storage server this drive talks to (which also serves the web client at its root)."""
        return self.ctx.session.server

    def pending_uploads(self) -> int:
        """Files with a version (or a creation) saved on this machine that the server does not have yet."""
        return self.uploader.pending()

    def replay_journal(self, skip: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Commit what the journal holds (but ``skip``'s files, still open): one line per file."""
        return self.uploader.replay(skip)

    # -- the tree ---------------------------------------------------------------------------------

    def resolve(self, path: str) -> Located:
        return self.ns.resolve(path)

    def verified_meta(self, row: IndexRow) -> NodeMeta:
        """A node's meta, verified on its whole chain of parents up to a trusted root."""
        return self.ctx.tree.meta(row)

    def path_of(self, row: IndexRow) -> str:
        return self.ns.path_of(row)

    def stat(self, path: str) -> Entry:
        if self.history.owns(path):
            return self.history.stat(path)
        return self.ns.stat(path)

    def exists(self, path: str) -> bool:
        try:
            self.stat(path) if self.history.owns(path) else self.ns.resolve(path)
            return True
        except NotFound:
            return False

    def listdir(self, path: str) -> list[Entry]:
        """A folder's entries. ``/.trash/`` and ``/.versions/<path>/`` are read-only views (not listed in
        the root): the trash, and the kept versions of each file; moving an entry out restores it."""
        if self.history.owns(path):
            return self.history.listdir(path)
        return self.ns.listdir(path)

    def read_only(self, path: str) -> bool:
        """Whether ``path`` is in a read-only view (``/.trash/``, ``/.versions/``)."""
        return self.history.owns(path)

    def _writable(self, *paths: str) -> None:
        for p in paths:
            if self.history.owns(p):
                raise PermissionDenied("the trash and the versions are read-only (move an entry out to restore it)")

    def hidden(self, path: str) -> list[str]:
        return self.ns.hidden(path)

    def mkdir(self, path: str, *, exist_ok: bool = False, mtime_ns: int | None = None, mode: int = 0o755,
              owner: Owner = NO_OWNER) -> Entry:
        """``owner``: (uid, gid) to store; None for either means the mounting user (or their group)."""
        self._writable(path)
        return self.nodes.mkdir(path, exist_ok=exist_ok, mtime_ns=mtime_ns, mode=mode, owner=owner)

    def makedirs(self, path: str) -> Entry:
        self._writable(path)
        return self.nodes.makedirs(path)

    def rename(self, src: str, dst: str, *, overwrite: bool = False, replace_nonempty: bool = False) -> Entry:
        if self.history.owns(src):  # out of the trash or the versions: a restore
            return self.history.rename(src, dst)
        self._writable(dst)
        self.history.forget()  # (a rename over a node trashes it)
        return self.nodes.rename(src, dst, overwrite=overwrite, replace_nonempty=replace_nonempty)

    def delete(self, path: str) -> None:
        """Move a file or folder (with its contents) to the trash."""
        self._writable(path)
        self.history.forget()
        self.nodes.delete(path)

    # -- the trash and older versions (megadrive/history.py) ----------------------------------------

    def trash(self) -> list[TrashItem]:
        """What is in the trash, newest first, with where each was."""
        return self.history.trash()

    def restore(self, path: str, *, to: str | None = None) -> Entry:
        """The newest trashed node that was at ``path`` goes back there (or to ``to``); a name taken
        meanwhile gets " (restored)" added, never overwritten."""
        return self.history.restore(self.history.find_trashed(path), to)

    def empty_trash(self) -> int:
        return self.history.empty_trash()

    def versions(self, path: str) -> list[VersionInfo]:
        return self.history.versions(path)

    def restore_version(self, path: str, number: int) -> Entry:
        return self.history.restore_version(path, number)

    def remove(self, path: str) -> None:
        self._writable(path)
        self.history.forget()
        self.nodes.remove(path)

    def rmdir(self, path: str) -> None:
        self._writable(path)
        self.history.forget()
        self.nodes.rmdir(path)

    def set_attrs(self, path: str, *, mtime_ns: int | None = None, mode: int | None = None,
                  props: dict[str, str | None] | None = None, atime_ns: int | None = None,
                  owner: Owner | None = None, xattr: XattrChange | None = None) -> Entry:
        self._writable(path)
        loc = self.ns.resolve(path)
        row, _ = self.ns.content_node(loc.row, loc.verified())  # a hard link's attributes are its file's
        self.set_attrs_id(row.node_id, mtime_ns=mtime_ns, mode=mode, props=props, atime_ns=atime_ns,
                          owner=owner, xattr=xattr)
        return self.ns.stat(loc.path)

    def create_file(self, path: str, *, mode: int = 0o644, exclusive: bool = True, local: bool = False,
                    owner: Owner = NO_OWNER, special: str | None = None, rdev: int = 0) -> Entry:
        """``local=True`` for write-back; ``special`` ("fifo", "sock", "chr", "blk") for mknod's
        attribute-only files (see Nodes.create_file)."""
        self._writable(path)
        return self.nodes.create_file(path, mode=mode, exclusive=exclusive, local=local, owner=owner,
                                      special=special, rdev=rdev)

    def symlink(self, path: str, target: str, *, owner: Owner = NO_OWNER) -> Entry:
        self._writable(path)
        return self.nodes.symlink(path, target, owner=owner)

    def names_id(self, node_id: str) -> list[str]:
        """Every path of a file held open or reached by id: its own and its hard links'."""
        return self.ns.names_of(node_id)

    def link(self, path: str, new_path: str) -> Entry:
        """A hard link: ``new_path`` becomes another name of the file at ``path`` (see Nodes.link)."""
        self._writable(path, new_path)
        return self.links.link(path, new_path)

    def copy(self, src: str, dst: str, *, overwrite: bool = False, recursive: bool = True) -> Entry:
        self._writable(src, dst)
        return self.copier.copy(src, dst, overwrite=overwrite, recursive=recursive)

    # -- content ----------------------------------------------------------------------------------

    def manifest(self, path: str) -> Manifest | None:
        """The verified manifest of a file's current version (None before its first version)."""
        loc = self.ns.resolve(path)
        return self.files.manifest(*self.ns.content_node(loc.row, loc.verified()))

    def open_read(self, path: str, *, cache: bool = True) -> FileReader:
        """A verified random-access reader; ``cache=False`` for one-shot streaming (nothing is kept)."""
        if self.history.owns(path):
            return self.open_read_id(self.stat(path).node_id)
        return self.files.open_read(path, cache=cache)

    def open_write(self, path: str, *, truncate: bool = True, create: bool = True, exclusive: bool = False,
                   mtime_ns: int | None = None, journal: bool = False) -> FileWriter:
        """``journal=True`` for write-back: ``save()`` the writer, and the uploader commits it."""
        self._writable(path)
        return self.files.open_write(path, truncate=truncate, create=create, exclusive=exclusive,
                                     mtime_ns=mtime_ns, journal=journal)

    def read_file(self, path: str) -> bytes:
        with self.open_read(path) as r:
            return r.read()

    def write_file(self, path: str, data: bytes, *, mtime_ns: int | None = None) -> Entry:
        self._writable(path)
        with self.files.open_write(path, mtime_ns=mtime_ns) as w:
            w.write(data)
            w.commit()
        return self.ns.stat(path)

    def truncate(self, path: str, size: int) -> Entry:
        self._writable(path)
        with self.files.open_write(path, truncate=False, create=False) as w:
            w.truncate(size)
            w.commit()
        return self.ns.stat(path)

    # -- by node id (front-ends that hold files open across renames and unlinks) ------------------

    def stat_id(self, node_id: str) -> Entry:
        """Attributes of a node held open, wherever it now is (even in the trash)."""
        if VERSION_ID_SEP in node_id:
            return self.history.stat_id(node_id)
        row = self.ctx.row(node_id)
        return self.ns.entry(row, "", self.ctx.tree.meta(row))

    def open_read_id(self, node_id: str) -> FileReader:
        if VERSION_ID_SEP in node_id:  # an entry of /.versions/
            return self.history.open_read_id(node_id)
        return self.files.open_read_id(node_id)

    def hold_open(self, node_id: str) -> None:
        """A front-end holds the node open (a descriptor, even read-only): if it is unlinked before the
        uploader created it on the server, it is created and trashed, not forgotten (the descriptor
        still reads and writes it)."""
        self.ctx.journal.begin_write(node_id)

    def release_open(self, node_id: str) -> None:
        self.ctx.journal.end_write(node_id)

    def open_write_id(self, node_id: str, *, truncate: bool = False, journal: bool = False) -> FileWriter:
        if VERSION_ID_SEP in node_id:
            raise PermissionDenied("the versions are read-only (move one out to restore it)")
        return self.files.open_write_id(node_id, truncate=truncate, journal=journal)

    def set_attrs_id(self, node_id: str, *, mtime_ns: int | None = None, mode: int | None = None,
                     props: dict[str, str | None] | None = None, atime_ns: int | None = None,
                     owner: Owner | None = None, xattr: XattrChange | None = None) -> None:
        # The journal first, then the server: the uploader reads the server's row, then the journaled
        # version, so a commit racing with this either carries the new time or fails its compare-and-swap.
        if mtime_ns is not None:
            self.ctx.journal.set_mtime(node_id, mtime_ns)
        self.nodes.set_attrs(self.ctx.row(node_id), mtime_ns=mtime_ns, mode=mode, props=props, atime_ns=atime_ns,
                             owner=owner, xattr=xattr)
