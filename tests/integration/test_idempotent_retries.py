"""A retried write is a no-op end to end: Kafka stored the first attempt but answered too late, the
gateway answered 503, the unmodified mlflow client retried, and exactly one copy is stored."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.harness import make_server, wait_until
from tests.integration.kafka_proxy import SlowKafkaProxy

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402

ACK_TIMEOUT_MS = 2000
HOLD_S = 2.6  # longer than the gateway waits, short enough for the retry's answer to come in time


@pytest.fixture(scope="module")
def slow_broker_server(kafka_bootstrap, tmp_path_factory, monkeypatch_module):
    proxy = SlowKafkaProxy(kafka_bootstrap).start()
    handle = make_server(proxy.bootstrap, tmp_path_factory.mktemp("retries"), f"rt{uuid.uuid4().hex[:6]}")
    handle.env_overrides["TRACKSTREAM_GATEWAY_ACK_TIMEOUT_MS"] = str(ACK_TIMEOUT_MS)
    handle.start()
    monkeypatch_module.setenv("MLFLOW_TRACKING_URI", handle.settings.server_url)
    monkeypatch_module.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    mlflow.set_tracking_uri(handle.settings.server_url)
    try:
        yield handle, proxy
    finally:
        handle.stop()
        proxy.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def stored(handle, sql: str):
    return handle.sql(sql.format(db=handle.settings.database))


def test_a_log_batch_retried_after_a_late_kafka_ack_is_stored_once(slow_broker_server):
    handle, proxy = slow_broker_server
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment(f"retry-{uuid.uuid4().hex[:6]}")).info.run_id
    proxy.hold_next_produce(HOLD_S)
    client.log_batch(run_id, metrics=[Metric("loss", 0.5, 1000, 0), Metric("loss", 0.4, 1001, 1)],
                     params=[Param("lr", "0.1")], tags=[RunTag("stage", "dev")])
    assert proxy.held_produce_responses == 1
    # both attempts reached the log ...
    attempts = wait_until(lambda: stored(handle, f"SELECT count() FROM {{db}}.events WHERE aggregate_id = '{run_id}' "
                                                  "AND event_type = 'metrics_logged'")[0][0] == 2 or None,
                          30, "both attempts in the events table")
    assert attempts
    # ... and one is stored
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.4)]
    assert stored(handle, f"SELECT count() FROM {{db}}.metrics WHERE run_id = '{run_id}'") == [[2]]
    assert stored(handle, f"SELECT count() FROM {{db}}.tags WHERE run_id = '{run_id}' AND key = 'stage'") == [[1]]
    assert client.get_run(run_id).data.params == {"lr": "0.1"}


def test_a_set_tag_retried_after_a_late_kafka_ack_is_applied_once(slow_broker_server):
    handle, proxy = slow_broker_server
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment(f"retry-{uuid.uuid4().hex[:6]}")).info.run_id
    proxy.hold_next_produce(HOLD_S)
    client.set_tag(run_id, "phase", "train")
    assert proxy.held_produce_responses == 2
    assert client.get_run(run_id).data.tags["phase"] == "train"
    rows = stored(handle, f"SELECT count() FROM {{db}}.events WHERE aggregate_id = '{run_id}' AND event_type = 'tags_set'")
    assert rows == [[2]]
    assert stored(handle, f"SELECT count() FROM {{db}}.tags WHERE run_id = '{run_id}' AND key = 'phase'") == [[1]]


def test_an_idempotency_key_names_the_request_across_attempts(slow_broker_server):
    """A client that sends ``Idempotency-Key`` gets its attempts deduplicated even when their bodies
    differ (e.g. a timestamp taken per attempt)."""
    import json
    import urllib.request

    handle, _ = slow_broker_server
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment(f"retry-{uuid.uuid4().hex[:6]}")).info.run_id
    for attempt_ms in (1000, 1001):
        body = {"run_id": run_id, "key": "loss", "value": 0.5, "step": 0, "timestamp": attempt_ms}
        request = urllib.request.Request(f"{handle.settings.server_url}/api/2.0/mlflow/runs/log-metric",
                                         data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "Idempotency-Key": "k-1"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
    assert [(m.timestamp, m.value) for m in client.get_metric_history(run_id, "loss")] == [(1000, 0.5)]
