"""WebDAV lock storage that survives a gateway restart.

wsgidav's in-memory ``LockStorageDict`` does the lock logic; this subclass
writes every lock through to the Drive's sealed local records (keyed hash of
the token, sealed JSON value), so no plaintext path lands on disk, and
reloads them when the gateway starts.

A lock's owner (the client's XML) holds at most ``MAX_OWNER_BYTES`` (413),
and the gateway keeps at most ``MAX_LOCKS`` locks (403 past that): each is
kept in memory and on disk.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from wsgidav.dav_error import DAVError
from wsgidav.lock_man.lock_storage import LockStorageDict

from megadrive.drive import Drive

log = logging.getLogger(__name__)

NAMESPACE = "webdav-lock"
MAX_LOCKS = 10_000
MAX_OWNER_BYTES = 4096


def _encode(v: Any) -> Any:
    return {"__bytes__": v.hex()} if isinstance(v, bytes) else v


def _decode(v: Any) -> Any:
    return bytes.fromhex(v["__bytes__"]) if isinstance(v, dict) and "__bytes__" in v else v


class PersistentLockStorage(LockStorageDict):  # type: ignore[misc]
    def __init__(self, drive: Drive) -> None:
        super().__init__()
        self._records = drive.local_records(NAMESPACE)
        self._saved: dict[str, str] = {}

    def open(self) -> None:
        super().open()
        now = time.time()
        for raw in self._records.values():
            try:
                lock = {k: _decode(v) for k, v in json.loads(raw).items()}
                token, root = lock["token"], lock["root"]
            except (ValueError, KeyError, TypeError):
                continue
            if 0 <= float(lock["expire"]) < now:
                self._records.delete(token)
                continue
            self._dict[token] = lock
            self._dict.setdefault(f"URL2TOKEN:{root}", []).append(token)
            self._saved[token] = json.dumps({k: _encode(v) for k, v in lock.items()}, sort_keys=True)
        log.info("restored %d WebDAV lock(s)", len(self._saved))

    def create(self, path: str, lock: dict[str, Any]) -> Any:
        owner = lock.get("owner") or b""
        if len(owner) > MAX_OWNER_BYTES:
            raise DAVError(413, context_info=f"a lock owner may hold at most {MAX_OWNER_BYTES} bytes")
        if len(self._saved) >= MAX_LOCKS:
            raise DAVError(403, context_info=f"the gateway holds {MAX_LOCKS} locks already; unlock some first")
        return super().create(path, lock)

    def _flush(self) -> None:
        """Called by every change in LockStorageDict: write the differences through."""
        current = {}
        for key, lock in self._dict.items():
            if not key.startswith("URL2TOKEN:"):
                current[key] = json.dumps({k: _encode(v) for k, v in lock.items()}, sort_keys=True)
        for token, doc in current.items():
            if self._saved.get(token) != doc:
                self._records.put(token, doc.encode())
        for token in set(self._saved) - set(current):
            self._records.delete(token)
        self._saved = current

    def clear(self) -> None:
        super().clear()
        self._flush()
