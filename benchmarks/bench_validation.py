"""Nanoseconds per ``validate_metric`` call (hot path of ``log_metric``; budget ~1 µs for the whole call).

Run: ``python benchmarks/bench_validation.py [calls]``. Prints the best of 5 repeats per case,
minus the cost of an empty loop calling a no-op function with the same arguments.
"""

from __future__ import annotations

import sys
import timeit

import numpy as np

from trackstream.producer.validation import validate_metric, validate_metric_arrays

TS = 1_700_000_000_000


def _noop(key: object, value: object, step: object, timestamp_ms: object) -> None:
    return None


def _ns_per_call(func: object, args: tuple, calls: int) -> float:
    namespace = {"f": func, "a": args}
    best = min(timeit.repeat("f(*a)", globals=namespace, number=calls, repeat=5))
    return best / calls * 1e9


def main(calls: int = 1_000_000) -> None:
    cases = {
        "python float/int/int": ("train/loss", 0.123, 42, TS),
        "NaN value": ("train/loss", float("nan"), 42, TS),
        "numpy float64, int, int": ("train/loss", np.float64(0.123), 42, TS),
        "numpy float64/int64/int64": ("train/loss", np.float64(0.123), np.int64(42), np.int64(TS)),
    }
    baseline = _ns_per_call(_noop, cases["python float/int/int"], calls)
    print(f"validate_metric, {calls:,} calls per repeat "
          f"(net = total - {baseline:.0f} ns empty-call baseline)")
    for name, args in cases.items():
        total = _ns_per_call(validate_metric, args, calls)
        print(f"  {name:<28} {total:6.0f} ns/call total, {total - baseline:6.0f} ns/call net")

    n = 1_000_000
    arrays = ("train/loss", np.random.default_rng(0).random(n), np.arange(n), np.full(n, TS))
    seconds = min(timeit.repeat(lambda: validate_metric_arrays(*arrays), number=1, repeat=5))
    print(f"validate_metric_arrays, {n:,} points: {seconds * 1e9 / n:.2f} ns/point")


if __name__ == "__main__":
    main(int(float(sys.argv[1])) if len(sys.argv) > 1 else 1_000_000)
