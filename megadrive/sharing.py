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
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import crypto, format
from .api import Api, b64d
from .contacts import ContactBook, Pin
from .crypto import Identity
from .errors import ConfigError, Conflict, IntegrityError, InvalidPath, MegaDriveError, NotFound
from .format import NodeMeta
from .index import IndexRow
from .names import check_name

if TYPE_CHECKING:
    from .drive import Drive

log = logging.getLogger(__name__)

SHARED_DIR = "Shared with me"
PENDING_SUFFIX = " (pending)"  # how a share from an account not yet accepted is shown (an empty folder)
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
    accepted: bool = False

    @property
    def fingerprint(self) -> str:
        return crypto.fingerprint(self.sign_pub)


class KeyChanged(IntegrityError):
    """A contact's identity key differs from the one pinned on first use."""


class Sharing:
    def __init__(self, drive: Drive) -> None:
        self.d = drive
        self.book = ContactBook(drive.index, drive.api, drive.owner, drive.master_key)
        self.incoming: dict[str, IncomingShare] = {}  # share root node id -> an accepted share
        self.pending: dict[str, IncomingShare] = {}  # shares from accounts the user has not accepted yet
        self._identity: Identity | None = None

    # -- keys and contacts ------------------------------------------------------------------------

    def identity(self) -> Identity:
        if self._identity is None:
            if not self.d.session.identity_hex:
                raise ConfigError("this session predates sharing: run `megadrive login` again")
            self._identity = format.unwrap_identity(self.d.master_key, bytes.fromhex(self.d.session.identity_hex),
                                                    self.d.owner)
        return self._identity

    def contact(self, user: str, *, accept: bool = False) -> Contact:
        """The server's copy of ``user``'s keys, checked against the key this account pinned (on any device)."""
        user = user.strip().lower()
        k = self.d.api.user_keys(user)
        user_id, sign_pub, box_pub = str(k["user_id"]), b64d(k["sign_pub"]), b64d(k["box_pub"])
        crypto.verify_signature(sign_pub, crypto.box_key_statement(user_id, box_pub), b64d(k["box_sig"]))
        pinned = self.book.get(user)
        if pinned is None:
            self._pull_book()  # another device of ours may have met them already
            pinned = self.book.get(user)
        if pinned is None:
            pinned = self.book.pin(user, user_id, sign_pub, accepted=accept)
            log.info("pinned %s's identity key %s", user, crypto.fingerprint(sign_pub))
        elif pinned.user_id != user_id or not crypto.ct_equal(pinned.sign_pub, sign_pub):
            raise KeyChanged(
                f"WARNING: the server now presents a DIFFERENT identity key for {user!r} "
                f"(pinned {pinned.fingerprint}, now {crypto.fingerprint(sign_pub)}). "
                "Nothing was shared. If they did not reset their account, the server may be attacking you.")
        elif accept and not pinned.accepted:
            pinned = self.book.mark(user, accepted=True)
        return Contact(user, user_id, sign_pub, box_pub, pinned.verified, pinned.accepted)

    def contacts(self) -> list[Contact]:
        return [Contact(p.user, p.user_id, p.sign_pub, b"", p.verified, p.accepted) for p in self.book.all()]

    def verify_contact(self, user: str) -> Contact:
        """Comparing fingerprints out of band also accepts the contact's shares."""
        c = self.contact(user)
        self.book.mark(c.user, verified=True, accepted=True)
        return dataclasses.replace(c, verified=True, accepted=True)

    def accept(self, user: str) -> list[IncomingShare]:
        """Accept shares from ``user`` (first contact): their folders appear and stay until unshared."""
        user = user.strip().lower()
        if self.book.get(user) is None:
            self.d.refresh()  # their share may not have been seen yet
        if self.book.get(user) is None:
            raise NotFound(f"no share from {user!r} to accept")
        self.book.mark(user, accepted=True)
        self.d.refresh()
        return [s for s in self.incoming.values() if s.owner_name == user]

    def _pull_book(self) -> None:
        try:
            self.book.pull()
        except MegaDriveError as e:
            log.error("contact record: %s", e.log_text())

    # -- outgoing ---------------------------------------------------------------------------------

    def _own_folder(self, path: str) -> tuple[str, NodeMeta]:
        loc = self.d.resolve(path)
        meta = loc.verified()
        if loc.row.kind != "dir":
            raise InvalidPath(f"only folders can be shared: {loc.path}")
        if loc.row.parent_id is None or loc.row.node_id == self.d.session.root_node_id:
            raise InvalidPath("the root folder cannot be shared; share a folder in it")
        if loc.row.owner:
            raise Conflict("only the owner can share this folder")
        return loc.row.node_id, meta

    def share(self, path: str, user: str, access: str) -> OutgoingShare:
        if access not in ACCESS:
            raise InvalidPath("access must be 'read' or 'write'")
        node_id, meta = self._own_folder(path)
        c = self.contact(user, accept=True)  # the key check happens before anything is sealed
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
                path = self.d.path_of(row) if row else "?"
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
        self._regrant(shares, found, rotated)
        return len(rotated)

    def _regrant(self, shares: list[OutgoingShare], dropped: list[OutgoingShare], rotated: set[str]) -> None:
        """Everyone who keeps access to a re-keyed folder gets a grant for its new key."""
        for s in shares:
            if s in dropped or s.node_id not in rotated:
                continue
            row = self.d.index.get(s.node_id)
            if row is None:
                continue
            meta = self.d.verified_meta(row)
            c = self.contact(s.recipient)
            grant = format.Grant(self.d.owner, c.user_id, s.node_id, s.access, meta.name, meta.key)
            self.d.api.create_share(s.node_id, c.user, s.access, format.seal_grant(grant, self.identity(), c.box_pub))

    def rotate(self, node_id: str) -> set[str]:
        """New keys for a folder and every folder under it; files get a fresh content key at their next write.

        Children are re-sealed top-down so each is sealed under its parent's new key. A node that
        fails authentication (planted by a co-writer) is skipped and logged, never a reason to stop
        half-way. Returns the ids re-keyed.
        """
        d = self.d
        done: set[str] = set()
        # (node, its parent's row and old meta to verify it with, its parent's new meta to seal it under)
        todo: list[tuple[str, tuple[IndexRow, NodeMeta] | None, NodeMeta | None]] = [(node_id, None, None)]
        while todo:
            nid, old_parent, new_pmeta = todo.pop(0)
            row = d.index.get(nid)
            if row is None:
                continue
            verify = d.verified_meta if old_parent is None or new_pmeta is None \
                else _under_either(d, old_parent[0], old_parent[1], new_pmeta)
            try:
                meta = verify(row)
            except IntegrityError as e:
                log.error("not re-keying node %s: %s", nid[:12], e.message)
                continue
            new_key = crypto.random_key()

            def change(m: NodeMeta, dir_key: bytes = new_key) -> NodeMeta:
                return dataclasses.replace(m, key=dir_key) if m.kind == "dir" else dataclasses.replace(m, rekey=True)

            new = d.rewrite_meta(row, change, verify=verify,
                                 parent=None if old_parent is None or new_pmeta is None else (old_parent[0], new_pmeta))
            if row.kind == "dir":
                todo.extend((c.node_id, (row, meta), new) for c in d.index.children(nid))
                todo.extend((c.node_id, (row, meta), new) for c in d.index.trashed_children(nid))
            done.add(nid)
        return done

    def after_move(self, node_id: str, old_parent: str | None, new_parent: str) -> None:
        """A node of ours left a folder shared with someone who cannot see where it went: re-key it.

        Its keys were in the grant's reach; without a new key the former
        recipient (with a server's help) could still read what is written to it.
        """
        if old_parent is None:
            return
        try:
            before = self._recipients_over(old_parent)
            if not before:
                return
            lost = before - self._recipients_over(new_parent)
        except MegaDriveError as e:
            log.error("could not check the shares around moved node %s: %s", node_id[:12], e.log_text())
            return
        if lost:
            rotated = self.rotate(node_id)
            self._regrant(self.outgoing(), [], rotated)

    def _recipients_over(self, node_id: str) -> set[str]:
        row = self.d.index.get(node_id)
        if row is None or row.owner:
            return set()
        ancestors = {r.node_id for r, _ in self.d.tree.chain(row)}
        return {s.recipient for s in self.outgoing() if s.node_id in ancestors}

    # -- incoming ---------------------------------------------------------------------------------

    def all_incoming(self) -> list[IncomingShare]:
        return [*self.incoming.values(), *self.pending.values()]

    def sync(self) -> None:
        """Load incoming shares (verifying every grant) and pull each accepted owner's change feed.

        A share from an account this account has not accepted yet stays
        pending: its name is shown, nothing of its tree is loaded or trusted.
        """
        self._pull_book()
        try:
            listing = self.d.api.shares()["incoming"]
        except NotFound:
            return
        fresh: dict[str, IncomingShare] = {}
        pending: dict[str, IncomingShare] = {}
        for s in listing:
            try:
                share, accepted = self._open_incoming(s)
            except MegaDriveError as e:
                log.error("ignoring a share from %s: %s", s.get("owner_name"), e.log_text())
                continue
            (fresh if accepted else pending)[share.node_id] = share
        gone = set(self.incoming) - set(fresh)
        self.incoming, self.pending = fresh, pending
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
            self.d.pull_feed(owner)

    def _open_incoming(self, s: dict[str, object]) -> tuple[IncomingShare, bool]:
        name = str(s["owner_name"])
        pin = self.book.get(name)
        if pin is None:
            c = self.contact(name)  # first contact: fetch, check the box-key signature, pin (not accepted)
            pin = Pin(name, c.user_id, c.sign_pub, c.verified, c.accepted)
        if pin.user_id != s["owner"]:
            raise IntegrityError("integrity check failed: share owner does not match their pinned key")
        node_id = str(s["node_id"])
        mine = self.d.index.get(node_id)
        if node_id == self.d.session.root_node_id or (mine is not None and not mine.owner) \
                or pin.user_id == self.d.owner:
            raise IntegrityError("integrity check failed: a 'share' names one of our own folders")
        g = format.open_grant(b64d(s["grant"]), pin.user_id, self.d.owner, node_id, str(s["access"]),
                              pin.sign_pub, self.identity())
        check_name(g.name)
        share = IncomingShare(str(s["share_id"]), pin.user_id, name, g.node_id, g.access, g.name, g.folder_key,
                              float(str(s.get("created", 0))))
        if not pin.accepted:
            return share, False
        if g.epoch < self.book.epoch(node_id):  # a revocation re-keyed this folder since: an old grant is a replay
            raise IntegrityError("integrity check failed: the server replays an outdated share grant")
        self.book.raise_epoch(node_id, g.epoch)
        return share, True

    def root_meta(self, node_id: str, row_owner: str) -> NodeMeta | None:
        """The grant's key for an accepted share's root — only for a node of that owner's tree, never ours."""
        s = self.incoming.get(node_id)
        if s is None or row_owner != s.owner:
            return None
        return NodeMeta(name=s.name, kind="dir", key=s.folder_key, mtime_ns=int(s.created * 1e9), mode=0o755)

    def by_path(self, owner_name: str, name: str) -> IncomingShare | None:
        for s in self.incoming.values():
            if s.owner_name == owner_name and s.name == name:
                return s
        return None

    def pending_by_path(self, owner_name: str, shown: str) -> IncomingShare | None:
        if not shown.endswith(PENDING_SUFFIX):
            return None
        name = shown[:-len(PENDING_SUFFIX)]
        return next((s for s in self.pending.values() if s.owner_name == owner_name and s.name == name), None)

    def pending_from(self, owner_name: str) -> list[IncomingShare]:
        return [s for s in self.pending.values() if s.owner_name == owner_name]

    # -- public links ------------------------------------------------------------------------------

    def create_link(self, path: str, password: str | None = None, expires: float | None = None) -> str:
        loc = self.d.resolve(path)
        meta = loc.verified()
        if loc.row.kind != "file":
            raise InvalidPath(f"links are for files: {loc.path}")
        if loc.row.owner:
            raise Conflict("only the owner can link this file")
        record = format.LinkRecord(self.d.owner, loc.row.node_id, meta.name, meta.key, meta.file_id)
        if password:
            salt = crypto.random_salt()
            key = crypto.derive_link_key(password, salt, LINK_KDF)
            link = self.d.api.create_link(loc.row.node_id, format.seal_link(key, record), salt, LINK_KDF.to_json(),
                                          expires)
            fragment = "p"
        else:
            key = crypto.random_key()
            link = self.d.api.create_link(loc.row.node_id, format.seal_link(key, record), None, None, expires)
            fragment = base64.urlsafe_b64encode(key).decode().rstrip("=")
        return f"{self.d.api.base_url}/l/{link['link_id']}#{fragment}"

    def remove_links(self, path: str) -> int:
        loc = self.d.resolve(path)
        loc.verified()
        n = 0
        for link in self.d.api.links():
            if link["node_id"] == loc.row.node_id:
                self.d.api.delete_link(str(link["link_id"]))
                n += 1
        if not n:
            raise NotFound(f"{path} has no link")
        # Link holders had the content key: the next version gets a fresh one.
        self.d.rewrite_meta(loc.row, lambda m: dataclasses.replace(m, rekey=True))
        return n


def _under_either(d: Drive, parent: IndexRow, old: NodeMeta, new: NodeMeta) -> Callable[[IndexRow], NodeMeta]:
    """Verify a child of a folder being re-keyed: sealed under its old key, or already under the new one."""

    def verify(row: IndexRow) -> NodeMeta:
        try:
            return d.tree.child_meta(row, parent, old)
        except IntegrityError:
            return d.tree.child_meta(row, parent, new)

    return verify


# -- reading a link without an account -------------------------------------------------------------


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
