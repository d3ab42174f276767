"""Several server processes on one PostgreSQL database and one S3 bucket (the engines of tests/server)."""

from __future__ import annotations

import sys
from pathlib import Path

_SERVER_TESTS = str(Path(__file__).resolve().parents[1] / "server")
if _SERVER_TESTS not in sys.path:
    sys.path.insert(0, _SERVER_TESTS)

from engine_fixtures import pg_cluster, pg_database, pg_template, seaweed  # noqa: E402,F401 - session engines
