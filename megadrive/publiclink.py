"""Public links, read without an account: a file, or a folder and everything under it.

The link's key is in the URL's ``#fragment`` (or comes from a password through
Argon2id here) and never leaves this machine. What the server hands a visitor
is checked like everything else it sends: the link record opens under the link
key bound to the owner and the linked node; a folder link's entries are opened
top-down, each under its parent's key with its parent's id, starting from the
folder key in the record, so the server can leave entries out but cannot add,
move or rename one; a manifest is bound to its file and version; every chunk
to its manifest.
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

from . import crypto, format
from .api import Api, RemoteNode, b64d
from .content import FileKeys, FileReader
from .errors import ConfigError, IntegrityError, InvalidPath, PermissionDenied, ServerError
from .format import NodeMeta
from .names import check_name

LINK_POOL = 4  # chunk fetches in flight for one visitor
# The most entries a folder link's listing may hold (an account's default node limit): a server that
# lists more is not answered with ever more memory.
MAX_LINK_ENTRIES = 1_000_000


@dataclass
class ParsedLink:
    server: str
    link_id: str
    fragment: str


def parse_link(url: str) -> ParsedLink:
    parts = urlsplit(url)
    segs = [s for s in parts.path.split("/") if s]
    if parts.scheme not in ("http", "https") or len(segs) < 2 or segs[-2].lower() != "l" \
            or not parts.fragment:
        raise InvalidPath("not a MegaDrive link (expected https://HOST/l/ID#KEY)")
    base = f"{parts.scheme}://{parts.netloc}" + "/".join([""] + segs[:-2])
    return ParsedLink(base, segs[-1], parts.fragment)


def scrub_fragments(text: str) -> str:
    """Cut every '#fragment' out of free text: a pasted link's key never leaves this machine, however written."""
    return " ".join(w.split("#", 1)[0] + ("#" if "#" in w else "") for w in text.split())


def report_link(url: str, reason: str) -> str:
    """Report a public link as abusive, without an account; neither its key nor a key pasted into the
    reason is sent. Returns the report's id."""
    p = parse_link(url)
    api = Api(p.server)
    try:
        r = api.report_abuse(f"{p.server}/l/{p.link_id}", scrub_fragments(reason))
    finally:
        api.close()
    return str(r.get("report_id", "?"))


@dataclass
class OpenedLink:
    """A link whose record opened: the server it is on, its id, and what its key unlocks."""

    api: Api
    link_id: str
    record: format.LinkRecord
    info: dict[str, Any]


def open_link(url: str, password: str | None = None) -> OpenedLink:
    """Fetch a link's record and open it. Whether it is a file or a folder is the sealed record's word,
    never the server's."""
    p = parse_link(url)
    api = Api(p.server)
    try:
        info = api.public_link(p.link_id)
        if p.fragment == "p":
            if not info.get("salt") or not info.get("kdf"):
                raise IntegrityError("integrity check failed: the link says it needs a password, the server "
                                     "disagrees")
            if not password:
                raise ConfigError("this link is password-protected: give the password")
            key = crypto.derive_link_key(password, b64d(info["salt"]), crypto.KdfParams.from_json(info["kdf"]))
        else:
            try:
                key = base64.urlsafe_b64decode(p.fragment + "=" * (-len(p.fragment) % 4))
            except ValueError:
                raise InvalidPath("malformed link key") from None
            if len(key) != crypto.KEY_BYTES:
                raise InvalidPath("malformed link key")
        record = format.open_link(key, str(info["owner"]), str(info["node_id"]), b64d(info["blob"]))
        check_name(record.name)  # it becomes a local file or folder name: no '/', no '..'
    except BaseException:
        api.close()
        raise
    return OpenedLink(api, p.link_id, record, info)


def _file_manifest(link: OpenedLink) -> format.Manifest:
    r = link.record
    if r.kind != "file":
        raise InvalidPath("this is a link to a folder, not to a file")
    version = int(link.info.get("version") or 0)
    if version < 1:
        raise IntegrityError("integrity check failed: the server claims the linked file has no content version")
    return format.open_manifest(r.key, r.owner, r.node_id, version, r.file_id, b64d(link.info.get("manifest")))


def open_public_link(url: str, password: str | None = None) -> tuple[Api, format.LinkRecord, format.Manifest, str]:
    """Fetch a file link's record and manifest and verify both; the key never leaves this machine."""
    link = open_link(url, password)
    try:
        return link.api, link.record, _file_manifest(link), link.link_id
    except BaseException:
        link.api.close()
        raise


class _LinkChunks:
    """Chunk I/O of a public link: the server hands out the chunks of a linked file (or of a file under
    a linked folder, ``node_id``) to anyone with the link id. Nothing is cached."""

    def __init__(self, api: Api, link_id: str, pool: ThreadPoolExecutor, node_id: str | None = None) -> None:
        self._api = api
        self._link_id = link_id
        self._pool = pool
        self._node_id = node_id

    def fetch(self, chunk_id: str, *, use_cache: bool = True) -> bytes:
        return self._api.public_chunk(self._link_id, chunk_id, self._node_id)

    def discard(self, chunk_id: str) -> None:
        """Nothing is cached for a link."""

    def put(self, chunk_id: str, blob: bytes, owner: str) -> None:
        raise PermissionDenied("a public link is read-only")

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._pool.submit(fn, *args)


def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=LINK_POOL, thread_name_prefix="megadrive-link")


class LinkReader(FileReader):
    """A verified reader of a public link's file (its name in ``record``); closing it ends the link's I/O."""

    def __init__(self, link: OpenedLink, manifest: format.Manifest) -> None:
        r = link.record
        self._link_pool = _pool()
        self._api = link.api
        super().__init__(_LinkChunks(link.api, link.link_id, self._link_pool),
                         FileKeys(r.owner, r.node_id, r.file_id, r.key), manifest, cache=False)
        self.record = r

    def close(self) -> None:
        super().close()
        self._link_pool.shutdown(wait=True, cancel_futures=True)
        self._api.close()


def read_file_link(link: OpenedLink) -> LinkReader:
    """A reader of an opened file link: its manifest verified, its chunks verified as they are read."""
    try:
        return LinkReader(link, _file_manifest(link))
    except BaseException:
        link.api.close()
        raise


def read_public_link(url: str, password: str | None = None) -> LinkReader:
    """Open a file link without an account: verify its record and manifest, then read its chunks verified."""
    return read_file_link(open_link(url, password))


# -- folder links -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkedEntry:
    """One verified entry under a linked folder. A hard link reads the content of the file it names
    (``content_id``, ``content``); any other file its own."""

    path: str  # relative to the linked folder, "/"-separated
    node_id: str
    parent_id: str
    meta: NodeMeta
    content_id: str
    content: NodeMeta
    removed: bool  # taken down after an abuse notice: listed, never served

    @property
    def is_dir(self) -> bool:
        return self.meta.kind == "dir"

    @property
    def size(self) -> int:
        return self.content.size


class LinkedFolder:
    """A folder link opened and verified, with readers for its files.

    Left out and counted in ``refused``: an entry whose meta does not open under its parent's key with
    its parent's id, whose kind or name is wrong, whose parent was left out, or a hard link that does not
    prove itself. Symbolic links, device files and FIFOs are not listed (a visitor gets files and
    folders), nor are nameless files (read through their hard links).
    """

    def __init__(self, link: OpenedLink) -> None:
        if link.record.kind != "dir":
            raise InvalidPath("this is a link to a file, not to a folder")
        self._link = link
        self._pool = _pool()
        self.record = link.record
        rows = self._fetch()
        self.entries, self.refused = self._verify(rows)

    def _fetch(self) -> dict[str, RemoteNode]:
        rows: dict[str, RemoteNode] = {}
        since, more = 0, True
        while more:
            page, seq, more = self._link.api.public_link_nodes(self._link.link_id, since)
            for n in page:
                if n.node_id not in rows or rows[n.node_id].seq < n.seq:
                    rows[n.node_id] = n
            if len(rows) > MAX_LINK_ENTRIES:
                raise ServerError(f"the server lists more than {MAX_LINK_ENTRIES:,} entries under this link")
            if more and seq <= since:
                raise IntegrityError("integrity check failed: the server's folder listing does not advance")
            since = seq
        return rows

    def _verify(self, rows: dict[str, RemoteNode]) -> tuple[list[LinkedEntry], int]:
        r = self.record
        children: dict[str, list[RemoteNode]] = {}
        for n in rows.values():
            if n.parent_id is not None and n.node_id != r.node_id:
                children.setdefault(n.parent_id, []).append(n)
        files: dict[str, NodeMeta] = {}  # every verified file, nameless ones too (hard links name them)
        listed: list[tuple[str, RemoteNode, NodeMeta]] = []
        hard: list[tuple[str, RemoteNode, NodeMeta]] = []
        reached = 0
        todo: deque[tuple[str, bytes, str]] = deque([(r.node_id, r.key, "")])
        while todo:
            parent_id, parent_key, prefix = todo.popleft()
            for n in sorted(children.get(parent_id, []), key=lambda x: x.node_id):
                try:
                    meta = format.open_meta(parent_key, r.owner, parent_id, n.node_id, n.meta)
                    if meta.kind != n.kind:
                        raise IntegrityError("kind")
                    check_name(meta.name)
                except (IntegrityError, InvalidPath):
                    continue
                reached += 1
                path = prefix + meta.name
                if meta.kind == "dir":
                    listed.append((path, n, meta))
                    todo.append((n.node_id, meta.key, path + "/"))
                elif meta.link_to is not None:
                    hard.append((path, n, meta))
                else:
                    files[n.node_id] = meta
                    if not (meta.nameless or meta.link is not None or meta.special is not None):
                        listed.append((path, n, meta))
        entries = [LinkedEntry(path, n.node_id, n.parent_id or "", meta, n.node_id, meta, n.removed)
                   for path, n, meta in listed]
        for path, n, meta in hard:
            target = files.get(meta.link_to or "")
            if target is None or not format.proves_hard_link(n.node_id, meta, target):
                reached -= 1
                continue
            assert meta.link_to is not None
            entries.append(LinkedEntry(path, n.node_id, n.parent_id or "", meta, meta.link_to, target,
                                       rows[meta.link_to].removed))
        entries.sort(key=lambda e: e.path)
        return entries, len(rows) - reached

    def reader(self, entry: LinkedEntry) -> FileReader:
        """A verified reader of one listed file's current content."""
        if entry.is_dir:
            raise InvalidPath(f"is a folder: {entry.path}")
        r, m, nid = self.record, entry.content, entry.content_id
        keys = FileKeys(r.owner, nid, m.file_id, m.key)
        io = _LinkChunks(self._link.api, self._link.link_id, self._pool, nid)
        if m.version == 0:  # never written: empty, nothing to ask for
            return FileReader(io, keys, None, cache=False)
        version, blob = self._link.api.public_link_manifest(self._link.link_id, nid)
        if version < m.version:
            raise IntegrityError(f"integrity check failed: the server offers an older version of {entry.path}")
        return FileReader(io, keys, format.open_manifest(m.key, r.owner, nid, version, m.file_id, blob), cache=False)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._link.api.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_public_folder(url: str, password: str | None = None) -> LinkedFolder:
    """Open a folder link without an account and verify its whole tree."""
    link = open_link(url, password)
    try:
        return LinkedFolder(link)
    except BaseException:
        link.api.close()
        raise
