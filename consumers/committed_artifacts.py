"""The last committed sha256 of an artifact store key, read from the materialized tables: the event
log's word on what a path must serve (``producer/staging_gc.settle_versions`` asks it)."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from trackstream.consumers.store import check_database_name


def owner_of_key(key: str) -> tuple[str, str, str] | None:
    """``<exp>/<run>/artifacts/<path>`` -> ("artifacts", run, path); ``<exp>/models/<id>/artifacts/<path>``
    -> ("logged_model_artifacts", id, path); None for anything else."""
    parts = key.split("/")
    if len(parts) >= 5 and parts[1] == "models" and parts[3] == "artifacts":
        return "logged_model_artifacts", parts[2], "/".join(parts[4:])
    if len(parts) >= 4 and parts[2] == "artifacts":
        return "artifacts", parts[1], "/".join(parts[3:])
    return None


def latest_committed_sha256(client: Client, database: str, key: str) -> str | None:
    owner = owner_of_key(key)
    if owner is None:
        return None
    table, owner_id, path = owner
    id_column = "model_id" if table == "logged_model_artifacts" else "run_id"
    rows = client.query(
        f"SELECT sha256 FROM {check_database_name(database)}.{table} WHERE {id_column} = {{owner:String}} "
        f"AND path = {{path:String}} ORDER BY committed_at DESC, src_partition DESC, src_offset DESC LIMIT 1",
        parameters={"owner": owner_id, "path": path}).result_rows
    return rows[0][0] if rows else None
