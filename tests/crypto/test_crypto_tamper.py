"""Tamper tests: whatever a server or network changes, the client gets IntegrityError, never plaintext.

Every record is sealed here with random keys, then altered the ways an
attacker could: every single bit flipped, truncated, extended, re-versioned,
opened in another context (owner, parent, node, version, chunk index, last
flag, file id), swapped with another record, or rebuilt by a key holder with
a wrong shape. End-to-end versions of these attacks, against a real server,
are in tests/test_tamper.py.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megadrive import crypto
from megadrive import format as fmt
from megadrive.crypto import aad
from megadrive.errors import IntegrityError

OWNER = os.urandom(16).hex()
OTHER = os.urandom(16).hex()
SECRET_NAME = "payroll-2025-confidential.xlsx"


def flip(blob: bytes, bit: int) -> bytes:
    """``blob`` with bit ``bit`` inverted (bit 0 is the most significant bit of byte 0)."""
    b = bytearray(blob)
    b[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(b)


def new_id() -> str:
    return os.urandom(16).hex()


@dataclass
class World:
    """One account's records, freshly sealed under random keys."""

    kek: bytes
    master: bytes
    parent_id: str
    parent_key: bytes
    node_id: str
    meta: fmt.NodeMeta
    content_key: bytes
    file_id: bytes
    plaintext: bytes
    chunks: list[bytes]
    manifest: fmt.Manifest
    wrapped_master: bytes
    wrapped_identity: bytes
    meta_blob: bytes
    manifest_blob: bytes

    @property
    def ckey(self) -> bytes:
        return fmt.chunk_key(self.content_key)

    def open_meta(self, blob: bytes | None = None, *, key: bytes | None = None, owner: str = OWNER,
                  parent_id: str | None = None, node_id: str | None = None) -> fmt.NodeMeta:
        return fmt.open_meta(key or self.parent_key, owner, self.parent_id if parent_id is None else parent_id,
                             node_id or self.node_id, self.meta_blob if blob is None else blob)

    def open_manifest(self, blob: bytes | None = None, *, key: bytes | None = None, owner: str = OWNER,
                      node_id: str | None = None, version: int | None = None,
                      file_id: bytes | None = None) -> fmt.Manifest:
        return fmt.open_manifest(key or self.content_key, owner, node_id or self.node_id,
                                 self.manifest.version if version is None else version,
                                 self.file_id if file_id is None else file_id,
                                 self.manifest_blob if blob is None else blob)

    def chunk_len(self, i: int) -> int:
        return len(self.plaintext[i * fmt.CHUNK_SIZE:(i + 1) * fmt.CHUNK_SIZE])

    def open_chunk(self, i: int, blob: bytes | None = None, *, expected_id: bytes | None = None,
                   index: int | None = None, last: bool | None = None, file_id: bytes | None = None,
                   ckey: bytes | None = None, expected_len: int | None = None) -> bytes:
        idx = i if index is None else index
        n = len(self.manifest.chunks)
        return fmt.open_chunk(ckey or self.ckey, self.file_id if file_id is None else file_id, idx,
                              (idx == n - 1) if last is None else last,
                              self.manifest.chunks[i] if expected_id is None else expected_id,
                              self.chunks[i] if blob is None else blob,
                              self.chunk_len(i) if expected_len is None else expected_len)


def make_world(plaintext: bytes = b"attack at dawn\n", version: int = 3) -> World:
    kek, master = os.urandom(32), os.urandom(32)
    parent_id, parent_key, node_id = new_id(), os.urandom(32), new_id()
    content_key, file_id = os.urandom(32), os.urandom(16)
    ckey = fmt.chunk_key(content_key)
    pieces = [plaintext[i:i + fmt.CHUNK_SIZE] for i in range(0, len(plaintext), fmt.CHUNK_SIZE)]
    chunks = [fmt.seal_chunk(ckey, file_id, i, i == len(pieces) - 1, p) for i, p in enumerate(pieces)]
    manifest = fmt.Manifest(node_id, file_id, version, len(plaintext),
                            [bytes.fromhex(crypto.content_id(c)) for c in chunks],
                            crypto.key_commitment(content_key, file_id))
    meta = fmt.NodeMeta(name=SECRET_NAME, kind="file", key=content_key, file_id=file_id, size=len(plaintext),
                        mtime_ns=1_700_000_000_123_456_789, mode=0o600, version=version, rev=5)
    return World(kek=kek, master=master, parent_id=parent_id, parent_key=parent_key, node_id=node_id, meta=meta,
                 content_key=content_key, file_id=file_id, plaintext=plaintext, chunks=chunks, manifest=manifest,
                 wrapped_master=fmt.wrap_master(kek, master, OWNER),
                 wrapped_identity=fmt.wrap_identity(master, crypto.generate_identity(), OWNER),
                 meta_blob=fmt.seal_meta(parent_key, OWNER, parent_id, node_id, meta),
                 manifest_blob=fmt.seal_manifest(content_key, OWNER, manifest))


@pytest.fixture(scope="module")
def w() -> World:
    return make_world()


@pytest.fixture(scope="module")
def w3() -> World:
    """A three-chunk file: 2 MiB + 100 bytes."""
    return make_world(os.urandom(2 * fmt.CHUNK_SIZE + 100))


def test_untampered_records_open(w: World, w3: World) -> None:
    assert fmt.unwrap_master(w.kek, w.wrapped_master, OWNER) == w.master
    fmt.unwrap_identity(w.master, w.wrapped_identity, OWNER)
    assert w.open_meta() == w.meta
    assert w.open_manifest() == w.manifest
    assert w.open_chunk(0) == w.plaintext
    assert b"".join(w3.open_chunk(i) for i in range(3)) == w3.plaintext


# -- every bit, every length --------------------------------------------------------------------------

OPENERS: dict[str, tuple[Callable[[World], bytes], Callable[[World, bytes], object]]] = {
    "wrapped master": (lambda w: w.wrapped_master, lambda w, b: fmt.unwrap_master(w.kek, b, OWNER)),
    "wrapped identity": (lambda w: w.wrapped_identity, lambda w, b: fmt.unwrap_identity(w.master, b, OWNER)),
    "meta": (lambda w: w.meta_blob, lambda w, b: w.open_meta(b)),
    "manifest": (lambda w: w.manifest_blob, lambda w, b: w.open_manifest(b)),
    # the manifest names the chunk by hash: a changed chunk fails that check first
    "chunk": (lambda w: w.chunks[0], lambda w, b: w.open_chunk(0, b)),
    # and if the hash check were skipped, the AEAD tag alone still refuses it
    "chunk (hash check bypassed)": (
        lambda w: w.chunks[0],
        lambda w, b: w.open_chunk(0, b, expected_id=bytes.fromhex(crypto.content_id(b)))),
}


@pytest.mark.parametrize("what", list(OPENERS))
def test_every_single_bit_flip_is_refused(w: World, what: str) -> None:
    get, opener = OPENERS[what]
    blob = get(w)
    for bit in range(8 * len(blob)):
        with pytest.raises(IntegrityError):
            opener(w, flip(blob, bit))


@pytest.mark.parametrize("what", list(OPENERS))
def test_every_truncation_and_extension_is_refused(w: World, what: str) -> None:
    get, opener = OPENERS[what]
    blob = get(w)
    for n in range(len(blob)):
        with pytest.raises(IntegrityError):
            opener(w, blob[:n])
    for tail in (b"\x00", b"\x00" * 16, os.urandom(41)):
        with pytest.raises(IntegrityError):
            opener(w, blob + tail)


@pytest.mark.parametrize("what", list(OPENERS))
def test_other_format_versions_are_refused(w: World, what: str) -> None:
    get, opener = OPENERS[what]
    blob = get(w)
    for v in (0, 2, 0x7F, 0xFF):
        with pytest.raises(IntegrityError):
            opener(w, bytes([v]) + blob[1:])


@settings(max_examples=60, deadline=None)
@given(name=st.text(min_size=1, max_size=300), data=st.data())
def test_a_flipped_bit_anywhere_in_any_meta_is_refused(name: str, data: st.DataObject) -> None:
    key, parent, node = os.urandom(32), new_id(), new_id()
    meta = fmt.NodeMeta(name=name, kind="dir", key=os.urandom(32), mtime_ns=1)
    blob = fmt.seal_meta(key, OWNER, parent, node, meta)
    bit = data.draw(st.integers(min_value=0, max_value=8 * len(blob) - 1), label="bit")
    with pytest.raises(IntegrityError):
        fmt.open_meta(key, OWNER, parent, node, flip(blob, bit))


def test_errors_carry_no_plaintext(w: World) -> None:
    bad = flip(w.meta_blob, 8 * len(w.meta_blob) - 1)
    with pytest.raises(IntegrityError) as e:
        w.open_meta(bad)
    assert SECRET_NAME not in str(e.value) and w.content_key.hex() not in str(e.value)
    assert e.value.exit_code == 3


# -- right bytes, wrong context ------------------------------------------------------------------------


def test_wrapped_master_is_bound_to_kek_and_account(w: World) -> None:
    with pytest.raises(IntegrityError):
        fmt.unwrap_master(os.urandom(32), w.wrapped_master, OWNER)  # wrong password / salt / KDF params
    with pytest.raises(IntegrityError):
        fmt.unwrap_master(w.kek, w.wrapped_master, OTHER)  # another account's user id
    with pytest.raises(IntegrityError):  # a wrapped identity (same shape of blob) offered as the master key
        fmt.unwrap_master(crypto.derive_key(w.master, "identity"), w.wrapped_identity, OWNER)


def test_wrapped_master_must_hold_exactly_32_bytes(w: World) -> None:
    for n in (0, 16, 31, 33, 64):
        blob = crypto.seal(w.kek, os.urandom(n), aad("master-key", OWNER))
        with pytest.raises(IntegrityError):
            fmt.unwrap_master(w.kek, blob, OWNER)


def test_wrapped_identity_is_bound_to_master_and_account(w: World) -> None:
    with pytest.raises(IntegrityError):
        fmt.unwrap_identity(os.urandom(32), w.wrapped_identity, OWNER)
    with pytest.raises(IntegrityError):
        fmt.unwrap_identity(w.master, w.wrapped_identity, OTHER)
    short = crypto.seal(crypto.derive_key(w.master, "identity"), os.urandom(63), aad("identity", OWNER))
    with pytest.raises(IntegrityError):
        fmt.unwrap_identity(w.master, short, OWNER)


def test_meta_is_bound_to_key_owner_parent_and_node(w: World) -> None:
    for kwargs in ({"key": os.urandom(32)},  # another folder's key
                   {"key": w.content_key},  # a file's content key used as a folder key
                   {"owner": OTHER},  # another account
                   {"parent_id": new_id()},  # moved under another folder by the server
                   {"parent_id": ""},  # presented as a root
                   {"node_id": new_id()}):  # another node's name and key
        with pytest.raises(IntegrityError):
            w.open_meta(**kwargs)  # type: ignore[arg-type]


def test_metas_cannot_be_swapped_between_siblings(w: World) -> None:
    """Two files in one folder: the server hands A's meta (name, key) out as B's."""
    b_id = new_id()
    b_blob = fmt.seal_meta(w.parent_key, OWNER, w.parent_id, b_id, replace(w.meta, name="b.txt"))
    with pytest.raises(IntegrityError):
        w.open_meta(b_blob)  # B's blob served for A
    with pytest.raises(IntegrityError):
        w.open_meta(w.meta_blob, node_id=b_id)  # A's blob served for B


def test_root_meta_is_bound_to_the_master_key_and_empty_parent(w: World) -> None:
    root_id = new_id()
    root = fmt.NodeMeta(name="", kind="dir", key=os.urandom(32))
    blob = fmt.seal_meta(w.master, OWNER, "", root_id, root)
    assert fmt.open_meta(w.master, OWNER, "", root_id, blob) == root
    for key, parent, node in ((os.urandom(32), "", root_id), (w.master, new_id(), root_id),
                              (w.master, "", new_id())):
        with pytest.raises(IntegrityError):
            fmt.open_meta(key, OWNER, parent, node, blob)


def test_manifest_is_bound_to_key_owner_node_version_and_file(w: World) -> None:
    for kwargs in ({"key": os.urandom(32)}, {"owner": OTHER}, {"node_id": new_id()},
                   {"version": w.manifest.version - 1}, {"version": w.manifest.version + 1},
                   {"file_id": os.urandom(16)}):
        with pytest.raises(IntegrityError):
            w.open_manifest(**kwargs)  # type: ignore[arg-type]


def test_older_manifest_is_refused_for_the_newer_version(w: World) -> None:
    """Rollback of one file's content: the server serves version 2's manifest when meta says version 3."""
    old = replace(w.manifest, version=2)
    with pytest.raises(IntegrityError):
        w.open_manifest(fmt.seal_manifest(w.content_key, OWNER, old), version=3)


def test_manifests_cannot_be_swapped_between_files() -> None:
    a, b = make_world(b"file a"), make_world(b"file b")
    with pytest.raises(IntegrityError):
        a.open_manifest(b.manifest_blob)
    # even if two nodes shared a content key and file id (a copy), each manifest names its node
    b_same_key = fmt.seal_manifest(a.content_key, OWNER, replace(a.manifest, node_id=b.node_id))
    with pytest.raises(IntegrityError):
        a.open_manifest(b_same_key)


@pytest.mark.parametrize("field", ["index", "last", "file_id", "ckey", "expected_len"])
def test_chunk_is_bound_to_file_index_last_flag_and_length(w3: World, field: str) -> None:
    wrong: dict[str, object] = {"index": 1, "last": True, "file_id": os.urandom(16), "ckey": os.urandom(32),
                                "expected_len": w3.chunk_len(0) - 1}
    blob = w3.chunks[0]
    with pytest.raises(IntegrityError):
        # the id check passes (it is the genuine blob): only the AEAD context or length can refuse it
        w3.open_chunk(0, blob, **{field: wrong[field]})  # type: ignore[arg-type]


def test_chunks_cannot_be_reordered(w3: World) -> None:
    with pytest.raises(IntegrityError):
        w3.open_chunk(0, w3.chunks[1])  # hash check
    with pytest.raises(IntegrityError):
        # a manifest naming them in the wrong order could only come from a key holder; the index still refuses
        w3.open_chunk(0, w3.chunks[1], expected_id=w3.manifest.chunks[1], expected_len=fmt.CHUNK_SIZE)


def test_truncation_at_a_chunk_boundary_is_refused(w3: World) -> None:
    """Dropping the real last chunk and calling chunk 1 the last one fails: it was sealed with last=False."""
    with pytest.raises(IntegrityError):
        w3.open_chunk(1, last=True)


def test_chunks_cannot_be_spliced_between_files() -> None:
    a, b = make_world(b"A" * 100), make_world(b"B" * 100)
    with pytest.raises(IntegrityError):
        a.open_chunk(0, b.chunks[0])
    with pytest.raises(IntegrityError):
        a.open_chunk(0, b.chunks[0], expected_id=b.manifest.chunks[0])


def test_records_cannot_be_confused_across_purposes() -> None:
    """Same key, same bytes: a blob sealed for one purpose never opens as another."""
    k, node = os.urandom(32), new_id()
    meta_aad, manifest_aad = aad("node-meta", OWNER, "", node), aad("manifest", OWNER, node, 0)
    blob = crypto.seal(k, b"payload", meta_aad)
    for other in (manifest_aad, aad("chunk", b"", 0, True), aad("master-key", OWNER), aad("identity", OWNER), b""):
        with pytest.raises(IntegrityError):
            crypto.open_sealed(k, blob, other)


def test_aad_fields_are_unambiguous() -> None:
    assert aad("p", "ab", "c") != aad("p", "a", "bc")
    assert aad("p", "ab") != aad("p", "a", "b")
    assert aad("p", "") != aad("p")
    assert aad("pa", "b") != aad("p", "ab")
    assert aad("chunk", b"f", 0, True) != aad("chunk", b"f", 0, False)
    assert aad("manifest", "o", "n", 1) != aad("manifest", "o", "n", 2)


@pytest.mark.parametrize("n", [-1, -(2**63), 2**64, 2**64 + 1, 10**30])
def test_aad_refuses_integers_outside_u64(n: int) -> None:
    """Python ints are unbounded: out of range they must not wrap around, be truncated, or crash oddly."""
    with pytest.raises(IntegrityError):
        aad("manifest", OWNER, new_id(), n)
    with pytest.raises(IntegrityError):
        aad("chunk", os.urandom(16), n, True)


def test_aad_accepts_the_u64_bounds_and_keeps_bools_one_byte() -> None:
    head = b"MGDR\x01" + struct.pack(">I", 1) + b"p"
    assert aad("p", 0) == head + struct.pack(">I", 8) + bytes(8)
    assert aad("p", 2**64 - 1) == head + struct.pack(">I", 8) + b"\xff" * 8
    assert aad("p", True) == head + struct.pack(">I", 1) + b"\x01"
    assert aad("p", False) == head + struct.pack(">I", 1) + b"\x00"
    assert aad("p", 1) != aad("p", True) and aad("p", 0) != aad("p", False)


def test_aad_encodes_lone_surrogates_as_themselves() -> None:
    """surrogatepass: U+DCFF is the 3 bytes ed b3 bf, never U+FFFD or nothing; so no two strings collide."""
    head = b"MGDR\x01" + struct.pack(">I", 1) + b"p"
    assert aad("p", "\udcff") == head + struct.pack(">I", 3) + b"\xed\xb3\xbf"
    assert len({aad("p", s) for s in ("\udcff", "\ufffd", "", "?", "\\udcff", "\xff")}) == 6


def test_openers_refuse_versions_and_indexes_outside_u64(w: World) -> None:
    for version in (-1, 2**64):
        with pytest.raises(IntegrityError):
            w.open_manifest(version=version)
    for index in (-1, 2**64):
        with pytest.raises(IntegrityError):
            w.open_chunk(0, index=index)


# -- a key holder's malformed records (a buggy or hostile writer) ---------------------------------------


def sealed_manifest(w: World, **changes: object) -> bytes:
    return fmt.seal_manifest(w.content_key, OWNER, replace(w.manifest, **changes))  # type: ignore[arg-type]


def test_manifest_with_a_dropped_or_added_chunk_is_refused(w3: World) -> None:
    ids = w3.manifest.chunks
    for chunks in (ids[:-1], ids[1:], ids + [ids[-1]], [], ids + [os.urandom(32)]):
        m = replace(w3.manifest, chunks=chunks)
        with pytest.raises(IntegrityError):
            m.check_shape()
        with pytest.raises(IntegrityError):
            w3.open_manifest(sealed_manifest(w3, chunks=chunks))


def test_manifest_with_a_size_that_needs_other_chunks_is_refused(w3: World) -> None:
    for size in (0, 2 * fmt.CHUNK_SIZE, 3 * fmt.CHUNK_SIZE + 1):
        with pytest.raises(IntegrityError):
            w3.open_manifest(sealed_manifest(w3, size=size))


def test_manifest_with_another_chunk_size_is_refused() -> None:
    """A sealed manifest claiming 1-byte or 4 GiB chunks must not steer what a reader allocates."""
    m = fmt.Manifest("00" * 16, bytes(16), 1, 2**40, [bytes(32)], bytes(32), chunk_size=2**40)
    with pytest.raises(IntegrityError, match="chunk size"):
        m.check_shape()
    m = fmt.Manifest("00" * 16, bytes(16), 1, 3, [bytes(32)] * 3, bytes(32), chunk_size=1)
    with pytest.raises(IntegrityError, match="chunk size"):
        m.check_shape()


def test_check_shape_boundaries() -> None:
    def m(size: int, n: int) -> fmt.Manifest:
        return fmt.Manifest("00" * 16, bytes(16), 1, size, [bytes(32)] * n, bytes(32))

    for size, n in ((0, 0), (1, 1), (fmt.CHUNK_SIZE, 1), (fmt.CHUNK_SIZE + 1, 2), (5 * fmt.CHUNK_SIZE, 5)):
        m(size, n).check_shape()
    for size, n in ((0, 1), (1, 0), (fmt.CHUNK_SIZE, 2), (fmt.CHUNK_SIZE + 1, 1)):
        with pytest.raises(IntegrityError):
            m(size, n).check_shape()


def test_manifest_with_a_wrong_commitment_is_refused(w: World) -> None:
    for commitment in (bytes(32), os.urandom(32), crypto.key_commitment(os.urandom(32), w.file_id),
                       crypto.key_commitment(w.content_key, os.urandom(16))):
        with pytest.raises(IntegrityError):
            w.open_manifest(sealed_manifest(w, commitment=commitment))


def test_manifest_whose_inner_fields_contradict_its_context_is_refused(w: World) -> None:
    """The associated data is right but the header inside names another node, file or version."""
    m = w.manifest
    for inner in (replace(m, node_id=new_id()), replace(m, file_id=os.urandom(16)), replace(m, version=m.version + 1)):
        context = aad("manifest", OWNER, m.node_id, m.version)  # what the reader expects
        blob = crypto.seal(fmt.manifest_key(w.content_key), inner.encode(), context)
        with pytest.raises(IntegrityError):
            w.open_manifest(blob)


def test_malformed_manifest_bytes_are_refused() -> None:
    good = fmt.Manifest("ab" * 16, bytes(16), 1, 10, [bytes(32)], bytes(32)).encode()
    assert fmt.Manifest.decode(good).size == 10
    bad = [b"", good[:91], good[:-1], good + b"\0", b"XXXX" + good[4:],
           good[:52] + (0).to_bytes(4, "big") + good[56:],  # chunk size 0
           good[:56] + (2).to_bytes(4, "big") + good[60:]]  # count says 2, body has 1
    for raw in bad:
        with pytest.raises(IntegrityError):
            fmt.Manifest.decode(raw)


GOOD_FILE: dict[str, object] = {"n": "x", "k": "file", "key": "00" * 32, "fid": "11" * 16, "s": 10,
                                 "m": 1_700_000_000_000_000_000, "mode": 0o644, "v": 1, "r": 1, "p": {"a": "b"}}
GOOD_DIR: dict[str, object] = {**GOOD_FILE, "k": "dir", "fid": "", "s": 0, "v": 0}
INT_FIELDS = {"s": "size", "m": "mtime_ns", "mode": "mode", "v": "version", "r": "rev"}
class _Missing:
    """A key left out of the meta (its repr is stable, so test ids are the same in every process)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


def variant(base: dict[str, object], key: str, value: object) -> dict[str, object]:
    d = dict(base)
    if value is MISSING:
        del d[key]
    else:
        d[key] = value
    return d


def test_well_formed_meta_json_is_accepted() -> None:
    assert fmt.NodeMeta.from_json(GOOD_FILE).file_id == b"\x11" * 16
    assert fmt.NodeMeta.from_json(GOOD_DIR).file_id == b""
    assert fmt.NodeMeta.from_json(variant(GOOD_DIR, "p", MISSING)).props == {}  # "p" may be absent
    assert fmt.NodeMeta.from_json({**GOOD_FILE, "future": [1, 2]}).name == "x"  # unknown keys are ignored
    for k, attr in INT_FIELDS.items():
        for n in (0, 2**63 - 1):
            assert getattr(fmt.NodeMeta.from_json(variant(GOOD_FILE, k, n)), attr) == n


BAD_PROPS: tuple[object, ...] = ([], "x", None, 0, {"a": 1}, {"a": None}, {"a": ["b"]}, {"a": {"b": "c"}}, {1: "x"},
                                {None: "x"}, {"a": b"b"})
STRICT_REJECTS: list[tuple[str, dict[str, object]]] = [
    *[(f"{k}={v!r}", variant(GOOD_FILE, k, v)) for k in INT_FIELDS
      for v in (True, False, 1.0, 0.0, float("nan"), -1, 2**63, 2**64, "1", None, [1], MISSING)],
    *[(f"n={v!r}", variant(GOOD_FILE, "n", v)) for v in (1, None, ["x"], b"x", MISSING)],
    *[(f"k={v!r}", variant(GOOD_FILE, "k", v)) for v in ("link", "", "DIR", "File", 1, None, MISSING)],
    *[(f"key={v!r}", variant(GOOD_FILE, "key", v))
      for v in ("00" * 31, "00" * 33, "", "zz" * 32, "0" * 63, 0, None, MISSING)],
    *[(f"file-fid={v!r}", variant(GOOD_FILE, "fid", v))
      for v in ("", "11" * 15, "11" * 17, "11" * 32, "zz" * 16, None, 0, MISSING)],
    *[(f"dir-fid={v!r}", variant(GOOD_DIR, "fid", v)) for v in ("11" * 16, "00", None, MISSING)],
    *[(f"p={v!r}", variant(GOOD_FILE, "p", v)) for v in BAD_PROPS],
]


@pytest.mark.parametrize("d", [d for _, d in STRICT_REJECTS], ids=[i for i, _ in STRICT_REJECTS])
def test_strict_meta_parsing_rejects_wrong_types_ranges_and_lengths(d: dict[str, object]) -> None:
    """Exact types (a bool or a float is not an int), [0, 2**63), 16-byte fid for files only, props str -> str."""
    with pytest.raises(IntegrityError):
        fmt.NodeMeta.from_json(d)


def seal_raw_meta(key: bytes, parent: str, node: str, payload: bytes) -> bytes:
    return crypto.seal(fmt.meta_key(key), fmt.pad(payload), aad("node-meta", OWNER, parent, node))


def json_with(base: dict[str, object], key: str, literal: str) -> bytes:
    """``base`` as JSON with ``key``'s value replaced by a raw JSON literal (true, 1.0, 1e3, NaN, ...)."""
    return json.dumps({**base, key: "@@"}).replace('"@@"', literal).encode()


@pytest.mark.parametrize("payload", [
    b"not json", b"[]", b"null", b'"string"', b"{}", b"", b"\xff\xfe",
    json.dumps(variant(GOOD_FILE, "k", "link")).encode(),
    json.dumps(variant(GOOD_DIR, "key", "00" * 31)).encode(),
    json.dumps(variant(GOOD_FILE, "s", -1)).encode(),
    json.dumps(variant(GOOD_FILE, "key", "zz" * 32)).encode(),
    json.dumps(variant(GOOD_FILE, "s", "many")).encode(),
    json.dumps(variant(GOOD_FILE, "fid", "")).encode(),  # a file without a file id
    json.dumps(variant(GOOD_DIR, "fid", "11" * 16)).encode(),  # a folder with one
    json.dumps(variant(GOOD_FILE, "p", {"a": 1})).encode(),
    json_with(GOOD_FILE, "s", "true"), json_with(GOOD_FILE, "v", "false"), json_with(GOOD_FILE, "s", "1.0"),
    json_with(GOOD_FILE, "s", "1e3"), json_with(GOOD_FILE, "m", "NaN"), json_with(GOOD_FILE, "r", "Infinity"),
    json_with(GOOD_FILE, "s", "9223372036854775808"), json_with(GOOD_FILE, "mode", "-0.0"),
], ids=lambda p: p.decode("utf-8", "replace")[:60])
def test_malformed_meta_plaintext_is_refused(payload: bytes) -> None:
    key, parent, node = os.urandom(32), new_id(), new_id()
    with pytest.raises(IntegrityError):
        fmt.open_meta(key, OWNER, parent, node, seal_raw_meta(key, parent, node, payload))


def test_well_formed_raw_meta_plaintext_opens() -> None:
    """The refusals above are for the reason given: the same JSON with good values opens."""
    key, parent, node = os.urandom(32), new_id(), new_id()
    for good in (GOOD_FILE, GOOD_DIR):
        m = fmt.open_meta(key, OWNER, parent, node, seal_raw_meta(key, parent, node, json.dumps(good).encode()))
        assert m.kind == good["k"]


# -- a writer's own mistakes: Manifest.encode refuses to build a malformed manifest ---------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("node_id", "00" * 15), ("node_id", "00" * 17), ("node_id", ""), ("node_id", "zz" * 16),
    ("file_id", bytes(15)), ("file_id", bytes(17)), ("file_id", b""),
    ("commitment", bytes(31)), ("commitment", bytes(33)), ("commitment", b""),
    ("chunks", [bytes(32), bytes(31)]), ("chunks", [bytes(33)]), ("chunks", [b""]), ("chunks", [bytes(64)]),
])
def test_manifest_encode_refuses_fields_of_the_wrong_length(w: World, field: str, value: object) -> None:
    """Without the check, struct would pad a short id with zeros (or cut a long one) and seal something else."""
    bad = replace(w.manifest, **{field: value})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        bad.encode()
    with pytest.raises(ValueError):
        fmt.seal_manifest(w.content_key, OWNER, bad)


@pytest.mark.parametrize(("field", "value"), [("version", -1), ("version", 2**64), ("size", -1), ("size", 2**64),
                                              ("chunk_size", -1), ("chunk_size", 2**32)])
def test_manifest_encode_refuses_integers_out_of_range(w: World, field: str, value: int) -> None:
    """Out-of-range integers never encode either (today as struct.error, not ValueError)."""
    with pytest.raises((ValueError, struct.error)):
        replace(w.manifest, **{field: value}).encode()  # type: ignore[arg-type]


def test_bad_padding_inside_a_valid_seal_is_refused() -> None:
    key, parent, node = os.urandom(32), new_id(), new_id()
    body = json.dumps(fmt.NodeMeta(name="x", kind="dir", key=bytes(32)).to_json()).encode()
    padded = fmt.pad(body)
    for bad in (padded[:-1] + b"\x01",  # non-zero padding byte
                (len(body) + 1000).to_bytes(4, "big") + padded[4:],  # length beyond the buffer
                b"\x00\x00\x00"):  # shorter than the length field
        blob = crypto.seal(fmt.meta_key(key), bad, aad("node-meta", OWNER, parent, node))
        with pytest.raises(IntegrityError):
            fmt.open_meta(key, OWNER, parent, node, blob)


def test_link_records_are_bound_to_their_node_and_shape() -> None:
    """7.8: a folder link's record holds its key and no file id; a file link's both. Either is bound to
    owner and node; a record that names both shapes, or neither, is refused."""
    key, folder_key, node = crypto.random_key(), crypto.random_key(), new_id()
    folder = fmt.LinkRecord(OWNER, node, "Photos", folder_key, kind="dir")
    got = fmt.open_link(key, OWNER, node, fmt.seal_link(key, folder))
    assert (got.kind, got.key, got.file_id, got.name) == ("dir", folder_key, b"", "Photos")
    file = fmt.LinkRecord(OWNER, node, "a.txt", folder_key, os.urandom(16))
    assert fmt.open_link(key, OWNER, node, fmt.seal_link(key, file)) == file
    for owner, nid in ((OTHER, node), (OWNER, new_id())):
        with pytest.raises(IntegrityError):
            fmt.open_link(key, owner, nid, fmt.seal_link(key, folder))
    for d in ({"f": "00" * 16, "k": folder_key.hex(), "n": "x", "t": "dir"},  # both
              {"k": folder_key.hex(), "n": "x"},  # neither
              {"k": folder_key.hex(), "n": "x", "t": "file"},
              {"k": folder_key.hex(), "n": "x", "t": "dir", "f": None},
              {"k": folder_key.hex()[:-2], "n": "x", "t": "dir"},
              {"k": folder_key.hex(), "n": 7, "t": "dir"},
              ["not", "an", "object"]):
        blob = crypto.seal(key, fmt.pad(json.dumps(d).encode()), aad("link", OWNER, node))
        with pytest.raises(IntegrityError, match="malformed link"):
            fmt.open_link(key, OWNER, node, blob)
