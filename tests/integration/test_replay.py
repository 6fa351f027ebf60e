"""Replay rebuilds the live tables exactly from the log; --until gives an earlier state."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from trackstream.consumers.materializer import Materializer
from trackstream.consumers.replay import compare_databases
from trackstream.consumers.store import ClickHouseSink, ClickHouseStateReader, SchemaManager, connect
from trackstream.infra.topics import ensure_topics
from trackstream.producer.client import TrackingClient
from tests.integration.harness import make_server, wait_until
from tests.integration.workload import produce_workload, table_counts
from tests.unit.consumers.events import EventLog


@pytest.fixture(scope="module")
def loaded_server(kafka_bootstrap, tmp_path_factory):
    server = make_server(kafka_bootstrap, tmp_path_factory.mktemp("replay"), f"rp{uuid.uuid4().hex[:6]}")
    ensure_topics(server.settings)
    expected = produce_workload(server.settings, seed=3)
    early = TrackingClient(server.settings)
    early_run = early.create_run("0", run_name="spans-cutoff", tags={"stage": "dev"})
    early.log_metric_arrays(early_run, "loss", np.ones(10), np.arange(10))
    assert early.flush(30) == 0
    time.sleep(1.5)  # Kafka timestamps: everything above is strictly before `cutoff`
    cutoff = int(time.time() * 1000)
    time.sleep(1.5)
    client = TrackingClient(server.settings)
    late_run = client.create_run("0", run_name="after-cutoff")
    client.log_params(late_run, {"late": 1})
    client.log_metric(late_run, "loss", 0.5, step=1)
    client.set_terminated(late_run)
    assert client.flush(30) == 0
    client.close()
    early.set_tag(early_run, "stage", "prod")
    early.log_metric_arrays(early_run, "loss", np.ones(10), np.arange(10, 20))
    early.set_terminated(early_run)
    assert early.flush(30) == 0
    early.close()
    expected["points"] += 10
    server.start()
    wait_until(lambda: table_counts(server)["events"] >= expected["events"] + 9, 300, "live ingest", interval=1.0)
    yield server, expected, cutoff, late_run, early_run
    server.stop()


def test_replay_of_a_million_points_equals_the_live_tables(loaded_server):
    server, expected, _, _, _ = loaded_server
    result = server.cli("replay", "--database", "rebuilt", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "replay equals the live state" in result.stdout
    assert f"{expected['points'] + 11:,} metric points" in result.stdout
    for table in ("runs", "params", "metrics", "tags", "artifacts", "events"):
        line = next(line for line in result.stdout.splitlines() if line.startswith(table + " "))
        assert line.split()[-1] == "equal", line
    rows = server.sql("SELECT count(), sum(value) FROM rebuilt.metrics")
    assert rows[0][0] == expected["points"] + 11


def test_replay_until_gives_the_state_at_that_moment(loaded_server):
    server, expected, cutoff, late_run, _ = loaded_server
    result = server.cli("replay", "--database", "as_of_cutoff", "--until", str(cutoff))
    assert "not compared with live" in result.stdout
    assert server.sql("SELECT count() FROM as_of_cutoff.metrics")[0][0] == expected["points"]
    assert server.sql(f"SELECT count() FROM as_of_cutoff.runs WHERE run_id = '{late_run}'")[0][0] == 0
    assert server.sql(f"SELECT count() FROM {server.settings.database}.runs WHERE run_id = '{late_run}'")[0][0] > 0


def test_reads_as_of_a_moment_show_the_state_then(loaded_server):
    server, _, cutoff, late_run, early_run = loaded_server
    then = server.reader.run(early_run, as_of_ms=cutoff)
    now = server.reader.run(early_run)
    assert (then["status"], then["tags"]["stage"], then["metrics"]["loss"]["step"]) == ("RUNNING", "dev", 9)
    assert (now["status"], now["tags"]["stage"], now["metrics"]["loss"]["step"]) == ("FINISHED", "prod", 19)
    assert len(server.reader.metric_history(early_run, "loss", as_of_ms=cutoff)["step"]) == 10
    assert late_run not in [r["run_id"] for r in server.reader.runs(1000, as_of_ms=cutoff)]
    assert late_run in [r["run_id"] for r in server.reader.runs(1000)]
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(cutoff / 1000))
    shown = server.cli("run", early_run, "--as-of", iso).stdout
    assert "dev" in shown and "RUNNING" in shown
    missing = server.cli("run", late_run, "--as-of", str(cutoff), check=False)
    assert missing.returncode != 0 and "not found at that time" in missing.stderr


def test_replay_refuses_an_existing_database_without_replace(loaded_server):
    server, _, cutoff, _, _ = loaded_server
    server.cli("replay", "--database", "twice", "--until", str(cutoff))
    again = server.cli("replay", "--database", "twice", "--until", str(cutoff), check=False)
    assert again.returncode != 0 and "--replace" in again.stderr
    assert server.cli("replay", "--database", "twice", "--until", str(cutoff), "--replace").returncode == 0


def test_compare_names_the_table_and_rows_that_differ(clickhouse_dsn, unique_name):
    client = connect(clickhouse_dsn)
    live, replay = f"{unique_name}_live", f"{unique_name}_replay"
    log = EventLog()
    log.run_created("r1")
    log.add("params_set", run_id="r1", params=[{"key": "lr", "value": "0.1"}])
    for db in (live, replay):
        SchemaManager(client, db).migrate()
        rows = Materializer(ClickHouseStateReader(client, db)).process(log.messages)
        ClickHouseSink(client, db).write(rows)
    client.command(f"INSERT INTO {replay}.params VALUES ('r1', 'extra', 'x', 1, 'e', 0, 1)")
    diffs = {d.table: d for d in compare_databases(client, live, replay, {0: 2})}
    assert diffs["runs"].equal and diffs["events"].equal
    assert not diffs["params"].equal
    assert diffs["params"].live_rows == 1 and diffs["params"].replay_rows == 2
    assert any("only replay" in e and "extra" in e for e in diffs["params"].examples)
