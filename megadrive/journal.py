"""The local journal: versions sealed on this machine that the server does not have yet.

A writer that journals (the FUSE mount) puts every sealed chunk here as it
seals it, and the version itself (its sealed manifest, and its keys and
attributes sealed under the master key) before it asks the server to commit.
If the server cannot be reached, or the process dies, the version stays here:
reads of the file see it at once, a later write builds on it, and the
uploader (or the next mount) commits it. Ciphertext only: nothing in the
journal is readable without the master key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass

from . import format
from .content import FileKeys
from .errors import IntegrityError
from .format import Manifest
from .index import Index

_NS = "journal-version"


FORGOTTEN_KEPT = 4096


@dataclass(frozen=True)
class LocalVersion:
    """A version of a file this machine sealed and the server has not committed yet."""

    node_id: str
    base_version: int  # the server's version it builds on
    keys: FileKeys  # what its manifest and chunks are sealed under
    origin: tuple[bytes, bytes] | None  # the keys of the meta the writer started from (key continuity)
    parent_id: str
    parent_key: bytes | None
    mtime_ns: int
    manifest: Manifest
    sealed_manifest: bytes
    chunk_ids: tuple[str, ...]
    # Random per save, kept when the version is rebased or uploaded: what tells two saves here apart
    # in a validator (an ETag) while they share a version number, and keeps it when the server has it.
    token: str = ""
    # The lineage of the journaled version this one was written on, if any: after a crash between that
    # one's commit and its settling, replay recognises it on the server and goes on top of it.
    prior: bytes | None = None

    @property
    def size(self) -> int:
        return self.manifest.size


class Journal:
    """Index-backed journal of one account (see the module docstring). Thread-safe."""

    def __init__(self, index: Index, master: bytes, owner: str) -> None:
        self.index = index
        self._master = master
        self._owner = owner
        self._lock = threading.RLock()
        self._cache: dict[str, LocalVersion | None] = {}
        self._nodes: set[str] = set(self._pending_nodes())  # so a listing asks the index only for these
        # lineage of a version committed (or moved onto a newer base) -> the base a version written on it
        # now builds on; in memory: after a restart such a version is kept as a conflicted copy instead.
        self._moved: dict[bytes, int] = {}
        # node -> the version the server has now, for nodes whose journaled version was just dealt with
        # (see :meth:`forgotten_after`); bounded: a reader holds a row for moments, not thousands of uploads.
        self._forgotten: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._writing: Counter[str] = Counter()  # writers open in this process, per node
        self.creates = Creates(index)
        self._data_version = index.data_version()

    # -- chunks (content.Journal protocol) -------------------------------------------------------

    def put_chunk(self, chunk_id: str, node_id: str, blob: bytes) -> None:
        self.index.execute("INSERT OR REPLACE INTO journal(chunk_id, node_id, blob) VALUES (?,?,?)",
                           (chunk_id, node_id, blob))

    def get_chunk(self, chunk_id: str) -> bytes | None:
        rows = self.index.query("SELECT blob FROM journal WHERE chunk_id=?", (chunk_id,))
        return bytes(rows[0][0]) if rows else None

    # -- versions ---------------------------------------------------------------------------------

    def put_version(self, keys: FileKeys, manifest: Manifest, *, base_version: int,
                    origin: tuple[bytes, bytes] | None, parent_id: str, parent_key: bytes | None,
                    mtime_ns: int, prior: bytes | None = None) -> tuple[int, bytes]:
        """Record a sealed version (it replaces an older one of the same node: it builds on it).

        ``prior``: the :meth:`lineage` of the journaled version it was written on. If the uploader has
        committed that one meanwhile, this one goes on top of it (the next version number), not beside it.
        Returns the base it was recorded on and its own lineage: a writer that goes on writing after a
        save builds its next save on this one.
        """
        # One locked step from reading where ``prior`` went to recording this version: the uploader
        # settling ``prior`` in between would move the version it replaces onto the new base, and this
        # one would then land on the old base, beside the server's version instead of on top of it
        # (a conflicted copy of a file only this process wrote; seen in the 60-second stress run).
        with self._lock:
            moved = self._moved.get(prior) if prior is not None else None
            if moved is not None and base_version == moved - 1:
                base_version = moved
                manifest = dataclasses.replace(manifest, version=base_version + 1)
            sealed = format.seal_manifest(keys.content_key, keys.owner, manifest)
            self._put(keys, sealed, tuple(manifest.chunk_ids()), base_version=base_version, origin=origin,
                      parent_id=parent_id, parent_key=parent_key, mtime_ns=mtime_ns, token=secrets.token_hex(6),
                      prior=prior)
        return base_version, hashlib.sha256(sealed).digest()

    def _put(self, keys: FileKeys, sealed_manifest: bytes, chunk_ids: tuple[str, ...], *, base_version: int,
             origin: tuple[bytes, bytes] | None, parent_id: str, parent_key: bytes | None, mtime_ns: int,
             token: str, prior: bytes | None) -> None:
        record = json.dumps({"k": keys.content_key.hex(), "f": keys.file_id.hex(), "o": keys.owner,
                             "ok": origin[0].hex() if origin else None, "of": origin[1].hex() if origin else None,
                             "p": parent_id, "pk": parent_key.hex() if parent_key else None,
                             "m": mtime_ns, "t": token,
                             "pr": prior.hex() if prior else None}, sort_keys=True).encode()
        sealed_keys = format.seal_record(self._master, self._owner, _NS, keys.node_id, record)
        with self._lock:
            self.index.execute("INSERT OR REPLACE INTO pending(node_id, base_version, manifest, chunks, keys) "
                               "VALUES (?,?,?,?,?)", (keys.node_id, base_version, sealed_manifest,
                                                      ",".join(chunk_ids), sealed_keys))
            self._cache.pop(keys.node_id, None)
            self._nodes.add(keys.node_id)

    def set_mtime(self, node_id: str, mtime_ns: int) -> None:
        """A program set the file's time after its version was saved here: the version carries the new one."""
        with self._lock:
            lv = self.get(node_id)
            if lv is None:
                return
            self._put(lv.keys, lv.sealed_manifest, lv.chunk_ids, base_version=lv.base_version, origin=lv.origin,
                      parent_id=lv.parent_id, parent_key=lv.parent_key, mtime_ns=mtime_ns, token=lv.token,
                      prior=lv.prior)

    def get(self, node_id: str) -> LocalVersion | None:
        """The node's journaled version, opened and checked (None if there is none)."""
        with self._lock:
            self._catch_up()
            if node_id not in self._nodes:
                return None
            if node_id in self._cache:
                return self._cache[node_id]
            lv = self.get_unlocked(node_id)
            self._cache[node_id] = lv
            return lv

    def _catch_up(self) -> None:
        """Another process on this data folder (``megadrive up`` runs the mount beside the gateway) saved
        or uploaded versions: what is cached here is stale."""
        version = self.index.data_version()
        if version != self._data_version:
            self._data_version = version
            self._cache.clear()
            self._nodes = set(self._pending_nodes())

    def get_unlocked(self, node_id: str) -> LocalVersion | None:
        rows = self.index.query("SELECT base_version, manifest, chunks, keys FROM pending WHERE node_id=?",
                                (node_id,))
        if not rows:
            return None
        base, sealed_manifest, chunks, sealed_keys = rows[0]
        return self._open(node_id, base, bytes(sealed_manifest), [c for c in chunks.split(",") if c],
                          bytes(sealed_keys or b""))

    def _open(self, node_id: str, base: int, sealed_manifest: bytes, chunks: list[str], sealed_keys: bytes,
              ) -> LocalVersion:
        if not sealed_keys:
            raise IntegrityError(f"integrity check failed: the journaled version of node {node_id[:12]} "
                                 "predates sealed journal keys")
        try:
            d = json.loads(format.open_record(self._master, self._owner, _NS, node_id, sealed_keys))
            keys = FileKeys(str(d["o"]), node_id, bytes.fromhex(d["f"]), bytes.fromhex(d["k"]))
            origin = (bytes.fromhex(d["ok"]), bytes.fromhex(d["of"])) if d["ok"] else None
            parent_key = bytes.fromhex(d["pk"]) if d["pk"] else None
            parent_id, mtime, token = str(d["p"]), int(d["m"]), str(d.get("t", ""))
            prior = bytes.fromhex(d["pr"]) if d.get("pr") else None
        except (ValueError, KeyError, TypeError) as e:
            raise IntegrityError("integrity check failed: malformed journal record") from e
        manifest = format.open_manifest(keys.content_key, keys.owner, node_id, base + 1, keys.file_id,
                                        sealed_manifest)
        if manifest.chunk_ids() != chunks:
            raise IntegrityError("integrity check failed: the journal's chunk list does not match its manifest")
        return LocalVersion(node_id, base, keys, origin, parent_id, parent_key, mtime, manifest, sealed_manifest,
                            tuple(chunks), token, prior)

    def _pending_nodes(self) -> list[str]:
        return [r[0] for r in self.index.query("SELECT node_id FROM pending")]

    def pending_bytes(self) -> int:
        """Ciphertext kept here for versions the server does not have yet (some may be uploaded already)."""
        rows = self.index.query("SELECT coalesce(sum(length(blob)), 0) FROM journal WHERE node_id IN "
                                "(SELECT node_id FROM pending)")
        return int(rows[0][0])

    def nodes(self) -> list[str]:
        with self._lock:  # under the lock: a version saved between the query and the update would be lost
            nodes = self._pending_nodes()
            self._nodes = set(nodes)
        return nodes

    def settle(self, committed: LocalVersion) -> None:
        """The server now has ``committed`` (as version base + 1): forget it, or, if a newer version was
        saved here meanwhile (built on it, so on the same base), move that one onto the new base."""
        self._finish(committed, rebase=True)

    def rebase(self, lv: LocalVersion, base: int) -> LocalVersion:
        """Put ``lv`` on top of ``base`` (the server committed the version it was written on, and this
        process never settled it: a crash came between). Returns it as it is journaled now."""
        with self._lock, self.index.transaction():
            m = dataclasses.replace(lv.manifest, version=base + 1)
            sealed = format.seal_manifest(lv.keys.content_key, lv.keys.owner, m)
            self.index.execute("UPDATE pending SET base_version=?, manifest=? WHERE node_id=? AND manifest=?",
                               (base, sealed, lv.node_id, lv.sealed_manifest))
            self._moved[self.lineage(lv)] = base  # writers open on it follow
            self._cache.pop(lv.node_id, None)
            return dataclasses.replace(lv, base_version=base, manifest=m, sealed_manifest=sealed)

    def drop(self, lv: LocalVersion) -> None:
        """``lv`` was dealt with otherwise (kept as a conflicted copy, or given up): forget it, but not a
        newer version saved here meanwhile (that one is uploaded on its own)."""
        self._finish(lv, rebase=False)

    @staticmethod
    def lineage(lv: LocalVersion) -> bytes:
        """What a version written on top of ``lv`` names as its ``prior``."""
        return hashlib.sha256(lv.sealed_manifest).digest()

    def forgotten_after(self, node_id: str, version: int) -> bool:
        """Was a journaled version of the node dealt with (committed, or kept as a copy) since the server
        had ``version``? Then a row read before that is stale: the uploader updates the index before it
        forgets a version, so who asks the journal after reading a row must read the row again."""
        with self._lock:
            return self._forgotten.get(node_id, (-1, ""))[0] > version

    def token_of(self, node_id: str, version: int) -> str:
        """The token of the version saved here that the server now has as ``version`` ("" if unknown:
        another client's, or uploaded before this process started)."""
        with self._lock:
            seen, token = self._forgotten.get(node_id, (-1, ""))
            return token if seen == version else ""

    def _finish(self, lv: LocalVersion, *, rebase: bool) -> None:
        with self._lock:
            if rebase:
                self._moved[self.lineage(lv)] = lv.base_version + 1
            self._forgotten[lv.node_id] = (lv.base_version + 1, lv.token if rebase else "")
            self._forgotten.move_to_end(lv.node_id)
            while len(self._forgotten) > FORGOTTEN_KEPT:
                self._forgotten.popitem(last=False)
        with self._lock, self.index.transaction():
            rows = self.index.query("SELECT base_version, manifest, chunks FROM pending WHERE node_id=?",
                                    (lv.node_id,))
            saved_since = bool(rows) and bytes(rows[0][1]) != lv.sealed_manifest
            keep = set(str(rows[0][2]).split(",")) if saved_since else set()
            # Only this version's chunks go: a writer of the same file may have sealed newer ones already.
            for cid in set(lv.chunk_ids) - keep:
                self.index.execute("DELETE FROM journal WHERE chunk_id=? AND node_id=?", (cid, lv.node_id))
            if not rows or bytes(rows[0][1]) == lv.sealed_manifest:
                self.index.execute("DELETE FROM pending WHERE node_id=?", (lv.node_id,))
                self._nodes.discard(lv.node_id)
            elif rebase and int(rows[0][0]) == lv.base_version:
                self._cache.pop(lv.node_id, None)
                newer = self.get_unlocked(lv.node_id)
                if newer is not None:
                    m = dataclasses.replace(newer.manifest, version=lv.base_version + 2)
                    sealed = format.seal_manifest(newer.keys.content_key, newer.keys.owner, m)
                    self.index.execute("UPDATE pending SET base_version=?, manifest=? WHERE node_id=?",
                                       (lv.base_version + 1, sealed, lv.node_id))
                    self._moved[self.lineage(newer)] = lv.base_version + 1  # writers open on it follow
            self._cache.pop(lv.node_id, None)

    def done(self, node_id: str) -> None:
        """The node's version is committed (or given up): forget it and its chunks."""
        with self._lock, self.index.transaction():
            self.index.execute("DELETE FROM journal WHERE node_id=?", (node_id,))
            self.index.execute("DELETE FROM pending WHERE node_id=?", (node_id,))
            self._cache.pop(node_id, None)
            self._nodes.discard(node_id)

    def begin_write(self, node_id: str) -> None:
        """A writer of the node opened in this process (its chunks arrive before its version does), or a
        front-end holds it open (Drive.hold_open): it is not forgotten as never created."""
        with self._lock:
            self._writing[node_id] += 1

    def is_writing(self, node_id: str) -> bool:
        with self._lock:
            return node_id in self._writing

    def end_write(self, node_id: str) -> None:
        with self._lock:
            self._writing[node_id] -= 1
            if self._writing[node_id] <= 0:
                del self._writing[node_id]

    def drop_orphans(self, skip: set[str] | frozenset[str]) -> list[str]:
        """Forget chunks no version names and no writer open in this process will (a writer that died
        before it sealed one); the nodes they were for. Only asked while no other process has the
        index open (Index.alone): another process's writers are not known here."""
        with self._lock:
            rows = self.index.query(
                "SELECT DISTINCT node_id FROM journal WHERE node_id NOT IN (SELECT node_id FROM pending)")
            dropped = [r[0] for r in rows if r[0] not in self._writing and r[0] not in skip]
            for node_id in dropped:
                self.done(node_id)
            return dropped


CREATE_STRIPES = 64


class Creates:
    """Nodes created on this machine first (write-back, or while the server was unreachable): what
    the uploader still has to create on the server, in the order they were made."""

    def __init__(self, index: Index) -> None:
        self.index = index
        # Held while a node is created on the server, and while one never created there is forgotten
        # here instead (deleted before the uploader got to it): never both for one node. One lock per
        # stripe of node ids, so that uploads of different new files go to the server side by side.
        self._stripes = [threading.RLock() for _ in range(CREATE_STRIPES)]

    def lock(self, node_id: str) -> threading.RLock:
        """The lock that creating ``node_id`` on the server, or forgetting it here, holds."""
        return self._stripes[int(node_id[:8], 16) % CREATE_STRIPES]

    def put(self, node_id: str, parent_id: str, kind: str, meta: bytes) -> None:
        self.index.execute("INSERT OR REPLACE INTO creates(node_id, parent_id, kind, meta) VALUES (?,?,?,?)",
                           (node_id, parent_id, kind, meta))

    def of(self, node_id: str) -> tuple[str, str, bytes] | None:
        """(parent id, kind, sealed meta) of a node this machine still has to create on the server."""
        rows = self.index.query("SELECT parent_id, kind, meta FROM creates WHERE node_id=?", (node_id,))
        return (str(rows[0][0]), str(rows[0][1]), bytes(rows[0][2])) if rows else None

    def ids(self) -> list[str]:
        return [r[0] for r in self.index.query("SELECT node_id FROM creates ORDER BY n")]

    def done(self, node_id: str) -> None:
        self.index.execute("DELETE FROM creates WHERE node_id=?", (node_id,))
