"""FUSE front-end: the Drive as an ordinary folder, through mfusepy.

Like the WebDAV provider it only translates: FUSE calls to Drive calls, and
Drive errors to errno values (in :func:`errno_for`, the one mapping). Open
files are tracked per node, so every descriptor of a file shares one staged
version, renames and unlinks of open files keep working through their
descriptors, and close()/fsync() commit that version to the server and
report a failed commit.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from megadrive.drive import Drive, Entry, Owner, XattrChange
from megadrive.errors import (
    AlreadyExists,
    AuthError,
    Conflict,
    CrossDevice,
    FileTooLarge,
    IntegrityError,
    InvalidPath,
    IsADirectory,
    MegaDriveError,
    NameTooLong,
    NetworkError,
    NoSpace,
    NoSuchAttribute,
    NotADirectory,
    NotEmpty,
    NotFound,
    NotPermitted,
    PermissionDenied,
    QuotaExceeded,
    StaleVersion,
    TooManyLinks,
)

from . import fuse_binding
from .fuse_binding import is_stale, lazy_unmount
from .openfiles import OpenFile, OpenFiles

__all__ = ["MegaDriveFS", "errno_for", "is_stale", "lazy_unmount", "mount"]

log = logging.getLogger(__name__)

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
BLOCK = 4096


def errno_for(e: MegaDriveError) -> int:
    """The one place Drive errors become errno values."""
    table: list[tuple[type[MegaDriveError], int]] = [
        (NameTooLong, errno.ENAMETOOLONG), (NoSuchAttribute, errno.ENODATA), (NoSpace, errno.ENOSPC),
        (NotPermitted, errno.EPERM), (CrossDevice, errno.EXDEV), (TooManyLinks, errno.EMLINK),
        (NotFound, errno.ENOENT), (AlreadyExists, errno.EEXIST), (NotADirectory, errno.ENOTDIR),
        (IsADirectory, errno.EISDIR), (NotEmpty, errno.ENOTEMPTY), (InvalidPath, errno.EINVAL),
        (QuotaExceeded, errno.ENOSPC), (FileTooLarge, errno.EFBIG), (PermissionDenied, errno.EACCES),
        (IntegrityError, errno.EIO),
        (StaleVersion, errno.EIO), (Conflict, errno.EINVAL), (NetworkError, errno.EIO), (AuthError, errno.EACCES),
    ]
    for cls, code in table:
        if isinstance(e, cls):
            return code
    return errno.EIO


SPECIAL_TYPES = {"fifo": stat.S_IFIFO, "sock": stat.S_IFSOCK, "chr": stat.S_IFCHR, "blk": stat.S_IFBLK}
XATTR_CREATE, XATTR_REPLACE = 1, 2
XATTR_NAMESPACE = "user."  # the only one stored; others are the kernel's or root's business


def _attrs(e: Entry, of: OpenFile | None, uid: int, gid: int) -> dict[str, Any]:
    """stat(2) of an entry; a stored owner of None is the mounting user (and their group)."""
    size, mtime = e.size, e.mtime_ns
    if of is not None and of.writer is not None:
        size = of.writer.size
        if of.writer.mtime_ns is not None:
            mtime = of.writer.mtime_ns
    owner = {"st_uid": uid if e.uid is None else e.uid, "st_gid": gid if e.gid is None else e.gid,
             "st_ino": _inode(e.node_id)}
    times = {"st_mtime": mtime, "st_ctime": max(e.ctime_ns, mtime), "st_atime": e.atime_ns or mtime}
    if e.link is not None:
        n = len(e.link.encode("utf-8", "surrogateescape"))
        return {"st_mode": stat.S_IFLNK | 0o777, "st_nlink": e.nlink, "st_size": n, "st_blocks": 0, **owner,
                **times}
    if e.special is not None:
        return {"st_mode": SPECIAL_TYPES[e.special] | (e.mode & 0o7777), "st_nlink": 0 if e.trashed else e.nlink,
                "st_size": 0,
                "st_rdev": e.rdev, "st_blocks": 0, **owner, **times}
    kind = stat.S_IFDIR if e.is_dir else stat.S_IFREG
    nlink = 2 + e.subfolders if e.is_dir else 0 if e.trashed else e.nlink
    return {"st_mode": kind | (e.mode & 0o7777), "st_nlink": nlink, "st_size": size,
            "st_blocks": (size + 511) // 512, "st_blksize": 1 << 20, **owner, **times}


def _inode(node_id: str) -> int:
    """A stable inode number per node (the mount runs with use_ino): every name of a file shows the same."""
    return int.from_bytes(hashlib.blake2b(node_id.encode(), digest_size=8).digest(), "big") >> 1


def _type(e: Entry) -> int:
    if e.link is not None:
        return stat.S_IFLNK
    if e.special is not None:
        return SPECIAL_TYPES[e.special]
    return stat.S_IFDIR if e.is_dir else stat.S_IFREG


def _set_fh(fi: Any, fh: int, keep_cache: bool = False) -> int:
    if fi is not None and not isinstance(fi, int):
        fi.fh = fh
        fi.keep_cache = 1 if keep_cache else 0
        return 0
    return fh


class MegaDriveFS:
    """The FUSE operations (mfusepy's Operations protocol), nanosecond times."""

    use_ns = True
    # libfuse 2.8+: call fh-based operations of a removed-but-open file with a NULL path (hard_remove),
    # and pass UTIME_OMIT / UTIME_NOW through to utimens instead of deciding for us.
    flag_nullpath_ok = True
    flag_utime_omit_ok = True

    def __init__(self, drive: Drive) -> None:
        self.drive = drive
        self.uid, self.gid = os.getuid(), os.getgid()
        self.files = OpenFiles(drive)
        self._view_fhs: set[int] = set()  # descriptors opened through /.trash/ or /.versions/ (read-only)

    def _read_only(self, path: str | None, fh: Any = None) -> None:
        """EROFS for a change through the read-only views, by path or by a descriptor opened there."""
        handle = fh if isinstance(fh, int) or fh is None else getattr(fh, "fh", None)
        if (path is not None and self.drive.read_only(path)) or handle in self._view_fhs:
            raise fuse_binding.load().FuseOSError(errno.EROFS)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except MegaDriveError as e:
            code = errno_for(e)
            if code in (errno.EIO, errno.ENOSPC):
                log.error("%s", e.log_text())
            else:
                log.debug("%s: %s", errno.errorcode.get(code, code), e.log_text())
            raise fuse_binding.load().FuseOSError(code) from None

    def __call__(self, op: str, *args: Any) -> Any:
        """fusepy dispatches through the operations object (mfusepy calls methods directly)."""
        method = getattr(self, op, None)
        if method is None:
            raise fuse_binding.load().FuseOSError(errno.ENOSYS)
        return method(*args)

    # -- lifecycle --------------------------------------------------------------------------------

    def init(self, path: str) -> None:
        self.files.start()

    def destroy(self, path: str) -> None:
        self.files.stop()

    # -- metadata ---------------------------------------------------------------------------------

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        with self._errors():
            of = self.files.handle(fh)
            if of is not None:
                return _attrs(self.drive.stat_id(of.node_id), of, self.uid, self.gid)
            if path is None:
                raise NotFound()
            e = self.drive.stat(path)
            return _attrs(e, self.files.of_node(e.node_id), self.uid, self.gid)

    def readdir(self, path: str, fh: int) -> list[tuple[str, dict[str, int], int]]:
        """Names with their inode numbers (use_ino: an entry without one would read as inode 0, which
        fts-based tools such as rm -r skip as deleted) and types (no stat needed to tell folders)."""
        with self._errors():
            here = self.drive.stat(path)
            up = self.drive.stat(path.rsplit("/", 1)[0] or "/") if path != "/" else here
            out = [(".", {"st_ino": _inode(here.node_id), "st_mode": stat.S_IFDIR}, 0),
                   ("..", {"st_ino": _inode(up.node_id), "st_mode": stat.S_IFDIR}, 0)]
            out += [(e.name, {"st_ino": _inode(e.node_id), "st_mode": _type(e)}, 0) for e in self.drive.listdir(path)]
            return out

    def statfs(self, path: str) -> dict[str, int]:
        with self._errors():
            q = self.drive.quota()
        return {"f_bsize": BLOCK, "f_frsize": BLOCK, "f_blocks": q.total // BLOCK,
                "f_bfree": q.available // BLOCK, "f_bavail": q.available // BLOCK,
                "f_files": 1 << 32, "f_ffree": 1 << 31, "f_favail": 1 << 31, "f_namemax": 255}

    def _new_owner(self, path: str) -> tuple[Owner, bool]:
        """Who owns a node the calling process creates at ``path``, and whether its folder is setgid
        (then the node gets the folder's group, as POSIX and every local file system do)."""
        uid, gid, _ = fuse_binding.load().fuse_get_context()
        parent = self.drive.stat(path.rsplit("/", 1)[0] or "/")
        setgid = bool(parent.mode & stat.S_ISGID)
        if setgid:
            gid = self.gid if parent.gid is None else parent.gid
        return (None if uid == self.uid else uid, None if gid == self.gid else gid), setgid

    def _sync_names(self, node_id: str, paths: list[str] | None = None) -> None:
        """After a change to a file with hard links: the kernel caches attributes and pages per name, so its
        other names are invalidated at once (``paths``: those to invalidate, if known before the change)."""
        try:
            if paths is None:
                if self.drive.stat_id(node_id).nlink <= 1:
                    return
                paths = self.drive.names_id(node_id)
        except MegaDriveError:
            return
        fuse_binding.invalidate_paths(paths)

    def _other_names(self, path: str) -> tuple[str, list[str]]:
        """The other names of the file at ``path`` before one goes away (none if it has no links, or if the
        name does not check out: a broken link must stay removable)."""
        try:
            e = self.drive.stat(path)
            return e.node_id, [p for p in self.drive.names_id(e.node_id) if p != path] if e.nlink > 1 else []
        except MegaDriveError:
            return "", []

    def _changed(self, path: str | None, of: OpenFile | None = None) -> None:
        """An attribute changed through ``path`` (or an open file): the same for every name of the file."""
        try:
            node_id = of.node_id if of is not None else self.drive.stat(path).node_id if path else None
        except MegaDriveError:
            return
        if node_id is not None:
            self._sync_names(node_id)

    def mkdir(self, path: str, mode: int) -> None:
        with self._errors():
            owner, setgid = self._new_owner(path)
            self.drive.mkdir(path, mode=(mode & 0o7777) | (stat.S_ISGID if setgid else 0), owner=owner)

    def mknod(self, path: str, mode: int, dev: int) -> None:
        """Fifos, sockets and device nodes: attribute-only files (the kernel serves their I/O itself)."""
        with self._errors():
            kinds = {v: k for k, v in SPECIAL_TYPES.items()}
            fmt = stat.S_IFMT(mode)
            if fmt not in kinds and fmt not in (stat.S_IFREG, 0):
                raise InvalidPath("unknown kind of file")
            owner, _ = self._new_owner(path)
            self.drive.create_file(path, mode=mode & 0o7777, owner=owner, special=kinds.get(fmt), rdev=dev)

    def link(self, target: str, source: str) -> None:
        """A hard link (mfusepy's names: ``target`` is the new name, ``source`` the existing file)."""
        with self._errors():
            e = self.drive.link(source, target)
        self._sync_names(e.node_id)

    def rmdir(self, path: str) -> None:
        with self._errors():
            self.drive.rmdir(path)

    def unlink(self, path: str) -> None:
        """The node goes to the trash; descriptors still open keep reading and writing it."""
        with self._errors():
            node_id, others = self._other_names(path)
            self.drive.remove(path)
        if others:
            self._sync_names(node_id, others)

    def rename(self, old: str, new: str, flags: int = 0) -> None:
        with self._errors():
            if flags & RENAME_EXCHANGE:
                raise InvalidPath("RENAME_EXCHANGE is not supported")
            if flags & RENAME_NOREPLACE and self.drive.exists(new):
                raise AlreadyExists(new)
            node_id, others = self._other_names(new)
            self.drive.rename(old, new, overwrite=True)
        if others:
            self._sync_names(node_id, others)

    def chmod(self, path: str | None, mode: int, fh: int | None = None) -> None:
        self._read_only(path, fh)
        with self._errors():
            of = self.files.handle(fh)
            if of is not None:
                self.drive.set_attrs_id(of.node_id, mode=mode)
            elif path is not None:
                self.drive.set_attrs(path, mode=mode)
        self._changed(path, self.files.handle(fh))

    def symlink(self, target: str, source: str) -> None:
        """mfusepy's argument names are inverted: ``target`` is the new link's path, ``source`` what it points to."""
        with self._errors():
            owner, _ = self._new_owner(target)
            self.drive.symlink(target, source, owner=owner)

    def readlink(self, path: str) -> str:
        with self._errors():
            e = self.drive.stat(path)
            if e.link is None:
                raise InvalidPath("not a symbolic link")
            return e.link

    def chown(self, path: str | None, uid: int, gid: int) -> None:
        """The owner is stored encrypted in the meta; the mounting user (and group) as None, so a drive
        mounted by another user on another machine shows that user as the owner of what was theirs here.
        The kernel checks who may chown (default_permissions) and clears set-id bits by a chmod."""
        self._read_only(path)
        with self._errors():
            if path is None:
                raise NotFound()
            e = self.drive.stat(path)
            new_uid = e.uid if uid == -1 else (None if uid == self.uid else uid)
            new_gid = e.gid if gid == -1 else (None if gid == self.gid else gid)
            self.drive.set_attrs(path, owner=(new_uid, new_gid))
        self._changed(path)

    # -- extended attributes (user.*, encrypted in the meta) --------------------------------------

    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        with self._errors():
            if not name.startswith(XATTR_NAMESPACE):  # e.g. security.capability, asked before every write
                raise NoSuchAttribute()
            value = self.drive.stat(path).xattrs.get(name)
            if value is None:
                raise NoSuchAttribute()
            return value

    def listxattr(self, path: str) -> list[str]:
        with self._errors():
            return sorted(n for n in self.drive.stat(path).xattrs if n.startswith(XATTR_NAMESPACE))

    def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0) -> None:
        self._read_only(path)
        with self._errors():
            if not name.startswith(XATTR_NAMESPACE) or name == XATTR_NAMESPACE:
                raise fuse_binding.load().FuseOSError(errno.ENOTSUP)
            e = self.drive.stat(path)
            if e.link is not None or e.special is not None:
                raise PermissionDenied("user extended attributes are for files and folders only")
            self.drive.set_attrs(path, xattr=XattrChange(name, bytes(value), create=bool(options & XATTR_CREATE),
                                                         replace=bool(options & XATTR_REPLACE)))
        self._changed(path)

    def removexattr(self, path: str, name: str) -> None:
        self._read_only(path)
        with self._errors():
            self.drive.set_attrs(path, xattr=XattrChange(name, None))
        self._changed(path)

    def utimens(self, path: str | None, times: tuple[int | None, int | None] | None = None,
                fh: int | None = None) -> None:
        self._read_only(path, fh)
        with self._errors():
            now = time.time_ns()
            atime, mtime = (now, now) if times is None else times
            if atime is None and mtime is None:
                return  # UTIME_OMIT for both: nothing changes, not even ctime
            of = self.files.for_path(path, fh)
            if of is not None:
                with of.lock:
                    if of.writer is not None and mtime is not None:
                        of.writer.mtime_ns = mtime  # the commit at close keeps it
                    self.drive.set_attrs_id(of.node_id, mtime_ns=mtime, atime_ns=atime)
            elif path is not None:
                self.drive.set_attrs(path, mtime_ns=mtime, atime_ns=atime)
        self._changed(path, of)

    # -- content ----------------------------------------------------------------------------------

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        with self._errors():
            owner, _ = self._new_owner(path)
            e = self.drive.create_file(path, mode=mode, local=True, owner=owner)
            fh, of = self.files.open(e.node_id)
            with of.lock:
                self.files.writer(of, truncate=True)
            return _set_fh(fi, fh)

    def open(self, path: str, fi: Any) -> int:
        with self._errors():
            e = self.drive.stat(path)
            if e.is_dir:
                raise IsADirectory(path)
            flags = fi.flags if not isinstance(fi, int) else fi
            view = self.drive.read_only(path)
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC) and view:
                raise fuse_binding.load().FuseOSError(errno.EROFS)
            fh, of = self.files.open(e.node_id)
            if flags & os.O_TRUNC:
                with of.lock:
                    if of.writer is None:
                        self.files.writer(of, truncate=True)
                    else:
                        of.writer.truncate(0)
            # Keep the kernel's page cache if the content is the version it last saw.
            # (Never for a file with hard links: another name's inode may have written it since.)
            keep = of.writer is None and self.files.seen_version.get(e.node_id) == e.version and e.nlink == 1
            self.files.seen_version[e.node_id] = e.version
            if view:
                self._view_fhs.add(fh)
            return _set_fh(fi, fh, keep_cache=keep)

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        of = self.files.handle(fh)
        if of is None:
            raise fuse_binding.load().FuseOSError(errno.EBADF)
        with self._errors(), of.lock:
            if of.writer is not None:
                return of.writer.pread(offset, size)
            if of.reader is None:
                of.reader = self.drive.open_read_id(of.node_id)
            reader = of.reader
        with self._errors():
            return reader.pread(offset, size)

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        of = self.files.handle(fh)
        if of is None:
            raise fuse_binding.load().FuseOSError(errno.EBADF)
        with self._errors(), of.lock:
            w = self.files.writer(of)
            w.mtime_ns = None  # content changed: the commit stamps the time
            of.last_write = time.monotonic()
            return w.pwrite(offset, data)

    def truncate(self, path: str | None, length: int, fh: Any = None) -> None:
        """ftruncate (or truncate of a file someone is writing) stages; a plain truncate commits now.

        A path-based truncate must not attach a writer to an open file that is
        merely being released (release is asynchronous): it would never commit.
        """
        self._read_only(path, fh)
        with self._errors():
            of = self.files.for_path(path, fh)
            if of is not None:
                with of.lock:
                    if of.writer is not None or self.files.handle(fh) is not None:
                        self.files.writer(of, truncate=length == 0).truncate(length)
                        of.last_write = time.monotonic()
                        return
                    of.drop_reader()  # it would keep serving the old version
            if path is None:
                raise NotFound()
            # On top of whatever this machine has not uploaded yet, like every write of the mount.
            with self.drive.open_write_id(self.drive.stat(path).node_id, truncate=length == 0, journal=True) as w:
                w.truncate(length)
                self.files.save_writer(w)
        self._changed(path)

    def flush(self, path: str | None, fh: int) -> None:
        """close(): the version is sealed into the local journal now (a quota that cannot hold it reaches
        the program as ENOSPC); the uploader commits it on the server in the background."""
        of = self.files.handle(fh)
        if of is not None:
            with self._errors():
                self.files.commit(of)
            self._sync_names(of.node_id)

    def fsync(self, path: str | None, datasync: int, fh: int) -> None:
        """fsync() returns once the data is a version sealed in the local journal (durable on this machine)."""
        self.flush(path, fh)

    def release(self, path: str | None, fh: Any) -> None:
        self._view_fhs.discard(fh if isinstance(fh, int) else getattr(fh, "fh", None))
        self.files.release(fh)


def mount(drive: Drive, mountpoint: Path, *, foreground: bool = True, debug: bool = False,
          allow_other: bool = False) -> None:
    """Mount and serve until unmounted (blocks). A stale mount from a crash is cleaned first.

    Only the mounting user can enter the mount unless ``allow_other`` (even
    as root: the files are 0644, so with allow_other every local user could
    read the plaintext); with it, the kernel applies the mode bits
    (``default_permissions``).
    """
    if is_stale(mountpoint):
        log.warning("cleaning a dead mount left at %s", mountpoint)
        lazy_unmount(mountpoint)
    if not mountpoint.is_dir():
        raise NotFound(f"mount point is not a folder: {mountpoint}")
    fuse = fuse_binding.load()
    options: dict[str, Any] = {
        "foreground": foreground, "nothreads": False, "fsname": "megadrive", "subtype": "megadrive",
        "attr_timeout": 1.0, "entry_timeout": 1.0, "negative_timeout": 0.0, "hard_remove": True,
        "default_permissions": True,
        # The owner, mode and device numbers of a node come from the sealed meta, which a co-writer of a
        # shared folder may write: never honour set-id bits or open device nodes from it (root's mounts
        # would otherwise allow both).
        "nosuid": True, "nodev": True,
        "use_ino": True,  # st_ino from the node: hard links show one inode number
    }
    if fuse.fuse_version_major == 2:
        # atomic_o_trunc: O_TRUNC reaches open() (staged with the new content) instead of a separate
        # truncate that would commit an empty version before the program writes anything.
        options.update(big_writes=True, max_write=1 << 17, max_read=1 << 20, atomic_o_trunc=True)
    # libfuse3 takes max_write from the kernel's max_pages (1 MiB on current kernels); it refuses the option.
    if allow_other:
        options["allow_other"] = True
    if debug:
        options["debug"] = True
    fs = MegaDriveFS(drive)
    fs.files.upload_journaled()  # before serving: finish what a killed mount (or an offline one) journaled
    try:
        fuse_binding.fuse_class(fuse)(fs, str(mountpoint), raw_fi=True, **options)
    except RuntimeError as e:
        raise MegaDriveError(f"libfuse could not mount {mountpoint} (error {e}; see its message above)") from None
