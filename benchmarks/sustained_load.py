"""Sustained MLflow-REST load for bench_mlflow_compat.py: client processes, run loading, CPU split.

Users log for hours, so the figures that count are the ones that hold for 30 s and more with clients
written the way users write them. Everything here runs in forked client processes that each keep one
keep-alive connection, so the clients' own CPU is real and measured (``os.times`` in each client),
and the server's CPU is read from ``/proc`` for every process (and, for a one-process server, every
thread) that serves the load, so the per-point server cost is printed rather than inferred.

Client styles for the sustained ingest:
  * ``json``: each request builds its log-batch body with the ``json`` module (1000 metrics: 2 keys,
    500 consecutive steps), as a training script's lean client does;
  * ``pre``: the bodies are encoded before the clock starts (fresh steps in every body), which is how a
    fleet of trainers that each spend their CPU elsewhere looks to one server.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lean_http import Http

BATCH = 1000
KEYS = ("loss", "acc")
STEPS_PER_BODY = BATCH // len(KEYS)
PRE_ENCODED_BODIES_PER_RUN = 400          # 400 bodies x 1000 points = 400k points per run, then the next run
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --------------------------------------------------------------------------------------------
# CPU accounting from /proc
# --------------------------------------------------------------------------------------------
def _stat_fields(path: Path) -> list[str] | None:
    try:
        stat = path.read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` (all its threads, including exited ones) so far."""
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """{tid: (thread name, CPU seconds)} for the live threads of ``pid``."""
    found: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        fields = _stat_fields(task / "stat")
        if fields is None:
            continue
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue
        found[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return found


def machine_busy_seconds() -> tuple[float, float]:
    """(busy CPU seconds, total CPU seconds) of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def pid_listening_on(port: int) -> int | None:
    """The pid of the process with a listening TCP socket on ``port`` (e.g. the Kafka broker)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(parts[9])
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    return int(proc.name)
        except OSError:
            continue
    return None


def thread_group(name: str, process_name: str) -> str:
    """Which part of a one-process trackstream server a thread belongs to, by its name."""
    if name.startswith("rdk:"):
        return "librdkafka"
    if name == process_name[:15] or name.startswith(("clickhouse-rea", "asyncio", "ThreadPool", "python")):
        return "python"
    return "clickhouse engine"


@dataclass
class CpuSplit:
    """CPU seconds spent by each watched component over one measured window."""

    seconds: float
    components: dict[str, float] = field(default_factory=dict)
    machine_busy: float = 0.0
    machine_total: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def cores(self, name: str) -> float:
        return self.components.get(name, 0.0) / self.seconds if self.seconds else 0.0

    def describe(self) -> str:
        parts = [f"{name} {cpu / self.seconds:.2f}" for name, cpu in self.components.items()]
        busy = 100 * self.machine_busy / self.machine_total if self.machine_total else 0.0
        text = f"cores: {', '.join(parts)}; machine {busy:.0f}% busy over {self.seconds:.1f} s"
        return text + "".join(f" (WARNING: {w})" for w in self.warnings)


class CpuWatch:
    """Samples the CPU of named processes (server, broker) at start and stop.

    For the server process the split goes down to threads (Python, librdkafka, ClickHouse engine) so
    a one-process server still shows where its time goes; threads that exit inside the window are
    counted under "exited threads".
    """

    def __init__(self, processes: dict[str, list[int]], split_threads_of: str | None = None) -> None:
        self.processes = {name: [p for p in pids if p] for name, pids in processes.items()}
        self.split_threads_of = split_threads_of

    def _sample(self) -> tuple[float, dict[int, float], dict[int, tuple[str, float]], tuple[float, float]]:
        per_pid = {p: process_cpu_seconds(p) for pids in self.processes.values() for p in pids}
        threads: dict[int, tuple[str, float]] = {}
        if self.split_threads_of and self.processes.get(self.split_threads_of):
            threads = thread_cpu_seconds(self.processes[self.split_threads_of][0])
        return time.perf_counter(), per_pid, threads, machine_busy_seconds()

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> CpuSplit:
        t0, before, threads_before, (busy0, total0) = self._start
        t1, after, threads_after, (busy1, total1) = self._sample()
        split = CpuSplit(seconds=t1 - t0, machine_busy=busy1 - busy0, machine_total=total1 - total0)

        def add(component: str, seconds: float) -> None:
            split.components[component] = split.components.get(component, 0.0) + seconds

        for pid in [p for pids in self.processes.values() for p in pids if after[p] < before[p]]:
            split.warnings.append(f"process {pid} exited or restarted inside the window; its CPU is not counted")
            after[pid] = before[pid]
        for name, pids in self.processes.items():
            if not pids:
                split.warnings.append(f"no process found for {name}")
                continue
            if name != self.split_threads_of or not threads_after:
                add(name, sum(after[p] - before[p] for p in pids))
                continue
            main_pid, children = pids[0], pids[1:]
            process_name = _comm(main_pid)
            accounted = 0.0
            for tid, (thread_name, cpu) in threads_after.items():
                spent = cpu - threads_before.get(tid, (thread_name, 0.0))[1]
                add(f"{name}: {thread_group(thread_name, process_name)}", spent)
                accounted += spent
            exited = after[main_pid] - before[main_pid] - accounted
            if exited > 0.01:
                add(f"{name}: exited threads", exited)
            if children:
                add(f"{name}: child processes", sum(after[p] - before[p] for p in children))
        return split

    def total(self, split: CpuSplit, prefix: str) -> float:
        """CPU seconds of every component whose name starts with ``prefix``."""
        return sum(cpu for name, cpu in split.components.items() if name.startswith(prefix))


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------
# Client processes
# --------------------------------------------------------------------------------------------
@dataclass
class ClientReport:
    requests: int = 0
    points: int = 0
    cpu_s: float = 0.0
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    error: str = ""


def _client_main(target: Callable[..., ClientReport], args: tuple, barrier: Any, results: Any, index: int) -> None:
    try:
        report = target(*args, barrier=barrier)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        with_error = ClientReport(error=f"{exc.__class__.__name__}: {exc}")
        try:
            barrier.abort()
        except Exception:  # noqa: BLE001
            pass
        results.put((index, with_error))
        return
    results.put((index, report))


def run_clients(n: int, target: Callable[..., ClientReport], args_for: Callable[[int], tuple],
                timeout: float, on_start: Callable[[], None] | None = None) -> tuple[list[ClientReport], float]:
    """Fork ``n`` client processes running ``target(*args_for(i), barrier=...)``; they start their clocks
    together at the barrier (``on_start`` runs then, e.g. to start a CPU watch after the clients' setup).
    Returns their reports and the wall time from the barrier to the last report."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(n + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_client_main, args=(target, args_for(i), barrier, results, i), daemon=True)
             for i in range(n)]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - a client failed while preparing
        reports = _collect(results, n, 30)
        errors = [r.error for r in reports if r.error]
        raise RuntimeError(f"client processes failed before the start: {errors or exc}") from None
    if on_start is not None:
        on_start()
    started = time.perf_counter()
    reports = _collect(results, n, timeout)
    wall = time.perf_counter() - started
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
    errors = [r.error for r in reports if r.error]
    if errors:
        raise RuntimeError(f"{len(errors)} client process(es) failed: {errors[0]}")
    return reports, wall


def _collect(results: Any, n: int, timeout: float) -> list[ClientReport]:
    got: dict[int, ClientReport] = {}
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        try:
            index, report = results.get(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - queue.Empty
            break
        got[index] = report
    if len(got) < n:
        raise RuntimeError(f"only {len(got)} of {n} client processes reported within {timeout:.0f} s")
    return [got[i] for i in range(n)]


def _cpu_now() -> float:
    t = os.times()
    return t.user + t.system


def _metrics_fragment(first_step: int, base_ts: int, rng: random.Random) -> list[dict[str, Any]]:
    return [{"key": key, "value": rng.random(), "timestamp": base_ts + step, "step": step}
            for step in range(first_step, first_step + STEPS_PER_BODY) for key in KEYS]


def sustained_ingest_client(url: str, api: str, experiment_id: str, style: str, duration: float, base_ts: int,
                            seed: int, *, barrier: Any) -> ClientReport:
    """POST log-batch bodies of 1000 metrics for ``duration`` seconds; see the module docstring for styles."""
    http = Http(url)
    rng = random.Random(seed)
    runs = [_create_run(http, api, experiment_id, f"sustained-{style}-{seed}-{i}") for i in range(4)]
    fragments: list[bytes] = []
    if style == "pre":
        fragments = [json.dumps(_metrics_fragment(i * STEPS_PER_BODY, base_ts, rng)).encode()
                     for i in range(PRE_ENCODED_BODIES_PER_RUN)]
    http.raw("GET", "/health")
    report = ClientReport(latencies_ms={"log_batch": []})
    barrier.wait()
    cpu0 = _cpu_now()
    deadline = time.perf_counter() + duration
    path = f"{api}/runs/log-batch"
    run_index, body_index = 0, 0
    while time.perf_counter() < deadline:
        if style == "pre" and body_index == PRE_ENCODED_BODIES_PER_RUN:
            run_index, body_index = run_index + 1, 0
        while run_index >= len(runs):
            runs.append(_create_run(http, api, experiment_id, f"sustained-{style}-{seed}-{len(runs)}"))
        if style == "pre":
            body = b'{"run_id": "' + runs[run_index].encode() + b'", "metrics": ' + fragments[body_index] + b"}"
        else:
            body = json.dumps({"run_id": runs[run_index],
                               "metrics": _metrics_fragment(body_index * STEPS_PER_BODY, base_ts, rng)}).encode()
        t0 = time.perf_counter()
        http.call("POST", path, body)
        report.latencies_ms["log_batch"].append((time.perf_counter() - t0) * 1000)
        report.requests += 1
        report.points += BATCH
        body_index += 1
    report.cpu_s = _cpu_now() - cpu0
    report.run_ids = runs[:run_index + 1]
    http.close()
    return report


def run_loading_client(url: str, api: str, experiment_id: str, run_numbers: list[int], base_ts: int, *,
                       barrier: Any) -> ClientReport:
    """For each run: runs/create with a name and 3 tags, then one log-batch of 3 params and 2 metrics."""
    http = Http(url)
    http.raw("GET", "/health")
    report = ClientReport(latencies_ms={"create": [], "log_batch": []})
    barrier.wait()
    cpu0 = _cpu_now()
    for r in run_numbers:
        create = json.dumps({"experiment_id": experiment_id, "run_name": f"load-{r}", "start_time": base_ts + r,
                             "tags": [{"key": "team", "value": f"team-{r % 7}"},
                                      {"key": "dataset", "value": f"ds-{r % 3}"},
                                      {"key": "seed", "value": str(r)}]}).encode()
        t0 = time.perf_counter()
        run_id = json.loads(http.call("POST", f"{api}/runs/create", create))["run"]["info"]["run_id"]
        t1 = time.perf_counter()
        batch = json.dumps({"run_id": run_id,
                            "params": [{"key": "lr", "value": str(10 ** -(r % 4))},
                                       {"key": "batch_size", "value": str(32 * (1 + r % 4))},
                                       {"key": "optimizer", "value": "adam" if r % 2 else "sgd"}],
                            "metrics": [{"key": "acc", "value": load_run_acc(r), "timestamp": base_ts, "step": 0},
                                        {"key": "loss", "value": 1 - load_run_acc(r), "timestamp": base_ts,
                                         "step": 0}]}).encode()
        http.call("POST", f"{api}/runs/log-batch", batch)
        t2 = time.perf_counter()
        report.latencies_ms["create"].append((t1 - t0) * 1000)
        report.latencies_ms["log_batch"].append((t2 - t1) * 1000)
        report.requests += 2
        report.points += 2
    report.cpu_s = _cpu_now() - cpu0
    http.close()
    return report


def _create_run(http: Http, api: str, experiment_id: str, name: str) -> str:
    body = {"experiment_id": experiment_id, "run_name": name, "start_time": int(time.time() * 1000)}
    return http.post(f"{api}/runs/create", body)["run"]["info"]["run_id"]


def load_run_acc(r: int) -> float:
    """The acc metric of loaded run number ``r`` (deterministic, so searches can be checked)."""
    return random.Random(r).random()
