"""Shared helpers for the cryptography tests (tests/crypto).

These tests exercise megadrive.crypto and megadrive.format directly: no
server, no network, no disk. Argon2id runs at real (INTERACTIVE, 64 MiB)
parameters exactly twice in the whole folder, both in test_crypto_vectors.py;
everything else that needs derive_root uses ``cheap_argon2`` (libsodium's
minimum, 8 KiB and one pass: a millisecond).

Not test modules, also here: argon2_reference.py (pure-Python Argon2id) and
gen_vectors.py (regenerates the FORMAT.md vectors; run by hand).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from megadrive import crypto

CHEAP_KDF = crypto.KdfParams(1, 8192)  # libsodium's OPSLIMIT_MIN, MEMLIMIT_MIN (8 KiB): far below the floor


@pytest.fixture
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> crypto.KdfParams:
    """Lets derive_root run Argon2id at CHEAP_KDF by switching check_kdf off (test_crypto_kdf.py tests it)."""
    monkeypatch.setattr(crypto, "check_kdf", lambda *args, **kwargs: None)
    return CHEAP_KDF


class _FixedNonceOs:
    """Stands in for the ``os`` module inside megadrive.crypto: urandom hands out queued nonces."""

    def __init__(self, nonces: tuple[bytes, ...]) -> None:
        self._nonces = list(nonces)

    def urandom(self, n: int) -> bytes:
        assert n == crypto.NONCE_BYTES, "only seal() may draw randomness while nonces are fixed"
        assert self._nonces, "more seal() calls than fixed nonces"
        return self._nonces.pop(0)


@pytest.fixture
def fixed_nonces(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``fixed_nonces(n1, n2, ...)``: the next seal() calls use these nonces, in order.

    Lets a known-answer test drive the real record functions (wrap_master,
    seal_meta, ...) which, rightly, take no nonce argument.
    """

    def use(*nonces: bytes) -> None:
        monkeypatch.setattr(crypto, "os", _FixedNonceOs(nonces))

    return use

