"""Fixtures of the engines of a deployment (PostgreSQL, SeaweedFS's S3), started once per
session and only if a test asks; imported by the conftest of every folder that uses them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from support.engines import PostgresCluster, SeaweedS3, engine_or_skip


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    with engine_or_skip(PostgresCluster) as cluster:
        assert isinstance(cluster, PostgresCluster)
        yield cluster


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PostgresCluster) -> str:
    """A database holding the current schema, which per-test databases are copied from."""
    from megadrive.server.store.postgresql import PostgreSQLMetaStore

    name = pg_cluster.create_database("md_template")
    PostgreSQLMetaStore(pg_cluster.url(name)).close()
    return name


@pytest.fixture
def pg_database(pg_cluster: PostgresCluster, pg_template: str) -> Iterator[Callable[[], str]]:
    """``new()``: the URL of a fresh database with the schema; all dropped at teardown."""
    made: list[str] = []

    def new() -> str:
        made.append(pg_cluster.create_database(template=pg_template))
        return pg_cluster.url(made[-1])

    yield new
    for name in made:
        pg_cluster.drop_database(name)


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedS3]:
    with engine_or_skip(SeaweedS3) as s3:
        assert isinstance(s3, SeaweedS3)
        yield s3
