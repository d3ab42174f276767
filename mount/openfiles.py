"""The FUSE mount's open files: per node, shared by every descriptor, with the background work they need.

Every descriptor of a file shares one staged version (a FileWriter) and one
reader, so programs see each other's writes at once and renames or unlinks of
an open file keep working through its descriptors. Write-back, like every
desktop sync client: close() and fsync() seal the version into the local
journal (ciphertext only) and return; the drive's uploader commits it on the
server in the background, and reads here see it at once. A dirty file that
rests a second is checkpointed into the journal too, so a killed mount loses
at most the last second of writes nobody closed or fsync()ed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from megadrive.drive import Drive, FileReader, FileWriter
from megadrive.errors import MegaDriveError, NetworkError, ServerError, log_text

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 2.0
CHECKPOINT_AFTER = 1.0  # seconds a dirty open file rests before its staged data is journaled (sealed)


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

    def drop_reader(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


class OpenFiles:
    """Descriptors -> open files -> their staged version; the sync and checkpoint loops."""

    def __init__(self, drive: Drive) -> None:
        self.drive = drive
        self._files: dict[str, OpenFile] = {}
        self._handles: dict[int, OpenFile] = {}
        self._next_fh = 1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.seen_version: dict[str, int] = {}  # what the kernel's page cache holds, per node
        self._threads: list[threading.Thread] = []

    # -- descriptors ------------------------------------------------------------------------------

    def open(self, node_id: str) -> tuple[int, OpenFile]:
        with self._lock:
            of = self._files.get(node_id)
            if of is None:
                of = self._files[node_id] = OpenFile(node_id)
                self.drive.hold_open(node_id)
            of.refs += 1
            fh = self._next_fh
            self._next_fh += 1
            self._handles[fh] = of
            return fh, of

    def handle(self, fh: Any) -> OpenFile | None:
        """The open file behind a descriptor (raw_fi: mfusepy passes the fuse_file_info)."""
        if fh is None:
            return None
        return self._handles.get(fh if isinstance(fh, int) else fh.fh)

    def of_node(self, node_id: str) -> OpenFile | None:
        return self._files.get(node_id)

    def for_path(self, path: str | None, fh: Any) -> OpenFile | None:
        of = self.handle(fh)
        if of is None and path is not None:
            try:
                of = self._files.get(self.drive.stat(path).node_id)
            except MegaDriveError:
                return None
        return of

    def writer(self, of: OpenFile, *, truncate: bool = False) -> FileWriter:
        """The open file's staged version, started now if it has none (call with ``of.lock`` held)."""
        if of.writer is None:
            of.writer = self.drive.open_write_id(of.node_id, truncate=truncate, journal=True)
        return of.writer

    def release(self, fh: Any) -> None:
        """The last descriptor of a file closed: save what it staged, then forget it.

        The open file stays findable while it is saved: a program opening it meanwhile (the kernel sends
        release after close() has returned) shares it, instead of reading a version not journaled yet.
        """
        with self._lock:
            of = self._handles.pop(fh if isinstance(fh, int) else fh.fh, None)
            if of is None:
                return
            of.refs -= 1
            if of.refs:
                return
        try:
            self.commit(of)
        except MegaDriveError as e:
            log.error("saving node %s at release failed: %s", of.node_id[:12], e.log_text())
        with self._lock:
            if of.refs or self._files.get(of.node_id) is not of:
                return  # opened again meanwhile: its new descriptors own it now
            self._files.pop(of.node_id, None)
            self.drive.release_open(of.node_id)
        with of.lock:
            if of.writer is not None:
                of.writer.close()
                of.writer = None
            of.drop_reader()

    # -- saving (write-back) ----------------------------------------------------------------------

    def save_writer(self, w: FileWriter) -> None:
        """Seal the writer's version into the journal (refused with QuotaExceeded if it cannot fit); the
        uploader commits it."""
        w.save()

    def commit(self, of: OpenFile) -> None:
        """close() / fsync(): the open file's version becomes durable here and goes to the uploader."""
        with of.lock:
            w = of.writer
            if w is None:
                return
            if w.modified:
                try:
                    version = w.save()
                except MegaDriveError:
                    of.writer = None  # the writer is spent; what it held was saved, or the error is reported
                    w.close()
                    raise
                self.seen_version[of.node_id] = version
            of.writer = None
            w.close()
            of.drop_reader()

    # -- background -------------------------------------------------------------------------------

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._sync_loop, name="megadrive-sync", daemon=True),
                         threading.Thread(target=self._checkpoint_loop, name="megadrive-journal", daemon=True)]
        for t in self._threads:
            t.start()
        self.drive.uploader.start(busy=self.busy)

    def busy(self) -> set[str]:
        """Nodes a program is still writing (their checkpoints are not versions to upload yet)."""
        return {of.node_id for of in list(self._files.values()) if of.writer is not None}

    def stop(self) -> None:
        """Unmount: save whatever is still staged, and upload what waits in the journal if the server is
        there (what cannot be uploaded stays journaled, encrypted, for the next mount)."""
        self._stop.set()
        for t in self._threads:  # a refresh in flight finishes before the drive (and its index) is closed
            t.join(timeout=60)
        for of in list(self._files.values()):
            try:
                self.commit(of)
            except MegaDriveError as e:
                log.error("could not save node %s at unmount: %s", of.node_id[:12], e.log_text())
        self._files.clear()
        self.drive.uploader.stop()

    def upload_journaled(self) -> None:
        """Before serving: commit what a killed (or offline) mount journaled."""
        if not self.drive.pending_uploads():
            return
        try:
            for line in self.drive.replay_journal(skip=self.busy()):
                log.warning("journal: %s", line)
        except (NetworkError, ServerError) as e:
            log.warning("journaled versions wait for the server: %s", e.log_text())

    def _sync_loop(self) -> None:
        while not self._stop.wait(REFRESH_INTERVAL):
            try:
                self.drive.refresh()
            except Exception as e:  # noqa: BLE001 - the poller must survive a flaky network
                log.warning("sync failed: %s", log_text(e))

    def _checkpoint_loop(self) -> None:
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
