"""Small records a front-end keeps on this machine (the WebDAV gateway's locks), sealed under the master key."""

from __future__ import annotations

import logging

from . import format
from .errors import IntegrityError
from .index import Index

log = logging.getLogger(__name__)


class LocalRecords:
    """One namespace of local records.

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
        self._index.execute("INSERT OR REPLACE INTO records(ns, key, blob) VALUES (?,?,?)",
                            (self.ns, h, format.seal_record(self._master, self._owner, self.ns, h, value)))

    def delete(self, key: str) -> None:
        self._drop(format.record_key_hash(self._master, self.ns, key))

    def _drop(self, key_hash: str) -> None:
        self._index.execute("DELETE FROM records WHERE ns=? AND key=?", (self.ns, key_hash))

    def values(self) -> list[bytes]:
        """Every record that still authenticates (a tampered one is dropped and logged)."""
        out = []
        for h, blob in self._index.query("SELECT key, blob FROM records WHERE ns=?", (self.ns,)):
            try:
                out.append(format.open_record(self._master, self._owner, self.ns, h, blob))
            except IntegrityError as e:
                log.error("dropping local %s record: %s", self.ns, e)
                self._drop(h)
        return out
