import pytest

from trackstream.consumers.store import SchemaManager, connect


@pytest.fixture
def db(clickhouse_dsn, unique_name):
    """A migrated database of its own on the session's ClickHouse: (client, database name)."""
    client = connect(clickhouse_dsn)
    SchemaManager(client, unique_name).migrate()
    yield client, unique_name
    client.command(f"DROP DATABASE IF EXISTS {unique_name}")
