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

from . import crypto, format
from .api import b64d
from .contacts import ContactBook, Pin
from .context import DriveContext
from .crypto import Identity
from .errors import ConfigError, Conflict, IntegrityError, InvalidPath, MegaDriveError, NotFound
from .feed import Feed
from .format import NodeMeta
from .index import IndexRow
from .names import check_name
from .namespace import Namespace
from .nodes import Nodes
from .shares import PENDING_SUFFIX, SHARED_DIR, IncomingShare, IncomingShares
from .tree import Tree

__all__ = ["PENDING_SUFFIX", "SHARED_DIR", "IncomingShare", "KeyChanged", "Sharing"]

log = logging.getLogger(__name__)

ACCESS = ("read", "write")
LINK_KDF = crypto.KDF_MODERATE


@dataclass(frozen=True)
class Rekeyed:
    """What a re-key did: nodes given new keys, and links inside deleted (they held the old keys)."""

    nodes: int
    links_removed: int


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
    """Shares (both ways), contacts and public links of one drive."""

    def __init__(self, ctx: DriveContext, shares: IncomingShares, ns: Namespace, nodes: Nodes, feed: Feed,
                 refresh: Callable[[], object]) -> None:
        self.ctx = ctx
        self.shares = shares
        self.ns = ns
        self.nodes = nodes
        self.feed = feed
        self._refresh = refresh
        self.book = ContactBook(ctx.index, ctx.api, ctx.owner, ctx.master)
        self._identity: Identity | None = None

    @property
    def incoming(self) -> dict[str, IncomingShare]:
        """Accepted incoming shares by root node id."""
        return self.shares.incoming

    @property
    def pending(self) -> dict[str, IncomingShare]:
        """Shares from accounts the user has not accepted yet."""
        return self.shares.pending

    # -- keys and contacts ------------------------------------------------------------------------

    def identity(self) -> Identity:
        if self._identity is None:
            if not self.ctx.session.identity_hex:
                raise ConfigError("this session predates sharing: run `megadrive login` again")
            self._identity = format.unwrap_identity(self.ctx.master, bytes.fromhex(self.ctx.session.identity_hex),
                                                    self.ctx.owner)
        return self._identity

    def contact(self, user: str, *, accept: bool = False) -> Contact:
        """The server's copy of ``user``'s keys, checked against the key this account pinned (on any device)."""
        user = user.strip().lower()
        k = self.ctx.api.user_keys(user)
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
            self._refresh()  # their share may not have been seen yet
        if self.book.get(user) is None:
            raise NotFound(f"no share from {user!r} to accept")
        self.book.mark(user, accepted=True)
        self._refresh()
        return [s for s in self.incoming.values() if s.owner_name == user]

    def _pull_book(self) -> None:
        try:
            self.book.pull()
        except MegaDriveError as e:
            log.error("contact record: %s", e.log_text())

    # -- outgoing ---------------------------------------------------------------------------------

    def _own_folder(self, path: str, verb: str = "share", past: str = "shared") -> tuple[str, NodeMeta]:
        loc = self.ns.resolve(path)
        meta = loc.verified()
        if loc.row.kind != "dir":
            raise InvalidPath(f"only folders can be {past}: {loc.path}")
        if loc.row.parent_id is None or loc.row.node_id == self.ctx.session.root_node_id:
            raise InvalidPath(f"the root folder cannot be {past}; {verb} a folder in it")
        if loc.row.owner:
            raise Conflict(f"only the owner can {verb} this folder")
        return loc.row.node_id, meta

    def share(self, path: str, user: str, access: str) -> OutgoingShare:
        if access not in ACCESS:
            raise InvalidPath("access must be 'read' or 'write'")
        node_id, meta = self._own_folder(path)
        c = self.contact(user, accept=True)  # the key check happens before anything is sealed
        if c.user_id == self.ctx.owner:
            raise InvalidPath("you cannot share with yourself")
        grant = format.Grant(self.ctx.owner, c.user_id, node_id, access, meta.name, meta.key)
        blob = format.seal_grant(grant, self.identity(), c.box_pub)
        s = self.ctx.api.create_share(node_id, c.user, access, blob)
        return OutgoingShare(str(s["share_id"]), node_id, path, c.user, access)

    def outgoing(self) -> list[OutgoingShare]:
        out = []
        for s in self.ctx.api.shares()["outgoing"]:
            row = self.ctx.index.get(str(s["node_id"]))
            try:
                path = self.ns.path_of(row) if row else "?"
            except MegaDriveError:
                path = "?"
            out.append(OutgoingShare(str(s["share_id"]), str(s["node_id"]), path, str(s["recipient_name"]),
                                     str(s["access"])))
        return out

    def unshare(self, path: str, user: str) -> Rekeyed:
        """Cut the recipient's access now, then re-key the subtree."""
        self._refresh()  # re-key what was written up to now, too
        node_id, _ = self._own_folder(path)
        user = user.strip().lower()
        shares = self.outgoing()
        found = [s for s in shares if s.node_id == node_id and s.recipient == user]
        if not found:
            raise NotFound(f"{path} is not shared with {user}")
        for s in found:
            self.ctx.api.delete_share(s.share_id)
        return self.rekey(node_id, shares, found)

    def rekey(self, node_id: str, shares: list[OutgoingShare] | None = None,
              dropped: list[OutgoingShare] | None = None) -> Rekeyed:
        """Re-key a folder's subtree (:meth:`rotate`), give every share that keeps access (not ``dropped``)
        a grant for the new keys, and delete the links to nodes in the subtree: their records hold keys
        that open nothing written from now on, so their visitors would see every new entry fail
        verification, a false alarm of tampering."""
        shares = self.outgoing() if shares is None else shares
        rotated = self.rotate(node_id)
        self._regrant(shares, dropped or [], rotated)
        removed = 0
        for link in self.ctx.api.links():
            if link["node_id"] in rotated:
                self.ctx.api.delete_link(str(link["link_id"]))
                removed += 1
        return Rekeyed(len(rotated), removed)

    def _regrant(self, shares: list[OutgoingShare], dropped: list[OutgoingShare], rotated: set[str]) -> None:
        """Everyone who keeps access to a re-keyed folder gets a grant for its new key."""
        for s in shares:
            if s in dropped or s.node_id not in rotated:
                continue
            row = self.ctx.index.get(s.node_id)
            if row is None:
                continue
            meta = self.ctx.tree.meta(row)
            c = self.contact(s.recipient)
            grant = format.Grant(self.ctx.owner, c.user_id, s.node_id, s.access, meta.name, meta.key)
            self.ctx.api.create_share(s.node_id, c.user, s.access, format.seal_grant(grant, self.identity(), c.box_pub))

    def rotate(self, node_id: str) -> set[str]:
        """New keys for a folder and every folder under it; files get a fresh content key at their next write.

        Children are re-sealed top-down so each is sealed under its parent's new key. A node that
        fails authentication (planted by a co-writer) is skipped and logged, never a reason to stop
        half-way. Returns the ids re-keyed.
        """
        tree, index = self.ctx.tree, self.ctx.index
        done: set[str] = set()
        # (node, its parent's row and old meta to verify it with, its parent's new meta to seal it under)
        todo: list[tuple[str, tuple[IndexRow, NodeMeta] | None, NodeMeta | None]] = [(node_id, None, None)]
        while todo:
            nid, old_parent, new_pmeta = todo.pop(0)
            row = index.get(nid)
            if row is None:
                continue
            verify = tree.meta if old_parent is None or new_pmeta is None \
                else _under_either(tree, old_parent[0], old_parent[1], new_pmeta)
            try:
                meta = verify(row)
            except IntegrityError as e:
                log.error("not re-keying node %s: %s", nid[:12], e.message)
                continue
            new_key = crypto.random_key()

            def change(m: NodeMeta, dir_key: bytes = new_key) -> NodeMeta:
                return dataclasses.replace(m, key=dir_key) if m.kind == "dir" else dataclasses.replace(m, rekey=True)

            new = self.nodes.rewrite_meta(row, change, verify=verify, parent=None if old_parent is None
                                          or new_pmeta is None else (old_parent[0], new_pmeta))
            if row.kind == "dir":
                todo.extend((c.node_id, (row, meta), new) for c in index.children(nid))
                todo.extend((c.node_id, (row, meta), new) for c in index.trashed_children(nid))
            done.add(nid)
        return done

    def after_move(self, node_id: str, old_parent: str | None, new_parent: str) -> None:
        """A node of ours left a folder shared with someone, or linked, who cannot see where it went:
        re-key it.

        Its keys were in the grant's (or the link's) reach; without a new key the former recipient
        or link holder (with a server's help) could still read what is written to it.
        """
        if old_parent is None:
            return
        try:
            audience = self._audience()
            before = self._audience_over(old_parent, audience)
            if not before:
                return
            lost = before - self._audience_over(new_parent, audience)
        except MegaDriveError as e:
            log.error("could not check the shares and links around moved node %s: %s", node_id[:12], e.log_text())
            return
        if lost:
            done = self.rekey(node_id)
            if done.links_removed:
                log.warning("node %s left a shared or linked folder and was re-keyed: %d link(s) to it or inside "
                            "it held its old keys and were deleted (make new ones)", node_id[:12], done.links_removed)

    def _audience(self) -> list[tuple[str, str]]:
        """(node id, who) of every outgoing share (the recipient) and public link (the link's id)."""
        shares = [(str(s["node_id"]), f"share:{s['recipient']}") for s in self.ctx.api.shares()["outgoing"]]
        return shares + [(str(x["node_id"]), f"link:{x['link_id']}") for x in self.ctx.api.links()]

    def _audience_over(self, node_id: str, audience: list[tuple[str, str]]) -> set[str]:
        row = self.ctx.index.get(node_id)
        if row is None or row.owner:
            return set()
        ancestors = {r.node_id for r, _ in self.ctx.tree.chain(row)}
        return {who for nid, who in audience if nid in ancestors}

    # -- incoming ---------------------------------------------------------------------------------

    def sync(self) -> None:
        """Load incoming shares (verifying every grant) and pull each accepted owner's change feed.

        A share from an account this account has not accepted yet stays
        pending: its name is shown, nothing of its tree is loaded or trusted.
        """
        self._pull_book()
        try:
            listing = self.ctx.api.shares()["incoming"]
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
        self.shares.incoming, self.shares.pending = fresh, pending
        for root in gone:  # revoked: forget the subtree we indexed
            row = self.ctx.index.get(root)
            if row is not None and row.owner:
                self.ctx.index.remove_subtree(root)
        for owner in {s.owner for s in fresh.values()}:
            roots = ",".join(sorted(s.node_id for s in fresh.values() if s.owner == owner))
            if self.ctx.index.get_state(f"roots:{owner}") != roots:
                # A new (or lost) share root: its nodes may predate our cursor in that owner's feed.
                self.ctx.index.set_state(f"seq:{owner}", "0")
                self.ctx.index.set_state(f"roots:{owner}", roots)
            self.feed.pull(owner)

    def _open_incoming(self, s: dict[str, object]) -> tuple[IncomingShare, bool]:
        name = str(s["owner_name"])
        pin = self.book.get(name)
        if pin is None:
            c = self.contact(name)  # first contact: fetch, check the box-key signature, pin (not accepted)
            pin = Pin(name, c.user_id, c.sign_pub, c.verified, c.accepted)
        if pin.user_id != s["owner"]:
            raise IntegrityError("integrity check failed: share owner does not match their pinned key")
        node_id = str(s["node_id"])
        mine = self.ctx.index.get(node_id)
        if node_id == self.ctx.session.root_node_id or (mine is not None and not mine.owner) \
                or pin.user_id == self.ctx.owner:
            raise IntegrityError("integrity check failed: a 'share' names one of our own folders")
        g = format.open_grant(b64d(s["grant"]), pin.user_id, self.ctx.owner, node_id, str(s["access"]),
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

    # -- public links ------------------------------------------------------------------------------

    def create_link(self, path: str, password: str | None = None, expires: float | None = None) -> str:
        """A public link to a file (its content key) or to a folder (its folder key: everything under it)."""
        loc = self.ns.resolve(path)
        name = loc.path.rsplit("/", 1)[-1]
        if loc.row.kind == "dir":
            node_id, meta = self._own_folder(path, "link", "linked")
            record = format.LinkRecord(self.ctx.owner, node_id, name, meta.key, kind="dir")
        else:
            row, meta = self.ns.content_node(loc.row, loc.verified())  # through a hard link: its file
            if row.owner:
                raise Conflict("only the owner can link this file")
            self.nodes.ensure_created(row.node_id)  # a file saved here first: the server must know it
            node_id = row.node_id
            record = format.LinkRecord(self.ctx.owner, node_id, name, meta.key, meta.file_id)
        if password:
            salt = crypto.random_salt()
            key = crypto.derive_link_key(password, salt, LINK_KDF)
            link = self.ctx.api.create_link(node_id, format.seal_link(key, record), salt, LINK_KDF.to_json(), expires)
            fragment = "p"
        else:
            key = crypto.random_key()
            link = self.ctx.api.create_link(node_id, format.seal_link(key, record), None, None, expires)
            fragment = base64.urlsafe_b64encode(key).decode().rstrip("=")
        return f"{self.ctx.api.base_url}/l/{link['link_id']}#{fragment}"

    def remove_links(self, path: str) -> tuple[int, Rekeyed | None]:
        """Delete the links to a file or folder, then take back the keys they gave out: a file's next
        version gets a fresh content key; a folder and every folder under it are re-keyed now (even if
        the server lists no link: the server's word is not what keeps a key from a link holder), and the
        links inside it, which held its old keys, are deleted too. Returns (links deleted, the re-key)."""
        loc = self.ns.resolve(path)
        if loc.row.kind == "dir":
            self._refresh()  # re-key what was written up to now, too
            node_id, _ = self._own_folder(path, "link", "linked")
            row = None
        else:
            row, _ = self.ns.content_node(loc.row, loc.verified())
            node_id = row.node_id
        n = 0
        for link in self.ctx.api.links():
            if link["node_id"] == node_id:
                self.ctx.api.delete_link(str(link["link_id"]))
                n += 1
        if row is None:  # link holders had the folder key
            return n, self.rekey(node_id)
        if not n:
            raise NotFound(f"{path} has no link")
        # Link holders had the content key: the next version gets a fresh one.
        self.nodes.rewrite_meta(row, lambda m: dataclasses.replace(m, rekey=True))
        return n, None


def _under_either(tree: Tree, parent: IndexRow, old: NodeMeta, new: NodeMeta) -> Callable[[IndexRow], NodeMeta]:
    """Verify a child of a folder being re-keyed: sealed under its old key, or already under the new one."""

    def verify(row: IndexRow) -> NodeMeta:
        try:
            return tree.child_meta(row, parent, old)
        except IntegrityError:
            return tree.child_meta(row, parent, new)

    return verify
