"""Collecting what killed uploads leave in an artifact store's staging area.

An upload writes to ``.staging/`` and leaves it when it is verified (``promote``), so whatever is
still there after a grace period belongs to a process that died or gave up. Only the staging area
is looked at: committed artifacts and versions waiting to be switched in (``.versions/``) are never
touched. The age of an entry is the time since its last write, so an upload that is still sending
bytes stays young however long it takes; an S3 multipart upload is as old as its last part.

A version in ``.versions/`` older than the grace period belongs to a process that died between
storing it and switching it in. The worker settles it against the event log (``settle_versions``):
if the last committed sha256 of its path is the version's and nothing newer was switched in since,
it is switched in (the commit was acknowledged, the switch never happened); otherwise it was never
committed, or a later version won, and it is removed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from trackstream.config import Settings
from trackstream.errors import InvalidInput
from trackstream.producer.artifacts import (ArtifactStore, LocalArtifactStore, StagedObject, StoredVersion,
                                            open_artifact_store)

__all__ = ["StagingCollection", "collect_staging", "older_than", "parse_duration", "describe_duration",
           "staging_stores", "gc_interval_s", "VersionOutcome", "version_outcome", "settle_versions"]

log = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")


def parse_duration(text: str) -> float:
    """``"90"`` / ``"90s"``, ``"30m"``, ``"24h"``, ``"2d"`` -> seconds."""
    match = _DURATION.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if not match:
        raise InvalidInput(f"Invalid duration {text!r}: a number with an optional unit s, m, h or d (e.g. 30m, 24h)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def describe_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def older_than(staged: Iterable[StagedObject], grace_s: float, now: float) -> list[StagedObject]:
    """The entries last written more than ``grace_s`` seconds before ``now``."""
    if grace_s < 0:
        raise InvalidInput(f"Invalid grace period {grace_s}: must not be negative")
    return [entry for entry in staged if now - entry.modified > grace_s]


@dataclass
class StagingCollection:
    """What one pass removed, what it kept (uploads younger than the grace period) and what failed."""

    removed: list[StagedObject] = field(default_factory=list)
    kept: list[StagedObject] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(entry.size for entry in self.removed)


def collect_staging(stores: Sequence[ArtifactStore], grace_s: float, now: float | None = None) -> StagingCollection:
    """Remove every staging entry of ``stores`` older than ``grace_s``; a failure on one entry is
    recorded and the others are still collected."""
    now = time.time() if now is None else now
    result = StagingCollection()
    for store in stores:
        staged = store.list_staged()
        stale = older_than(staged, grace_s, now)
        result.kept += [entry for entry in staged if entry not in stale]
        for entry in stale:
            try:
                store.remove_staged(entry)
            except Exception as exc:
                result.errors.append(f"{entry.name}: {type(exc).__name__}: {exc}")
            else:
                result.removed.append(entry)
    return result


def staging_stores(settings: Settings) -> list[ArtifactStore]:
    """The stores whose staging areas are collected: the local one (the SDK's, when no S3 store is
    set, and where the MLflow proxy receives uploads) and the S3 store ``TRACKSTREAM_ARTIFACT_STORE`` names."""
    stores: list[ArtifactStore] = [LocalArtifactStore(settings.artifact_root)]
    if settings.artifact_store:
        stores.append(open_artifact_store(settings.artifact_store, settings.artifact_root))
    return stores


def gc_interval_s(grace_s: float) -> float:
    """How often the worker collects: a quarter of the grace period, between 0.5 s and an hour."""
    return max(min(grace_s / 4, 3600.0), 0.5)


class VersionOutcome:
    WAIT = "wait"
    PUBLISH = "publish"
    DISCARD = "discard"


def version_outcome(version: StoredVersion, committed_sha256: str | None, key_modified: float | None,
                    grace_s: float, now: float) -> str:
    """What to do with a version left in ``.versions/``: wait while it may still belong to a live
    upload; switch it in when the event log's last commit for its path is this version and the path
    was not switched to something else after it was stored; else remove it."""
    if now - version.modified <= grace_s:
        return VersionOutcome.WAIT
    newer_in_place = key_modified is not None and key_modified >= version.modified
    if version.sha256 and committed_sha256 == version.sha256 and not newer_in_place:
        return VersionOutcome.PUBLISH
    return VersionOutcome.DISCARD


def settle_versions(stores: Sequence[ArtifactStore], grace_s: float,
                    committed_sha256: Callable[[str], str | None], now: float | None = None) -> dict[str, list[str]]:
    """Apply ``version_outcome`` to every left-over version; ``committed_sha256(key)`` is the sha256 of
    the last materialized commit of a store key (None if none). Returns the keys published and the
    version ids discarded."""
    now = time.time() if now is None else now
    done: dict[str, list[str]] = {VersionOutcome.PUBLISH: [], VersionOutcome.DISCARD: []}
    for store in stores:
        for version in store.list_versions():
            if now - version.modified <= grace_s:
                continue
            try:
                outcome = _settle(store, version, committed_sha256, grace_s, now)
            except Exception:  # another worker settled it meanwhile, or the store is unreachable: next pass
                log.warning("could not settle version %s of %r", version.version_id, version.key, exc_info=True)
                continue
            if outcome != VersionOutcome.WAIT:
                done[outcome].append(version.key if outcome == VersionOutcome.PUBLISH else version.version_id)
    return done


def _settle(store: ArtifactStore, version: StoredVersion, committed_sha256: Callable[[str], str | None],
            grace_s: float, now: float) -> str:
    committed = committed_sha256(version.key) if version.key else None
    key_modified = store.modified(version.key) if version.key else None
    outcome = version_outcome(version, committed, key_modified, grace_s, now)
    if outcome == VersionOutcome.PUBLISH:
        store.publish(version.version_id, version.key)
        log.warning("switched in %s (version %s): its commit was acknowledged, its switch never happened",
                    version.key, version.version_id)
    elif outcome == VersionOutcome.DISCARD:
        store.discard_staged(version.version_id)
    return outcome
