"""Fault-injection tests: real server processes SIGKILLed at chosen points, restarted on the same data.

Helpers live in faultproc.py (imported by the test modules directly).
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:  # serverproc.py and mdtest.py are shared with the other test folders
    sys.path.insert(0, _TESTS)
