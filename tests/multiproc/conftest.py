"""Several server processes on one PostgreSQL database and one S3 bucket (the engines of tests/server)."""

from __future__ import annotations

from support.engine_fixtures import pg_cluster, pg_database, pg_template, seaweed  # noqa: E402,F401 - session engines
