"""Deliver spools that exited processes left behind (``trackstream sync``, and every SDK start).

Each directory under the spool root is one former writer's ``DiskSpool``. A spool that is locked
belongs to a process that is still running and delivers it itself, so it is skipped; so is a
spool recorded for another topic (its ``meta.json``), because its events belong elsewhere.
A spool is deleted once everything in it is delivered.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from tqdm import tqdm

from trackstream.producer.kafka_writer import SpoolShipper
from trackstream.producer.spool import DiskSpool, SpoolError, SpoolLocked


@dataclass(frozen=True)
class SpoolSyncResult:
    path: Path
    status: str  # "delivered" | "partial" | "locked" | "other-topic" | "error"
    delivered: int = 0
    remaining: int = 0
    error: str | None = None


@dataclass(frozen=True)
class SyncReport:
    spools: tuple[SpoolSyncResult, ...]

    @property
    def delivered(self) -> int:
        return sum(s.delivered for s in self.spools)

    @property
    def remaining(self) -> int:
        """Events still on disk in the spools this sync was responsible for (not locked ones)."""
        return sum(s.remaining for s in self.spools if s.status in ("partial", "error"))

    @property
    def locked(self) -> list[Path]:
        return [s.path for s in self.spools if s.status == "locked"]

    @property
    def errors(self) -> list[str]:
        return [f"{s.path}: {s.error}" for s in self.spools if s.error]


def spool_dirs(spool_root: Path) -> list[Path]:
    """Spool directories under the root, oldest first (dot-names are spools being created)."""
    try:
        dirs = [p for p in Path(spool_root).iterdir()
                if p.is_dir() and not p.name.startswith(".") and DiskSpool.is_spool_dir(p)]
    except FileNotFoundError:
        return []

    def created(path: Path) -> float:
        meta = DiskSpool.read_metadata(path)
        return meta.get("created_ms", 0) / 1000 or path.stat().st_mtime

    return sorted(dirs, key=created)


def sync_spools(spool_root: Path, bootstrap: str, topic: str, timeout: float = 60.0, progress: bool = False, *,
                exclude: Iterable[Path] = (), producer_config: Mapping[str, Any] | None = None,
                stop: threading.Event | None = None) -> SyncReport:
    """Deliver every unlocked spool under ``spool_root`` recorded for ``topic`` (or recording no
    topic) to Kafka at ``bootstrap``, oldest first, within ``timeout`` seconds overall."""
    deadline = time.monotonic() + timeout
    excluded = {Path(p).resolve() for p in exclude}
    results: list[SpoolSyncResult] = []
    opened: list[DiskSpool] = []
    try:
        for path in spool_dirs(spool_root):
            if path.resolve() in excluded:
                continue
            recorded_topic = DiskSpool.read_metadata(path).get("topic")
            if recorded_topic not in (None, topic):
                results.append(SpoolSyncResult(path, "other-topic"))
                continue
            if DiskSpool.is_locked(path):
                results.append(SpoolSyncResult(path, "locked"))
                continue
            try:
                opened.append(DiskSpool(path))
            except SpoolLocked:
                results.append(SpoolSyncResult(path, "locked"))
            except (SpoolError, OSError) as exc:
                results.append(SpoolSyncResult(path, "error", error=str(exc)))
        total = sum(spool.pending_count for spool in opened)
        with tqdm(total=total, disable=not progress, unit="event", desc="trackstream sync") as bar:
            while opened:
                results.append(_deliver(opened[0], bootstrap, topic, deadline, producer_config, stop, bar))
                opened.pop(0)
    finally:
        for spool in opened:
            spool.close()
    return SyncReport(tuple(results))


def _deliver(spool: DiskSpool, bootstrap: str, topic: str, deadline: float,
             producer_config: Mapping[str, Any] | None, stop: threading.Event | None, bar: tqdm) -> SpoolSyncResult:
    path = spool.directory
    shipper: SpoolShipper | None = None
    error: str | None = None
    try:
        if spool.pending_count:
            shipper = SpoolShipper(spool, bootstrap, topic, producer_config, on_progress=bar.update)
            shipper.drain(deadline, stop)
    except Exception as exc:  # one bad spool must not stop the others
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if shipper is not None:
            try:
                shipper.close()
            except Exception as exc:
                error = error or f"{type(exc).__name__}: {exc}"
            errors = shipper.take_errors()
            error = error or (errors[0] if errors else None)
        remaining = spool.pending_count
        spool.close(remove_if_delivered=True)
    delivered = shipper.delivered_count if shipper is not None else 0
    status = "delivered" if remaining == 0 else ("error" if error else "partial")
    return SpoolSyncResult(path, status, delivered, remaining, error)
