"""Input validation: identifier formats, base64 with size limits, bodies.

Everything a client sends is checked here before any store sees it, so the
stores may assume well-formed ids and bounded blobs. Limits mirror the table
in docs/SERVER_API.md; changing one there means changing it here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import TYPE_CHECKING, Any, TypeGuard

from .errors import BadRequest, TooLarge, UnsupportedMediaType

if TYPE_CHECKING:  # pragma: no cover - typing only
    import falcon

KIB = 1024
MIB = 1024 * KIB

MAX_JSON_BYTES = 1 * MIB
MAX_BULK_JSON_BYTES = 16 * MIB  # version commits, chunks/missing and batches
MAX_BATCH_NODES = 128  # creates in one POST /v1/batch/nodes (one write transaction: kept short)
MAX_CHUNK_BYTES = 4 * MIB + 64 * KIB
MAX_META_BYTES = 64 * KIB
MAX_MANIFEST_BYTES = 8 * MIB
MAX_IDS = 200_000
MAX_WRAPPED_BYTES = 4 * KIB
MAX_GRANT_BYTES = 4 * KIB  # a share's sealed folder key
MAX_LINK_BLOB_BYTES = 4 * KIB  # a public link's sealed record
MAX_REASON_BYTES = 4 * KIB  # an abuse report's text (UTF-8)
MAX_RECORD_BYTES = 256 * KIB  # a sealed per-account record (decoded)
LINK_ID_BYTES = 16  # 22 url-safe base64 characters
SALT_BYTES = 16
AUTH_KEY_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
MAX_KDF_JSON_BYTES = 1 * KIB
MAX_KDF_KEYS = 8
MAX_INT = 2**63 - 1
CHANGES_DEFAULT_LIMIT = 1000
CHANGES_MAX_LIMIT = 10_000
# An oversized body is read and thrown away up to this many bytes so the
# client sees our 413 instead of a reset connection; beyond it we just close.
MAX_DRAIN_BYTES = 64 * MIB
_READ_BLOCK = 64 * KIB

_USER_RE = re.compile(r"[a-z0-9][a-z0-9._-]{2,63}")
_HEX32_RE = re.compile(r"[0-9a-f]{32}")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_UINT_RE = re.compile(r"[0-9]{1,19}")
_LINK_ID_RE = re.compile(r"[A-Za-z0-9_-]{22}")
_RECORD_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
# A URL fragment in pasted text: a "#" (or its percent-encoding, as in a link
# wrapped by a mail scanner) and everything after it up to the next whitespace.
_FRAGMENT_RE = re.compile(r"(?:#|%23)\S*", re.IGNORECASE)
# The path of a link URL ends in ".../l/<id>" (optionally with a slash).
_LINK_PATH_RE = re.compile(r"(?:.*/)?l/([A-Za-z0-9_-]{22})/?", re.DOTALL)
# A JSON escape of a UTF-16 surrogate (\uD800-\uDFFF), paired or not.
_SURROGATE_ESCAPE_RE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def is_user_name(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _USER_RE.fullmatch(value) is not None


def is_hex32(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _HEX32_RE.fullmatch(value) is not None


def is_chunk_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _HEX64_RE.fullmatch(value) is not None


def is_token(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _TOKEN_RE.fullmatch(value) is not None


def is_link_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _LINK_ID_RE.fullmatch(value) is not None


def link_id(value: object, field: str = "link_id") -> str:
    if not is_link_id(value):
        raise BadRequest(f"{field}: expected 22 url-safe base64 characters")
    return value


def link_reference(text: str) -> str | None:
    """The link id in a pasted link: a bare id or a URL whose path ends in ``/l/<id>``.

    The caller must already have cut ``text`` at its first ``#`` (see
    :func:`strip_fragment`); a query string is ignored. None if no id is found.
    """
    text = text.strip()
    if is_link_id(text):
        return text
    path = text.split("?", 1)[0]
    match = _LINK_PATH_RE.fullmatch(path)
    return None if match is None else match.group(1)


def strip_fragment(text: str) -> str:
    """Everything before the first ``#``: a link's fragment (its key) is never parsed or kept."""
    return text.split("#", 1)[0]


def scrub_fragments(text: str) -> str:
    """``text`` without any URL fragment: every ``#`` (or ``%23``) and what follows it up to
    the next whitespace is dropped, whatever precedes it.

    A link's key lives in its fragment, and people paste links in many shapes
    (``/l/ID/#KEY``, ``/L/ID?x#KEY``, a bare ``#KEY``), so no attempt is made
    to recognise a link first: any fragment-like run goes.
    """
    return _FRAGMENT_RE.sub("", text)


def record_name(value: object, field: str = "name") -> str:
    if not isinstance(value, str) or _RECORD_NAME_RE.fullmatch(value) is None:
        raise BadRequest(f"{field}: expected a lowercase letter, then up to 31 of a-z, 0-9 and '-'")
    return value


def user_name(value: object, field: str = "user") -> str:
    if not is_user_name(value):
        raise BadRequest(f"{field}: not a valid user name")
    return value


MAX_DEVICE_CHARS = 64


def device_name(value: object, field: str = "device") -> str | None:
    """The optional device name of a login: up to 64 printable characters (what the session list shows)."""
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_DEVICE_CHARS or not value.isprintable():
        raise BadRequest(f"{field}: expected up to {MAX_DEVICE_CHARS} printable characters")
    return value


def session_id(value: object, field: str = "session id") -> str:
    if not isinstance(value, str) or len(value) != 16 or not all(ch in "0123456789abcdef" for ch in value):
        raise BadRequest(f"{field}: expected 16 lowercase hex characters")
    return value


def node_id(value: object, field: str = "node_id") -> str:
    if not is_hex32(value):
        raise BadRequest(f"{field}: expected 32 lowercase hex characters")
    return value


def user_id(value: object, field: str = "user_id") -> str:
    return node_id(value, field)


def chunk_id(value: object, field: str = "chunk id") -> str:
    if not is_chunk_id(value):
        raise BadRequest(f"{field}: expected 64 lowercase hex characters")
    return value


def b64_encoded_len(n: int) -> int:
    """Length of the padded standard base64 text of ``n`` bytes."""
    return 4 * ((n + 2) // 3)


def b64decode(value: object, field: str, *, max_len: int = 0, min_len: int = 1, exact: int | None = None) -> bytes:
    """Decode canonical, padded standard base64 within size bounds.

    The text length is checked before decoding so an oversized value costs
    nothing; re-encoding and comparing rejects non-canonical spellings (stray
    bits in the padding) so one blob has exactly one accepted text.
    """
    if exact is not None:
        min_len = max_len = exact
    if not isinstance(value, str):
        raise BadRequest(f"{field}: expected a base64 string")
    if len(value) > b64_encoded_len(max_len):
        raise BadRequest(f"{field}: longer than {max_len} bytes")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise BadRequest(f"{field}: invalid base64") from None
    if base64.b64encode(raw).decode("ascii") != value:
        raise BadRequest(f"{field}: non-canonical base64")
    if not min_len <= len(raw) <= max_len:
        if exact is not None:
            raise BadRequest(f"{field}: expected exactly {exact} bytes")
        raise BadRequest(f"{field}: expected {min_len}..{max_len} bytes")
    return raw


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def get_field(obj: dict[str, Any], name: str, *, required: bool = True) -> Any:
    """A field of a JSON object; a missing required field is a 400."""
    if name not in obj:
        if required:
            raise BadRequest(f"missing field: {name}")
        return None
    return obj[name]


def get_object(obj: dict[str, Any], name: str) -> dict[str, Any]:
    value = get_field(obj, name)
    if not isinstance(value, dict):
        raise BadRequest(f"{name}: expected an object")
    return value


def kdf_params(value: object) -> dict[str, Any]:
    """The client's KDF description, stored verbatim but bounded.

    Needs ``alg`` (short string), ``opslimit`` and ``memlimit`` (positive
    ints); up to a few more scalar keys are tolerated for forward
    compatibility.
    """
    if not isinstance(value, dict):
        raise BadRequest("kdf: expected an object")
    if len(value) > MAX_KDF_KEYS:
        raise BadRequest("kdf: too many keys")
    alg = value.get("alg")
    if not isinstance(alg, str) or not 1 <= len(alg) <= 32:
        raise BadRequest("kdf.alg: expected a short string")
    for key in ("opslimit", "memlimit"):
        v = value.get(key)
        if not _is_int(v) or not 1 <= v <= 2**40:
            raise BadRequest(f"kdf.{key}: expected a positive integer")
    for key, v in value.items():
        if not isinstance(key, str) or len(key) > 32:
            raise BadRequest("kdf: bad key")
        if not (_is_int(v) or (isinstance(v, str) and len(v) <= 64)):
            raise BadRequest(f"kdf.{key}: expected an integer or a short string")
    if len(json.dumps(value)) > MAX_KDF_JSON_BYTES:
        raise BadRequest("kdf: too large")
    return dict(value)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def optional_int(value: object, field: str) -> int | None:
    """null or an integer 0..MAX_INT (never a boolean)."""
    if value is None:
        return None
    if not _is_int(value) or not 0 <= value <= MAX_INT:
        raise BadRequest(f"{field}: expected null or a non-negative integer")
    return value


def optional_seq(body: dict[str, Any], field: str) -> int | None:
    """A compare-and-swap ``seq`` (``base_seq``, ``meta_seq``): absent is None, else an
    integer 0..MAX_INT (never a boolean, never null: a client that meant to send a
    seq and sent nothing usable must not silently lose the check)."""
    if field not in body:
        return None
    value = body[field]
    if not _is_int(value) or not 0 <= value <= MAX_INT:
        raise BadRequest(f"{field}: expected a non-negative integer")
    return value


def text_field(value: object, field: str, max_bytes: int) -> str:
    """A string of at most ``max_bytes`` bytes of UTF-8 (the value is never echoed in errors)."""
    if not isinstance(value, str):
        raise BadRequest(f"{field}: expected a string")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates
        raise BadRequest(f"{field}: not valid Unicode text") from None
    if size > max_bytes:
        raise BadRequest(f"{field}: longer than {max_bytes} bytes")
    return value


def id_list(value: object, field: str = "ids") -> list[str]:
    if not isinstance(value, list):
        raise BadRequest(f"{field}: expected a list")
    if len(value) > MAX_IDS:
        raise BadRequest(f"{field}: more than {MAX_IDS} ids")
    return [chunk_id(v, f"{field}[{i}]") for i, v in enumerate(value)]


def uint_param(raw: str | None, name: str, *, default: int, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """A non-negative decimal query parameter within bounds."""
    if raw is None:
        return default
    if _UINT_RE.fullmatch(raw) is None:
        raise BadRequest(f"{name}: expected a non-negative integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise BadRequest(f"{name}: expected {minimum}..{maximum}")
    return value


def bool_param(raw: str | None, name: str) -> bool:
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise BadRequest(f"{name}: expected 1 or 0")


def version_number(raw: str, name: str = "version") -> int:
    return uint_param(raw, name, default=0, minimum=1)


def parse_if_match(raw: str) -> int:
    """``If-Match: "<n>"`` (the quotes may be omitted) to n."""
    text = raw.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1]
    if _UINT_RE.fullmatch(text) is None:
        raise BadRequest('If-Match: expected "<version number>"')
    value = int(text)
    if value > MAX_INT:
        raise BadRequest("If-Match: version out of range")
    return value


def require_content_type(req: falcon.Request, expected: str) -> None:
    """Refuse (415) a body whose media type is not ``expected``.

    JSON must be UTF-8, so a JSON body announcing another charset is refused
    as well.
    """
    raw = req.content_type or ""
    media, _, params = raw.partition(";")
    if media.strip().lower() != expected:
        raise UnsupportedMediaType(f"expected Content-Type: {expected}")
    if expected == "application/json":
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
                raise UnsupportedMediaType("JSON must be UTF-8")


def drain(stream: Any, budget: int) -> bool:
    """Read and discard up to ``budget`` bytes; True if the budget ran out first."""
    while budget > 0:
        block = stream.read(min(_READ_BLOCK, budget))
        if not block:
            return False
        budget -= len(block)
    return True


def read_body(req: falcon.Request, limit: int) -> bytes:
    """The whole request body, refusing (413) anything over ``limit`` bytes.

    A declared Content-Length over the limit is refused without buffering;
    a chunked body is read until it proves too long. Either way the rest is
    drained (up to MAX_DRAIN_BYTES) so the 413 reaches the client.
    """
    # Falcon's bounded_stream assumes an empty body without Content-Length;
    # a chunked body is read from the server's de-chunking stream instead.
    # (A request with both headers never gets here: app.BodyGuard refuses it.)
    chunked = "chunked" in (req.get_header("Transfer-Encoding") or "").lower()
    declared = None if chunked else req.content_length
    stream: Any = req.stream if chunked else req.bounded_stream
    try:
        if declared is not None and declared > limit:
            if declared <= MAX_DRAIN_BYTES:
                drain(stream, declared)
            raise TooLarge(f"request body over {limit} bytes")
        parts: list[bytes] = []
        total = 0
        while True:
            block = stream.read(min(_READ_BLOCK, limit + 1 - total))
            if not block:
                break
            parts.append(block)
            total += len(block)
            if total > limit:
                drain(stream, MAX_DRAIN_BYTES)
                raise TooLarge(f"request body over {limit} bytes")
    except ValueError:  # malformed chunked encoding
        raise BadRequest("malformed request body") from None
    return b"".join(parts)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise BadRequest("duplicate key in JSON object")  # (the key is never echoed: it may not be text)
        obj[key] = value
    return obj


def _is_text(value: Any) -> bool:
    """Whether every string in a decoded JSON value is Unicode text (no lone surrogate)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _no_constant(name: str) -> Any:
    raise BadRequest(f"JSON constant {name} not allowed")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate keys, an object on top, and
    every string Unicode text: a ``\\uD800``-style escape of a lone surrogate is refused,
    since such a string could be stored but never sent back (UTF-8 cannot encode it)."""
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except BadRequest:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("malformed JSON body") from None
    if not isinstance(value, dict):
        raise BadRequest("JSON body must be an object")
    # Raw UTF-8 cannot hold a surrogate; only an escape can, so only then is the value walked.
    if _SURROGATE_ESCAPE_RE.search(raw) is not None and not _is_text(value):
        raise BadRequest("JSON strings must be Unicode text (a lone surrogate escape is not)")
    return value


def read_json(req: falcon.Request, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """Content type, size and syntax checks of a JSON request body."""
    require_content_type(req, "application/json")
    return parse_json_object(read_body(req, limit))
