"""A lock in ClickHouse so that of several workers starting together only one migrates.

The lock is a table: ``CREATE TABLE`` without ``IF NOT EXISTS`` succeeds for exactly one caller
(the others get "already exists"), on the embedded engine and on a server alike. The holder
drops the table when done. A holder that died leaves its table behind; once it is older than
``stale_after_s`` a waiter takes it over by renaming it away, which, like the create, succeeds
for exactly one caller. Migrations are idempotent, so a takeover from a holder that was only
slow repeats work but does not double anything.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from typing import Iterator

from clickhouse_connect.driver.client import Client

log = logging.getLogger("trackstream.migrations")

LOCK_TABLE = "schema_migration_lock"
STALE_AFTER_S = 600.0
POLL_S = 0.2


def _already_exists(exc: Exception) -> bool:
    text = str(exc)
    return "TABLE_ALREADY_EXISTS" in text or "already exists" in text


def _does_not_exist(exc: Exception) -> bool:
    text = str(exc)
    return "UNKNOWN_TABLE" in text or "doesn't exist" in text or "does not exist" in text


@contextlib.contextmanager
def migration_lock(client: Client, database: str, stale_after_s: float = STALE_AFTER_S,
                   poll_s: float = POLL_S) -> Iterator[None]:
    """Held by one caller at a time per database; waits for a live holder, takes over a stale one."""
    table = f"{database}.{LOCK_TABLE}"
    holder = uuid.uuid4().hex
    while True:
        try:
            client.command(f"CREATE TABLE {table} (holder String, claimed_at DateTime DEFAULT now()) "
                           f"ENGINE = MergeTree ORDER BY tuple()")
            break
        except Exception as exc:
            if not _already_exists(exc):
                raise
        age = client.command(
            "SELECT now() - max(metadata_modification_time) FROM system.tables "
            "WHERE database = {db:String} AND name = {t:String}", parameters={"db": database, "t": LOCK_TABLE})
        if age and int(age) > stale_after_s:
            stale = f"{database}.{LOCK_TABLE}_stale_{holder}"
            try:
                client.command(f"RENAME TABLE {table} TO {stale}")
                client.command(f"DROP TABLE IF EXISTS {stale}")
                log.warning("took over the migration lock of %s, held for %s s by a worker that is gone", database, age)
            except Exception as exc:
                if not _does_not_exist(exc):
                    raise
            continue
        time.sleep(poll_s)
    try:
        client.insert(table, [[holder]], column_names=["holder"])
        yield
    finally:
        client.command(f"DROP TABLE IF EXISTS {table}")
