"""Ingest counters of one worker, their recent rates, and their Prometheus text exposition.

A `trackstream gateway` has no worker of its own: its ``IngestStats`` (``role="gateway"``) holds
only the workers' materialized positions it follows and the topic's end offsets, so its status
and ``/metrics`` show the consumer lag, and no counters that would read as zero."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

RATE_WINDOW_S = 10.0

COUNTERS = {
    "batches": "Batches materialized.",
    "events": "Events consumed from the log.",
    "metric_points": "Metric points written to ClickHouse.",
    "rejects": "Events refused into the rejects table.",
    "duplicates": "Re-delivered events dropped by writer sequence.",
    "storage_errors": "ClickHouse writes that failed and were retried.",
    "rows_already_stored": "Rows of re-delivered batches already in ClickHouse (skipped).",
}


@dataclass
class IngestStats:
    role: str = "server"  # "server" / "worker": counters of this process's worker; "gateway": lag only
    started_at: float = field(default_factory=time.time)
    batches: int = 0
    events: int = 0
    metric_points: int = 0
    rejects: int = 0
    duplicates: int = 0
    storage_errors: int = 0
    rows_already_stored: int = 0
    insert_seconds_total: float = 0.0
    last_insert_seconds: float = 0.0
    positions: dict[int, int] = field(default_factory=dict)
    highwaters: dict[int, int] = field(default_factory=dict)
    _samples: deque = field(default_factory=lambda: deque(maxlen=512))

    def record_batch(self, events: int, points: int, rejects: int, duplicates: int, insert_seconds: float,
                     positions: dict[int, int]) -> None:
        self.batches += 1
        self.events += events
        self.metric_points += points
        self.rejects += rejects
        self.duplicates += duplicates
        self.last_insert_seconds = insert_seconds
        self.insert_seconds_total += insert_seconds
        self.positions.update(positions)
        now = time.monotonic()
        self._samples.append((now, self.events, self.metric_points, self.rejects))
        while self._samples and self._samples[0][0] < now - RATE_WINDOW_S:
            self._samples.popleft()

    def lag(self) -> dict[int, int]:
        """Events in the log not yet materialized, per partition (from the last known high watermarks)."""
        return {p: max(hw - (self.positions.get(p, -1) + 1), 0) for p, hw in sorted(self.highwaters.items())}

    def rates(self) -> dict[str, float]:
        now = time.monotonic()
        recent = [s for s in self._samples if s[0] >= now - RATE_WINDOW_S]
        if not recent:
            return {"events_per_s": 0.0, "points_per_s": 0.0, "rejects_per_s": 0.0}
        first = recent[0]
        span = max(now - first[0], 1.0)
        return {"events_per_s": round((self.events - first[1]) / span, 1),
                "points_per_s": round((self.metric_points - first[2]) / span, 1),
                "rejects_per_s": round((self.rejects - first[3]) / span, 2)}

    @property
    def counts_events(self) -> bool:
        return self.role != "gateway"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "uptime_s": round(time.time() - self.started_at, 1)}
        if self.counts_events:
            out.update({name: getattr(self, name) for name in COUNTERS})
            out.update(self.rates())
            out["last_insert_ms"] = round(self.last_insert_seconds * 1000, 1)
        else:
            out["counters"] = "kept by each `trackstream worker` (its log); this gateway follows their positions"
        out["positions"] = {str(p): o for p, o in sorted(self.positions.items())}
        out["lag"] = {str(p): n for p, n in self.lag().items()}
        return out

    def prometheus(self) -> str:
        lines = []
        for name, help_text in COUNTERS.items() if self.counts_events else ():
            lines += [f"# HELP trackstream_{name}_total {help_text}", f"# TYPE trackstream_{name}_total counter",
                      f"trackstream_{name}_total {getattr(self, name)}"]
        if self.counts_events:
            lines += ["# HELP trackstream_insert_seconds ClickHouse insert time per batch.",
                      "# TYPE trackstream_insert_seconds summary",
                      f"trackstream_insert_seconds_sum {self.insert_seconds_total:.6f}",
                      f"trackstream_insert_seconds_count {self.batches}"]
        lines += ["# HELP trackstream_consumer_lag Events in the log not yet materialized.",
                  "# TYPE trackstream_consumer_lag gauge"]
        lines += [f'trackstream_consumer_lag{{partition="{p}"}} {n}' for p, n in self.lag().items()]
        for name, value in self.rates().items() if self.counts_events else ():
            lines += [f"# TYPE trackstream_{name} gauge", f"trackstream_{name} {value}"]
        return "\n".join(lines) + "\n"
