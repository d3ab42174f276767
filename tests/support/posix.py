"""Helpers of the POSIX suite (tests/posix): acting as other local users on the mount."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

NOBODY = 65534
OTHER = 65533  # a second unprivileged user (no passwd entry is needed to run as it)

_PRELUDE = """
import errno, os, sys
def t(fn, *a, **k):
    try:
        r = fn(*a, **k)
    except OSError as e:
        return errno.errorcode[e.errno]
    return "0" if r is None else r
"""



def as_user(uid: int, gid: int, code: str, cwd: Path) -> str:
    """Run ``code`` (Python; ``t(fn, *args)`` gives "0", a result, or the errno's name) as uid/gid in ``cwd``;
    returns what it printed, stripped.

    A forked child drops to the user (no exec: the interpreter of the venv may be out of that user's reach).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os.chdir(cwd)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(_PRELUDE + code, {})  # noqa: S102 - test code, from the test itself
            os.write(w, out.getvalue().encode())
            status = 0
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            os.write(w, f"child failed: {e!r}".encode())
        finally:
            os._exit(status)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode()
    assert os.waitstatus_to_exitcode(status) == 0, text
    return text.strip()


def errno_as(uid: int, gid: int, call: str, cwd: Path) -> str:
    """One call as uid/gid: "0" on success, else its errno's name (e.g. "EACCES")."""
    return as_user(uid, gid, f"print(t(lambda: {call}))", cwd)
