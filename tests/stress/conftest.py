"""The concurrency stress test: real server, two gateways and a FUSE mount of one account, many clients.

Short by default (the test command); MEGADRIVE_LONG_TESTS=1 runs it for 60 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for sub in ("", "webdav", "fuse"):
    p = str(_TESTS / sub) if sub else str(_TESTS)
    if p not in sys.path:
        sys.path.insert(0, p)
