"""Unit and property tests of input validation, auth helpers and error mapping."""

from __future__ import annotations

import base64
import json
import re
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megadrive.server import auth, validate
from megadrive.server.errors import BadRequest, RateLimited, ServerError

HEX = "0123456789abcdef"


# -- identifiers ------------------------------------------------------------------


@given(st.text(alphabet=HEX, min_size=32, max_size=32))
def test_valid_node_ids(value: str) -> None:
    assert validate.node_id(value) == value


@given(st.text(max_size=70))
def test_node_id_accepts_exactly_32_lower_hex(value: str) -> None:
    ok = re.fullmatch(r"[0-9a-f]{32}", value) is not None and "\n" not in value
    if ok:
        assert validate.node_id(value) == value
    else:
        with pytest.raises(BadRequest):
            validate.node_id(value)


@given(st.text(max_size=70) | st.integers() | st.none() | st.binary(max_size=64))
def test_chunk_id_rejects_everything_else(value: object) -> None:
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) and not value.endswith("\n"):
        assert validate.chunk_id(value) == value
    else:
        with pytest.raises(BadRequest):
            validate.chunk_id(value)


@pytest.mark.parametrize("value", ["a" * 32 + "\n", " " + "a" * 31, "a" * 31 + "\u0660", "\uff41" * 32])
def test_id_edge_cases(value: str) -> None:
    with pytest.raises(BadRequest):
        validate.node_id(value)


@given(st.from_regex(r"[a-z0-9][a-z0-9._-]{2,63}", fullmatch=True))
def test_valid_user_names(name: str) -> None:
    assert validate.user_name(name) == name


@given(st.text(max_size=80))
def test_user_names(name: str) -> None:
    ok = re.fullmatch(r"[a-z0-9][a-z0-9._-]{2,63}", name) is not None and not name.endswith("\n")
    assert validate.is_user_name(name) == ok


def test_token_format() -> None:
    token = auth.new_token()
    assert validate.is_token(token) and len(token) == 43
    assert not validate.is_token(token + "=")
    assert not validate.is_token(token[:-1] + "/")


# -- base64 ---------------------------------------------------------------------------


@given(raw=st.binary(max_size=300), limit=st.integers(min_value=0, max_value=300))
def test_b64_roundtrip_within_limits(raw: bytes, limit: int) -> None:
    text = base64.b64encode(raw).decode()
    if 1 <= len(raw) <= limit:
        assert validate.b64decode(text, "f", max_len=limit) == raw
    else:
        with pytest.raises(BadRequest):
            validate.b64decode(text, "f", max_len=limit)


@given(raw=st.binary(min_size=1, max_size=40), exact=st.integers(min_value=1, max_value=40))
def test_b64_exact_length(raw: bytes, exact: int) -> None:
    text = base64.b64encode(raw).decode()
    if len(raw) == exact:
        assert validate.b64decode(text, "f", exact=exact) == raw
    else:
        with pytest.raises(BadRequest):
            validate.b64decode(text, "f", exact=exact)


@given(st.text(max_size=200) | st.integers() | st.none() | st.lists(st.integers(), max_size=3))
def test_b64_garbage_only_raises_bad_request(value: object) -> None:
    try:
        raw = validate.b64decode(value, "f", max_len=1000)
    except BadRequest:
        return
    assert isinstance(value, str) and base64.b64encode(raw).decode() == value


@pytest.mark.parametrize(
    "text",
    ["QQ", "QQ=", "QR==", "Q===", "QUJD\n", " QUJD", "QU JD", "QUJD====", "-_-_", "QUJ\u00c4"],
)
def test_b64_non_canonical_rejected(text: str) -> None:
    with pytest.raises(BadRequest):
        validate.b64decode(text, "f", max_len=100)


def test_b64_oversized_text_rejected_before_decoding() -> None:
    with pytest.raises(BadRequest, match="longer than"):
        validate.b64decode("A" * 10_000_000, "f", max_len=16)


# -- JSON and parameters -------------------------------------------------------------


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_parse_json_never_raises_anything_else(raw: bytes) -> None:
    try:
        result = validate.parse_json_object(raw)
    except BadRequest:
        return
    assert isinstance(result, dict)


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda c: st.lists(c, max_size=3),
            max_leaves=8,
        ),
        max_size=6,
    )
)
def test_parse_json_roundtrip(obj: dict[str, object]) -> None:
    assert validate.parse_json_object(json.dumps(obj).encode()) == obj


_PIECES = st.sampled_from(["a", "\u00e9", "\ud800", "\udfff", "\U0001f600", "\ud83d", "\ude00", "\\", '"'])


@given(st.dictionaries(st.lists(_PIECES, max_size=4).map("".join), st.lists(_PIECES, max_size=6).map("".join)))
def test_parse_json_gives_only_unicode_text(obj: dict[str, str]) -> None:
    """A lone surrogate (only an escape can carry one) is refused: whatever is accepted can be sent back."""
    raw = json.dumps(obj).encode()
    pairs = json.loads(raw, object_pairs_hook=list)  # (escapes of a high and a low surrogate decode to one character,
    decoded = dict(pairs)  # so two keys may become one)
    lone = any(0xD800 <= ord(ch) <= 0xDFFF for text in [*decoded, *decoded.values()] for ch in text)
    try:
        result = validate.parse_json_object(raw)
    except BadRequest as exc:
        if len(decoded) < len(pairs):
            assert exc.message == "duplicate key in JSON object"
        else:
            assert lone and "Unicode" in exc.message
        return
    assert not lone and result == decoded
    json.dumps(result, ensure_ascii=False).encode("utf-8")


def test_duplicate_keys_are_refused_without_echo() -> None:
    for raw in (b'{"a": 1, "a": 2}', b'{"\\ud800": 1, "\\ud800": 2}', b'{"secret": 1, "secret": 2}'):
        with pytest.raises(BadRequest) as info:
            validate.parse_json_object(raw)
        assert info.value.message == "duplicate key in JSON object"


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_if_match(n: int) -> None:
    assert validate.parse_if_match(f'"{n}"') == n
    assert validate.parse_if_match(str(n)) == n


@pytest.mark.parametrize("raw", ["", '""', '"', '"1', "-1", "1.0", "*", 'W/"1"', '"9223372036854775808"', "1 2"])
def test_if_match_bad(raw: str) -> None:
    with pytest.raises(BadRequest):
        validate.parse_if_match(raw)


@given(st.text(max_size=25))
def test_uint_param(raw: str) -> None:
    ok = re.fullmatch(r"[0-9]{1,19}", raw) is not None and int(raw) <= 10_000
    if ok:
        assert validate.uint_param(raw, "p", default=0, maximum=10_000) == int(raw)
    else:
        with pytest.raises(BadRequest):
            validate.uint_param(raw, "p", default=0, maximum=10_000)


def test_kdf_params() -> None:
    good = dict(auth.DEFAULT_KDF)
    assert validate.kdf_params(good) == good
    bads: list[object] = [
        None,
        [],
        {},
        {**good, "alg": ""},
        {**good, "opslimit": 0},
        {**good, "memlimit": 2**41},
        {**good, "opslimit": 1.5},
        {**good, "extra": {"nested": 1}},
        {**good, **{f"k{i}": 1 for i in range(8)}},
    ]
    for bad in bads:
        with pytest.raises(BadRequest):
            validate.kdf_params(bad)


# -- auth helpers --------------------------------------------------------------------


def test_auth_hash_and_verify() -> None:
    salt, digest = auth.new_auth_hash(b"k" * 32)
    assert len(salt) == 16 and len(digest) == 32
    assert auth.verify_auth_key(b"k" * 32, salt, digest)
    assert not auth.verify_auth_key(b"j" * 32, salt, digest)
    assert digest == auth.hash_auth_key(b"k" * 32, salt)


def test_fake_salt_is_keyed_and_stable() -> None:
    assert auth.fake_salt(b"s" * 32, "alice") == auth.fake_salt(b"s" * 32, "alice")
    assert auth.fake_salt(b"s" * 32, "alice") != auth.fake_salt(b"t" * 32, "alice")
    assert auth.fake_salt(b"s" * 32, "alice") != auth.fake_salt(b"s" * 32, "alicf")
    assert len(auth.fake_salt(b"s" * 32, "alice")) == 16


def test_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "server.secret"
    first = auth.load_or_create_secret(path)
    assert auth.load_or_create_secret(path) == first and len(first) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_bytes(b"short")
    with pytest.raises(RuntimeError):
        auth.load_or_create_secret(path)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_window_and_retry_after() -> None:
    clock = FakeClock()
    limiter = auth.WindowLimiter(3, 60.0, clock=clock)
    for _ in range(3):
        limiter.begin(["user:a", "addr:x"])
        clock.now += 1
    with pytest.raises(RateLimited) as info:
        limiter.begin(["user:a", "addr:y"])
    assert info.value.retry_after == 57 and info.value.headers["Retry-After"] == "57"
    with pytest.raises(RateLimited):
        limiter.begin(["user:b", "addr:x"])  # same address
    limiter.begin(["user:b", "addr:z"])  # unrelated keys pass
    clock.now += 57
    limiter.begin(["user:a", "addr:y"])  # window passed


def test_limiter_forgives_successes() -> None:
    clock = FakeClock()
    limiter = auth.WindowLimiter(2, 60.0, clock=clock)
    for _ in range(10):  # ten attempts that succeeded, against a limit of two
        stamp = limiter.begin(["user:a"])
        limiter.forgive(["user:a"], stamp)
        clock.now += 0.01
    limiter.begin(["user:a"])  # two that failed are still let through...
    limiter.begin(["user:a"])
    with pytest.raises(RateLimited):  # ...and only a third is over the limit
        limiter.begin(["user:a"])


def test_limiter_message_and_concurrent_begins() -> None:
    """The signup limiter: its own refusal text, and parallel attempts never pass the cap."""
    limiter = auth.WindowLimiter(7, 3600.0, message="too many signups from this address, retry later")
    passed: list[float] = []
    refused: list[RateLimited] = []
    lock = threading.Lock()
    start = threading.Barrier(32)

    def attempt() -> None:
        start.wait()
        try:
            stamp = limiter.begin(["addr:x"])
        except RateLimited as exc:
            with lock:
                refused.append(exc)
        else:
            with lock:
                passed.append(stamp)

    threads = [threading.Thread(target=attempt) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(passed) == 7 and len(refused) == 25
    assert {e.message for e in refused} == {"too many signups from this address, retry later"}
    assert all(3590 <= e.retry_after <= 3600 for e in refused)


def test_limiter_memory_is_bounded() -> None:
    clock = FakeClock()
    limiter = auth.WindowLimiter(5, 60.0, max_keys=100, clock=clock)
    for i in range(1000):
        limiter.begin([f"addr:{i}"])
    assert len(limiter._stamps) <= 100


def test_server_error_body() -> None:
    err = BadRequest("bad thing")
    assert err.body() == {"error": "bad_request", "message": "bad thing"}
    assert ServerError().body() == {"error": "internal", "message": "internal server error"}


# -- URL fragments in pasted text, record names ----------------------------------------

KEY = "k3yMATERIAL_-0123456789abcdefghijklmn"


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        (f"https://h/l/{'A' * 22}#{KEY}", f"https://h/l/{'A' * 22}"),
        (f"see /l/{'A' * 22}/#{KEY} now", f"see /l/{'A' * 22}/ now"),
        (f"/l/{'A' * 22}?x=1#{KEY}", f"/l/{'A' * 22}?x=1"),
        (f"/L/{'A' * 22}#{KEY}", f"/L/{'A' * 22}"),
        (f"#{KEY}", ""),
        (f"key:#{KEY}\tand #{KEY}\n#{KEY}", "key:\tand \n"),
        (f"(https://h/l/{'A' * 22}#{KEY})", f"(https://h/l/{'A' * 22}"),
        (f"wrapped https%3A%2F%2Fh%2Fl%2F{'A' * 22}%23{KEY} x", f"wrapped https%3A%2F%2Fh%2Fl%2F{'A' * 22} x"),
        (f"lower %23{KEY}", "lower "),
        ("no fragment here", "no fragment here"),
        ("##", ""),
    ],
)
def test_scrub_fragments(text: str, scrubbed: str) -> None:
    assert validate.scrub_fragments(text) == scrubbed
    assert KEY not in validate.scrub_fragments(text)


NO_SPACE = st.characters(blacklist_categories=("Zs", "Zl", "Zp", "Cc"))


@given(st.text(max_size=200), st.text(alphabet=NO_SPACE, min_size=1))
def test_scrub_fragments_leaves_no_fragment(prefix: str, key: str) -> None:
    out = validate.scrub_fragments(prefix + "#" + key)
    assert "#" not in out and "%23" not in out.lower()
    assert out == validate.scrub_fragments(prefix)  # the key, with everything up to whitespace, is gone


@pytest.mark.parametrize("name", ["a", "contacts", "pins-v2", "a" + "b" * 31, "z0-"])
def test_record_names(name: str) -> None:
    assert validate.record_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "0abc", "-a", "Contacts", "a" + "b" * 32, "a_b", "a.b", "a b", "a\n", "ä", 7, None]
)
def test_bad_record_names(name: object) -> None:
    with pytest.raises(BadRequest):
        validate.record_name(name)


@pytest.mark.parametrize(
    ("addr", "key"),
    [
        ("203.0.113.7", "addr:203.0.113.7"),
        ("::ffff:203.0.113.7", "addr:203.0.113.7"),  # IPv4-mapped: the IPv4 address
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "addr:2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "addr:2001:db8:1:2::/64"),  # same /64: same key
        ("2001:db8:1:3::1", "addr:2001:db8:1:3::/64"),
        ("fe80::1%eth0", "addr:fe80::/64"),
        ("", "addr:"),
        (None, "addr:"),
        ("unix-socket", "addr:unix-socket"),
    ],
)
def test_limiter_source_key(addr: str | None, key: str) -> None:
    """One IPv6 host picks any address of its /64: the limits count per /64, not per address."""
    assert auth.source_key(addr) == key
