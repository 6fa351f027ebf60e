import pytest

from tests.integration.harness import STAGING_GRACE_S, running_server

from trackstream.consumers.store import SchemaManager, connect


@pytest.fixture
def db(clickhouse_dsn, unique_name):
    """A migrated database of its own on the session's ClickHouse: (client, database name)."""
    client = connect(clickhouse_dsn)
    SchemaManager(client, unique_name).migrate()
    yield client, unique_name
    client.command(f"DROP DATABASE IF EXISTS {unique_name}")


@pytest.fixture(scope="module")
def short_grace_server(kafka_bootstrap, tmp_path_factory):
    """A server (one per test module) whose staging grace period is STAGING_GRACE_S seconds, so
    abandoned uploads and unsettled versions are collected while a test waits."""
    with running_server(kafka_bootstrap, tmp_path_factory.mktemp("grace"), "grace",
                        TRACKSTREAM_STAGING_GRACE_S=str(STAGING_GRACE_S)) as handle:
        yield handle
