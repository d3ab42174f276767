"""FUSE front-end: the Drive as an ordinary folder, through mfusepy.

Like the WebDAV provider it only translates: FUSE calls to Drive calls, and
Drive errors to errno values (in :func:`errno_for`, the one mapping). Open
files are tracked per node, so every descriptor of a file shares one staged
version, renames and unlinks of open files keep working through their
descriptors, and close()/fsync() commit that version to the server and
report a failed commit.
"""

from __future__ import annotations

import ctypes.util
import errno
import logging
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megadrive.content import FileReader, FileWriter
from megadrive.drive import Drive, Entry
from megadrive.errors import (
    AlreadyExists,
    AuthError,
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
    log_text,
)

log = logging.getLogger(__name__)

UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
BLOCK = 4096
REFRESH_INTERVAL = 2.0
CHECKPOINT_AFTER = 1.0  # seconds a dirty open file rests before its staged data is journaled (sealed)


def errno_for(e: MegaDriveError) -> int:
    """The one place Drive errors become errno values."""
    table: list[tuple[type[MegaDriveError], int]] = [
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


def _fuse() -> Any:
    """Import the binding lazily (it loads libfuse on import).

    mfusepy is the binding, over libfuse3 when it is installed, else libfuse2
    (docs/FUSE.md has the measurements); MEGADRIVE_LIBFUSE=2|3 forces one,
    MEGADRIVE_FUSE_BINDING=fusepy picks the unmaintained fusepy (kept only so
    the comparison can be re-run).
    """
    choice = os.environ.get("MEGADRIVE_LIBFUSE", "")
    if not choice and os.environ.get("MEGADRIVE_FUSE_BINDING") != "fusepy" and ctypes.util.find_library("fuse3"):
        choice = "3"  # measured faster for large files (1 MiB writes instead of 128 KiB; docs/FUSE.md)
    if choice and "FUSE_LIBRARY_PATH" not in os.environ:
        os.environ["FUSE_LIBRARY_PATH"] = {"2": "libfuse.so.2", "3": "libfuse3.so.3"}.get(choice, choice)
    try:
        if os.environ.get("MEGADRIVE_FUSE_BINDING") == "fusepy":
            import fuse as fusepy

            fusepy.fuse_version_major = 2
            return fusepy
        import mfusepy
    except (OSError, EnvironmentError) as e:  # noqa: UP024 - the bindings raise EnvironmentError
        raise MegaDriveError(f"FUSE is not available ({e}); install fuse and libfuse2 (or libfuse3-3)") from None
    return mfusepy


@dataclass
class OpenFile:
    """One node held open by one or more descriptors; they share one staged version."""

    node_id: str
    refs: int = 0
    reader: FileReader | None = None
    writer: FileWriter | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    last_write: float = 0.0
    checkpointed: float = 0.0


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
        self._files: dict[str, OpenFile] = {}
        self._handles: dict[int, OpenFile] = {}
        self._next_fh = 1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._seen_version: dict[str, int] = {}

    # -- plumbing ---------------------------------------------------------------------------------

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
            raise _fuse().FuseOSError(code) from None

    def _open(self, node_id: str) -> int:
        with self._lock:
            of = self._files.get(node_id)
            if of is None:
                of = self._files[node_id] = OpenFile(node_id)
            of.refs += 1
            fh = self._next_fh
            self._next_fh += 1
            self._handles[fh] = of
            return fh

    def _handle(self, fh: Any) -> OpenFile | None:
        """The open file behind a descriptor (raw_fi: mfusepy passes the fuse_file_info)."""
        if fh is None:
            return None
        return self._handles.get(fh if isinstance(fh, int) else fh.fh)

    def _open_file_for(self, path: str | None, fh: int | None) -> OpenFile | None:
        of = self._handle(fh)
        if of is None and path is not None:
            try:
                e = self.drive.stat(path)
            except MegaDriveError:
                return None
            of = self._files.get(e.node_id)
        return of

    def _attrs(self, e: Entry, of: OpenFile | None = None) -> dict[str, Any]:
        size, mtime = e.size, e.mtime_ns
        if of is not None and of.writer is not None:
            size = of.writer.size
            if of.writer.mtime_ns is not None:
                mtime = of.writer.mtime_ns
        if e.link is not None:
            n = len(e.link.encode("utf-8", "surrogateescape"))
            return {"st_mode": stat.S_IFLNK | 0o777, "st_nlink": 1, "st_size": n, "st_uid": self.uid,
                    "st_gid": self.gid, "st_mtime": mtime, "st_ctime": mtime, "st_atime": mtime, "st_blocks": 0}
        kind = stat.S_IFDIR if e.is_dir else stat.S_IFREG
        mode = e.mode or (0o755 if e.is_dir else 0o644)
        return {"st_mode": kind | (mode & 0o7777), "st_nlink": 2 if e.is_dir else 1, "st_size": size,
                "st_uid": self.uid, "st_gid": self.gid, "st_mtime": mtime, "st_ctime": mtime, "st_atime": mtime,
                "st_blocks": (size + 511) // 512, "st_blksize": 1 << 20}

    def __call__(self, op: str, *args: Any) -> Any:
        """fusepy dispatches through the operations object (mfusepy calls methods directly)."""
        method = getattr(self, op, None)
        if method is None:
            raise _fuse().FuseOSError(errno.ENOSYS)
        return method(*args)

    # -- lifecycle --------------------------------------------------------------------------------

    def init(self, path: str) -> None:
        threading.Thread(target=self._poll, name="megadrive-sync", daemon=True).start()
        threading.Thread(target=self._checkpoints, name="megadrive-journal", daemon=True).start()

    def _checkpoints(self) -> None:
        """Like a filesystem's writeback interval: dirty data resting for a second is journaled, sealed,
        so a killed mount loses at most the last second or two of writes nobody fsync()ed."""
        while not self._stop.wait(CHECKPOINT_AFTER / 2):
            now = time.monotonic()
            for of in list(self._files.values()):
                if of.writer is None or of.checkpointed >= of.last_write or now - of.last_write < CHECKPOINT_AFTER:
                    continue
                try:
                    with of.lock:
                        if of.writer is not None:
                            of.writer.checkpoint()
                            of.checkpointed = time.monotonic()
                except MegaDriveError as e:
                    log.warning("journal checkpoint failed: %s", e.log_text())

    def recover(self) -> None:
        """Before serving: finish versions a killed mount had sealed (its journal)."""
        self._upload_journaled()

    def _upload_journaled(self) -> None:
        """Commit versions saved on this machine while the server was unreachable (files not open now)."""
        if not self.drive.pending_uploads():
            return
        busy = {of.node_id for of in list(self._files.values()) if of.writer is not None}
        try:
            for line in self.drive.replay_journal(skip=busy):
                log.warning("journal: %s", line)
        except (NetworkError, ServerError) as e:
            log.warning("journaled versions wait for the server: %s", e.log_text())

    def _poll(self) -> None:
        while not self._stop.wait(REFRESH_INTERVAL):
            try:
                self.drive.refresh()
            except Exception as e:  # noqa: BLE001 - the poller must survive a flaky network
                log.warning("sync failed: %s", log_text(e))
                continue
            self._upload_journaled()

    def destroy(self, path: str) -> None:
        """Unmount: commit whatever is still staged, and upload what waits in the journal, if the server is
        there (what cannot be uploaded stays journaled, encrypted, for the next mount)."""
        self._stop.set()
        for of in list(self._files.values()):
            try:
                self._commit(of)
            except MegaDriveError as e:
                log.error("could not commit node %s at unmount: %s", of.node_id[:12], e.log_text())
        self._files.clear()
        self._upload_journaled()

    # -- metadata ---------------------------------------------------------------------------------

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        with self._errors():
            of = self._handle(fh)
            if of is not None:
                return self._attrs(self.drive.stat_id(of.node_id), of)
            if path is None:
                raise NotFound()
            e = self.drive.stat(path)
            return self._attrs(e, self._files.get(e.node_id))

    def readdir(self, path: str, fh: int) -> list[str]:
        with self._errors():
            return [".", "..", *(e.name for e in self.drive.listdir(path))]

    def statfs(self, path: str) -> dict[str, int]:
        with self._errors():
            q = self.drive.quota()
        return {"f_bsize": BLOCK, "f_frsize": BLOCK, "f_blocks": q.total // BLOCK,
                "f_bfree": q.available // BLOCK, "f_bavail": q.available // BLOCK,
                "f_files": 1 << 32, "f_ffree": 1 << 31, "f_favail": 1 << 31, "f_namemax": 255}

    def mkdir(self, path: str, mode: int) -> None:
        with self._errors():
            self.drive.mkdir(path)

    def rmdir(self, path: str) -> None:
        with self._errors():
            self.drive.rmdir(path)

    def unlink(self, path: str) -> None:
        """The node goes to the trash; descriptors still open keep reading and writing it."""
        with self._errors():
            self.drive.remove(path)

    def rename(self, old: str, new: str, flags: int = 0) -> None:
        with self._errors():
            if flags & RENAME_EXCHANGE:
                raise InvalidPath("RENAME_EXCHANGE is not supported")
            if flags & RENAME_NOREPLACE and self.drive.exists(new):
                raise AlreadyExists(new)
            self.drive.rename(old, new, overwrite=True)

    def chmod(self, path: str | None, mode: int, fh: int | None = None) -> None:
        with self._errors():
            of = self._handle(fh)
            if of is not None:
                self.drive.set_attrs_id(of.node_id, mode=mode)
            elif path is not None:
                self.drive.set_attrs(path, mode=mode)

    def symlink(self, target: str, source: str) -> None:
        """mfusepy's argument names are inverted: ``target`` is the new link's path, ``source`` what it points to."""
        with self._errors():
            self.drive.symlink(target, source)

    def readlink(self, path: str) -> str:
        with self._errors():
            e = self.drive.stat(path)
            if e.link is None:
                raise InvalidPath("not a symbolic link")
            return e.link

    def chown(self, path: str, uid: int, gid: int) -> None:
        """Ownership is not stored (every file belongs to the mounting user); accepted, as by many FUSE fs."""

    def utimens(self, path: str | None, times: tuple[int | None, int | None] | None = None,
                fh: int | None = None) -> None:
        with self._errors():
            mtime = time.time_ns() if times is None else times[1]
            if mtime is None:
                return  # UTIME_OMIT: leave mtime as it is
            of = self._open_file_for(path, fh)
            if of is not None:
                with of.lock:
                    if of.writer is not None:
                        of.writer.mtime_ns = mtime  # the commit at close keeps it
                    self.drive.set_attrs_id(of.node_id, mtime_ns=mtime)
            elif path is not None:
                self.drive.set_attrs(path, mtime_ns=mtime)

    # -- content ----------------------------------------------------------------------------------

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        with self._errors():
            e = self.drive.create_file(path, mode=mode, offline=True)
            fh = self._open(e.node_id)
            of = self._handles[fh]
            with of.lock:
                if of.writer is None:
                    of.writer = self.drive.open_write_id(e.node_id, truncate=True, journal=True)
            return self._set_fh(fi, fh)

    def _set_fh(self, fi: Any, fh: int, keep_cache: bool = False) -> int:
        if fi is not None and not isinstance(fi, int):
            fi.fh = fh
            fi.keep_cache = 1 if keep_cache else 0
            return 0
        return fh

    def open(self, path: str, fi: Any) -> int:
        with self._errors():
            e = self.drive.stat(path)
            if e.is_dir:
                raise IsADirectory(path)
            flags = fi.flags if not isinstance(fi, int) else fi
            fh = self._open(e.node_id)
            of = self._handles[fh]
            if flags & os.O_TRUNC:
                with of.lock:
                    if of.writer is None:
                        of.writer = self.drive.open_write_id(e.node_id, truncate=True, journal=True)
                    else:
                        of.writer.truncate(0)
            # Keep the kernel's page cache if the content is the version it last saw.
            keep = of.writer is None and self._seen_version.get(e.node_id) == e.version
            self._seen_version[e.node_id] = e.version
            return self._set_fh(fi, fh, keep_cache=keep)

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        of = self._handle(fh)
        if of is None:
            raise _fuse().FuseOSError(errno.EBADF)
        with self._errors(), of.lock:
            if of.writer is not None:
                return of.writer.pread(offset, size)
            if of.reader is None:
                of.reader = self.drive.open_read_id(of.node_id)
            reader = of.reader
        with self._errors():
            return reader.pread(offset, size)

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        of = self._handle(fh)
        if of is None:
            raise _fuse().FuseOSError(errno.EBADF)
        with self._errors(), of.lock:
            if of.writer is None:
                of.writer = self.drive.open_write_id(of.node_id, truncate=False, journal=True)
            of.writer.mtime_ns = None  # content changed: the commit stamps the time
            of.last_write = time.monotonic()
            return of.writer.pwrite(offset, data)

    def truncate(self, path: str | None, length: int, fh: Any = None) -> None:
        """ftruncate (or truncate of a file someone is writing) stages; a plain truncate commits now.

        A path-based truncate must not attach a writer to an open file that is
        merely being released (release is asynchronous): it would never commit.
        """
        with self._errors():
            of = self._open_file_for(path, fh)
            if of is not None:
                with of.lock:
                    if of.writer is not None or self._handle(fh) is not None:
                        if of.writer is None:
                            of.writer = self.drive.open_write_id(of.node_id, truncate=length == 0, journal=True)
                        of.writer.truncate(length)
                        of.last_write = time.monotonic()
                        return
                    if of.reader is not None:  # it would keep serving the old version
                        of.reader.close()
                        of.reader = None
            if path is None:
                raise NotFound()
            # On top of whatever this machine has not uploaded yet, like every write of the mount.
            w = self.drive.open_write_id(self.drive.stat(path).node_id, truncate=length == 0, journal=True)
            try:
                w.truncate(length)
                self._commit_writer(w)
            finally:
                w.close()

    def _commit_writer(self, w: FileWriter) -> bool:
        """Commit; if the server cannot be reached the version is already journaled (encrypted) on this
        machine: reads see it, and it is uploaded when the server is back. True if committed now."""
        try:
            w.commit()
        except (NetworkError, ServerError) as e:
            if not w.journaled:
                raise
            log.warning("node %s saved on this machine, to upload when the server answers: %s",
                        w.keys.node_id[:12], e.log_text())
            return False
        return True

    def _commit(self, of: OpenFile) -> None:
        with of.lock:
            w = of.writer
            if w is None:
                return
            if w.modified:
                try:
                    committed = self._commit_writer(w)
                except MegaDriveError:
                    of.writer = None  # the writer is spent; what it held was committed, kept aside, or reported
                    w.close()
                    raise
                self._seen_version[of.node_id] = w.base_version + (0 if committed else 1)
            of.writer = None
            w.close()
            if of.reader is not None:
                of.reader.close()
                of.reader = None

    def flush(self, path: str | None, fh: int) -> None:
        """close(): commit now, so a failed commit (quota, conflict, network) reaches the program."""
        of = self._handle(fh)
        if of is not None:
            with self._errors():
                self._commit(of)

    def fsync(self, path: str | None, datasync: int, fh: int) -> None:
        """fsync() returns once the data is a committed version on the server."""
        self.flush(path, fh)

    def release(self, path: str | None, fh: Any) -> None:
        with self._lock:
            of = self._handles.pop(fh if isinstance(fh, int) else fh.fh, None)
            if of is None:
                return
            of.refs -= 1
            last = of.refs == 0
            if last:
                self._files.pop(of.node_id, None)
        if last:
            try:
                self._commit(of)
            except MegaDriveError as e:
                log.error("commit of node %s at release failed: %s", of.node_id[:12], e.log_text())
            with of.lock:
                if of.writer is not None:
                    of.writer.close()
                    of.writer = None
                if of.reader is not None:
                    of.reader.close()
                    of.reader = None


def _make_fuse_class(fuse: Any) -> Any:
    """mfusepy's FUSE with UTIME_NOW/UTIME_OMIT decoded and the libfuse3 extras passed on."""
    if not hasattr(fuse.FUSE, "utimens_fuse_2"):  # fusepy: as it comes (it decodes OMIT as a time)
        return fuse.FUSE

    class MegaFUSE(fuse.FUSE):  # type: ignore[misc, name-defined]
        def _times(self, buf: Any) -> tuple[int | None, int | None] | None:
            if not buf:
                return None
            out: list[int | None] = []
            for ts in (buf.contents.actime, buf.contents.modtime):
                if ts.tv_nsec == UTIME_OMIT:
                    out.append(None)
                elif ts.tv_nsec == UTIME_NOW:
                    out.append(time.time_ns())
                else:
                    out.append(ts.tv_sec * 10**9 + ts.tv_nsec)
            return out[0], out[1]

        def utimens_fuse_2(self, path: bytes | None, buf: Any) -> int:
            self.operations.utimens(None if path is None else path.decode(self.encoding, self.errors),
                                    self._times(buf))
            return 0

        def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
            fh = fip.contents.fh if fip else None
            self.operations.utimens(None if path is None else path.decode(self.encoding, self.errors),
                                    self._times(buf), fh)
            return 0

        def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
            self.operations.rename(old.decode(self.encoding, self.errors), new.decode(self.encoding, self.errors),
                                   flags)
            return 0

    return MegaFUSE


def is_stale(mountpoint: Path) -> bool:
    """A mount left by a crashed process answers 'Transport endpoint is not connected'.

    statvfs, not stat: the kernel may answer stat from its attribute cache for
    a second after the crash; statfs always goes to the (dead) filesystem.
    """
    try:
        os.statvfs(mountpoint)
    except OSError as e:
        return e.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    return False


def lazy_unmount(mountpoint: Path) -> None:
    for cmd in (["fusermount", "-uz", str(mountpoint)], ["fusermount3", "-uz", str(mountpoint)],
                ["umount", "-l", str(mountpoint)]):
        try:
            if subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0:
                return
        except (OSError, subprocess.TimeoutExpired):
            continue


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
    fuse = _fuse()
    options: dict[str, Any] = {
        "foreground": foreground, "nothreads": False, "fsname": "megadrive", "subtype": "megadrive",
        "attr_timeout": 1.0, "entry_timeout": 1.0, "negative_timeout": 0.0, "hard_remove": True,
        "default_permissions": True,
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
    fs.recover()
    try:
        _make_fuse_class(fuse)(fs, str(mountpoint), raw_fi=True, **options)
    except RuntimeError as e:
        raise MegaDriveError(f"libfuse could not mount {mountpoint} (error {e}; see its message above)") from None
