"""Where one `log-metric` call's time goes: the broker's acknowledgement vs. the rest of the server.

Posts ``--calls`` `runs/log-metric` calls one at a time over a keep-alive connection to a running
server, and at the same moment, in a process of its own, times produce -> acknowledgement of
single events with the gateway's own producer settings (``GATEWAY_PRODUCER_CONFIG``) on the same
broker, to a scratch topic. The difference between the two p50s is what the request spends in
the server beyond the broker's answer: HTTP, validation, encoding, and the delivery report's way
from librdkafka's poll thread into the event loop the gateway shares with the worker.

    python benchmarks/bench_append_latency.py http://127.0.0.1:5055 --bootstrap 127.0.0.1:9092 [--calls 1000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lean_http import Http  # noqa: E402

API = "/api/2.0/mlflow"


def percentiles(values_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(values_ms)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99)]


def broker_acks(bootstrap: str, stop: "multiprocessing.synchronize.Event", results: "multiprocessing.Queue") -> None:
    """Produce one event at a time until ``stop``, each waited for, as the gateway's producer would."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from trackstream.server.event_log import GATEWAY_PRODUCER_CONFIG

    topic = f"bench-ack-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, **GATEWAY_PRODUCER_CONFIG})
    latencies: list[float] = []
    try:
        while not stop.is_set():
            done: list[object] = []
            started = time.perf_counter()
            producer.produce(topic, b"x" * 300, b"run", on_delivery=lambda err, msg: done.append(err))
            while not done:
                producer.poll(0.001)
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)  # a light probe: it must not load the machine it measures
    finally:
        producer.flush(10)
        admin.delete_topics([topic])
        results.put(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--bootstrap", required=True, help="the server's Kafka broker")
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    http = Http(args.url)
    run_id = http.post(f"{API}/runs/create", {"experiment_id": "0"})["run"]["info"]["run_id"]
    stop, results = multiprocessing.Event(), multiprocessing.Queue()
    acker = multiprocessing.Process(target=broker_acks, args=(args.bootstrap, stop, results))
    acker.start()
    time.sleep(2.0)  # the scratch topic exists and the producer is connected
    requests: list[float] = []
    for step in range(args.calls + 20):
        body = json.dumps({"run_id": run_id, "key": "m", "value": step * 0.5, "timestamp": 1_700_000_000_000 + step,
                           "step": step}).encode()
        started = time.perf_counter()
        http.call("POST", f"{API}/runs/log-metric", body)
        if step >= 20:  # warm-up excluded
            requests.append((time.perf_counter() - started) * 1000)
    stop.set()
    acks = results.get(timeout=60)
    acker.join(30)
    request_p50, request_p99 = percentiles(requests)
    ack_p50, ack_p99 = percentiles(acks)
    print(f"log-metric, {len(requests)} sequential calls: p50 {request_p50:.2f} ms, p99 {request_p99:.2f} ms")
    print(f"broker produce -> ack, {len(acks)} events meanwhile: p50 {ack_p50:.2f} ms, p99 {ack_p99:.2f} ms")
    print(f"in the server beyond the broker's answer, p50: {request_p50 - ack_p50:.2f} ms")


if __name__ == "__main__":
    main()
