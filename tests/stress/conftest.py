"""The concurrency stress test: real server, two gateways and a FUSE mount of one account, many clients.

Short by default (the test command); MEGADRIVE_LONG_TESTS=1 runs it for 60 s.
"""

from __future__ import annotations
