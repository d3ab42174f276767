"""Fault-injection tests: real server processes SIGKILLed at chosen points, restarted on the same data.

Helpers live in support/faults.py (imported by the test modules directly).
"""

from __future__ import annotations


