"""`trackstream worker` x2 and `trackstream gateway` x2 on the ClickHouse server: a write through
one gateway is seen by a read through the other (read-your-writes across processes), and a run
cached by the reading gateway is refreshed after the other gateway's write."""

from __future__ import annotations

import dataclasses
import statistics
import time
import uuid

from trackstream.infra.topics import ensure_topics
from tests.integration.harness import ServerHandle, free_port, make_server, mlflow_call, wait_until

RYW_ROUNDS = 20


def role(base: ServerHandle, tmp_path, name: str, role_name: str) -> ServerHandle:
    home = tmp_path / name
    home.mkdir(parents=True, exist_ok=True)
    return ServerHandle(dataclasses.replace(base.settings, home=home, server_port=free_port()),
                        home / f"{role_name}.log", role=role_name)


def test_write_through_one_gateway_is_read_through_the_other(kafka_bootstrap, clickhouse_server_dsn, tmp_path):
    name = f"roles{uuid.uuid4().hex[:6]}"
    base = make_server(kafka_bootstrap, tmp_path / "base", name)
    base.settings = dataclasses.replace(base.settings, clickhouse_dsn=clickhouse_server_dsn)
    ensure_topics(base.settings)
    workers = [role(base, tmp_path, f"w{i}", "worker") for i in range(2)]
    gateways = [role(base, tmp_path, f"g{i}", "gateway") for i in range(2)]
    try:
        for process in workers + gateways:
            process.start()
        first, second = (g.settings.server_url for g in gateways)
        run_id = mlflow_call(first, "runs/create", {"experiment_id": "0", "run_name": "ryw"})["run"]["info"]["run_id"]
        latencies = []
        for i in range(RYW_ROUNDS):
            writer, reader = (first, second) if i % 2 == 0 else (second, first)
            mlflow_call(writer, "runs/log-metric", {"run_id": run_id, "key": "loss", "value": float(i), "step": i,
                                             "timestamp": 1_700_000_000_000 + i})
            started = time.perf_counter()
            run = mlflow_call(reader, "runs/get?run_id=" + run_id)["run"]  # a 503 would raise here
            latencies.append(time.perf_counter() - started)
            metrics = {m["key"]: m for m in run["data"].get("metrics", [])}
            assert metrics["loss"]["value"] == float(i), f"round {i}: {writer} -> {reader} saw {metrics}"
        latencies.sort()
        print(f"\ncross-gateway read-your-writes over {RYW_ROUNDS} rounds: p50 "
              f"{statistics.median(latencies) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
        assert all(process.process.poll() is None for process in workers + gateways)

        def caught_up_status() -> dict | None:
            # the gateway refreshes its figures every 2 s: wait for one taken after the last write
            status = gateways[1].reader.status()
            covered = sum(int(o) + 1 for o in status["positions"].values()) >= RYW_ROUNDS + 1
            return status if covered and status["lag"] and not any(status["lag"].values()) else None
        status = wait_until(caught_up_status, 30, "a gateway's status to show the workers caught up")
        assert status["role"] == "gateway" and "events" not in status
        assert sum(int(o) + 1 for o in status["positions"].values()) >= RYW_ROUNDS + 1  # every event, materialized
    finally:
        for process in gateways + workers:
            process.stop()
