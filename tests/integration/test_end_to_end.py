"""The first end-to-end path: SDK -> Kafka -> faust worker -> ClickHouse -> CLI / SQL."""

from __future__ import annotations

import json
import math
import struct
import urllib.request

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer

from trackstream.producer.client import TrackingClient
from tests.integration.harness import ServerHandle, make_server, wait_until


@pytest.fixture(scope="module")
def server(kafka_bootstrap, tmp_path_factory):
    handle = make_server(kafka_bootstrap, tmp_path_factory.mktemp("e2e"), "e2e")
    handle.start()
    yield handle
    handle.stop()


def log_run(server: ServerHandle, steps: int = 300) -> str:
    client = TrackingClient(server.settings)
    try:
        exp = client.create_experiment("e2e-experiment")
        run_id = client.create_run(exp, run_name="e2e-run", tags={"team": "core"})
        client.log_params(run_id, {"lr": 0.01, "optimizer": "adam"})
        for step in range(steps):
            client.log_metrics(run_id, {"loss": 1.0 / (step + 1), "acc": step / steps}, step=step)
        client.log_metric(run_id, "weird", float("nan"), step=0)
        client.log_metric(run_id, "weird", float("inf"), step=1)
        client.set_tag(run_id, "stage", "done")
        client.set_terminated(run_id, "FINISHED")
        assert client.flush(30) == 0
    finally:
        client.close()
    return run_id


def test_logged_run_is_readable_through_http_cli_and_sql(server):
    run_id = log_run(server)
    run = wait_until(lambda: (r := server.reader.run(run_id))["status"] == "FINISHED" and r, 60, "run to finish")
    wait_until(lambda: len(server.reader.metric_history(run_id, "loss")["step"]) == 300, 60, "all loss points")

    assert run["params"] == {"lr": "0.01", "optimizer": "adam"}
    assert run["tags"]["team"] == "core" and run["tags"]["stage"] == "done"
    assert run["tags"]["mlflow.runName"] == "e2e-run"
    assert run["metrics"]["loss"]["step"] == 299
    history = server.reader.metric_history(run_id, "weird")
    assert math.isnan(history["value"][0]) and history["value"][1] == math.inf

    runs_out = server.cli("runs").stdout
    assert run_id in runs_out and "FINISHED" in runs_out
    metrics_out = server.cli("metrics", run_id, "acc", "--format", "csv").stdout.splitlines()
    assert metrics_out[0] == "step,timestamp_ms,value" and len(metrics_out) == 301
    rows = server.sql(f"SELECT key, count(), max(step) FROM {server.settings.database}.metrics "
                      f"WHERE run_id = '{run_id}' GROUP BY key ORDER BY key")
    assert rows == [["acc", 300, 299], ["loss", 300, 299], ["weird", 2, 1]]
    sql_out = server.cli("sql", f"SELECT count() AS n FROM {server.settings.database}.params "
                                f"WHERE run_id = '{run_id}'").stdout
    assert "n" in sql_out.splitlines()[0] and sql_out.splitlines()[2].strip() == "2"


def test_sql_endpoint_is_read_only(server):
    result = server.cli("sql", f"DROP TABLE {server.settings.database}.metrics", check=False)
    assert result.returncode != 0 and "readonly" in result.stderr.lower()
    assert server.sql(f"EXISTS TABLE {server.settings.database}.metrics") == [[1]]


def test_bad_events_go_to_rejects_and_dead_letters_and_the_worker_keeps_going(server):
    producer = Producer({"bootstrap.servers": server.settings.kafka_bootstrap})
    producer.produce(server.settings.topic, b"\x00not avro at all", b"garbage-key")
    producer.produce(server.settings.topic, b"\xc3\x01" + struct.pack("<Q", 0xDEADBEEF) + b"\x02", b"future-key")
    producer.produce(server.settings.topic, b"", b"empty-key")
    assert producer.flush(30) == 0
    run_id = log_run(server, steps=10)

    wait_until(lambda: server.reader.run(run_id)["status"] == "FINISHED", 60, "the good run after bad events")
    bad_keys = {"garbage-key", "future-key", "empty-key"}  # keyed apart, so on partitions of their own
    rejects = wait_until(
        lambda: (found := [r for r in server.reader.rejects(100) if r["aggregate_id"] in bad_keys])
        and {r["aggregate_id"] for r in found} == bad_keys and found,
        60, "a reject for each bad event")
    by_key = {r["aggregate_id"]: r for r in rejects}
    assert by_key["garbage-key"]["reason"] == "undecodable"
    assert "single-object" in by_key["garbage-key"]["detail"]
    assert by_key["future-key"]["reason"] == "unknown_schema"
    assert "deadbeef" in by_key["future-key"]["detail"]
    assert by_key["empty-key"]["reason"] == "undecodable"

    consumer = Consumer({"bootstrap.servers": server.settings.kafka_bootstrap, "group.id": "dlq-check",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([server.settings.dead_letter_topic])
    seen = {}
    try:
        def poll_dlq():
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                seen[msg.key()] = dict(msg.headers() or [])
            return {b"garbage-key", b"future-key", b"empty-key"} <= set(seen)
        wait_until(poll_dlq, 60, "dead-letter messages", interval=0)
    finally:
        consumer.close()
    assert seen[b"future-key"]["reason"] == b"unknown_schema"
    assert seen[b"garbage-key"]["source"].startswith(server.settings.topic.encode())


def test_demo_command_logs_and_shows_a_run(server):
    result = server.cli("demo", "--steps", "200")
    assert "demo-training" in result.stdout
    assert "loss" in result.stdout and "learning_rate" in result.stdout


def test_status_command_and_prometheus_metrics_show_ingest_and_lag(server):
    log_run(server, steps=5)
    wait_until(lambda: server.reader.status()["events"] > 0, 30, "ingest")
    status_out = server.cli("status").stdout
    assert "Kafka answering" in status_out and "metric_points" in status_out and "lag" in status_out
    with urllib.request.urlopen(server.settings.server_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    assert "trackstream_events_total" in text and "trackstream_metric_points_total" in text
    assert wait_until(lambda: 'trackstream_consumer_lag{partition="0"}' in urllib.request.urlopen(
        server.settings.server_url + "/metrics", timeout=10).read().decode(), 30, "lag gauges")


def get_json(server, path):
    with urllib.request.urlopen(server.settings.server_url + path, timeout=30) as response:
        return json.loads(response.read())


def test_downsampled_history_keeps_spikes_and_compare_aligns_runs_by_step(server):
    client = TrackingClient(server.settings)
    first, second = client.create_run("0", run_name="a"), client.create_run("0", run_name="b")
    values = np.ones(10_000)
    values[4321] = 99.0
    client.log_metric_arrays(first, "loss", values, np.arange(10_000))
    client.log_metric_arrays(second, "loss", np.full(5, 2.0), np.arange(0, 10, 2))
    assert client.flush(30) == 0
    client.close()
    wait_until(lambda: len(server.reader.metric_history(first, "loss")["step"]) == 10_000
               and len(server.reader.metric_history(second, "loss")["step"]) == 5, 60, "points of both runs")

    down = get_json(server, f"/api/ts/runs/{first}/metrics/loss?buckets=100")["history"]
    assert len(down["bucket"]) == 100 and sum(down["points"]) == 10_000
    assert max(down["max"]) == 99.0 and min(down["min"]) == 1.0
    assert down["step_min"][0] == 0 and down["step_max"][-1] == 9999

    aligned = get_json(server, f"/api/ts/compare?key=loss&run_id={first}&run_id={second}")
    assert aligned["steps"][:3] == [0, 1, 2]
    assert aligned["runs"][second][:3] == [2.0, None, 2.0]
    assert aligned["runs"][first][4321] == 99.0
