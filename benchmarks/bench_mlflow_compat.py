"""trackstream vs. `mlflow server` (sqlite) vs. FastTrackML, through the same MLflow REST API.

Starts each server in turn on 127.0.0.1 (trackstream with its own home, topic, database and
consumer group against the broker at --bootstrap; MLflow and FastTrackML on a sqlite file in a
temporary directory), runs the same workload against it, stops it, and prints one row per
measurement with a column per server and the ratios ts/mlflow and ts/fml (for latencies the ratio
is a speedup: their time / ours, so > 1 always means trackstream is better).

Workload, per server (sizes for --size full / ci):
  * log_batch ingest: N points (1,000,000 / 100,000) of one metric in one run, as pre-encoded
    log-batch JSON bodies of 1000 metrics (MLflow's maximum) posted by a lean keep-alive
    http.client over 4 connections. The clock stops when the points are readable: trackstream
    acknowledges once Kafka has an event, so for it the clock runs until a count over its SQL
    API sees all N points (the acknowledged rate is reported too); MLflow and FastTrackML write
    synchronously, so their last response is that moment.
  * get_metric_history of that run (N points): the MLflow route paged at max_results=25000 as the
    mlflow client does it, trackstream's columnar /api/ts/runs/{id}/metrics/{key} route (as an
    Arrow IPC stream and as JSON columns; every answer is decoded by the client), and a
    1000-bucket downsampled read (trackstream: /api/ts/runs/{id}/metrics/{key}?buckets=1000; MLflow: the
    UI's get-history-bulk-interval with max_results=1000; FastTrackML: none on the MLflow API).
  * log_metric latency: sequential runs/log-metric calls (500 / 100), p50 and p99; then
    read-your-writes: runs/get right after each of (250 / 50) log-metric calls, p50 / p99, and a
    note if any read did not show the write just acknowledged.
  * search_runs: R runs (10,000 / 1,000) created through runs/create + log-batch, then searches
    (200 / 100) with filter "metrics.acc > 0.5", order_by ["metrics.acc DESC"], max_results 100.
  * the unmodified mlflow Python client (MlflowClient.log_batch, 1000 Metric objects per call,
    100,000 / 50,000 points) against trackstream only, to show the client-side cap.

--mode sustained replaces that workload with what users' clusters do for hours (sizes full / ci):
  * sustained log_batch ingest for --duration seconds (30 / 5) from --clients processes (4 / 2), each
    with its own keep-alive connection, in two client styles: bodies encoded before the clock starts
    (fresh steps in every body) and JSON built per request (2 keys x 500 consecutive steps); it reports
    points/s acknowledged, log-batch p50/p99, and the CPU split over the window (server process, down
    to its Python / librdkafka / ClickHouse-engine threads, and the Kafka broker found by its listening
    port; the clients measure their own CPU), so the server's CPU per point is printed;
  * loading --load-runs runs (2,000 / 200) over the client processes: runs/create with a name and 3 tags,
    then one small log-batch of 3 params and 2 metrics; total time and per-call p50/p99;
  * search_runs over those runs (metric filter, param filter, order by metric), checked for the right
    answer, p50/p99; then the log-metric and read-your-writes latencies of the burst mode.
  Its targets are issue 14's.

MLflow and FastTrackML are found through --mlflow-bin / --fml-bin (or BENCH_MLFLOW_BIN /
BENCH_FML_BIN); a column whose executable is missing, or whose server does not start, is skipped
with a note. Every server process started here is stopped by pid in a finally block.
trackstream's server gets TRACKSTREAM_BATCH_WINDOW_MS from this script's environment, so the
batch window's effect can be measured (TRACKSTREAM_BATCH_WINDOW_MS=30 python ...).

    python benchmarks/bench_mlflow_compat.py --size full \
        --mlflow-bin /tmp/mlflow-venv/bin/mlflow --fml-bin /tmp/fml-venv/bin/fml [--json out.json]
    python benchmarks/bench_mlflow_compat.py --mode sustained --size full --mlflow-bin ... --fml-bin ...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import sustained_load
from lean_http import Http, HttpError

REPO = Path(__file__).resolve().parents[1]
API = "/api/2.0/mlflow"
SERVERS = ("trackstream", "mlflow", "fml")
LABELS = {"trackstream": "trackstream", "mlflow": "mlflow", "fml": "fasttrackml"}
BATCH = 1000                    # metrics per log-batch request: MLflow's maximum
HISTORY_PAGE = 25_000           # what the mlflow client asks get-history for per page
NEXT_PAGE_HEADER = "X-Trackstream-Next-Page-Token"  # where trackstream's history route puts the next page_token
DOWNSAMPLE_BUCKETS = 1000
BASE_TS = 1_700_000_000_000


@dataclass(frozen=True)
class Size:
    points: int            # log_batch ingest, and the history run
    runs: int              # search_runs corpus
    latency_calls: int     # sequential log-metric calls
    searches: int
    client_points: int     # mlflow Python client log_batch (trackstream only)
    threads: int = 4
    setup_threads: int = 16          # connections creating the search corpus (not a timed figure)
    history_reps: int = 5
    history_budget_s: float = 30.0   # stop repeating a slow history read after this much time
    downsample_reps: int = 20
    search_budget_s: float = 120.0   # stop timing searches after this long (a slow server's p99 then has fewer samples)
    duration: float = 30.0           # --mode sustained: seconds of sustained ingest per client style
    clients: int = 4                 # --mode sustained: client processes
    load_runs: int = 2000            # --mode sustained: runs loaded (runs/create + a small log-batch each)


PASSED_SETTINGS = ("TRACKSTREAM_BATCH_WINDOW_MS",)
"""Server settings taken from the benchmark's own environment (all other TRACKSTREAM_* are its own)."""

SIZES = {
    "full": Size(points=1_000_000, runs=10_000, latency_calls=500, searches=200, client_points=100_000),
    "ci": Size(points=100_000, runs=1_000, latency_calls=100, searches=100, client_points=20_000,
               history_reps=3, history_budget_s=5.0, downsample_reps=10, search_budget_s=30.0,
               duration=5.0, clients=2, load_runs=200),
}


def run_threads(n: int, target: Callable[[int], None]) -> None:
    """Run ``target(i)`` for i in range(n) on n threads; re-raise the first failure."""
    errors: list[BaseException] = []

    def wrapped(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Pids of every live descendant of ``pid`` (from /proc), children first."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        children = [p for p, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


class Server:
    name = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{self.name}.log"
        self.process: subprocess.Popen | None = None
        self.version = "?"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self, timeout: float) -> float:
        """Start and wait for GET /health; returns the seconds it took."""
        started = time.perf_counter()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.workdir)
        probe = Http(self.url, timeout=5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode} during start:\n{self.log_tail()}")
            try:
                if probe.raw("GET", "/health")[0] == 200:
                    probe.close()
                    return time.perf_counter() - started
            except OSError:
                probe.close()
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer GET {self.url}/health within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM the server and every process it spawned (by pid), SIGKILL what outlives ``grace``."""
        if self.process is None:
            return
        pids = [self.process.pid] + descendants(self.process.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 5
        for pid in pids:
            if pid == self.process.pid:
                if self.process.poll() is None:
                    self.process.kill()
                    self.process.wait(10)
                continue
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.process = None

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "<no log>"

    # capabilities the workload asks about
    def wait_readable(self, http: Http, run_id: str, key: str, expected: int, timeout: float) -> None:
        """Block until ``expected`` points of ``key`` are readable (synchronous servers: already are)."""

    def native_history(self, http: Http, run_id: str, key: str, fmt: str) -> int | None:
        return None

    def downsampled(self, http: Http, run_id: str, key: str) -> tuple[bool, str]:
        """One downsampled read; (available, note)."""
        status, data = http.raw("GET", f"/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
                                params={"run_ids": run_id, "metric_key": key, "max_results": DOWNSAMPLE_BUCKETS})
        if status != 200:
            return False, f"get-history-bulk-interval: HTTP {status}"
        if not json.loads(data).get("metrics"):
            return False, "get-history-bulk-interval returned no points"
        return True, "get-history-bulk-interval?max_results=1000"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[0] != "Z"
    except OSError:
        return False


class TrackstreamServer(Server):
    name = "trackstream"

    def __init__(self, workdir: Path, bootstrap: str) -> None:
        super().__init__(workdir)
        tag = uuid.uuid4().hex[:8]
        self.bootstrap = bootstrap
        self.topic = f"bench.compat.{tag}"
        self.database = f"bench_{tag}"
        self.consumer_group = f"bench-{tag}"
        self.home = workdir / "home"
        try:
            from importlib.metadata import version

            self.version = version("trackstream")
        except Exception:  # noqa: BLE001
            self.version = "?"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "trackstream.cli", "server"]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TRACKSTREAM_") or k in PASSED_SETTINGS}
        env.update(TRACKSTREAM_HOME=str(self.home), TRACKSTREAM_KAFKA=self.bootstrap, TRACKSTREAM_TOPIC=self.topic,
                   TRACKSTREAM_DLQ_TOPIC=f"{self.topic}.dlq", TRACKSTREAM_DATABASE=self.database,
                   TRACKSTREAM_CONSUMER_GROUP=self.consumer_group, TRACKSTREAM_SERVER_PORT=str(self.port),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
        return env

    def start(self, timeout: float) -> float:
        self.home.mkdir(parents=True, exist_ok=True)
        return super().start(timeout)

    def count(self, http: Http, run_id: str, key: str) -> int:
        query = (f"SELECT count() FROM {self.database}.metrics WHERE run_id = '{run_id}' AND key = '{key}'")
        return int(http.post("/api/ts/sql", {"query": query})["rows"][0][0])

    def wait_readable(self, http: Http, run_id: str, key: str, expected: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            try:
                seen = self.count(http, run_id, key)
            except HttpError:  # the metrics table may not exist yet
                seen = 0
            if seen >= expected:
                return
            time.sleep(0.05)
        raise RuntimeError(f"trackstream: only {seen} of {expected} points readable after {timeout:.0f} s")

    def wait_runs_readable(self, http: Http, run_ids: list[str], expected: int, timeout: float) -> None:
        """Block until ``expected`` points over ``run_ids`` are readable."""
        in_list = ", ".join(f"'{run}'" for run in run_ids)
        query = f"SELECT count() FROM {self.database}.metrics WHERE run_id IN ({in_list})"
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            seen = int(http.post("/api/ts/sql", {"query": query})["rows"][0][0])
            if seen >= expected:
                return
            time.sleep(0.1)
        raise RuntimeError(f"trackstream: only {seen} of {expected} points readable after {timeout:.0f} s")

    def native_history(self, http: Http, run_id: str, key: str, fmt: str) -> int | None:
        """Points read from every page of the history route (its pages are capped), decoded."""
        import pyarrow.ipc

        path = f"/api/ts/runs/{run_id}/metrics/{urllib.parse.quote(key)}"
        points, token = 0, None
        while True:
            params = {"format": fmt, **({"page_token": token} if token else {})}
            body = http.call("GET", path, params=params)
            if fmt == "arrow":
                points += pyarrow.ipc.open_stream(body).read_all().num_rows
            else:
                points += len(json.loads(body)["history"]["step"])
            token = http.last_headers.get(NEXT_PAGE_HEADER) if http.last_headers else None
            if not token:
                return points

    def downsampled(self, http: Http, run_id: str, key: str) -> tuple[bool, str]:
        status, data = http.raw("GET", f"/api/ts/runs/{run_id}/metrics/{urllib.parse.quote(key)}",
                                params={"buckets": DOWNSAMPLE_BUCKETS})
        if status != 200:
            return False, f"/api/ts/.../downsampled: HTTP {status}"
        history = json.loads(data).get("history") or {}
        # Until the route exists, /api/ts/runs/{id}/metrics/{key:.+} answers for a key named
        # "<key>/downsampled" (an empty history), so look for the bucketed shape.
        if not isinstance(history, dict) or not history.get("bucket"):
            return False, "/api/ts/.../downsampled not served (no bucketed history in the answer)"
        return True, "/api/ts/runs/{id}/metrics/{key}?buckets=1000"

    def delete_topics(self) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.delete_topics([self.topic, f"{self.topic}.dlq"], operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(30)


class MlflowServer(Server):
    name = "mlflow"

    def __init__(self, workdir: Path, binary: str) -> None:
        super().__init__(workdir)
        self.binary = binary
        self.version = _version([binary, "--version"])

    def command(self) -> list[str]:
        return [self.binary, "server", "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
                "--default-artifact-root", str(self.workdir / "artifacts"), "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", "1"]

    def env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}


class FmlServer(Server):
    name = "fml"

    def __init__(self, workdir: Path, binary: str) -> None:
        super().__init__(workdir)
        self.binary = binary
        self.version = _version([binary, "--version"])

    def command(self) -> list[str]:
        return [self.binary, "server", "--listen-address", f"127.0.0.1:{self.port}",
                "--database-uri", f"sqlite://{self.workdir / 'fml.db'}",
                "--default-artifact-root", str(self.workdir / "artifacts")]

    def downsampled(self, http: Http, run_id: str, key: str) -> tuple[bool, str]:
        available, note = super().downsampled(http, run_id, key)
        return available, note if available else f"{note} (FastTrackML downsamples only in its Aim API)"


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        return (out.stdout.strip() or out.stderr.strip()).splitlines()[-1][:60]
    except Exception as exc:  # noqa: BLE001
        return f"? ({exc.__class__.__name__})"


# --------------------------------------------------------------------------------------------
# Workload
# --------------------------------------------------------------------------------------------
@dataclass
class Row:
    key: str
    title: str
    unit: str
    higher_is_better: bool
    values: dict[str, float | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


class Results:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.notes: list[str] = []

    def row(self, key: str, title: str, unit: str, higher_is_better: bool) -> Row:
        if key not in self.rows:
            self.rows[key] = Row(key, title, unit, higher_is_better)
        return self.rows[key]

    def put(self, server: str, key: str, title: str, unit: str, higher: bool, value: float | None,
            note: str = "") -> None:
        row = self.row(key, title, unit, higher)
        row.values[server] = value
        if note:
            row.notes[server] = note

    def ratio(self, row: Row, other: str) -> float | None:
        ours, theirs = row.values.get("trackstream"), row.values.get(other)
        if not ours or not theirs:
            return None
        return ours / theirs if row.higher_is_better else theirs / ours


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def create_experiment(http: Http, prefix: str) -> str:
    return http.post(f"{API}/experiments/create", {"name": f"{prefix}-{uuid.uuid4().hex[:8]}"})["experiment_id"]


def create_run(http: Http, experiment_id: str, name: str) -> str:
    body = {"experiment_id": experiment_id, "run_name": name, "start_time": int(time.time() * 1000)}
    return http.post(f"{API}/runs/create", body)["run"]["info"]["run_id"]


def batch_bodies(run_id: str, key: str, points: int) -> list[bytes]:
    rng = random.Random(0)
    bodies = []
    for start in range(0, points, BATCH):
        metrics = [{"key": key, "value": rng.random(), "timestamp": BASE_TS + step, "step": step}
                   for step in range(start, min(points, start + BATCH))]
        bodies.append(json.dumps({"run_id": run_id, "metrics": metrics}).encode())
    return bodies


def ingest(server: Server, experiment_id: str, size: Size, res: Results) -> str:
    """log_batch ingest of size.points into one run; returns the run (the history run)."""
    http = Http(server.url)
    run_id = create_run(http, experiment_id, "ingest")
    bodies = batch_bodies(run_id, "loss", size.points)
    threads = [Http(server.url) for _ in range(size.threads)]
    for t in threads:  # open the connections outside the clock
        t.raw("GET", "/health")
    log(f"{server.name}: ingest {size.points:,} points, {len(bodies)} log-batch requests over {size.threads} connections")
    started = time.perf_counter()
    run_threads(size.threads, lambda i: [threads[i].call("POST", f"{API}/runs/log-batch", b)
                                         for b in bodies[i::size.threads]])
    acked = time.perf_counter() - started
    server.wait_readable(http, run_id, "loss", size.points, timeout=max(600.0, acked * 10))
    readable = time.perf_counter() - started
    for t in threads:
        t.close()
    log(f"{server.name}: acked after {acked:.2f} s, readable after {readable:.2f} s "
        f"-> {size.points / readable:,.0f} points/s")
    res.put(server.name, "ingest", f"log_batch ingest, lean HTTP x{size.threads} conns, {size.points:,} pts "
            "(until readable)", "points/s", True, size.points / readable)
    res.put(server.name, "ingest_acked", "  same, until the last log-batch is acknowledged", "points/s", True,
            size.points / acked)
    return run_id


def log_metric_latency(server: Server, experiment_id: str, size: Size, res: Results) -> None:
    http = Http(server.url)
    run_id = create_run(http, experiment_id, "latency")
    latencies = []
    for i in range(size.latency_calls + 10):
        body = json.dumps({"run_id": run_id, "key": "lat", "value": i * 0.5, "timestamp": BASE_TS + i,
                           "step": i}).encode()
        t0 = time.perf_counter()
        http.call("POST", f"{API}/runs/log-metric", body)
        if i >= 10:  # warm-up excluded
            latencies.append((time.perf_counter() - t0) * 1000)
    log(f"{server.name}: log-metric p50 {statistics.median(latencies):.2f} ms p99 {percentile(latencies, 99):.2f} ms")
    title = f"log_metric latency, {size.latency_calls} sequential calls"
    res.put(server.name, "log_metric_p50", f"{title}, p50", "ms", False, statistics.median(latencies))
    res.put(server.name, "log_metric_p99", f"{title}, p99", "ms", False, percentile(latencies, 99))

    # read-your-writes: a runs/get right after an acknowledged log-metric must already show it
    reads, stale = [], 0
    for i in range(size.latency_calls // 2):
        step = size.latency_calls + 10 + i
        http.call("POST", f"{API}/runs/log-metric", json.dumps({
            "run_id": run_id, "key": "ryw", "value": float(step), "timestamp": BASE_TS + step, "step": step}).encode())
        t0 = time.perf_counter()
        run = http.get(f"{API}/runs/get", {"run_id": run_id})["run"]
        reads.append((time.perf_counter() - t0) * 1000)
        seen = {m["key"]: m for m in run["data"].get("metrics", [])}.get("ryw", {}).get("step")
        stale += seen != step
    http.close()
    note = "" if not stale else f"{stale} of {len(reads)} reads did not show the write"
    log(f"{server.name}: read after write p50 {statistics.median(reads):.2f} ms p99 {percentile(reads, 99):.2f} ms"
        + (f" ({note})" if note else ""))
    title = f"runs/get right after an acknowledged log-metric (read-your-writes), {len(reads)} calls"
    res.put(server.name, "ryw_p50", f"{title}, p50", "ms", False, statistics.median(reads), note)
    res.put(server.name, "ryw_p99", f"{title}, p99", "ms", False, percentile(reads, 99), note)


def timed_reps(reps: int, budget_s: float, fn: Callable[[], Any]) -> tuple[list[float], Any]:
    times: list[float] = []
    spent = 0.0
    result = None
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - t0
        times.append(elapsed * 1000)
        spent += elapsed
        if spent > budget_s:
            break
    return times, result


def history(server: Server, run_id: str, size: Size, res: Results) -> None:
    http = Http(server.url)

    def paged() -> tuple[int, int]:
        token, total, pages = None, 0, 0
        while True:
            params = {"run_id": run_id, "metric_key": "loss", "max_results": HISTORY_PAGE}
            if token:
                params["page_token"] = token
            page = json.loads(http.call("GET", f"{API}/metrics/get-history", params=params))
            total += len(page.get("metrics", []))
            pages += 1
            token = page.get("next_page_token")
            if not token:
                return total, pages

    n = size.points
    times, (total, pages) = timed_reps(size.history_reps, size.history_budget_s, paged)
    note = f"{pages} page(s), {len(times)} rep(s)" + ("" if total == n else f", GOT {total} POINTS")
    log(f"{server.name}: get-history {total:,} points in {pages} pages: {statistics.median(times):.0f} ms (median)")
    res.put(server.name, "history_mlflow", f"get_metric_history {n:,} pts, MLflow REST paged {HISTORY_PAGE:,}/page",
            "ms", False, statistics.median(times), note)
    if total != n:
        res.notes.append(f"{LABELS[server.name]}: get-history returned {total} of {n} points")

    for fmt, key, title in (
            ("arrow", "history_native_arrow", "  same, trackstream /api/ts/runs/{id}/metrics/{key}, Arrow IPC"),
            ("json", "history_native", "  same, trackstream /api/ts/runs/{id}/metrics/{key}, JSON columns")):
        try:
            probe = server.native_history(http, run_id, "loss", fmt)
        except HttpError as exc:
            probe, reason = None, str(exc)
        else:
            reason = "no such route"
        if probe is None:
            res.put(server.name, key, title, "ms", False, None, reason if server.name == "trackstream" else "")
            continue
        times, count = timed_reps(size.history_reps, size.history_budget_s,
                                  lambda: server.native_history(http, run_id, "loss", fmt))
        log(f"{server.name}: native history ({fmt}) {count:,} points: {statistics.median(times):.0f} ms (median)")
        res.put(server.name, key, title, "ms", False, statistics.median(times),
                f"{len(times)} rep(s), decoded by the client" + ("" if count == n else f", GOT {count} POINTS"))

    available, note = server.downsampled(http, run_id, "loss")
    title = f"metric history {n:,} pts downsampled to {DOWNSAMPLE_BUCKETS} buckets"
    if available:
        times, _ = timed_reps(size.downsample_reps, size.history_budget_s,
                              lambda: server.downsampled(http, run_id, "loss"))
        log(f"{server.name}: downsampled: {statistics.median(times):.1f} ms (median) via {note}")
        res.put(server.name, "history_downsampled", title, "ms", False, statistics.median(times),
                f"{note}, {len(times)} reps")
    else:
        log(f"{server.name}: downsampled: not available ({note})")
        res.put(server.name, "history_downsampled", title, "ms", False, None, f"not available: {note}")
    http.close()


def with_retries(fn: Callable[[], Any], attempts: int = 5) -> Any:
    """For corpus setup only: a sqlite server may answer 'database is locked' under concurrent writers."""
    for attempt in range(attempts):
        try:
            return fn()
        except HttpError as exc:
            if exc.status < 500 or attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2 ** attempt)
    raise AssertionError("unreachable")


def search(server: Server, size: Size, res: Results) -> None:
    setup_http = Http(server.url)
    experiment_id = create_experiment(setup_http, "search")
    rng = random.Random(1)
    accs = [rng.random() for _ in range(size.runs)]
    n_conns = size.setup_threads
    conns = [Http(server.url) for _ in range(n_conns)]
    log(f"{server.name}: creating {size.runs:,} runs (runs/create + log-batch each) over {n_conns} connections")

    def make(i: int) -> None:
        http = conns[i]
        for r in range(i, size.runs, n_conns):
            run_id = with_retries(lambda: create_run(http, experiment_id, f"r{r}"))
            with_retries(lambda: http.call("POST", f"{API}/runs/log-batch", json.dumps({
                "run_id": run_id,
                "metrics": [{"key": "acc", "value": accs[r], "timestamp": BASE_TS, "step": 0},
                            {"key": "loss", "value": 1 - accs[r], "timestamp": BASE_TS, "step": 0}],
                "params": [{"key": "lr", "value": str(10 ** -(r % 4))}]}).encode()))

    started = time.perf_counter()
    run_threads(n_conns, make)
    created = time.perf_counter() - started
    for c in conns:
        c.close()
    res.put(server.name, "search_setup", f"setup: {size.runs:,} runs via runs/create + log-batch, x{n_conns} conns",
            "runs/s", True, size.runs / created)
    log(f"{server.name}: created {size.runs:,} runs in {created:.1f} s")

    body = json.dumps({"experiment_ids": [experiment_id], "filter": "metrics.acc > 0.5",
                       "order_by": ["metrics.acc DESC"], "max_results": 100}).encode()
    expected = sorted((a for a in accs if a > 0.5), reverse=True)[:100]
    http = Http(server.url)
    first = json.loads(http.call("POST", f"{API}/runs/search", body))  # waits for trackstream's read-your-writes
    got = [next(m["value"] for m in run["data"]["metrics"] if m["key"] == "acc") for run in first.get("runs", [])]
    if [round(g, 9) for g in got] != [round(e, 9) for e in expected]:
        res.notes.append(f"{LABELS[server.name]}: search_runs answer differs from the expected top 100 "
                         f"({len(got)} runs)")
    for _ in range(4):
        http.call("POST", f"{API}/runs/search", body)
    latencies = timed_searches(http, body, size)
    http.close()
    search_note = ("" if len(latencies) == size.searches
                   else f"only {len(latencies)} of {size.searches} searches within the {size.search_budget_s:.0f} s budget")
    log(f"{server.name}: search p50 {statistics.median(latencies):.1f} ms p99 {percentile(latencies, 99):.1f} ms")
    title = f"search_runs over {size.runs:,} runs, metric filter + order, top 100"
    res.put(server.name, "search_p50", f"{title}, p50", "ms", False, statistics.median(latencies), search_note)
    res.put(server.name, "search_p99", f"{title}, p99", "ms", False, percentile(latencies, 99), search_note)


def timed_searches(http: Http, body: bytes, size: Size) -> list[float]:
    """ms per runs/search call, size.searches of them or as many as fit in size.search_budget_s."""
    latencies: list[float] = []
    deadline = time.perf_counter() + size.search_budget_s
    for _ in range(size.searches):
        t0 = time.perf_counter()
        http.call("POST", f"{API}/runs/search", body)
        latencies.append((time.perf_counter() - t0) * 1000)
        if time.perf_counter() > deadline:
            break
    return latencies


def mlflow_client_ingest(server: Server, experiment_id: str, size: Size, res: Results) -> None:
    title = f"mlflow Python client log_batch, 1 thread, {size.client_points:,} pts (until readable)"
    try:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        res.put(server.name, "client_ingest", title, "points/s", True, None, f"mlflow client not importable: {exc}")
        return
    client = MlflowClient(tracking_uri=server.url)
    run_id = client.create_run(experiment_id, run_name="mlflow-client").info.run_id
    rng = random.Random(2)
    metrics = [Metric("loss", rng.random(), BASE_TS + step, step) for step in range(size.client_points)]
    log(f"{server.name}: mlflow client log_batch {size.client_points:,} points")
    started = time.perf_counter()
    for start in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[start:start + BATCH], synchronous=True)
    acked = time.perf_counter() - started
    http = Http(server.url)
    server.wait_readable(http, run_id, "loss", size.client_points, timeout=600)
    readable = time.perf_counter() - started
    http.close()
    log(f"{server.name}: mlflow client: acked {acked:.2f} s, readable {readable:.2f} s")
    res.put(server.name, "client_ingest", title, "points/s", True, size.client_points / readable,
            f"acked rate {size.client_points / acked:,.0f}/s")


def bench_server(server: Server, size: Size, res: Results, with_client: bool) -> None:
    http = Http(server.url)
    experiment_id = create_experiment(http, "compat")
    http.close()
    run_id = ingest(server, experiment_id, size, res)
    history(server, run_id, size, res)
    log_metric_latency(server, experiment_id, size, res)
    search(server, size, res)
    if with_client:
        mlflow_client_ingest(server, experiment_id, size, res)


# --------------------------------------------------------------------------------------------
# Sustained mode (--mode sustained): client processes for a fixed duration, run loading, CPU split
# --------------------------------------------------------------------------------------------
STYLE_TITLES = {"pre": "bodies encoded before timing", "json": "JSON built per request"}


def server_cpu_watch(server: Server) -> sustained_load.CpuWatch:
    """What serves the load: the server's process tree and, for trackstream, the Kafka broker."""
    assert server.process is not None
    processes = {"server": [server.process.pid] + descendants(server.process.pid)}
    if not isinstance(server, TrackstreamServer):
        return sustained_load.CpuWatch(processes)
    port = int(server.bootstrap.split(",")[0].rsplit(":", 1)[1])
    broker = sustained_load.pid_listening_on(port)
    processes["broker"] = [broker] if broker else []
    return sustained_load.CpuWatch(processes, split_threads_of="server")  # one process: split by its threads


def sustained_ingest(server: Server, experiment_id: str, size: Size, style: str, res: Results) -> None:
    title = (f"sustained log_batch ingest, {size.clients} client processes, {STYLE_TITLES[style]}, "
             f"{size.duration:.0f} s")
    log(f"{server.name}: {title}")
    watch = server_cpu_watch(server)
    reports, wall = sustained_load.run_clients(
        size.clients, sustained_load.sustained_ingest_client,
        lambda i: (server.url, API, experiment_id, style, size.duration, BASE_TS, 1000 * i + len(style)),
        timeout=size.duration + 300, on_start=watch.start)
    points = sum(r.points for r in reports)
    acked = time.perf_counter()
    if isinstance(server, TrackstreamServer):
        server.wait_runs_readable(Http(server.url), [run for r in reports for run in r.run_ids], points,
                                  timeout=max(600.0, size.duration * 10))
    lag_s = time.perf_counter() - acked
    split = watch.stop()
    latencies = [ms for r in reports for ms in r.latencies_ms["log_batch"]]
    server_cpu = watch.total(split, "server") + watch.total(split, "broker")
    client_cpu = sum(r.cpu_s for r in reports)
    key = f"sustained_{style}"
    res.put(server.name, key, f"{title}, acknowledged", "points/s", True, points / wall,
            f"{points:,} points; readable {lag_s:.1f} s after the last acknowledgement")
    res.put(server.name, f"{key}_p50", "  log-batch latency under that load, p50", "ms", False,
            statistics.median(latencies))
    res.put(server.name, f"{key}_p99", "  log-batch latency under that load, p99", "ms", False,
            percentile(latencies, 99))
    res.put(server.name, f"{key}_server_us", "  server CPU per point (server processes + broker, until readable)",
            "us", False, server_cpu / points * 1e6, split.describe())
    res.put(server.name, f"{key}_client_us", "  client CPU per point", "us", False, client_cpu / points * 1e6,
            f"clients used {client_cpu / wall:.2f} cores")
    log(f"{server.name}: {points / wall:,.0f} points/s acknowledged, p50 {statistics.median(latencies):.1f} ms "
        f"p99 {percentile(latencies, 99):.1f} ms; server {server_cpu / points * 1e6:.2f} us/point, "
        f"clients {client_cpu / points * 1e6:.2f} us/point; {split.describe()}")


def run_loading(server: Server, experiment_id: str, size: Size, res: Results) -> None:
    log(f"{server.name}: loading {size.load_runs:,} runs over {size.clients} client processes")
    reports, wall = sustained_load.run_clients(
        size.clients, sustained_load.run_loading_client,
        lambda i: (server.url, API, experiment_id, list(range(i, size.load_runs, size.clients)), BASE_TS),
        timeout=3600)
    creates = [ms for r in reports for ms in r.latencies_ms["create"]]
    batches = [ms for r in reports for ms in r.latencies_ms["log_batch"]]
    title = f"loading {size.load_runs:,} runs, {size.clients} processes (runs/create + 3 tags, then a small log-batch)"
    res.put(server.name, "load_runs", title, "s", False, wall)
    for name, values in (("create", creates), ("log_batch", batches)):
        label = "runs/create" if name == "create" else "small log-batch"
        res.put(server.name, f"load_{name}_p50", f"  {label} under that load, p50", "ms", False,
                statistics.median(values))
        res.put(server.name, f"load_{name}_p99", f"  {label} under that load, p99", "ms", False,
                percentile(values, 99))
    log(f"{server.name}: loaded {size.load_runs:,} runs in {wall:.1f} s; runs/create p50 "
        f"{statistics.median(creates):.1f} ms, log-batch p50 {statistics.median(batches):.1f} ms")


def search_loaded_runs(server: Server, experiment_id: str, size: Size, res: Results) -> None:
    """search_runs over the loaded runs: a metric filter, a param filter and an order by metric."""
    body = json.dumps({"experiment_ids": [experiment_id], "filter": "metrics.acc > 0.5 and params.lr = '0.01'",
                       "order_by": ["metrics.acc DESC"], "max_results": 100}).encode()
    expected = sorted((acc for r in range(size.load_runs)
                       if (acc := sustained_load.load_run_acc(r)) > 0.5 and str(10 ** -(r % 4)) == "0.01"),
                      reverse=True)[:100]
    http = Http(server.url)
    first = json.loads(http.call("POST", f"{API}/runs/search", body))
    got = [next(m["value"] for m in run["data"]["metrics"] if m["key"] == "acc") for run in first.get("runs", [])]
    note = "" if [round(g, 9) for g in got] == [round(e, 9) for e in expected] else (
        f"answer differs from the expected top {len(expected)} ({len(got)} runs)")
    latencies = timed_searches(http, body, size)
    http.close()
    title = f"search_runs over the {size.load_runs:,} loaded runs, metric + param filter, order by metric"
    res.put(server.name, "load_search_p50", f"{title}, p50", "ms", False, statistics.median(latencies), note)
    res.put(server.name, "load_search_p99", f"{title}, p99", "ms", False, percentile(latencies, 99), note)
    if note:
        res.notes.append(f"{LABELS[server.name]}: search over loaded runs: {note}")


def bench_server_sustained(server: Server, size: Size, res: Results, styles: list[str]) -> None:
    http = Http(server.url)
    experiment_id = create_experiment(http, "sustained")
    load_experiment = create_experiment(http, "load")
    http.close()
    for style in styles:
        sustained_ingest(server, experiment_id, size, style, res)
    run_loading(server, load_experiment, size, res)
    search_loaded_runs(server, load_experiment, size, res)
    log_metric_latency(server, experiment_id, size, res)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit in ("points/s", "runs/s"):
        return f"{value:,.0f}"
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else (f"{value:,.0f}x" if value >= 100 else f"{value:.1f}x" if value >= 10
                                      else f"{value:.2f}x")


def render(res: Results, present: list[str]) -> str:
    header = ["measurement", "unit"] + [LABELS[s] for s in present]
    ratio_cols = [s for s in present if s != "trackstream"]
    header += [f"ts/{s}" for s in ratio_cols]
    lines = []
    for row in res.rows.values():
        cells = [row.title, row.unit] + [fmt(row.values.get(s), row.unit) for s in present]
        cells += [fmt_ratio(res.ratio(row, s)) for s in ratio_cols]
        lines.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)]
    out = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))),
           "  ".join("-" * w for w in widths)]
    for cells in lines:
        out.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    return "\n".join(out)


def targets(res: Results, size_name: str, size: Size) -> list[dict[str, Any]]:
    rows = res.rows
    found: list[dict[str, Any]] = []

    def check(name: str, value: float | None, ok: Callable[[float], bool], shown: str) -> None:
        status = "n/a" if value is None else ("PASS" if ok(value) else "MISS")
        found.append({"target": name, "value": value, "status": status, "shown": shown})

    ingest = rows.get("ingest")
    if ingest:
        for other, goal in (("mlflow", 50), ("fml", 10)):
            r = res.ratio(ingest, other)
            check(f"log_batch ingest >= {goal}x {LABELS[other]}", r, lambda v, g=goal: v >= g,
                  "not measured" if r is None else f"{r:.1f}x")
    for key, goal, label in (("history_mlflow", 300, "full history (MLflow paged route) < 300 ms"),
                             ("history_native_arrow", 300, "full history (trackstream route, Arrow) < 300 ms"),
                             ("history_native", 300, "full history (trackstream route, JSON columns) < 300 ms"),
                             ("history_downsampled", 50, "downsampled history < 50 ms"),
                             ("search_p99", 100, "search_runs p99 < 100 ms")):
        value = rows[key].values.get("trackstream") if key in rows else None
        check(label, value, lambda v, g=goal: v < g, "not available" if value is None else f"{value:.1f} ms")
    if size_name != "full":
        for t in found:
            t["target"] += f" (scaled run: {size.points:,} pts / {size.runs:,} runs; targets are for full size)"
    return found


def sustained_targets(res: Results, size_name: str, size: Size) -> list[dict[str, Any]]:
    """Issue 14's targets for the sustained workloads."""
    rows = res.rows
    found: list[dict[str, Any]] = []

    def value(key: str, server: str = "trackstream") -> float | None:
        return rows[key].values.get(server) if key in rows else None

    def check(name: str, got: float | None, ok: Callable[[float], bool], shown: str) -> None:
        status = "n/a" if got is None else ("PASS" if ok(got) else "MISS")
        found.append({"target": name, "value": got, "status": status, "shown": shown})

    for style in ("pre", "json"):
        us = value(f"sustained_{style}_server_us")
        check(f"server CPU per point ({STYLE_TITLES[style]}) <= 2.5 us", us, lambda v: v <= 2.5,
              "not measured" if us is None else f"{us:.2f} us")
    pre = value("sustained_pre")
    check("sustained ingest, pre-encoded bodies >= 400,000 points/s", pre, lambda v: v >= 400_000,
          "not measured" if pre is None else f"{pre:,.0f} points/s")
    for style, goal in (("pre", 10), ("json", 5)):
        ratio = res.ratio(rows[f"sustained_{style}"], "fml") if f"sustained_{style}" in rows else None
        check(f"sustained ingest ({STYLE_TITLES[style]}) >= {goal}x FastTrackML", ratio, lambda v, g=goal: v >= g,
              "FastTrackML not measured" if ratio is None else f"{ratio:.1f}x")
    for key, goal, label in (("load_runs", 4.0 * size.load_runs / 2000, f"loading {size.load_runs:,} runs"),
                             ("load_create_p50", 3.0, "runs/create p50 under load, ms"),
                             ("load_log_batch_p50", 3.0, "small log-batch p50 under load, ms"),
                             ("log_metric_p50", 2.0, "log-metric p50, ms"), ("log_metric_p99", 8.0, "log-metric p99, ms"),
                             ("ryw_p50", 10.0, "read-your-writes p50, ms"), ("ryw_p99", 30.0, "read-your-writes p99, ms"),
                             ("load_search_p50", 20.0, "search_runs p50, ms"), ("load_search_p99", 50.0,
                                                                                 "search_runs p99, ms")):
        got = value(key)
        check(f"{label} < {goal:g}", got, lambda v, g=goal: v < g, "not measured" if got is None else f"{got:.1f}")
    if size_name != "full":
        for t in found:
            t["target"] += " (scaled run; the targets are for the full size)"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--bootstrap", default=os.environ.get("TRACKSTREAM_KAFKA", "127.0.0.1:19092"),
                        help="Kafka for the trackstream server (default: $TRACKSTREAM_KAFKA or 127.0.0.1:19092)")
    parser.add_argument("--mlflow-bin", default=os.environ.get("BENCH_MLFLOW_BIN"),
                        help="`mlflow` executable of a full MLflow install (default: $BENCH_MLFLOW_BIN)")
    parser.add_argument("--fml-bin", default=os.environ.get("BENCH_FML_BIN"),
                        help="FastTrackML `fml` executable (default: $BENCH_FML_BIN)")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help=f"comma-separated subset of {','.join(SERVERS)} (default: all)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument("--mode", choices=("burst", "sustained"), default="burst",
                        help="burst: the workload above; sustained: client processes for --duration seconds per "
                             "client style, run loading, search over the loaded runs, log-metric latency")
    parser.add_argument("--styles", default="pre,json",
                        help="sustained mode's client styles: pre (bodies encoded before timing), json (built per "
                             "request); default both")
    for name in ("points", "runs", "latency_calls", "searches", "client_points", "threads", "clients", "load_runs"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"override the size's {name}")
    parser.add_argument("--duration", type=float, help="override the size's duration (sustained mode, seconds)")
    args = parser.parse_args(argv)

    size = SIZES[args.size]
    overrides = {k: getattr(args, k) for k in ("points", "runs", "latency_calls", "searches", "client_points",
                                                 "threads", "clients", "load_runs", "duration")
                 if getattr(args, k) is not None}
    if overrides:
        size = Size(**{**asdict(size), **overrides})
    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(wanted) - set(SERVERS)
    if unknown:
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    if not styles or set(styles) - set(STYLE_TITLES):
        parser.error(f"--styles takes a comma-separated subset of {','.join(STYLE_TITLES)}, got {args.styles!r}")

    res = Results()
    status: dict[str, str] = {}
    versions: dict[str, str] = {}
    present: list[str] = []
    began = time.perf_counter()
    if args.mode == "sustained":
        print(f"bench_mlflow_compat --mode sustained --size {args.size}: {size.clients} client processes x "
              f"{size.duration:.0f} s of log-batch per style ({', '.join(styles)}), {size.load_runs:,} runs loaded, "
              f"{size.searches} searches, {size.latency_calls} log-metric calls", flush=True)
    else:
        print(f"bench_mlflow_compat --size {args.size}: {size.points:,} points ingest (= the history run), "
              f"{size.runs:,} runs for search, {size.latency_calls} log-metric calls, {size.searches} searches, "
              f"{size.client_points:,} points via the mlflow client (trackstream only), {size.threads} connections",
              flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-compat-") as tmp:
        for name in SERVERS:
            if name not in wanted:
                continue
            workdir = Path(tmp) / name
            workdir.mkdir()
            server: Server
            if name == "trackstream":
                server = TrackstreamServer(workdir, args.bootstrap)
            else:
                binary = args.mlflow_bin if name == "mlflow" else args.fml_bin
                flag = "--mlflow-bin / BENCH_MLFLOW_BIN" if name == "mlflow" else "--fml-bin / BENCH_FML_BIN"
                resolved = shutil.which(binary) if binary else None
                if not resolved:
                    status[name] = (f"skipped: no executable given ({flag})" if not binary
                                    else f"skipped: {binary!r} is not an executable")
                    log(f"{name}: {status[name]}")
                    continue
                server = MlflowServer(workdir, resolved) if name == "mlflow" else FmlServer(workdir, resolved)
            versions[name] = server.version
            try:
                log(f"{name}: starting on {server.url}")
                try:
                    startup = server.start(args.start_timeout)
                except RuntimeError as exc:
                    status[name] = f"skipped: server did not start: {exc}"
                    log(f"{name}: {status[name]}")
                    continue
                log(f"{name}: up after {startup:.1f} s")
                present.append(name)
                load_before = os.getloadavg()[0]
                try:
                    if args.mode == "sustained":
                        bench_server_sustained(server, size, res, styles)
                    else:
                        bench_server(server, size, res, with_client=(name == "trackstream"))
                    status[name] = (f"ok (start {startup:.1f} s; 1-min load average {load_before:.1f} before, "
                                    f"{os.getloadavg()[0]:.1f} after its workload)")
                except Exception as exc:  # noqa: BLE001 - a failing server leaves a partial column
                    status[name] = f"FAILED mid-run: {exc.__class__.__name__}: {exc}"
                    log(f"{name}: {status[name]}\n{server.log_tail()}")
            finally:
                server.stop()
                if isinstance(server, TrackstreamServer):
                    with contextlib.suppress(Exception):
                        server.delete_topics()

    total = time.perf_counter() - began
    print()
    print(render(res, present or ["trackstream"]))
    print()
    for name in SERVERS:
        if name in status:
            print(f"{LABELS[name]:12s} {versions.get(name, '')}: {status[name]}")
    notes = [f"{row.title.strip()} [{LABELS[s]}]: {note}" for row in res.rows.values() for s, note in row.notes.items()]
    if notes or res.notes:
        print("\nnotes:")
        for note in notes + res.notes:
            print(f"  - {note}")
    found = (sustained_targets if args.mode == "sustained" else targets)(res, args.size, size)
    print("\ntargets (trackstream):")
    for t in found:
        print(f"  [{t['status']:4s}] {t['target']}: {t['shown']}")
    print(f"\ntotal wall time {total:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "size": args.size, "mode": args.mode, "params": asdict(size), "servers": {s: {"status": status.get(s, "not requested"),
                                                                        "version": versions.get(s)} for s in SERVERS},
            "rows": [{"key": r.key, "title": r.title.strip(), "unit": r.unit, "higher_is_better": r.higher_is_better,
                      "values": r.values, "notes": r.notes,
                      "ratios": {f"ts/{s}": res.ratio(r, s) for s in ("mlflow", "fml")}} for r in res.rows.values()],
            "targets": found, "notes": res.notes, "wall_time_s": total}, indent=2))
    failed = [s for s in present if not status.get(s, "").startswith("ok")]
    return 1 if failed or "trackstream" in wanted and "trackstream" not in present else 0


if __name__ == "__main__":
    sys.exit(main())
