"""Property tests (hypothesis): round trips for arbitrary inputs, and what padding hides.

Round trips: any name (arbitrary Unicode text), any attributes and sizes,
any padding payload, any manifest, any chunk. Injectivity: different
contexts never produce the same associated data or name hash.
"""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megadrive import crypto
from megadrive import format as fmt
from megadrive.crypto import aad
from megadrive.errors import IntegrityError, InvalidPath
from megadrive.names import MAX_NAME_BYTES, check_name

OWNER = os.urandom(16).hex()
U64 = st.integers(min_value=0, max_value=2**63 - 1)
hex_ids = st.binary(min_size=16, max_size=16).map(bytes.hex)

metas = st.sampled_from(["dir", "file"]).flatmap(lambda kind: st.builds(
    fmt.NodeMeta,
    name=st.text(max_size=300),
    kind=st.just(kind),
    key=st.binary(min_size=32, max_size=32),
    file_id=st.binary(min_size=16, max_size=16) if kind == "file" else st.just(b""),  # strict: 16 bytes or none
    size=U64, mtime_ns=U64, mode=st.integers(min_value=0, max_value=0o177777), version=U64, rev=U64,
    props=st.dictionaries(st.text(max_size=30), st.text(max_size=60), max_size=4),
    uid=st.one_of(st.none(), st.integers(0, 2**32 - 1)), gid=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    ctime_ns=U64, atime_ns=U64,
    special=st.sampled_from([None, *fmt.SPECIAL_KINDS]) if kind == "file" else st.just(None),
    rdev=U64, xattrs=st.dictionaries(st.text(min_size=1, max_size=30), st.binary(max_size=100), max_size=4),
))


@settings(max_examples=200, deadline=None)
@given(meta=metas, parent=st.one_of(st.just(""), hex_ids), node=hex_ids)
def test_meta_round_trip(meta: fmt.NodeMeta, parent: str, node: str) -> None:
    key = os.urandom(32)
    blob = fmt.seal_meta(key, OWNER, parent, node, meta)
    assert fmt.open_meta(key, OWNER, parent, node, blob) == meta
    assert (len(blob) - crypto.BLOB_OVERHEAD) % fmt.META_PAD_BLOCK == 0


@given(payload=st.binary(max_size=2000), block=st.integers(min_value=1, max_value=1024))
def test_pad_unpad_round_trip(payload: bytes, block: int) -> None:
    padded = fmt.pad(payload, block)
    assert len(padded) % block == 0
    assert len(padded) - block < 4 + len(payload) <= len(padded)
    assert fmt.unpad(padded) == payload


@given(padded=st.binary(max_size=300))
def test_unpad_accepts_only_canonical_padding(padded: bytes) -> None:
    try:
        payload = fmt.unpad(padded)
    except IntegrityError:
        return
    assert padded == len(payload).to_bytes(4, "big") + payload + bytes(len(padded) - 4 - len(payload))


@given(node=hex_ids, file_id=st.binary(min_size=16, max_size=16), version=U64,
       chunk_size=st.integers(min_value=1, max_value=2**32 - 1),
       chunks=st.lists(st.binary(min_size=32, max_size=32), max_size=20),
       commitment=st.binary(min_size=32, max_size=32))
def test_manifest_encode_decode_round_trip(node: str, file_id: bytes, version: int, chunk_size: int,
                                           chunks: list[bytes], commitment: bytes) -> None:
    size = len(chunks) * chunk_size  # any size with this chunk count would do; the codec does not judge
    m = fmt.Manifest(node, file_id, version, size, chunks, commitment, chunk_size)
    raw = m.encode()
    assert len(raw) == 92 + 32 * len(chunks)
    assert fmt.Manifest.decode(raw) == m


@settings(deadline=None)
@given(size=st.integers(min_value=0, max_value=2**40), version=st.integers(min_value=1, max_value=2**40))
def test_sealed_manifest_round_trip_for_any_size(size: int, version: int) -> None:
    key, file_id, node = os.urandom(32), os.urandom(16), os.urandom(16).hex()
    n = -(-size // fmt.CHUNK_SIZE)
    m = fmt.Manifest(node, file_id, version, size, [os.urandom(32)] * min(n, 3), crypto.key_commitment(key, file_id))
    if n > 3:  # keep the example small: a big size with its chunk count, ids repeated
        m.chunks = m.chunks * (n // 3) + m.chunks[: n % 3]
    blob = fmt.seal_manifest(key, OWNER, m)
    assert fmt.open_manifest(key, OWNER, node, version, file_id, blob) == m


@settings(deadline=None)
@given(plaintext=st.binary(max_size=5000), index=st.integers(min_value=0, max_value=2**40), last=st.booleans())
def test_chunk_round_trip(plaintext: bytes, index: int, last: bool) -> None:
    ckey, file_id = fmt.chunk_key(os.urandom(32)), os.urandom(16)
    blob = fmt.seal_chunk(ckey, file_id, index, last, plaintext)
    assert len(blob) == len(plaintext) + crypto.BLOB_OVERHEAD
    expected_id = bytes.fromhex(crypto.content_id(blob))
    assert fmt.open_chunk(ckey, file_id, index, last, expected_id, blob, len(plaintext)) == plaintext


fields = st.lists(st.one_of(st.binary(max_size=20), st.integers(min_value=0, max_value=2**64 - 1)), max_size=4)


@given(p1=st.sampled_from(["a", "ab", "node-meta"]), f1=fields, p2=st.sampled_from(["a", "ab", "node-meta"]),
       f2=fields)
def test_aad_is_injective(p1: str, f1: list[bytes | int], p2: str, f2: list[bytes | int]) -> None:
    """Within one schema of field types (each purpose has a fixed one), different inputs never collide."""
    norm = lambda fs: [f.to_bytes(8, "big") if isinstance(f, int) else f for f in fs]  # noqa: E731
    if (p1, norm(f1)) != (p2, norm(f2)):
        assert aad(p1, *f1) != aad(p2, *f2)


@given(a=st.tuples(hex_ids, st.text(min_size=1, max_size=50)), b=st.tuples(hex_ids, st.text(min_size=1, max_size=50)))
def test_name_hash_distinguishes_parent_and_name(a: tuple[str, str], b: tuple[str, str]) -> None:
    key = bytes(32)
    assert (fmt.name_hash(key, *a) == fmt.name_hash(key, *b)) == (a == b)


def test_name_hash_depends_on_the_account_key() -> None:
    parent = os.urandom(16).hex()
    assert fmt.name_hash(fmt.name_hash_key(os.urandom(32)), parent, "x") != \
        fmt.name_hash(fmt.name_hash_key(os.urandom(32)), parent, "x")


# -- what the padding hides -------------------------------------------------------------------------------


def meta_blob_size(name: str, kind: str = "file", **attrs: int) -> int:
    """A meta blob's size for realistic attributes: a 100 GB file, version and revision in the thousands."""
    v = {"size": 100_000_000_000, "mtime_ns": 1_700_000_000_123_456_789, "mode": 0o100644, "version": 7_000,
         "rev": 9_000, **attrs}
    m = fmt.NodeMeta(name=name, kind=kind, key=os.urandom(32), file_id=os.urandom(16) if kind == "file" else b"",
                     size=v["size"], mtime_ns=v["mtime_ns"], mode=v["mode"], version=v["version"], rev=v["rev"])
    return len(fmt.seal_meta(os.urandom(32), OWNER, os.urandom(16).hex(), os.urandom(16).hex(), m))


ONE_BLOCK = crypto.BLOB_OVERHEAD + fmt.META_PAD_BLOCK  # 553


def test_meta_size_moves_in_steps_of_the_pad_block() -> None:
    """The blob's length is 41 + a multiple of 512: only the name's 512-byte bucket shows, not its length."""
    sizes = {n: meta_blob_size("x" * n) for n in range(0, 1200, 7)}
    assert all((s - crypto.BLOB_OVERHEAD) % fmt.META_PAD_BLOCK == 0 for s in sizes.values())
    assert set(sizes.values()) == {ONE_BLOCK, ONE_BLOCK + 512, ONE_BLOCK + 1024}
    assert meta_blob_size("a") == meta_blob_size("a" * 20)  # short names all look the same


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_names_of_1_and_100_characters_give_the_same_blob_size(kind: str) -> None:
    assert meta_blob_size("a", kind) == meta_blob_size("a" * 100, kind) == ONE_BLOCK


@pytest.mark.parametrize("kind", ["file", "dir"])
@pytest.mark.parametrize("char", ["a", "\u00e9", "\u65e5", "\U0001f511"])  # 1, 2, 3 and 4 UTF-8 bytes
def test_every_name_the_drive_allows_gives_one_blob_size(kind: str, char: str) -> None:
    """Up to MAX_NAME_BYTES (255) of UTF-8, with no character JSON escapes, a name never leaves the first block:
    the server cannot tell a 1-byte name from a 255-byte one."""
    longest = char * (MAX_NAME_BYTES // len(char.encode()))
    check_name(longest)
    for n in range(1, len(longest) + 1):
        assert meta_blob_size(longest[:n], kind) == ONE_BLOCK


def test_what_still_moves_a_meta_to_the_next_block() -> None:
    """Documented in THREAT_MODEL.md: escaped characters, WebDAV properties, absurd attribute values."""
    assert meta_blob_size("\x01" * 60) > ONE_BLOCK  # each control character is 6 bytes of JSON ("\u0001")
    big = 2**63 - 1  # the largest value from_json accepts
    assert meta_blob_size("a" * MAX_NAME_BYTES, size=big, version=big, rev=big) == ONE_BLOCK  # still fits
    assert meta_blob_size("a" * MAX_NAME_BYTES, size=big, mtime_ns=big, mode=big, version=big, rev=big) > ONE_BLOCK
    m = fmt.NodeMeta(name="a", kind="dir", key=bytes(32), props={"{DAV:}displayname": "x" * 400})
    assert len(fmt.seal_meta(bytes(32), OWNER, "", os.urandom(16).hex(), m)) > ONE_BLOCK  # WebDAV dead properties


@settings(max_examples=50, deadline=None)
@given(name=st.text(min_size=1, max_size=40))
def test_short_names_of_any_script_share_one_size(name: str) -> None:
    """Up to 40 characters of any script, even all escaped by JSON (at most 240 bytes): one size."""
    assert meta_blob_size(name) == ONE_BLOCK


# -- names that are not valid Unicode ------------------------------------------------------------------------

SURROGATE_NAMES = ["bad\udcff.txt", "\ud800", "\udc80\udc81", "ok\ud83d"]  # lone surrogates (surrogateescape)


@pytest.mark.parametrize("name", SURROGATE_NAMES)
def test_the_drive_refuses_names_that_are_not_valid_unicode(name: str) -> None:
    """Linux file names that are not UTF-8 reach Python as lone surrogates: a typed error, before any sealing."""
    with pytest.raises(InvalidPath, match="UTF-8"):
        check_name(name)


@pytest.mark.parametrize("name", SURROGATE_NAMES)
def test_a_name_that_is_not_valid_unicode_is_never_sealed_lossily(name: str) -> None:
    """Below the drive's check, sealing still refuses (UnicodeEncodeError), and the name hash encodes the
    surrogates as themselves (surrogatepass), so it cannot equal a replacement-character look-alike."""
    m = fmt.NodeMeta(name=name, kind="dir", key=os.urandom(32))
    with pytest.raises(UnicodeEncodeError):
        fmt.seal_meta(os.urandom(32), OWNER, "", os.urandom(16).hex(), m)
    key, parent = bytes(32), os.urandom(16).hex()
    lossy = {name.encode("utf-8", errors).decode("utf-8", "replace") for errors in ("replace", "ignore",
                                                                                      "backslashreplace")}
    lossy |= {name.encode("utf-8", "surrogatepass").decode("utf-8", "replace")}
    assert fmt.name_hash(key, parent, name) not in {fmt.name_hash(key, parent, other) for other in lossy}


def test_valid_names_pass_the_drive_check() -> None:
    for name in ("a", "R\u00e9sum\u00e9.pdf", "Re\u0301sume\u0301.pdf", "\U0001f511" * 63, "x" * MAX_NAME_BYTES,
                 " leading and trailing ", "..."):
        check_name(name)
    for bad in ("", ".", "..", "a/b", "nul\0", "x" * (MAX_NAME_BYTES + 1), "\U0001f511" * 64):
        with pytest.raises(InvalidPath):
            check_name(bad)


@pytest.mark.parametrize(("key", "value"), [
    ("u", -1), ("u", 2**32), ("g", "0"), ("g", 1.0), ("c", -1), ("a", 2**63), ("t", "door"), ("t", 1),
    ("rd", -5), ("x", []), ("x", {"user.a": "not base64!"}), ("x", {"": "AA=="}),
    ("x", {"user.a": base64.b64encode(bytes(fmt.MAX_XATTR_BYTES)).decode()}),
])
def test_posix_attributes_are_strict(key: str, value: object) -> None:
    """Each POSIX attribute of a meta is checked like the rest: a co-writer cannot smuggle in odd values."""
    good = fmt.NodeMeta(name="f", kind="file", key=bytes(32), file_id=bytes(16), uid=7, gid=8, ctime_ns=1,
                        special="fifo", xattrs={"user.a": b"1"})
    assert fmt.NodeMeta.from_json(good.to_json()) == good
    with pytest.raises(IntegrityError, match="malformed node metadata"):
        fmt.NodeMeta.from_json({**good.to_json(), key: value})


def test_a_folder_or_a_symlink_is_never_special() -> None:
    for meta in (fmt.NodeMeta(name="d", kind="dir", key=bytes(32), special="fifo"),
                 fmt.NodeMeta(name="l", kind="file", key=bytes(32), file_id=bytes(16), link="t", special="sock")):
        with pytest.raises(IntegrityError):
            fmt.NodeMeta.from_json(meta.to_json())


def test_a_meta_without_posix_attributes_reads_as_before() -> None:
    """Metas written before the POSIX attributes: owner None (the mounting user), no xattrs, not special."""
    old = {"fid": "", "k": "dir", "key": "80" * 32, "m": 5, "mode": 0o755, "n": "", "p": {}, "r": 0, "s": 0, "v": 0}
    m = fmt.NodeMeta.from_json(old)
    assert (m.uid, m.gid, m.ctime_ns, m.atime_ns, m.special, m.rdev, m.xattrs) == (None, None, 0, 0, None, 0, {})
    assert m.to_json() == old  # and it is written back byte for byte the same
