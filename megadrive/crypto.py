"""All cryptography of MegaDrive, in one small module with an AEAD-shaped API.

This is the only module that imports :mod:`nacl` (an import-linter contract
enforces it). Everything else calls these functions, so the rules live here:

* every ciphertext is XChaCha20-Poly1305 with a fresh random 24-byte nonce and
  associated data built by :func:`aad` (format version, purpose, context);
* every key is derived for one purpose with a label (:func:`derive_key`);
* every authentication failure raises :class:`IntegrityError` and returns
  nothing.

The byte layouts are specified in docs/FORMAT.md.
"""

from __future__ import annotations

import hashlib
import os
import struct
import unicodedata
from dataclasses import dataclass

import nacl.bindings as sodium
import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.public
import nacl.pwhash.argon2id as argon2id
import nacl.signing

from .errors import ConfigError, IntegrityError, WeakKdf

FORMAT_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 24
TAG_BYTES = 16
SALT_BYTES = 16
ID_BYTES = 16
BLOB_OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES
AAD_MAGIC = b"MGDR"


# -- key derivation from the password ---------------------------------------------------------


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost. The client pins these; the server only stores and echoes them."""

    opslimit: int
    memlimit: int
    alg: str = "argon2id13"

    def to_json(self) -> dict[str, object]:
        return {"alg": self.alg, "opslimit": self.opslimit, "memlimit": self.memlimit}

    @classmethod
    def from_json(cls, d: object) -> KdfParams:
        if not isinstance(d, dict):
            raise IntegrityError("malformed key-derivation parameters")
        try:
            p = cls(opslimit=int(d["opslimit"]), memlimit=int(d["memlimit"]), alg=str(d["alg"]))
        except (KeyError, TypeError, ValueError) as e:
            raise IntegrityError("malformed key-derivation parameters") from e
        return p

    def at_least(self, other: KdfParams) -> bool:
        return self.alg == other.alg and self.opslimit >= other.opslimit and self.memlimit >= other.memlimit


KDF_MODERATE = KdfParams(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)
KDF_INTERACTIVE = KdfParams(argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE)
KDF_FLOOR = KDF_INTERACTIVE
# Upper bound so a malicious server cannot make the client allocate unbounded memory.
KDF_CEILING = KdfParams(argon2id.OPSLIMIT_SENSITIVE * 2, argon2id.MEMLIMIT_SENSITIVE * 2)


def check_kdf(offered: KdfParams, pinned: KdfParams | None = None, floor: KdfParams = KDF_FLOOR) -> None:
    """Refuse parameters below the client's floor, or below what this client pinned earlier.

    ``floor`` is the client's configured default (MODERATE) for a first login, so a
    server cannot talk a fresh client down to cheaper guesses either.
    """
    if offered.alg != "argon2id13" or not offered.at_least(KDF_FLOOR):
        raise WeakKdf()
    if not offered.at_least(floor):
        raise WeakKdf("the server offered weaker key-derivation parameters than this client's default "
                      "(an account created with MEGADRIVE_KDF=interactive needs that setting here too)")
    if pinned is not None and not offered.at_least(pinned):
        raise WeakKdf("the server offered weaker key-derivation parameters than this client pinned")
    if offered.opslimit > KDF_CEILING.opslimit or offered.memlimit > KDF_CEILING.memlimit:
        raise WeakKdf("the server offered absurd key-derivation parameters")


def derive_root(password: str, salt: bytes, params: KdfParams, user: str) -> bytes:
    """Argon2id(NFC(password), salt bound to the user name) -> 32-byte root key.

    The password never leaves the machine. Binding the user name into the
    Argon2id salt means a server that hands many users the same salt still
    cannot test one password guess against all of them at once.
    """
    check_kdf(params)
    if len(salt) != SALT_BYTES:
        raise IntegrityError("malformed salt")
    try:
        pw = unicodedata.normalize("NFC", password).encode("utf-8")
        bound = nacl.hash.blake2b(_lp(b"megadrive-salt") + _lp(salt) + _lp(user.encode("utf-8")),
                                  digest_size=SALT_BYTES, encoder=nacl.encoding.RawEncoder)
    except UnicodeEncodeError:
        raise ConfigError("password or user name is not valid text") from None
    return argon2id.kdf(KEY_BYTES, pw, bound, opslimit=params.opslimit, memlimit=params.memlimit)


def derive_key(key: bytes, label: str, context: bytes = b"") -> bytes:
    """A subkey for one purpose: keyed BLAKE2b-256 over a label and optional context."""
    if len(key) != KEY_BYTES:
        raise ValueError("derive_key needs a 32-byte key")
    data = _lp(b"megadrive-kdf:" + label.encode("ascii")) + _lp(context)
    return nacl.hash.blake2b(data, digest_size=KEY_BYTES, key=key, encoder=nacl.encoding.RawEncoder)


def login_keys(root: bytes) -> tuple[bytes, bytes]:
    """Split the root key into (key-encryption key, auth key). Only the auth key is sent."""
    return derive_key(root, "kek"), derive_key(root, "auth")


# -- randomness ----------------------------------------------------------------------------------


def random_key() -> bytes:
    return os.urandom(KEY_BYTES)


def random_id() -> bytes:
    return os.urandom(ID_BYTES)


def random_salt() -> bytes:
    return os.urandom(SALT_BYTES)


# -- AEAD ---------------------------------------------------------------------------------------


def _lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def aad(purpose: str, *fields: bytes | str | int) -> bytes:
    """Associated data: magic, format version, purpose, then each field length-prefixed.

    ints are 8-byte big-endian, str UTF-8. Length prefixes make the encoding
    injective, so two different contexts can never produce the same bytes.
    """
    out = [AAD_MAGIC, bytes([FORMAT_VERSION]), _lp(purpose.encode("ascii"))]
    for f in fields:
        if isinstance(f, bool):
            f = bytes([int(f)])
        elif isinstance(f, int):
            if not 0 <= f < 1 << 64:
                raise IntegrityError("integrity check failed: integer out of range")
            f = struct.pack(">Q", f)
        elif isinstance(f, str):
            f = f.encode("utf-8", "surrogatepass")
        out.append(_lp(f))
    return b"".join(out)


def seal(key: bytes, plaintext: bytes, associated: bytes, *, _test_nonce: bytes | None = None) -> bytes:
    """Encrypt: version byte || 24-byte nonce || ciphertext || 16-byte tag.

    ``_test_nonce`` exists only for known-answer tests; nothing else passes it.
    """
    if len(key) != KEY_BYTES:
        raise ValueError("seal needs a 32-byte key")
    n = os.urandom(NONCE_BYTES) if _test_nonce is None else _test_nonce
    ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, associated, n, key)
    return bytes([FORMAT_VERSION]) + n + ct


def open_sealed(key: bytes, blob: bytes, associated: bytes, what: str = "data") -> bytes:
    """Decrypt and authenticate; any failure is an IntegrityError and yields no plaintext."""
    if len(blob) < BLOB_OVERHEAD or blob[0] != FORMAT_VERSION:
        raise IntegrityError(f"integrity check failed: malformed {what}")
    try:
        return bytes(sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            blob[1 + NONCE_BYTES:], associated, blob[1:1 + NONCE_BYTES], key))
    except nacl.exceptions.CryptoError:
        raise IntegrityError(f"integrity check failed: {what} was tampered with or corrupted") from None


# -- hashes --------------------------------------------------------------------------------------


def keyed_hash(key: bytes, data: bytes) -> bytes:
    """BLAKE2b-256 MAC; used for the local index's name hashes."""
    return nacl.hash.blake2b(data, digest_size=32, key=key, encoder=nacl.encoding.RawEncoder)


def content_id(blob: bytes) -> str:
    """Chunk id: SHA-256 of the ciphertext, hex. The server can check it without any key."""
    return hashlib.sha256(blob).hexdigest()


def key_commitment(content_key: bytes, file_id: bytes) -> bytes:
    """Commitment to a file's content key (Poly1305 alone is not key-committing)."""
    return keyed_hash(content_key, b"megadrive-key-commitment" + file_id)


def ct_equal(a: bytes, b: bytes) -> bool:
    return bool(sodium.sodium_memcmp(a, b)) if len(a) == len(b) else False


# -- identity keys -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """An account's long-term keys: Ed25519 for signing, X25519 (signed by it) for sealing."""

    sign_seed: bytes
    box_secret: bytes

    @property
    def sign_pub(self) -> bytes:
        return bytes(nacl.signing.SigningKey(self.sign_seed).verify_key)

    @property
    def box_pub(self) -> bytes:
        return sodium.crypto_scalarmult_base(self.box_secret)

    def sign(self, message: bytes) -> bytes:
        return nacl.signing.SigningKey(self.sign_seed).sign(message).signature

    def private_bytes(self) -> bytes:
        return self.sign_seed + self.box_secret

    @classmethod
    def from_private_bytes(cls, b: bytes) -> Identity:
        if len(b) != 64:
            raise IntegrityError("malformed identity keys")
        return cls(b[:32], b[32:])


def generate_identity() -> Identity:
    return Identity(os.urandom(32), os.urandom(32))


def box_key_statement(user_id: str, box_pub: bytes) -> bytes:
    """What an identity key signs to vouch for the account's X25519 key."""
    return aad("box-key", user_id, box_pub)


def seal_to(box_pub: bytes, plaintext: bytes) -> bytes:
    """Anonymous public-key encryption (libsodium sealed box) to an X25519 key: for share grants."""
    try:
        return bytes(nacl.public.SealedBox(nacl.public.PublicKey(box_pub)).encrypt(plaintext))
    except (nacl.exceptions.CryptoError, nacl.exceptions.TypeError, ValueError):
        raise IntegrityError("integrity check failed: malformed public key") from None


def open_sealed_box(box_secret: bytes, blob: bytes) -> bytes:
    try:
        return bytes(nacl.public.SealedBox(nacl.public.PrivateKey(box_secret)).decrypt(blob))
    except (nacl.exceptions.CryptoError, nacl.exceptions.TypeError, ValueError):
        raise IntegrityError("integrity check failed: a sealed key was not for us or was tampered with") from None


def fingerprint(sign_pub: bytes) -> str:
    """Human-comparable fingerprint of an identity key: 8 groups of 5 digits (as Signal's safety numbers)."""
    digest = nacl.hash.blake2b(b"megadrive-fingerprint" + sign_pub, digest_size=20, encoder=nacl.encoding.RawEncoder)
    n = int.from_bytes(digest, "big")
    return " ".join(f"{(n >> (20 * i)) % 100000:05d}" for i in range(8))


def derive_link_key(password: str, salt: bytes, params: KdfParams) -> bytes:
    """Key of a password-protected link: Argon2id on the client; only salt and cost reach the server."""
    check_kdf(params)
    if len(salt) != SALT_BYTES:
        raise IntegrityError("malformed salt")
    pw = unicodedata.normalize("NFC", password).encode("utf-8")
    return argon2id.kdf(KEY_BYTES, pw, salt, opslimit=params.opslimit, memlimit=params.memlimit)


def verify_signature(sign_pub: bytes, message: bytes, signature: bytes) -> None:
    try:
        nacl.signing.VerifyKey(sign_pub).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError):
        raise IntegrityError("integrity check failed: bad signature") from None
