"""The test of scale: a metadata store of 10 million nodes in PostgreSQL (MEGADRIVE_SCALE_TESTS=1)."""

from __future__ import annotations

from support.engine_fixtures import pg_cluster, pg_database, pg_template, seaweed  # noqa: E402,F401 - session engines
