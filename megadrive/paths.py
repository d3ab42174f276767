"""Drive paths: absolute POSIX strings from the drive's root, split and joined one way everywhere."""

from __future__ import annotations

import time
from pathlib import PurePosixPath

from .names import check_name

VIRTUAL = "virtual:"  # node ids of the synthetic "Shared with me" folders


def split_path(path: str) -> list[str]:
    """'/a/b/' -> ['a', 'b']; refuses '.', '..', empty and over-long names."""
    if not path.startswith("/"):
        path = "/" + path
    parts = [p for p in path.split("/") if p]
    for p in parts:
        check_name(p)
    return parts


def join(parent: str, name: str) -> str:
    return str(PurePosixPath("/", parent.lstrip("/"), name))


def conflict_name(name: str) -> str:
    """'report.txt' -> 'report (conflicted copy 2026-11-28 041034).txt'."""
    stem, dot, ext = name.rpartition(".")
    tag = f"(conflicted copy {time.strftime('%Y-%m-%d %H%M%S')})"
    return f"{stem} {tag}.{ext}" if dot and stem else f"{name} {tag}"
