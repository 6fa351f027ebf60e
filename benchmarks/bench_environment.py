"""What recording a run's environment costs ``create_run`` (``ts.start_run``).

  a) ms per ``create_run`` with environment capture off and on (median of --runs runs each; a
     writer that discards events, the local artifact store in a temporary TRACKSTREAM_HOME, the
     provenance tags on in both). The capture and upload run on a background thread, so this is
     what the caller waits for.
  b) the background work: ``capture_environment()`` alone (median), and the first run's whole
     job (capture + upload + verify + commit) versus a later, unchanged run's (capture + tags).
  c) for comparison, reading every package's metadata with importlib.metadata (what a
     METADATA-parsing ``pip freeze`` equivalent would cost).

    python benchmarks/bench_environment.py [--runs 200]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sdk import DiscardWriter  # noqa: E402
from trackstream.config import Settings  # noqa: E402
from trackstream.producer import environment as env  # noqa: E402
from trackstream.producer.client import TrackingClient  # noqa: E402


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def create_run_ms(client: TrackingClient, runs: int, environment: bool) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run_id = client.create_run("0", environment=environment)
        times.append(time.perf_counter() - start)
        client.wait_for_environment(run_id)
    return ms(statistics.median(times))


def job_ms(client: TrackingClient) -> float:
    start = time.perf_counter()
    client.wait_for_environment(client.create_run("0", environment=True))
    return ms(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        client = TrackingClient(Settings(home=Path(home), kafka_bootstrap="unused"), writer=DiscardWriter(),
                                linger_s=3600)
        client.create_run("0", environment=False)  # provenance is computed once per process: not timed
        first_job = job_ms(client)
        unchanged_job = statistics.median(job_ms(client) for _ in range(20))
        off = create_run_ms(client, args.runs, environment=False)
        on = create_run_ms(client, args.runs, environment=True)
        captures = []
        for _ in range(20):
            start = time.perf_counter()
            files = env.capture_environment()
            captures.append(time.perf_counter() - start)
        start = time.perf_counter()
        for dist in importlib.metadata.distributions():
            dist.metadata["Name"]
        metadata_ms = ms(time.perf_counter() - start)
        client.close()
    packages = len(files.files[0][1].decode().splitlines())
    print(f"create_run, environment off: {off} ms (median of {args.runs})")
    print(f"create_run, environment on:  {on} ms (median of {args.runs}); added: {round(on - off, 3)} ms")
    print(f"capture_environment(): {ms(statistics.median(captures))} ms for {packages} packages (median of 20)")
    print(f"background job, first run (capture + upload + commit): {first_job} ms")
    print(f"background job, unchanged later run (capture + tags): {round(unchanged_job, 3)} ms (median of 20)")
    print(f"for comparison, importlib.metadata over every package: {metadata_ms} ms")


if __name__ == "__main__":
    main()
