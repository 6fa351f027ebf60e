"""Faults against the session's local cluster (3 brokers, ClickHouse server, 2 workers, 2
gateways), each mid-ingest: nothing acknowledged is lost, nothing is stored twice. Read-your-writes
across the gateways runs first, on the healthy cluster; the ClickHouse outage last."""

from __future__ import annotations

import os
import signal
import statistics
import time
import uuid

from tests.integration.cluster_faults import Ingest, assert_exactly_once
from tests.integration.harness import mlflow_call, mlflow_refusal, wait_until
from trackstream.infra.processes import pid_alive


def workers_alive(cluster):
    return lambda: all(w.owned_pid() is not None for w in cluster.worker_processes)


def restart_exited_workers(cluster) -> None:
    for worker in cluster.worker_processes:
        worker.start()  # a no-op for one that runs


def test_read_your_writes_across_the_two_gateways(local_cluster):
    first, second = (g.url for g in local_cluster.gateway_processes)
    run_id = mlflow_call(first, "runs/create", {"experiment_id": "0", "run_name": "ryw"})["run"]["info"]["run_id"]
    latencies = []
    for i in range(10):
        writer, reader = (first, second) if i % 2 == 0 else (second, first)
        mlflow_call(writer, "runs/log-parameter" if i == 0 else "runs/log-metric",
              {"run_id": run_id, "key": "lr", "value": "0.1"} if i == 0 else
              {"run_id": run_id, "key": "loss", "value": float(i), "step": i, "timestamp": 1_700_000_000_000 + i})
        started = time.perf_counter()
        run = mlflow_call(reader, "runs/get?run_id=" + run_id)["run"]
        latencies.append(time.perf_counter() - started)
        if i == 0:
            assert run["data"]["params"] == [{"key": "lr", "value": "0.1"}]
        else:
            assert {m["key"]: m["value"] for m in run["data"]["metrics"]}["loss"] == float(i)
    print(f"\ncluster read-your-writes across gateways: p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms")


def test_writes_through_one_gateway_are_checked_against_changes_made_through_the_other(local_cluster):
    first, second = (g.url for g in local_cluster.gateway_processes)
    experiment_id = mlflow_call(first, "experiments/create", {"name": f"x-{uuid.uuid4().hex[:8]}"})["experiment_id"]
    kept, deleted = (mlflow_call(first, "runs/create", {"experiment_id": experiment_id})["run"]["info"]["run_id"]
                     for _ in range(2))
    for run_id in (kept, deleted):  # the first gateway now holds both runs' write state
        mlflow_call(first, "runs/log-metric", {"run_id": run_id, "key": "loss", "value": 1.0, "step": 0,
                                               "timestamp": 1_700_000_000_000})
    mlflow_call(first, "runs/create", {"experiment_id": experiment_id})  # and the experiment's

    mlflow_call(second, "runs/log-parameter", {"run_id": kept, "key": "lr", "value": "0.1"})
    mlflow_call(second, "runs/delete", {"run_id": deleted})
    mlflow_call(second, "experiments/delete", {"experiment_id": experiment_id})  # deletes `kept` too
    mlflow_call(first, "runs/get?run_id=" + deleted)  # read-your-writes: the first gateway has caught up

    assert mlflow_refusal(first, "runs/log-metric", {"run_id": deleted, "key": "loss", "value": 2.0, "step": 1,
                                              "timestamp": 1_700_000_000_001}) == (400, "INVALID_PARAMETER_VALUE")
    assert mlflow_refusal(first, "runs/create", {"experiment_id": experiment_id}) == (400, "INVALID_PARAMETER_VALUE")
    mlflow_call(second, "experiments/restore", {"experiment_id": experiment_id})  # restores `kept`
    mlflow_call(first, "runs/get?run_id=" + kept)
    assert mlflow_refusal(first, "runs/log-parameter", {"run_id": kept, "key": "lr", "value": "0.2"}) == (
        400, "INVALID_PARAMETER_VALUE")  # MLflow keeps a param's first value
    mlflow_call(first, "runs/log-metric", {"run_id": kept, "key": "loss", "value": 2.0, "step": 1,
                                           "timestamp": 1_700_000_000_001})  # restored: writable again


def test_kill_9_one_broker_mid_ingest(local_cluster, tmp_path):
    ingest = Ingest(local_cluster.settings, tmp_path / "spool").start()
    time.sleep(1.5)
    victim = local_cluster.brokers[2]
    pid = victim.status().pid
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), 10, "the broker to die")
    try:
        assert_exactly_once(local_cluster.settings, ingest, workers_alive(local_cluster))
    finally:
        victim.start(timeout=120)  # back to three for the next test


def test_add_a_worker_then_kill_9_a_worker_mid_ingest(local_cluster, tmp_path):
    ingest = Ingest(local_cluster.settings, tmp_path / "spool").start()
    time.sleep(1.0)
    added = local_cluster.add_worker()  # joins the group: partitions move mid-ingest
    time.sleep(3.0)
    victim = local_cluster.worker_processes[0]
    os.kill(victim.owned_pid(), signal.SIGKILL)  # its partitions move after the session timeout
    wait_until(lambda: victim.owned_pid() is None, 10, "the worker to die")
    try:
        assert_exactly_once(local_cluster.settings, ingest, lambda: added.owned_pid() is not None)
    finally:
        victim.start()


def test_clickhouse_server_stopped_and_restarted_mid_ingest(local_cluster, tmp_path):
    ingest = Ingest(local_cluster.settings, tmp_path / "spool").start()
    time.sleep(1.5)
    local_cluster.clickhouse.stop()
    time.sleep(5.0)
    local_cluster.clickhouse.start()
    try:
        assert_exactly_once(local_cluster.settings, ingest, workers_alive(local_cluster))
    finally:
        time.sleep(5)  # a worker that crashed takes a moment to exit
        restart_exited_workers(local_cluster)


