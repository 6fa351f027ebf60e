"""The web UI in headless Chromium against a real `trackstream server`, on data logged through the SDK:

  * runs page of an experiment with --runs runs (10,000): navigation → first page of rows shown,
  * chart of one --points-point series (10,000,000): downsampled response in → drawn,
  * zoom round trip: fetch finer buckets for a dragged step range → redrawn (median of --zooms),
  * the UI's own assets (page, modules, styles, vendored uPlot) as transferred gzip-compressed.

Needs Debian's /usr/bin/chromium and Playwright (the test extra). The broker is --bootstrap, or the
shared test broker that the test suite uses (started and leased the same way).

    python benchmarks/bench_ui.py [--runs 10000] [--points 10000000] [--zooms 7] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.harness import make_server, wait_until  # noqa: E402
from trackstream.producer.client import TrackingClient  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


@contextlib.contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    from tests.conftest import shared_local_broker

    yield from shared_local_broker()


def seed(client: TrackingClient, runs: int, points: int) -> tuple[str, str, str]:
    experiment = client.create_experiment(f"bench-ui-{uuid.uuid4().hex[:6]}")
    for i in range(runs):
        run = client.create_run(experiment, run_name=f"run-{i:05d}", provenance=False, user_id="bench",
                                source_name="bench_ui.py")
        client.log_param(run, "lr", 10 ** -(i % 5))
        client.log_metric(run, "acc", (i % 1000) / 1000, step=0)
        client.set_terminated(run, "FINISHED")
    big = client.create_run(experiment, run_name="ten-million", provenance=False)
    rng = np.random.default_rng(0)
    for chunk in np.array_split(np.arange(points, dtype=np.int64), max(1, points // 1_000_000)):
        client.log_metric_arrays(big, "loss", 1 / (chunk + 1) + rng.random(len(chunk)) * 0.01, chunk)
    client.set_terminated(big, "FINISHED")
    assert client.flush(600) == 0, "events left unacknowledged"
    return experiment, big, "loss"


def measure(base: str, experiment: str, big: str, key: str, zooms: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    out: dict[str, float] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        assets: set[str] = set()
        page.on("response", lambda r: assets.add(r.url) if r.url.startswith(base + "/ui/") or r.url == base + "/" else None)
        runs_page = f"{base}/#/experiments/{experiment}"
        page.goto(base + "/#/ingest")  # warm: assets cached as a returning user has them
        page.wait_for_selector("#ingest-status table")
        renders = []
        for _ in range(5):
            page.goto("about:blank")
            start = time.perf_counter()
            page.goto(runs_page)
            page.wait_for_selector("#runs tbody tr[data-run]")
            renders.append((time.perf_counter() - start) * 1000)
        out["runs page first render, ms (median of 5)"] = statistics.median(renders)
        out["runs page DOM rows"] = page.locator("#runs tbody tr").count()

        draws, opens = [], []
        for _ in range(3):
            page.goto("about:blank")
            start = time.perf_counter()
            page.goto(f"{base}/#/experiments/{experiment}/runs/{big}")
            chart = page.locator(f'#charts figure[data-key="{key}"][data-draw-ms]')
            chart.wait_for(timeout=60_000)
            opens.append((time.perf_counter() - start) * 1000)
            draws.append(float(chart.get_attribute("data-draw-ms")))
        out["10M-point chart, response in → drawn, ms (median of 3)"] = statistics.median(draws)
        out["10M-point chart, navigation → drawn, ms (median of 3)"] = statistics.median(opens)
        out["10M-point chart, points represented"] = float(chart.get_attribute("data-points"))

        box = chart.locator(".u-over").bounding_box()
        times = []
        for i in range(zooms):
            left = 0.1 + 0.1 * (i % 7)
            page.mouse.move(box["x"] + box["width"] * left, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * (left + 0.05), box["y"] + box["height"] / 2, steps=4)
            page.mouse.up()
            page.wait_for_selector(f'#charts figure[data-key="{key}"][data-zooms="{2 * i + 1}"]', timeout=30_000)
            times.append(float(chart.get_attribute("data-zoom-ms")))
            page.locator(f'#charts figure[data-key="{key}"] .u-over').dblclick(position={"x": 5, "y": 5})
            page.wait_for_selector(f'#charts figure[data-key="{key}"][data-zooms="{2 * i + 2}"]', timeout=30_000)
        out[f"zoom round trip, ms (median of {zooms})"] = statistics.median(times)
        browser.close()
    total = sum(len(requests.get(url, headers={"Accept-Encoding": "gzip"}, stream=True, timeout=30).raw.read())
                for url in sorted(assets))
    out[f"UI assets transferred (gzip, {len(assets)} files), KB"] = total / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--zooms", type=int, default=7)
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap; default: the shared test broker")
    args = parser.parse_args()
    with broker(args.bootstrap) as bootstrap, tempfile.TemporaryDirectory(prefix="bench-ui-") as home:
        server = make_server(bootstrap, Path(home), f"benchui{uuid.uuid4().hex[:6]}")
        server.start()
        print(f"server up at {server.settings.server_url}", flush=True)
        try:
            client = TrackingClient(server.settings)
            start = time.perf_counter()
            experiment, big, key = seed(client, args.runs, args.points)
            client.close()
            db = server.settings.database
            print("seeded; waiting for the server to materialize", flush=True)
            wait_until(lambda: server.sql(
                f"SELECT count() FROM {db}.runs_latest WHERE experiment_id = '{experiment}' AND status = 'FINISHED'"
            )[0][0] == args.runs + 1, 900, "the runs to be materialized", interval=1)
            wait_until(lambda: server.sql(f"SELECT count() FROM {db}.metrics WHERE run_id = '{big}'")[0][0] == args.points,
                       900, "the points to be materialized", interval=1)
            print(f"seeded {args.runs} runs and {args.points:,} points through the SDK in "
                  f"{time.perf_counter() - start:.1f} s")
            for name, value in measure(server.settings.server_url, experiment, big, key, args.zooms).items():
                print(f"{name}: {value:,.1f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
