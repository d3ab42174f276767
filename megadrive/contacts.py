"""The contact book: other accounts' identity keys pinned on first use, and which of them we accepted.

Pins protect sharing only if every device of the account knows them: a
second device that pins from scratch would accept whatever keys the server
presents. So the book lives in the local index *and* in one account record on
the server, sealed under a key derived from the master key and bound to the
account, the record's name and its version; every device merges the record
into its own pins and writes back what it learned (compare-and-swap on the
version). What the server can still do with the record: withhold it or serve
an older one to a device that never saw a newer one (docs/THREAT_MODEL.md);
it cannot read or alter it.

The record also carries the grant epochs (the newest share grant accepted per
folder), so a new device refuses a grant older than one another device saw.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

from . import crypto, format
from .api import Api
from .errors import IntegrityError, MegaDriveError, StaleVersion
from .index import Index

log = logging.getLogger(__name__)

RECORD = "contacts"
_EPOCHS = "grant-epochs"
_VERSION = "record-version:contacts"


@dataclass(frozen=True)
class Pin:
    user: str
    user_id: str
    sign_pub: bytes
    verified: bool = False  # the user compared fingerprints out of band
    accepted: bool = False  # shares from this account are accepted (first contact needs the user's yes)
    first_seen: float = 0.0

    @property
    def fingerprint(self) -> str:
        return crypto.fingerprint(self.sign_pub)


_COLS = "user, user_id, sign_pub, verified, accepted, first_seen"


def _pin(r: tuple[object, ...]) -> Pin:
    return Pin(str(r[0]), str(r[1]), bytes.fromhex(str(r[2])), bool(r[3]), bool(r[4]), float(str(r[5] or 0)))


def _decode(raw: bytes) -> tuple[dict[str, Pin], dict[str, int]]:
    """Strict parse of the record's JSON: anything odd is an integrity failure, never a partial merge."""
    bad = IntegrityError("integrity check failed: malformed contact record")
    try:
        d = json.loads(raw)
        pins = {}
        for user, p in d["c"].items():
            if not (isinstance(user, str) and isinstance(p, dict) and type(p["v"]) is bool
                    and type(p["a"]) is bool and isinstance(p["id"], str) and isinstance(p["k"], str)):
                raise bad
            pins[user] = Pin(user, p["id"], bytes.fromhex(p["k"]), p["v"], p["a"], float(p.get("t", 0)))
        epochs = {str(k): int(v) for k, v in d["e"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise bad from None
    if any(len(p.sign_pub) != 32 for p in pins.values()):
        raise bad
    return pins, epochs


def _encode(pins: dict[str, Pin], epochs: dict[str, int]) -> bytes:
    doc = {"c": {u: {"id": p.user_id, "k": p.sign_pub.hex(), "v": p.verified, "a": p.accepted, "t": p.first_seen}
                 for u, p in sorted(pins.items())},
           "e": dict(sorted(epochs.items()))}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


class ContactBook:
    """Pins and grant epochs of one account, kept locally and synced through its sealed account record."""

    def __init__(self, index: Index, api: Api, owner: str, master: bytes) -> None:
        self._index = index
        self._api = api
        self._owner = owner
        self._master = master
        self._lock = threading.RLock()

    # -- reading ----------------------------------------------------------------------------------

    def get(self, user: str) -> Pin | None:
        rows = self._index.query(f"SELECT {_COLS} FROM contacts WHERE user=?", (user,))  # noqa: S608
        return _pin(rows[0]) if rows else None

    def all(self) -> list[Pin]:
        return [_pin(r) for r in self._index.query(f"SELECT {_COLS} FROM contacts ORDER BY user")]  # noqa: S608

    def epoch(self, node_id: str) -> int:
        return self._epochs().get(node_id, 0)

    def _epochs(self) -> dict[str, int]:
        raw = self._index.get_state(_EPOCHS)
        return {str(k): int(v) for k, v in json.loads(raw).items()} if raw else {}

    # -- changing (each change is written back to the record at once) -----------------------------

    def pin(self, user: str, user_id: str, sign_pub: bytes, *, accepted: bool = False) -> Pin:
        with self._lock:
            p = Pin(user, user_id, sign_pub, False, accepted, time.time())
            self._store(p)
            self.push()
            return p

    def mark(self, user: str, *, verified: bool = False, accepted: bool = False) -> Pin:
        """Set a contact's flags (they only ever go from False to True)."""
        with self._lock:
            p = self.get(user)
            if p is None:
                raise MegaDriveError(f"no contact named {user!r}")
            new = Pin(p.user, p.user_id, p.sign_pub, p.verified or verified, p.accepted or accepted, p.first_seen)
            if new != p:
                self._store(new)
                self.push()
            return new

    def raise_epoch(self, node_id: str, epoch: int) -> None:
        with self._lock:
            epochs = self._epochs()
            if epoch > epochs.get(node_id, 0):
                epochs[node_id] = epoch
                self._index.set_state(_EPOCHS, json.dumps(epochs))
                self.push()

    def _store(self, p: Pin) -> None:
        self._index.execute(f"INSERT OR REPLACE INTO contacts({_COLS}) VALUES (?,?,?,?,?,?)",  # noqa: S608
                            (p.user, p.user_id, p.sign_pub.hex(), int(p.verified), int(p.accepted), p.first_seen))

    # -- syncing with the account record ----------------------------------------------------------

    def pull(self) -> None:
        """Merge the account record into the local book; write back whatever this device adds."""
        with self._lock:
            got = self._api.get_record(RECORD)
            seen = int(self._index.get_state(_VERSION) or 0)
            if got is None:
                if seen:
                    log.error("the server no longer shows this account's contact record (version %d seen)", seen)
                if self.all() or self._epochs():
                    self._write(0)
                return
            version, blob = got
            if version < seen:
                raise IntegrityError(f"integrity check failed: the server rolled back the contact record "
                                     f"(version {version}, this device saw {seen})")
            remote_pins, remote_epochs = _decode(format.open_account_record(self._master, self._owner, RECORD,
                                                                            version, blob))
            self._merge(remote_pins, remote_epochs)
            self._index.set_state(_VERSION, str(version))
            if _encode(self._local_pins(), self._epochs()) != _encode(remote_pins, remote_epochs):
                self._write(version)

    def push(self) -> None:
        """Write the local book back (after a local change); a concurrent writer is merged, then retried."""
        with self._lock:
            try:
                self._write(int(self._index.get_state(_VERSION) or 0))
            except MegaDriveError as e:
                log.warning("could not save the contact record on the server: %s", e.log_text())

    def _write(self, base: int) -> None:
        for _ in range(4):
            blob = format.seal_account_record(self._master, self._owner, RECORD, base + 1,
                                              _encode(self._local_pins(), self._epochs()))
            try:
                self._index.set_state(_VERSION, str(self._api.put_record(RECORD, blob, base)))
                return
            except StaleVersion:
                got = self._api.get_record(RECORD)
                if got is None:
                    base = 0
                    continue
                version, rblob = got
                pins, epochs = _decode(format.open_account_record(self._master, self._owner, RECORD, version,
                                                                  rblob))
                self._merge(pins, epochs)
                base = version
        raise StaleVersion("the contact record keeps changing on the server; try again")

    def _local_pins(self) -> dict[str, Pin]:
        return {p.user: p for p in self.all()}

    def _merge(self, pins: dict[str, Pin], epochs: dict[str, int]) -> None:
        for user, remote in pins.items():
            local = self.get(user)
            if local is None:
                self._store(remote)
            elif local.user_id != remote.user_id or not crypto.ct_equal(local.sign_pub, remote.sign_pub):
                log.error("contact %s: another device of this account pinned a different key "
                          "(here %s, there %s); keeping this device's pin", user, local.fingerprint,
                          remote.fingerprint)
            elif (remote.verified and not local.verified) or (remote.accepted and not local.accepted):
                self._store(Pin(user, local.user_id, local.sign_pub, local.verified or remote.verified,
                                local.accepted or remote.accepted, min(local.first_seen, remote.first_seen)))
        mine = self._epochs()
        merged = {k: max(v, mine.get(k, 0)) for k, v in epochs.items()} | {k: v for k, v in mine.items()
                                                                          if k not in epochs}
        if merged != mine:
            self._index.set_state(_EPOCHS, json.dumps(merged))
