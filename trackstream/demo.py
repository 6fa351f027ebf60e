"""The example training run `trackstream demo` logs, and a wait for it to become queryable."""

from __future__ import annotations

import math
import random
import time

from trackstream.producer.client import TrackingClient
from trackstream.config import Settings
from trackstream.errors import NotFound, ServiceUnavailable


def log_example_run(settings: Settings, steps: int = 500, seed: int = 7) -> str:
    rng = random.Random(seed)
    client = TrackingClient(settings)
    try:
        experiment_id = client.create_experiment("demo")
        run_id = client.create_run(experiment_id, run_name="demo-training", tags={"model": "mlp", "dataset": "synthetic"})
        client.log_params(run_id, {"learning_rate": 0.003, "batch_size": 64, "epochs": steps // 100 or 1})
        for step in range(steps):
            loss = 2.0 * math.exp(-step / (steps / 4)) + 0.05 + rng.gauss(0, 0.02)
            client.log_metrics(run_id, {"loss": loss, "accuracy": 1 - loss / 2.1}, step=step)
        client.set_terminated(run_id, "FINISHED")
        pending = client.flush(30)
        if pending:
            raise ServiceUnavailable(f"{pending} events were not acknowledged by Kafka within 30 s")
    finally:
        client.close()
    return run_id


def wait_for_run(settings: Settings, run_id: str, expected_points: int, timeout: float = 60.0) -> dict:
    """Poll the read side until the run is FINISHED with all its points, or time out."""
    from trackstream.reading import open_reader

    deadline = time.monotonic() + timeout
    last = "not materialized yet"
    while time.monotonic() < deadline:
        try:
            reader = open_reader(settings)
            run = reader.run(run_id)
            points = sum(len(reader.metric_history(run_id, k)["step"]) for k in run["metrics"])
            if run["status"] == "FINISHED" and points >= expected_points:
                return run
            last = f"status {run['status']}, {points}/{expected_points} points"
        except (NotFound, ServiceUnavailable) as exc:
            last = str(exc)
        time.sleep(0.3)
    raise ServiceUnavailable(f"run {run_id} not queryable after {timeout:.0f} s ({last}); "
                             "is the server running? see `trackstream status`")
