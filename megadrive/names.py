"""What a file or folder name may be: the same rule for what we write and what we read."""

from __future__ import annotations

from .errors import InvalidPath, NameTooLong

MAX_NAME_BYTES = 255


def check_name(name: str) -> None:
    if name in (".", "..") or "/" in name or "\0" in name or not name:
        raise InvalidPath(f"invalid name: {name!r}")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPath(f"name is not valid UTF-8: {name!r}") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise NameTooLong(f"name too long: {name[:40]!r}...")
