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

import json
import threading
from dataclasses import dataclass

from . import format
from .content import FileKeys
from .errors import IntegrityError
from .format import Manifest
from .index import Index

_NS = "journal-version"


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

    @property
    def size(self) -> int:
        return self.manifest.size


class Journal:
    """Index-backed journal of one account (see the module docstring). Thread-safe."""

    def __init__(self, index: Index, master: bytes, owner: str) -> None:
        self.index = index
        self._master = master
        self._owner = owner
        self._lock = threading.Lock()
        self._cache: dict[str, LocalVersion | None] = {}
        self._nodes: set[str] = set(self._pending_nodes())  # so a listing asks the index only for these

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
                    mtime_ns: int) -> None:
        """Record a sealed version (it replaces an older one of the same node: it builds on it)."""
        record = json.dumps({"k": keys.content_key.hex(), "f": keys.file_id.hex(), "o": keys.owner,
                             "ok": origin[0].hex() if origin else None, "of": origin[1].hex() if origin else None,
                             "p": parent_id, "pk": parent_key.hex() if parent_key else None,
                             "m": mtime_ns}, sort_keys=True).encode()
        sealed_keys = format.seal_record(self._master, self._owner, _NS, keys.node_id, record)
        sealed_manifest = format.seal_manifest(keys.content_key, keys.owner, manifest)
        with self._lock:
            self.index.execute("INSERT OR REPLACE INTO pending(node_id, base_version, manifest, chunks, keys) "
                               "VALUES (?,?,?,?,?)", (keys.node_id, base_version, sealed_manifest,
                                                      ",".join(manifest.chunk_ids()), sealed_keys))
            self._cache.pop(keys.node_id, None)
            self._nodes.add(keys.node_id)

    def get(self, node_id: str) -> LocalVersion | None:
        """The node's journaled version, opened and checked (None if there is none)."""
        with self._lock:
            if node_id not in self._nodes:
                return None
            if node_id in self._cache:
                return self._cache[node_id]
        rows = self.index.query("SELECT base_version, manifest, chunks, keys FROM pending WHERE node_id=?",
                                (node_id,))
        lv = None
        if rows:
            base, sealed_manifest, chunks, sealed_keys = rows[0]
            lv = self._open(node_id, base, sealed_manifest, [c for c in chunks.split(",") if c], sealed_keys or b"")
        with self._lock:
            self._cache[node_id] = lv
        return lv

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
            parent_id, mtime = str(d["p"]), int(d["m"])
        except (ValueError, KeyError, TypeError) as e:
            raise IntegrityError("integrity check failed: malformed journal record") from e
        manifest = format.open_manifest(keys.content_key, keys.owner, node_id, base + 1, keys.file_id,
                                        sealed_manifest)
        if manifest.chunk_ids() != chunks:
            raise IntegrityError("integrity check failed: the journal's chunk list does not match its manifest")
        return LocalVersion(node_id, base, keys, origin, parent_id, parent_key, mtime, manifest, sealed_manifest,
                            tuple(chunks))

    # -- files created while the server was unreachable ----------------------------------------------

    def put_create(self, node_id: str, parent_id: str, kind: str, meta: bytes) -> None:
        self.index.execute("INSERT OR REPLACE INTO creates(node_id, parent_id, kind, meta) VALUES (?,?,?,?)",
                           (node_id, parent_id, kind, meta))

    def create_of(self, node_id: str) -> tuple[str, str, bytes] | None:
        """(parent id, kind, sealed meta) of a node this machine still has to create on the server."""
        rows = self.index.query("SELECT parent_id, kind, meta FROM creates WHERE node_id=?", (node_id,))
        return (str(rows[0][0]), str(rows[0][1]), bytes(rows[0][2])) if rows else None

    def creates(self) -> list[str]:
        return [r[0] for r in self.index.query("SELECT node_id FROM creates ORDER BY n")]

    def created(self, node_id: str) -> None:
        self.index.execute("DELETE FROM creates WHERE node_id=?", (node_id,))

    def _pending_nodes(self) -> list[str]:
        return [r[0] for r in self.index.query("SELECT node_id FROM pending")]

    def nodes(self) -> list[str]:
        nodes = self._pending_nodes()
        with self._lock:
            self._nodes = set(nodes)
        return nodes

    def done(self, node_id: str) -> None:
        """The node's version is committed (or given up): forget it and its chunks."""
        with self._lock, self.index.transaction():
            self.index.execute("DELETE FROM journal WHERE node_id=?", (node_id,))
            self.index.execute("DELETE FROM pending WHERE node_id=?", (node_id,))
            self._cache.pop(node_id, None)
            self._nodes.discard(node_id)

    def orphans(self) -> list[str]:
        """Nodes with journaled chunks but no version (a writer that died before it sealed one)."""
        return [r[0] for r in self.index.query(
            "SELECT DISTINCT node_id FROM journal WHERE node_id NOT IN (SELECT node_id FROM pending)")]
