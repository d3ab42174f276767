"""TEST-ONLY pause points, for the fault-injection tests in tests/faults/.

Inert unless the environment variable ``MEGADRIVE_TEST_PAUSE_DIR`` is set when
the process starts; never set it on a real server (the server logs a warning
when it is). With ``MEGADRIVE_TEST_PAUSE_DIR=DIR``, a thread reaching
:func:`pause` with a name for which the file ``DIR/<name>`` exists (the test
*arms* the point by creating it) writes ``DIR/<name>.reached`` and sleeps
PAUSE_SECONDS, so the test can SIGKILL the process at exactly that point.
Without the variable, :func:`pause` returns at once and does nothing else.

The points (each named where it is called):

* ``chunk.stored``: PUT /v1/chunks has written the blob, not yet its ownership row;
* ``commit.written``: a version commit has written everything, its transaction is not committed;
* ``gc.rows_removed``: a GC batch's row removal is committed, its blobs not yet deleted.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

ENV = "MEGADRIVE_TEST_PAUSE_DIR"
PAUSE_SECONDS = 120.0

log = logging.getLogger("megadrive.server")

_DIR = Path(os.environ[ENV]) if os.environ.get(ENV) else None


def pause(point: str) -> None:
    """Sleep at ``point`` if a test armed it (see the module docstring); otherwise nothing."""
    if _DIR is None or not (_DIR / point).exists():
        return
    log.warning("TEST-ONLY pause point %s reached (pid %d)", point, os.getpid())
    (_DIR / f"{point}.reached").write_text(str(os.getpid()))
    time.sleep(PAUSE_SECONDS)


def warn_if_armed() -> None:
    """Called once at server start: say loudly that this process obeys test pause points."""
    if _DIR is not None:
        log.warning("TEST-ONLY %s is set: this process pauses at test points; never run a real server so", ENV)
