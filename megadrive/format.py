"""The MegaDrive record formats: account keys, node metadata, manifests, chunks.

Byte layouts are in docs/FORMAT.md; this module is their single
implementation. It builds plaintext records, binds each to its context in
the associated data, and seals them with :mod:`megadrive.crypto`.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from dataclasses import dataclass, field

from . import crypto
from .crypto import aad
from .errors import IntegrityError

CHUNK_SIZE = 1 << 20
META_PAD_BLOCK = 512
MANIFEST_MAGIC = b"MDMF"
_MANIFEST_HEAD = struct.Struct(">4s16s16sQQII32s")


# -- account ------------------------------------------------------------------------------------


def wrap_master(kek: bytes, master: bytes, user_id: str) -> bytes:
    return crypto.seal(kek, master, aad("master-key", user_id))


def unwrap_master(kek: bytes, blob: bytes, user_id: str) -> bytes:
    master = crypto.open_sealed(kek, blob, aad("master-key", user_id), "master key (or wrong password)")
    if len(master) != crypto.KEY_BYTES:
        raise IntegrityError("integrity check failed: malformed master key")
    return master


# -- the recovery key (FORMAT.md 7.1.1) -----------------------------------------------------------

RECOVERY_CHECK_BYTES = 3  # a typo in a written-down key is caught before any request


def recovery_keys(recovery_key: bytes) -> tuple[bytes, bytes]:
    """(the key the master key is wrapped under, the key the server checks) of a recovery key."""
    return crypto.derive_key(recovery_key, "recovery-wrap"), crypto.derive_key(recovery_key, "recovery-auth")


def wrap_master_recovery(recovery_key: bytes, master: bytes, user_id: str) -> bytes:
    return crypto.seal(recovery_keys(recovery_key)[0], master, aad("recovery-master-key", user_id))


def unwrap_master_recovery(recovery_key: bytes, blob: bytes, user_id: str) -> bytes:
    master = crypto.open_sealed(recovery_keys(recovery_key)[0], blob, aad("recovery-master-key", user_id),
                                "master key wrapped under the recovery key")
    if len(master) != crypto.KEY_BYTES:
        raise IntegrityError("integrity check failed: malformed master key")
    return master


def encode_recovery_key(recovery_key: bytes) -> str:
    """32 bytes and a 3-byte check, in base32 (RFC 4648, no padding), 14 groups of 4: easy to write down."""
    check = crypto.derive_key(recovery_key, "recovery-check")[:RECOVERY_CHECK_BYTES]
    text = base64.b32encode(recovery_key + check).decode("ascii")
    return "-".join(text[i:i + 4] for i in range(0, len(text), 4))


def decode_recovery_key(text: str) -> bytes | None:
    """The key a person typed back (spaces, dashes and case do not matter); None if it is not one."""
    compact = "".join(ch for ch in text.upper() if ch not in " -\t\r\n")
    if len(compact) != 56:
        return None
    try:
        raw = base64.b32decode(compact)
    except ValueError:
        return None
    key, check = raw[:crypto.KEY_BYTES], raw[crypto.KEY_BYTES:]
    if not crypto.ct_equal(crypto.derive_key(key, "recovery-check")[:RECOVERY_CHECK_BYTES], check):
        return None
    return key


def wrap_identity(master: bytes, ident: crypto.Identity, user_id: str) -> bytes:
    return crypto.seal(crypto.derive_key(master, "identity"), ident.private_bytes(), aad("identity", user_id))


def unwrap_identity(master: bytes, blob: bytes, user_id: str) -> crypto.Identity:
    raw = crypto.open_sealed(crypto.derive_key(master, "identity"), blob, aad("identity", user_id), "identity keys")
    return crypto.Identity.from_private_bytes(raw)


def name_hash_key(master: bytes) -> bytes:
    return crypto.derive_key(master, "name-hash")


def name_hash(key: bytes, parent_id: str, name: str) -> str:
    """Keyed hash of (parent, name) so the local index finds a path with one indexed query."""
    return crypto.keyed_hash(key, aad("name", parent_id, name)).hex()


# -- local records ------------------------------------------------------------------------------


def record_key_hash(master: bytes, ns: str, key: str) -> str:
    """Row key of a local record: a keyed hash, so the index file holds no plaintext key."""
    return crypto.keyed_hash(crypto.derive_key(master, "local-record-key"), aad("record-key", ns, key)).hex()


def seal_record(master: bytes, owner: str, ns: str, key_hash: str, value: bytes) -> bytes:
    return crypto.seal(crypto.derive_key(master, "local-record", ns.encode()), value,
                       aad("local-record", owner, ns, key_hash))


def open_record(master: bytes, owner: str, ns: str, key_hash: str, blob: bytes) -> bytes:
    return crypto.open_sealed(crypto.derive_key(master, "local-record", ns.encode()), blob,
                              aad("local-record", owner, ns, key_hash), "local record")


# -- account records (kept on the server, sealed, shared by the account's devices) ---------------


def seal_account_record(master: bytes, user_id: str, name: str, version: int, payload: bytes) -> bytes:
    """A small record of the account's own (its contact pins): padded, bound to account, name and version."""
    return crypto.seal(crypto.derive_key(master, "account-record", name.encode()), pad(payload),
                       aad("account-record", user_id, name, version))


def open_account_record(master: bytes, user_id: str, name: str, version: int, blob: bytes) -> bytes:
    return unpad(crypto.open_sealed(crypto.derive_key(master, "account-record", name.encode()), blob,
                                    aad("account-record", user_id, name, version), f"account record {name!r}"))


# -- share grants -------------------------------------------------------------------------------


@dataclass
class Grant:
    """What an owner hands a recipient: one folder's key, sealed to them and signed."""

    owner: str
    recipient: str
    node_id: str
    access: str
    name: str
    folder_key: bytes
    epoch: int = 0  # when the owner issued it (ns); recipients refuse an older grant than one they saw

    def statement(self, sealed: bytes) -> bytes:
        return aad("grant", self.owner, self.recipient, self.node_id, self.access, sealed)


def seal_grant(g: Grant, owner_identity: crypto.Identity, recipient_box_pub: bytes) -> bytes:
    """signature (64) || sealed box of the grant JSON; the signature covers who, what, access and the box."""
    raw = json.dumps({"o": g.owner, "r": g.recipient, "n": g.node_id, "a": g.access, "name": g.name,
                      "k": g.folder_key.hex(), "e": g.epoch or time.time_ns()}, sort_keys=True,
                     separators=(",", ":")).encode()
    sealed = crypto.seal_to(recipient_box_pub, pad(raw))
    return owner_identity.sign(g.statement(sealed)) + sealed


def open_grant(blob: bytes, owner: str, recipient: str, node_id: str, access: str, owner_sign_pub: bytes,
               identity: crypto.Identity) -> Grant:
    """Verify the owner's signature first, then open; every field must match what the server claims."""
    if len(blob) < 64 + 48:
        raise IntegrityError("integrity check failed: malformed share grant")
    sig, sealed = blob[:64], blob[64:]
    expected = Grant(owner, recipient, node_id, access, "", b"")
    crypto.verify_signature(owner_sign_pub, expected.statement(sealed), sig)
    try:
        d = json.loads(unpad(crypto.open_sealed_box(identity.box_secret, sealed)))
        g = Grant(str(d["o"]), str(d["r"]), str(d["n"]), str(d["a"]), str(d["name"]), bytes.fromhex(d["k"]),
                  int(d["e"]))
    except (ValueError, KeyError, TypeError) as e:
        raise IntegrityError("integrity check failed: malformed share grant") from e
    if (g.owner, g.recipient, g.node_id, g.access) != (owner, recipient, node_id, access) or \
            len(g.folder_key) != crypto.KEY_BYTES:
        raise IntegrityError("integrity check failed: the share grant does not match the share")
    return g


# -- public links -------------------------------------------------------------------------------


@dataclass
class LinkRecord:
    """What a link's key opens: enough to read one file, or one folder and what is under it, and
    nothing about the rest of the drive. ``key`` is the file's content key or the folder's key."""

    owner: str
    node_id: str
    name: str
    key: bytes
    file_id: bytes = b""  # files only
    kind: str = "file"  # "file" | "dir"


def seal_link(link_key: bytes, r: LinkRecord) -> bytes:
    d = {"n": r.name, "k": r.key.hex()}
    d.update({"f": r.file_id.hex()} if r.kind == "file" else {"t": "dir"})
    raw = json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return crypto.seal(link_key, pad(raw), aad("link", r.owner, r.node_id))


def open_link(link_key: bytes, owner: str, node_id: str, blob: bytes) -> LinkRecord:
    raw = crypto.open_sealed(link_key, blob, aad("link", owner, node_id), "link (wrong link key or password?)")
    bad = IntegrityError("integrity check failed: malformed link")
    try:
        d = json.loads(unpad(raw))
        if not isinstance(d, dict) or type(d.get("n")) is not str or type(d.get("k")) is not str:
            raise bad
        if d.get("t") == "dir" and "f" not in d:
            r = LinkRecord(owner, node_id, d["n"], bytes.fromhex(d["k"]), b"", "dir")
        elif "t" not in d and type(d.get("f")) is str:
            r = LinkRecord(owner, node_id, d["n"], bytes.fromhex(d["k"]), bytes.fromhex(d["f"]))
        else:
            raise bad
    except ValueError as e:
        raise bad from e
    if len(r.key) != crypto.KEY_BYTES or len(r.file_id) != (crypto.ID_BYTES if r.kind == "file" else 0):
        raise bad
    return r


# -- node metadata ------------------------------------------------------------------------------


SPECIAL_KINDS = ("fifo", "sock", "chr", "blk")  # attribute-only files (mknod): no content
MAX_XATTR_BYTES = 32 * 1024  # names and values of one node's extended attributes together
MAX_HARD_LINKS = 1000  # other names of one file (its link count is at most this + 1)


@dataclass
class NodeMeta:
    """What a node's encrypted ``meta`` blob holds. ``key`` is the folder key or file content key.

    The POSIX attributes are optional in the JSON (absent: the defaults here),
    so a meta written before them reads as before: ``uid``/``gid`` None mean
    the mounting user and their group on whichever machine reads it.
    """

    name: str
    kind: str  # "dir" | "file"
    key: bytes
    file_id: bytes = b""
    size: int = 0
    mtime_ns: int = 0
    mode: int = 0
    version: int = 0  # content version this meta was written with (files)
    rev: int = 0  # bumped on every rewrite: lets the index notice a replayed older blob
    props: dict[str, str] = field(default_factory=dict)  # WebDAV dead properties
    rekey: bool = False  # a share was revoked: the next version gets a fresh content key
    link: str | None = None  # a symbolic link's target (kind "file", no content)
    uid: int | None = None  # owner; None: the mounting user
    gid: int | None = None  # group; None: the mounting user's group
    ctime_ns: int = 0  # status change time; 0: the modification time
    atime_ns: int = 0  # access time as set by utimensat; 0: the modification time
    special: str | None = None  # one of SPECIAL_KINDS (kind "file", no content)
    rdev: int = 0  # a device node's device number
    xattrs: dict[str, bytes] = field(default_factory=dict)  # extended attributes (user.*)
    hard_links: list[str] = field(default_factory=list)  # node ids of this file's other names
    link_to: str | None = None  # a hard link: the file it names (``key`` is then hard_link_proof)
    nameless: bool = False  # a file only its hard links name (kept, hidden from listings)

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {"n": self.name, "k": self.kind, "key": self.key.hex(), "fid": self.file_id.hex(),
                                "s": self.size, "m": self.mtime_ns, "mode": self.mode, "v": self.version,
                                "r": self.rev, "p": self.props}
        if self.rekey:
            d["rk"] = True
        if self.link is not None:
            d["l"] = self.link
        optional: dict[str, object] = {"u": self.uid, "g": self.gid, "c": self.ctime_ns or None,
                                       "a": self.atime_ns or None, "t": self.special, "rd": self.rdev or None,
                                       "x": {k: base64.b64encode(v).decode() for k, v in self.xattrs.items()} or None,
                                       "hl": list(self.hard_links) or None, "lt": self.link_to,
                                       "nn": True if self.nameless else None}
        d.update((k, v) for k, v in optional.items() if v is not None)
        return d

    @classmethod
    def from_json(cls, d: dict[str, object]) -> NodeMeta:
        """Strict: exact types and ranges, so a co-writer cannot smuggle in odd values."""
        bad = IntegrityError("integrity check failed: malformed node metadata")

        def u63(k: str, default: int | None = None) -> int:
            v = d.get(k, default)
            if type(v) is not int or not 0 <= v < 1 << 63:
                raise bad
            return v

        def text(k: str) -> str:
            v = d.get(k)
            if type(v) is not str:
                raise bad
            return v

        def ident(k: str) -> int | None:
            v = d.get(k)
            if v is not None and (type(v) is not int or not 0 <= v < 1 << 32):
                raise bad
            return v

        rekey = d.get("rk", False)
        nameless = d.get("nn", False)
        if type(nameless) is not bool:
            raise bad
        link = d.get("l")
        special = d.get("t")
        if type(rekey) is not bool or (link is not None and (type(link) is not str or not link)):
            raise bad
        if special is not None and special not in SPECIAL_KINDS:
            raise bad
        props = d.get("p", {})
        if not isinstance(props, dict) or not all(type(k) is str and type(v) is str for k, v in props.items()):
            raise bad
        try:
            m = cls(name=text("n"), kind=text("k"), key=bytes.fromhex(text("key")),
                    file_id=bytes.fromhex(text("fid")), size=u63("s"), mtime_ns=u63("m"), mode=u63("mode"),
                    version=u63("v"), rev=u63("r"), props=dict(props), rekey=rekey, link=link,
                    uid=ident("u"), gid=ident("g"), ctime_ns=u63("c", 0), atime_ns=u63("a", 0),
                    special=None if special is None else str(special),
                    rdev=u63("rd", 0), xattrs=_xattrs(d.get("x", {}), bad), hard_links=_node_ids(d.get("hl", []), bad),
                    link_to=None if d.get("lt") is None else _node_ids([d.get("lt")], bad)[0], nameless=nameless)
        except ValueError:
            raise bad from None
        if m.kind not in ("dir", "file") or len(m.key) != crypto.KEY_BYTES:
            raise bad
        if len(m.file_id) != (crypto.ID_BYTES if m.kind == "file" else 0):
            raise bad
        if m.special is not None and (m.kind != "file" or m.link is not None):
            raise bad
        if (m.hard_links or m.link_to is not None or m.nameless) and m.kind != "file":
            raise bad
        if m.link_to is not None and (m.link is not None or m.special is not None or m.hard_links):
            raise bad
        return m


def _node_ids(ids: object, bad: IntegrityError) -> list[str]:
    """A list of distinct node ids (32 lowercase hex), at most MAX_HARD_LINKS."""
    if not isinstance(ids, list) or len(ids) > MAX_HARD_LINKS or len(set(map(str, ids))) != len(ids):
        raise bad
    for i in ids:
        if type(i) is not str or len(i) != 2 * crypto.ID_BYTES or i.strip("0123456789abcdef"):
            raise bad
    return list(ids)


def hard_link_proof(content_key: bytes, link_id: str) -> bytes:
    """What a hard link's meta holds in place of a key: proof that whoever made it could read the file
    (it takes the file's content key), which reveals nothing of that key."""
    return crypto.derive_key(content_key, "hard-link", bytes.fromhex(link_id))


def proves_hard_link(link_id: str, link: NodeMeta, target: NodeMeta) -> bool:
    """Whether a hard link counts (7.3): the file it names is not a link itself, lists it (its writer made
    it count), and the link's key is the proof that its maker could read the file."""
    return target.link_to is None and link_id in target.hard_links and \
        crypto.ct_equal(link.key, hard_link_proof(target.key, link_id))


def _xattrs(x: object, bad: IntegrityError) -> dict[str, bytes]:
    """The ``x`` object: names to base64 values, within MAX_XATTR_BYTES."""
    if not isinstance(x, dict) or not all(type(k) is str and k and type(v) is str for k, v in x.items()):
        raise bad
    try:
        out = {k: base64.b64decode(v, validate=True) for k, v in x.items()}
    except ValueError:
        raise bad from None
    if sum(len(k.encode("utf-8", "surrogateescape")) + len(v) for k, v in out.items()) > MAX_XATTR_BYTES:
        raise bad
    return out


def pad(payload: bytes, block: int = META_PAD_BLOCK) -> bytes:
    """4-byte length, payload, zeros up to a multiple of ``block``: hides exact name lengths."""
    body = struct.pack(">I", len(payload)) + payload
    return body + b"\0" * (-len(body) % block)


def unpad(padded: bytes) -> bytes:
    if len(padded) < 4:
        raise IntegrityError("integrity check failed: malformed padding")
    (n,) = struct.unpack(">I", padded[:4])
    if 4 + n > len(padded) or any(padded[4 + n:]):
        raise IntegrityError("integrity check failed: malformed padding")
    return padded[4:4 + n]


def meta_key(parent_key: bytes) -> bytes:
    """Key that wraps the children's meta under a folder key (or the root's under the master key)."""
    return crypto.derive_key(parent_key, "node-meta")


def seal_meta(parent_key: bytes, owner: str, parent_id: str, node_id: str, meta: NodeMeta) -> bytes:
    raw = json.dumps(meta.to_json(), separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    return crypto.seal(meta_key(parent_key), pad(raw), aad("node-meta", owner, parent_id, node_id))


def open_meta(parent_key: bytes, owner: str, parent_id: str, node_id: str, blob: bytes) -> NodeMeta:
    raw = unpad(crypto.open_sealed(meta_key(parent_key), blob, aad("node-meta", owner, parent_id, node_id),
                                   "file name and attributes"))
    try:
        d = json.loads(raw)
    except ValueError as e:
        raise IntegrityError("integrity check failed: malformed node metadata") from e
    if not isinstance(d, dict):
        raise IntegrityError("integrity check failed: malformed node metadata")
    return NodeMeta.from_json(d)


# -- manifests ------------------------------------------------------------------------------------


@dataclass
class Manifest:
    """One file version: which chunks, in which order, make which plaintext size."""

    node_id: str
    file_id: bytes
    version: int
    size: int
    chunks: list[bytes]  # SHA-256 of each chunk's ciphertext, in order
    commitment: bytes
    chunk_size: int = CHUNK_SIZE

    def chunk_ids(self) -> list[str]:
        return [c.hex() for c in self.chunks]

    def encode(self) -> bytes:
        if (len(bytes.fromhex(self.node_id)) != 16 or len(self.file_id) != 16 or len(self.commitment) != 32
                or any(len(c) != 32 for c in self.chunks)):
            raise ValueError("manifest field of the wrong length")
        head = _MANIFEST_HEAD.pack(MANIFEST_MAGIC, bytes.fromhex(self.node_id), self.file_id, self.version,
                                   self.size, self.chunk_size, len(self.chunks), self.commitment)
        return head + b"".join(self.chunks)

    @classmethod
    def decode(cls, raw: bytes) -> Manifest:
        if len(raw) < _MANIFEST_HEAD.size:
            raise IntegrityError("integrity check failed: malformed manifest")
        magic, node, fid, version, size, csize, n, commit = _MANIFEST_HEAD.unpack_from(raw)
        body = raw[_MANIFEST_HEAD.size:]
        if magic != MANIFEST_MAGIC or len(body) != 32 * n or csize <= 0:
            raise IntegrityError("integrity check failed: malformed manifest")
        return cls(node.hex(), fid, version, size, [body[i:i + 32] for i in range(0, len(body), 32)],
                   commit, csize)

    def check_shape(self) -> None:
        """The chunk count must be exactly what the size needs: no chunk dropped or added.

        Format version 1 has one chunk size: a manifest naming another (say 4 GiB
        chunks, or 1-byte chunks of a huge size) would only make a reader allocate
        what the server chose.
        """
        if self.chunk_size != CHUNK_SIZE:
            raise IntegrityError("integrity check failed: manifest names another chunk size")
        expected = -(-self.size // self.chunk_size)
        if len(self.chunks) != expected:
            raise IntegrityError("integrity check failed: manifest chunk count does not match size")


def manifest_key(content_key: bytes) -> bytes:
    return crypto.derive_key(content_key, "manifest")


def chunk_key(content_key: bytes) -> bytes:
    return crypto.derive_key(content_key, "chunk")


def seal_manifest(content_key: bytes, owner: str, m: Manifest) -> bytes:
    return crypto.seal(manifest_key(content_key), m.encode(), aad("manifest", owner, m.node_id, m.version))


def open_manifest(content_key: bytes, owner: str, node_id: str, version: int, file_id: bytes,
                  blob: bytes) -> Manifest:
    """Open and check a manifest against everything the caller already knows."""
    raw = crypto.open_sealed(manifest_key(content_key), blob, aad("manifest", owner, node_id, version), "manifest")
    m = Manifest.decode(raw)
    if (m.node_id != node_id or m.version != version or m.file_id != file_id
            or not crypto.ct_equal(m.commitment, crypto.key_commitment(content_key, file_id))):
        raise IntegrityError("integrity check failed: manifest does not belong to this file version")
    m.check_shape()
    return m


# -- chunks -------------------------------------------------------------------------------------


def seal_chunk(ckey: bytes, file_id: bytes, index: int, last: bool, plaintext: bytes) -> bytes:
    """``ckey`` is :func:`chunk_key` of the content key (derived once per file, not per chunk)."""
    return crypto.seal(ckey, plaintext, aad("chunk", file_id, index, last))


def open_chunk(ckey: bytes, file_id: bytes, index: int, last: bool, expected_id: bytes, blob: bytes,
               expected_len: int) -> bytes:
    if not crypto.ct_equal(bytes.fromhex(crypto.content_id(blob)), expected_id):
        raise IntegrityError(f"integrity check failed: chunk {index} is not the one the manifest names")
    pt = crypto.open_sealed(ckey, blob, aad("chunk", file_id, index, last), f"chunk {index}")
    if len(pt) != expected_len:
        raise IntegrityError(f"integrity check failed: chunk {index} has the wrong length")
    return pt
