"""The MLflow-compatibility benchmark runs in its reduced (--size ci) form and reports numbers.

Against trackstream only, unless BENCH_MLFLOW_BIN / BENCH_FML_BIN name a full `mlflow` / FastTrackML
`fml` executable: then their columns are run too. Targets are not asserted here (a shared CI
machine says little about them); the point is that the benchmark keeps working end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_mlflow_compat.py"
TRACKSTREAM_ROWS = ("ingest", "ingest_acked", "history_mlflow", "history_native", "history_native_arrow",
                    "history_downsampled", "log_metric_p50", "log_metric_p99", "ryw_p50", "ryw_p99",
                    "search_setup", "search_p50", "search_p99", "client_ingest")


def test_ci_size_benchmark_reports_trackstream_numbers(kafka_bootstrap, tmp_path):
    out = tmp_path / "bench.json"
    servers = ["trackstream"]
    extra: list[str] = []
    for name, variable, flag in (("mlflow", "BENCH_MLFLOW_BIN", "--mlflow-bin"), ("fml", "BENCH_FML_BIN", "--fml-bin")):
        if os.environ.get(variable):
            servers.append(name)
            extra += [flag, os.environ[variable]]
    env = {k: v for k, v in os.environ.items() if k not in ("BENCH_MLFLOW_BIN", "BENCH_FML_BIN")}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--size", "ci", "--bootstrap", kafka_bootstrap, "--servers", ",".join(servers),
         "--json", str(out), *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"

    header = next(line for line in result.stdout.splitlines() if line.startswith("measurement"))
    assert "trackstream" in header
    assert "log_batch ingest" in result.stdout and "targets (trackstream):" in result.stdout

    report = json.loads(out.read_text())
    assert report["size"] == "ci"
    assert report["servers"]["trackstream"]["status"].startswith("ok")
    rows = {row["key"]: row for row in report["rows"]}
    for key in TRACKSTREAM_ROWS:
        value = rows[key]["values"].get("trackstream")
        assert isinstance(value, (int, float)) and value > 0, f"{key}: {value!r} ({rows[key]['notes']})"
    assert not rows["ryw_p50"]["notes"].get("trackstream"), "a read right after a write missed it"
    for name in servers[1:]:
        assert report["servers"][name]["status"].startswith("ok"), report["servers"][name]
        assert rows["ingest"]["values"][name] > 0 and rows["ingest"]["ratios"][f"ts/{name}"] > 0


SUSTAINED_ROWS = ("sustained_pre", "sustained_pre_p50", "sustained_pre_p99", "sustained_pre_server_us",
                  "sustained_pre_client_us", "sustained_json", "sustained_json_server_us", "sustained_json_client_us",
                  "load_runs", "load_create_p50", "load_create_p99", "load_log_batch_p50", "load_log_batch_p99",
                  "load_search_p50", "load_search_p99", "log_metric_p50", "ryw_p50")


def test_sustained_mode_reports_rates_latencies_and_the_server_cpu_per_point(kafka_bootstrap, tmp_path):
    out = tmp_path / "sustained.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--mode", "sustained", "--size", "ci", "--duration", "3", "--load-runs", "60",
         "--searches", "20", "--latency-calls", "20", "--bootstrap", kafka_bootstrap, "--servers", "trackstream",
         "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"

    report = json.loads(out.read_text())
    assert report["mode"] == "sustained"
    rows = {row["key"]: row for row in report["rows"]}
    for key in SUSTAINED_ROWS:
        value = rows[key]["values"].get("trackstream")
        assert isinstance(value, (int, float)) and value > 0, f"{key}: {value!r} ({rows[key]['notes']})"
    split = rows["sustained_pre_server_us"]["notes"]["trackstream"]
    assert "server: python" in split and "broker" in split and "% busy" in split, split
    assert not rows["load_search_p50"]["notes"].get("trackstream"), "search over the loaded runs answered wrongly"
    assert {t["target"].split(" (scaled")[0] for t in report["targets"]} >= {
        "sustained ingest, pre-encoded bodies >= 400,000 points/s", "loading 60 runs < 0.12"}
