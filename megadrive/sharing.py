"""Sharing folders between accounts, contacts' keys, and public links.

A share hands the recipient one folder key, sealed to their X25519 key and
signed with the owner's Ed25519 identity key; every contact's identity key
is pinned on first use, so a server that substitutes keys is caught before
anything is sealed. Revoking a share cuts the server-side access and
re-keys the folder's whole subtree, so what is written afterwards is sealed
under keys the former recipient never held.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import crypto, format
from .api import Api, b64d
from .crypto import Identity
from .errors import ConfigError, Conflict, IntegrityError, InvalidPath, MegaDriveError, NotFound
from .format import NodeMeta
from .names import check_name

if TYPE_CHECKING:
    from .drive import Drive

log = logging.getLogger(__name__)

SHARED_DIR = "Shared with me"
ACCESS = ("read", "write")
LINK_KDF = crypto.KDF_MODERATE


@dataclass(frozen=True)
class IncomingShare:
    share_id: str
    owner: str
    owner_name: str
    node_id: str
    access: str
    name: str
    folder_key: bytes
    created: float


@dataclass(frozen=True)
class OutgoingShare:
    share_id: str
    node_id: str
    path: str
    recipient: str
    access: str


@dataclass(frozen=True)
class Contact:
    user: str
    user_id: str
    sign_pub: bytes
    box_pub: bytes
    verified: bool

    @property
    def fingerprint(self) -> str:
        return crypto.fingerprint(self.sign_pub)


class KeyChanged(IntegrityError):
    """A contact's identity key differs from the one pinned on first use."""


class Sharing:
    def __init__(self, drive: Drive) -> None:
        self.d = drive
        self.incoming: dict[str, IncomingShare] = {}  # share root node id -> share
        self._identity: Identity | None = None

    # -- keys and contacts ------------------------------------------------------------------------

    def identity(self) -> Identity:
        if self._identity is None:
            if not self.d.session.identity_hex:
                raise ConfigError("this session predates sharing: run `megadrive login` again")
            self._identity = format.unwrap_identity(self.d._master, bytes.fromhex(self.d.session.identity_hex),
                                                    self.d.owner)
        return self._identity

    def contact(self, user: str) -> Contact:
        """The server's copy of ``user``'s keys, checked against the key pinned on first use."""
        user = user.strip().lower()
        k = self.d.api.user_keys(user)
        user_id, sign_pub, box_pub = str(k["user_id"]), b64d(k["sign_pub"]), b64d(k["box_pub"])
        crypto.verify_signature(sign_pub, crypto.box_key_statement(user_id, box_pub), b64d(k["box_sig"]))
        pinned = self.d.index.contact(user)
        if pinned is None:
            self.d.index.pin_contact(user, user_id, sign_pub.hex(), time.time())
            log.info("pinned %s's identity key %s", user, crypto.fingerprint(sign_pub))
            verified = False
        else:
            pid, ppub, verified = pinned
            if pid != user_id or ppub != sign_pub.hex():
                raise KeyChanged(
                    f"WARNING: the server now presents a DIFFERENT identity key for {user!r} "
                    f"(pinned {crypto.fingerprint(bytes.fromhex(ppub))}, now {crypto.fingerprint(sign_pub)}). "
                    "Nothing was shared. If they did not reset their account, the server may be attacking you.")
        return Contact(user, user_id, sign_pub, box_pub, verified)

    def contacts(self) -> list[Contact]:
        return [Contact(u, uid, bytes.fromhex(pub), b"", v) for u, uid, pub, v in self.d.index.contacts()]

    def verify_contact(self, user: str) -> Contact:
        c = self.contact(user)
        self.d.index.verify_contact(c.user)
        return Contact(c.user, c.user_id, c.sign_pub, c.box_pub, True)

    # -- outgoing ---------------------------------------------------------------------------------

    def _own_folder(self, path: str) -> tuple[str, NodeMeta]:
        row, p = self.d._resolve(path)
        if row.kind != "dir":
            raise InvalidPath(f"only folders can be shared: {p}")
        if row.parent_id is None:
            raise InvalidPath("the root folder cannot be shared; share a folder in it")
        if row.owner:
            raise Conflict("only the owner can share this folder")
        return row.node_id, self.d._meta(row)

    def share(self, path: str, user: str, access: str) -> OutgoingShare:
        if access not in ACCESS:
            raise InvalidPath("access must be 'read' or 'write'")
        node_id, meta = self._own_folder(path)
        c = self.contact(user)  # key check happens before anything is sealed
        if c.user_id == self.d.owner:
            raise InvalidPath("you cannot share with yourself")
        grant = format.Grant(self.d.owner, c.user_id, node_id, access, meta.name, meta.key)
        blob = format.seal_grant(grant, self.identity(), c.box_pub)
        s = self.d.api.create_share(node_id, c.user, access, blob)
        return OutgoingShare(str(s["share_id"]), node_id, path, c.user, access)

    def outgoing(self) -> list[OutgoingShare]:
        out = []
        for s in self.d.api.shares()["outgoing"]:
            row = self.d.index.get(str(s["node_id"]))
            try:
                path = self.d._path_of(row) if row else "?"
            except MegaDriveError:
                path = "?"
            out.append(OutgoingShare(str(s["share_id"]), str(s["node_id"]), path, str(s["recipient_name"]),
                                     str(s["access"])))
        return out

    def unshare(self, path: str, user: str) -> int:
        """Cut the recipient's access now, then re-key the subtree; returns how many nodes were re-keyed."""
        self.d.refresh()  # re-key what was written up to now, too
        node_id, _ = self._own_folder(path)
        user = user.strip().lower()
        shares = self.outgoing()
        found = [s for s in shares if s.node_id == node_id and s.recipient == user]
        if not found:
            raise NotFound(f"{path} is not shared with {user}")
        for s in found:
            self.d.api.delete_share(s.share_id)
        rotated = self.rotate(node_id)
        # Everyone who keeps access to a re-keyed folder gets a grant for its new key.
        for s in shares:
            if s in found or s.node_id not in rotated:
                continue
            row = self.d.index.get(s.node_id)
            if row is None:
                continue
            meta = self.d._meta(row)
            c = self.contact(s.recipient)
            grant = format.Grant(self.d.owner, c.user_id, s.node_id, s.access, meta.name, meta.key)
            self.d.api.create_share(s.node_id, c.user, s.access, format.seal_grant(grant, self.identity(), c.box_pub))
        return len(rotated)

    def rotate(self, node_id: str) -> set[str]:
        """New keys for a folder and every folder under it; files get a fresh content key at their next write.

        Children are re-sealed top-down so each is sealed under its parent's new key. A node that
        fails authentication (planted by a co-writer) is skipped and logged, never a reason to stop
        half-way. Returns the ids re-keyed.
        """
        d = self.d
        done: set[str] = set()
        todo = [node_id]
        while todo:
            nid = todo.pop(0)
            row = d.index.get(nid)
            if row is None:
                continue
            try:
                meta = d._meta(row)
            except IntegrityError as e:
                log.error("not re-keying node %s: %s", nid, e.message)
                continue
            new = NodeMeta(**{**meta.__dict__, "props": dict(meta.props)})
            if row.kind == "dir":
                new.key = crypto.random_key()
                todo.extend(c.node_id for c in d.index.children(nid))
                todo.extend(c.node_id for c in d.index.trashed_children(nid))
            else:
                new.rekey = True
            d._rewrite_meta(row, new)
            done.add(nid)
        return done

    # -- incoming ---------------------------------------------------------------------------------

    def sync(self) -> None:
        """Load incoming shares (verifying every grant) and pull each sharing owner's change feed."""
        try:
            listing = self.d.api.shares()["incoming"]
        except NotFound:
            return
        fresh: dict[str, IncomingShare] = {}
        for s in listing:
            try:
                name = str(s["owner_name"])
                pinned = self.d.index.contact(name)
                if pinned is None:
                    c = self.contact(name)  # first contact: fetch, check the box-key signature, pin
                    owner_id, sign_pub = c.user_id, c.sign_pub
                else:
                    owner_id, sign_pub = pinned[0], bytes.fromhex(pinned[1])
                if owner_id != s["owner"]:
                    raise IntegrityError("integrity check failed: share owner does not match their pinned key")
                node_id = str(s["node_id"])
                mine = self.d.index.get(node_id)
                if node_id == self.d.session.root_node_id or (mine is not None and not mine.owner) \
                        or owner_id == self.d.owner:
                    raise IntegrityError("integrity check failed: a 'share' names one of our own folders")
                g = format.open_grant(b64d(s["grant"]), owner_id, self.d.owner, node_id,
                                      str(s["access"]), sign_pub, self.identity())
                check_name(g.name)
                seen = int(self.d.index.get_state(f"grant-epoch:{node_id}") or 0)
                if g.epoch < seen:  # a revocation re-keyed this folder since: an old grant is a replay
                    raise IntegrityError("integrity check failed: the server replays an outdated share grant")
                if g.epoch > seen:
                    self.d.index.set_state(f"grant-epoch:{node_id}", str(g.epoch))
            except MegaDriveError as e:
                log.error("ignoring a share from %s: %s", s.get("owner_name"), e.message)
                continue
            fresh[g.node_id] = IncomingShare(str(s["share_id"]), owner_id, name, g.node_id, g.access,
                                             g.name, g.folder_key, float(s.get("created", 0)))
        gone = set(self.incoming) - set(fresh)
        self.incoming = fresh
        for root in gone:  # revoked: forget the subtree we indexed
            row = self.d.index.get(root)
            if row is not None and row.owner:
                self.d.index.remove_subtree(root)
        for owner in {s.owner for s in fresh.values()}:
            roots = ",".join(sorted(s.node_id for s in fresh.values() if s.owner == owner))
            if self.d.index.get_state(f"roots:{owner}") != roots:
                # A new (or lost) share root: its nodes may predate our cursor in that owner's feed.
                self.d.index.set_state(f"seq:{owner}", "0")
                self.d.index.set_state(f"roots:{owner}", roots)
            self.d._pull_feed(owner)

    def root_meta(self, node_id: str, row_owner: str) -> NodeMeta | None:
        """The grant's key for a share root — only for a node of that owner's tree, never one of ours."""
        s = self.incoming.get(node_id)
        if s is None or row_owner != s.owner:
            return None
        return NodeMeta(name=s.name, kind="dir", key=s.folder_key, mtime_ns=int(s.created * 1e9), mode=0o755)

    def by_path(self, owner_name: str, name: str) -> IncomingShare | None:
        for s in self.incoming.values():
            if s.owner_name == owner_name and s.name == name:
                return s
        return None

    # -- public links ------------------------------------------------------------------------------

    def create_link(self, path: str, password: str | None = None, expires: float | None = None) -> str:
        row, p = self.d._resolve(path)
        if row.kind != "file":
            raise InvalidPath(f"links are for files: {p}")
        if row.owner:
            raise Conflict("only the owner can link this file")
        meta = self.d._meta(row)
        record = format.LinkRecord(self.d.owner, row.node_id, meta.name, meta.key, meta.file_id)
        if password:
            salt = crypto.random_salt()
            key = crypto.derive_link_key(password, salt, LINK_KDF)
            link = self.d.api.create_link(row.node_id, format.seal_link(key, record), salt, LINK_KDF.to_json(),
                                          expires)
            fragment = "p"
        else:
            key = crypto.random_key()
            link = self.d.api.create_link(row.node_id, format.seal_link(key, record), None, None, expires)
            fragment = base64.urlsafe_b64encode(key).decode().rstrip("=")
        return f"{self.d.api.base_url}/l/{link['link_id']}#{fragment}"

    def remove_links(self, path: str) -> int:
        row, _ = self.d._resolve(path)
        n = 0
        for link in self.d.api.links():
            if link["node_id"] == row.node_id:
                self.d.api.delete_link(str(link["link_id"]))
                n += 1
        if not n:
            raise NotFound(f"{path} has no link")
        meta = self.d._meta(row)  # link holders had the content key: the next version gets a fresh one
        self.d._rewrite_meta(row, NodeMeta(**{**meta.__dict__, "props": dict(meta.props), "rekey": True}))
        return n


# -- reading a link without an account -------------------------------------------------------------


@dataclass
class ParsedLink:
    server: str
    link_id: str
    fragment: str


def parse_link(url: str) -> ParsedLink:
    parts = urlsplit(url)
    segs = [s for s in parts.path.split("/") if s]
    if parts.scheme not in ("http", "https") or len(segs) < 2 or segs[-2] != "l" or not parts.fragment:
        raise InvalidPath("not a MegaDrive link (expected https://HOST/l/ID#KEY)")
    base = f"{parts.scheme}://{parts.netloc}" + "/".join([""] + segs[:-2])
    return ParsedLink(base, segs[-1], parts.fragment)


def open_public_link(url: str, password: str | None = None) -> tuple[Api, format.LinkRecord, format.Manifest, str]:
    """Fetch a link's record and manifest and verify both; the key never leaves this machine."""
    p = parse_link(url)
    api = Api(p.server)
    info = api.public_link(p.link_id)
    if p.fragment == "p":
        if not info.get("salt") or not info.get("kdf"):
            raise IntegrityError("integrity check failed: the link says it needs a password, the server disagrees")
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
    owner, node_id, version = str(info["owner"]), str(info["node_id"]), int(info["version"])
    record = format.open_link(key, owner, node_id, b64d(info["blob"]))
    check_name(record.name)  # it becomes a local file name: no '/', no '..'
    if version < 1:
        raise IntegrityError("integrity check failed: the server claims the linked file has no content version")
    m = format.open_manifest(record.content_key, owner, node_id, version, record.file_id, b64d(info["manifest"]))
    return api, record, m, p.link_id
