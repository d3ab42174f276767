"""Password key derivation policy: the floor, the pin, the ceiling, and what a server can substitute.

The server stores the salt and the Argon2id parameters and echoes them at
prelogin, so it can offer anything. check_kdf is the client's rule: never
below the absolute floor (INTERACTIVE), never below the ``floor`` its caller
passes (login passes the client's configured default, MODERATE unless
MEGADRIVE_KDF=interactive), never below what this client pinned for the
account, never absurdly expensive. No Argon2id runs at real parameters here:
derive_root is exercised at libsodium's minimum through ``cheap_argon2``.
"""

from __future__ import annotations

import os

import pytest

from megadrive import account, crypto
from megadrive import format as fmt
from megadrive.crypto import KdfParams
from megadrive.errors import ConfigError, IntegrityError, WeakKdf

FLOOR = crypto.KDF_INTERACTIVE
MODERATE = crypto.KDF_MODERATE
SENSITIVE = KdfParams(4, 1 << 30)  # libsodium's OPSLIMIT/MEMLIMIT_SENSITIVE


def test_weak_kdf_is_an_integrity_error() -> None:
    assert issubclass(WeakKdf, IntegrityError)


@pytest.mark.parametrize("offered", [FLOOR, MODERATE, SENSITIVE, crypto.KDF_CEILING, KdfParams(2, 1 << 27)])
def test_params_between_floor_and_ceiling_are_accepted(offered: KdfParams) -> None:
    crypto.check_kdf(offered)


@pytest.mark.parametrize("offered", [
    KdfParams(1, FLOOR.memlimit),  # fewer passes
    KdfParams(FLOOR.opslimit, FLOOR.memlimit - 1),  # less memory
    KdfParams(FLOOR.opslimit, 8192),  # libsodium's minimum, far below our floor
    KdfParams(0, 0),
    KdfParams(-1, -1),
    KdfParams(100, FLOOR.memlimit // 2),  # more passes do not buy back memory
    KdfParams(MODERATE.opslimit, MODERATE.memlimit, alg="argon2i13"),  # another algorithm
    KdfParams(MODERATE.opslimit, MODERATE.memlimit, alg="scrypt"),
    KdfParams(MODERATE.opslimit, MODERATE.memlimit, alg="ARGON2ID13"),
])
def test_params_below_the_floor_are_refused(offered: KdfParams) -> None:
    with pytest.raises(WeakKdf):
        crypto.check_kdf(offered)


@pytest.mark.parametrize("offered", [
    KdfParams(crypto.KDF_CEILING.opslimit + 1, FLOOR.memlimit),
    KdfParams(FLOOR.opslimit, crypto.KDF_CEILING.memlimit + 1),
    KdfParams(10**9, 1 << 40),  # a server trying to exhaust the client's memory or time
])
def test_absurd_params_are_refused(offered: KdfParams) -> None:
    with pytest.raises(WeakKdf, match="absurd"):
        crypto.check_kdf(offered)


def test_params_below_the_pin_are_refused() -> None:
    """A server that lowers the cost for a client that knows better is caught."""
    with pytest.raises(WeakKdf, match="pinned"):
        crypto.check_kdf(FLOOR, pinned=MODERATE)
    with pytest.raises(WeakKdf):
        crypto.check_kdf(KdfParams(MODERATE.opslimit + 5, FLOOR.memlimit), pinned=MODERATE)  # ops up, memory down
    with pytest.raises(WeakKdf):
        crypto.check_kdf(KdfParams(FLOOR.opslimit, MODERATE.memlimit), pinned=MODERATE)  # memory kept, ops down


def test_params_at_or_above_the_pin_are_accepted() -> None:
    crypto.check_kdf(MODERATE, pinned=MODERATE)
    crypto.check_kdf(SENSITIVE, pinned=MODERATE)
    crypto.check_kdf(MODERATE, pinned=FLOOR)


def test_a_pin_does_not_lift_the_ceiling() -> None:
    with pytest.raises(WeakKdf):
        crypto.check_kdf(KdfParams(1000, 1 << 40), pinned=MODERATE)


# -- the caller's floor (login: the configured default) ---------------------------------------------------


def test_the_callers_floor_refuses_what_the_absolute_floor_allows() -> None:
    """A fresh client (no pin) configured for MODERATE is not talked down to INTERACTIVE."""
    crypto.check_kdf(FLOOR, floor=FLOOR)
    crypto.check_kdf(MODERATE, floor=MODERATE)
    crypto.check_kdf(SENSITIVE, floor=MODERATE)
    for offered in (FLOOR, KdfParams(MODERATE.opslimit, FLOOR.memlimit), KdfParams(FLOOR.opslimit, MODERATE.memlimit),
                    KdfParams(100, MODERATE.memlimit - 1)):
        with pytest.raises(WeakKdf):
            crypto.check_kdf(offered, floor=MODERATE)


def test_a_lower_floor_argument_does_not_lower_the_absolute_floor() -> None:
    weak = KdfParams(1, 8192)
    with pytest.raises(WeakKdf):
        crypto.check_kdf(weak, floor=weak)
    with pytest.raises(WeakKdf):
        crypto.check_kdf(KdfParams(1, FLOOR.memlimit), floor=KdfParams(1, 8192))


def test_floor_pin_and_ceiling_all_apply_together() -> None:
    with pytest.raises(WeakKdf, match="pinned"):
        crypto.check_kdf(MODERATE, pinned=SENSITIVE, floor=MODERATE)  # above the floor, below the pin
    with pytest.raises(WeakKdf):
        crypto.check_kdf(MODERATE, pinned=FLOOR, floor=SENSITIVE)  # above the pin, below the floor
    with pytest.raises(WeakKdf, match="absurd"):
        crypto.check_kdf(KdfParams(9, 1 << 32), pinned=MODERATE, floor=MODERATE)
    crypto.check_kdf(SENSITIVE, pinned=MODERATE, floor=MODERATE)


@pytest.mark.parametrize(("env", "want"), [(None, MODERATE), ("moderate", MODERATE), ("MODERATE", MODERATE),
                                           ("interactive", FLOOR), ("Interactive", FLOOR)])
def test_default_kdf_is_the_floor_login_passes(monkeypatch: pytest.MonkeyPatch, env: str | None,
                                               want: KdfParams) -> None:
    if env is None:
        monkeypatch.delenv("MEGADRIVE_KDF", raising=False)
    else:
        monkeypatch.setenv("MEGADRIVE_KDF", env)
    assert account.default_kdf() == want
    crypto.check_kdf(want, floor=account.default_kdf())
    if want == MODERATE:
        with pytest.raises(WeakKdf):
            crypto.check_kdf(FLOOR, floor=account.default_kdf())


@pytest.mark.parametrize("env", ["sensitive", "min", "", "argon2id13"])
def test_unknown_kdf_setting_is_a_config_error(monkeypatch: pytest.MonkeyPatch, env: str) -> None:
    monkeypatch.setenv("MEGADRIVE_KDF", env)
    with pytest.raises(ConfigError):
        account.default_kdf()


# -- derive_root's own checks -------------------------------------------------------------------------------


def test_derive_root_applies_the_floor_and_the_salt_length() -> None:
    """Both refusals come before any Argon2id work."""
    with pytest.raises(WeakKdf):
        crypto.derive_root("a password", bytes(16), KdfParams(1, 8192), "alice")
    for salt in (b"", bytes(8), bytes(15), bytes(17), bytes(32)):
        with pytest.raises(IntegrityError):
            crypto.derive_root("a password", salt, FLOOR, "alice")


@pytest.mark.parametrize(("password", "user"), [("bad\udcff password", "alice"), ("\ud800", "alice"),
                                                ("a password", "al\udcffice")])
def test_text_that_is_not_unicode_is_a_config_error(password: str, user: str) -> None:
    """A lone surrogate (an undecodable byte from a terminal or file) cannot be hashed as some other text."""
    with pytest.raises(ConfigError):
        crypto.derive_root(password, bytes(16), FLOOR, user)


def test_kdf_params_json_round_trip() -> None:
    for p in (FLOOR, MODERATE, SENSITIVE):
        assert KdfParams.from_json(p.to_json()) == p
    assert FLOOR.to_json() == {"alg": "argon2id13", "opslimit": 2, "memlimit": 67108864}


@pytest.mark.parametrize("d", [
    None, [], "argon2id13", 3,
    {"opslimit": 2, "memlimit": 67108864},  # alg missing
    {"alg": "argon2id13", "memlimit": 67108864},
    {"alg": "argon2id13", "opslimit": "two", "memlimit": 67108864},
    {"alg": "argon2id13", "opslimit": 2, "memlimit": None},
    {"alg": "argon2id13", "opslimit": 2, "memlimit": "9" * 5000},  # beyond Python's int() digit limit
])
def test_malformed_kdf_json_is_refused(d: object) -> None:
    with pytest.raises(IntegrityError):
        KdfParams.from_json(d)


def test_at_least_compares_every_dimension() -> None:
    assert MODERATE.at_least(FLOOR) and MODERATE.at_least(MODERATE)
    assert not FLOOR.at_least(MODERATE)
    assert not KdfParams(10, FLOOR.memlimit).at_least(KdfParams(2, FLOOR.memlimit + 1))
    assert not KdfParams(3, 1 << 28, "argon2i13").at_least(FLOOR)


# -- what a substituted salt or user name buys (cheap Argon2id) -----------------------------------------

USER_ID = "0123456789abcdef0123456789abcdef"
PASSWORD = "correct horse battery staple"
SALT = bytes(range(16))


def test_a_substituted_salt_only_yields_an_integrity_error(cheap_argon2: KdfParams) -> None:
    """The server answers prelogin with another salt: the derived key cannot unwrap the master key."""
    kek, _ = crypto.login_keys(crypto.derive_root(PASSWORD, SALT, cheap_argon2, "alice"))
    master = os.urandom(32)
    wrapped = fmt.wrap_master(kek, master, USER_ID)
    assert fmt.unwrap_master(kek, wrapped, USER_ID) == master
    for salt in (bytes(range(1, 17)), bytes(16), SALT[:-1] + b"\x00"):
        other, _ = crypto.login_keys(crypto.derive_root(PASSWORD, salt, cheap_argon2, "alice"))
        assert other != kek
        with pytest.raises(IntegrityError):
            fmt.unwrap_master(other, wrapped, USER_ID)


def test_one_salt_for_many_users_gives_unrelated_roots(cheap_argon2: KdfParams) -> None:
    """Salt binding: a server handing every account the same salt still needs one guess per account."""
    users = ["alice", "bob", "alice2", "alic", "ALICE", "a" * 64]
    roots = {crypto.derive_root(PASSWORD, SALT, cheap_argon2, u) for u in users}
    assert len(roots) == len(users)


def test_user_name_and_salt_cannot_be_traded_for_each_other(cheap_argon2: KdfParams) -> None:
    """Length prefixes: moving bytes between the salt and the user name changes the Argon2id salt."""
    a = crypto.derive_root(PASSWORD, SALT, cheap_argon2, "bob")
    b = crypto.derive_root(PASSWORD, SALT[:15] + b"b", cheap_argon2, "ob")  # same bytes, other split
    assert a != b


@pytest.mark.parametrize(("nfc", "other"), [
    ("\u00e9t\u00e9", "e\u0301te\u0301"),  # é as one code point / as e + combining acute
    ("\u00c5ngstr\u00f6m", "\u212bngstro\u0308m"),  # Å as ANGSTROM SIGN, ö decomposed
    ("\ud55c\uae00", "\u1112\u1161\u11ab\u1100\u1173\u11af"),  # Hangul syllables / conjoining jamo
])
def test_nfc_and_nfd_spellings_of_a_password_give_the_same_root(cheap_argon2: KdfParams, nfc: str,
                                                                  other: str) -> None:
    assert nfc != other
    assert crypto.derive_root(nfc, SALT, cheap_argon2, "alice") == crypto.derive_root(other, SALT, cheap_argon2,
                                                                                      "alice")


def test_normalization_is_nfc_not_nfkc(cheap_argon2: KdfParams) -> None:
    """Compatibility characters stay distinct: the ligature "ﬁ" is not "fi", full-width "Ａ" is not "A"."""
    for a, b in (("\ufb01sh", "fish"), ("\uff21BC", "ABC")):
        assert crypto.derive_root(a, SALT, cheap_argon2, "alice") != crypto.derive_root(b, SALT, cheap_argon2,
                                                                                        "alice")


def test_unwrap_master_with_a_wrong_kek_fails() -> None:
    kek = os.urandom(32)
    wrapped = fmt.wrap_master(kek, os.urandom(32), USER_ID)
    for wrong in (os.urandom(32), bytes(32), kek[:-1] + bytes([kek[-1] ^ 1])):
        with pytest.raises(IntegrityError):
            fmt.unwrap_master(wrong, wrapped, USER_ID)
