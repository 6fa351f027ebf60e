"""A throw-away embedded ClickHouse database for the in-process benchmarks."""

from __future__ import annotations

import contextlib
import tempfile
import time
from typing import Any, Callable, Iterator

from trackstream.consumers.store import SchemaManager, connect


@contextlib.contextmanager
def seeded_database(database: str, seed: Callable[[Any], None], prefix: str) -> Iterator[Any]:
    """A migrated ``database`` in a temporary chdb data dir, filled by ``seed(client)``; yields the client."""
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as home:
        client = connect(f"chdb://{home}/clickhouse")
        SchemaManager(client, database).migrate()
        start = time.perf_counter()
        seed(client)
        print(f"seeded {database} in {time.perf_counter() - start:.1f} s")
        yield client
