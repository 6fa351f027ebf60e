"""The one codec both sides of the log import.

Wire format: Avro single-object encoding (0xC3 0x01, 8-byte little-endian CRC-64-AVRO
fingerprint of the writer schema's parsing canonical form, then the Avro binary body).
The fingerprint names the exact writer schema, so a consumer can decode every version kept
in ``schemas/avro/<event_type>/v<N>.avsc`` and resolve it to the current (highest) version.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from trackstream.errors import DecodeError, EncodeError, UnknownEventType

SCHEMA_DIR = Path(__file__).parent / "avro"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
HEADER_LEN = 10

RUN_EVENT_TYPES = frozenset({
    "run_created", "params_set", "metrics_logged", "tags_set", "tag_deleted",
    "artifact_committed", "run_status_changed", "finalize_requested", "run_deleted", "run_restored",
    "inputs_logged",
    "run_models_linked",
})
EXPERIMENT_EVENT_TYPES = frozenset({
    "experiment_created", "experiment_renamed", "experiment_tag_set", "experiment_tag_deleted",
    "experiment_deleted", "experiment_restored",
})
# MLflow 3 LoggedModels: their own aggregate, keyed by model_id.
MODEL_EVENT_TYPES = frozenset({
    "logged_model_created", "logged_model_params_set", "logged_model_tags_set", "logged_model_tag_deleted",
    "logged_model_artifact_committed", "logged_model_finalized", "logged_model_deleted",
    "logged_model_metrics_logged",
})


@dataclass(frozen=True)
class SchemaVersion:
    event_type: str
    version: int
    fingerprint: bytes
    parsed: Any
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class DecodedEvent:
    event_type: str
    writer_version: int
    record: dict[str, Any]

    @property
    def aggregate_id(self) -> str:
        return aggregate_id(self.event_type, self.record)

    @property
    def aggregate_kind(self) -> str:
        return aggregate_kind(self.event_type)


# Every producer of the log must place a key on the same partition, or one run's events lose
# their order: librdkafka's default (CRC32) differs from the Java/aiokafka murmur2 that faust
# uses, so confluent-kafka producers are configured with this Java-compatible partitioner.
KAFKA_PARTITIONER = "murmur2_random"


def aggregate_id(event_type: str, record: Mapping[str, Any]) -> str:
    """The Kafka message key: run events by run_id, model events by model_id, experiment events by
    experiment_id."""
    if event_type in RUN_EVENT_TYPES:
        return record["run_id"]
    return record["model_id"] if event_type in MODEL_EVENT_TYPES else record["experiment_id"]


def aggregate_kind(event_type: str) -> str:
    """What the key of ``event_type`` names: "run", "model" or "experiment"."""
    if event_type in RUN_EVENT_TYPES:
        return "run"
    return "model" if event_type in MODEL_EVENT_TYPES else "experiment"


class SchemaRegistry:
    """Every schema version in the repo, indexed by type and by fingerprint."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        self._versions: dict[str, dict[int, SchemaVersion]] = {}
        for path in sorted(schema_dir.glob("*/v*.avsc")):
            event_type, version = path.parent.name, int(path.stem[1:])
            raw = json.loads(path.read_text())
            parsed = fastavro.parse_schema(raw, _write_hint=False)
            canonical = to_parsing_canonical_form(raw)
            fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))[::-1]
            entry = SchemaVersion(event_type, version, fp, parsed, raw)
            self._by_fingerprint[fp] = entry
            self._versions.setdefault(event_type, {})[version] = entry

    @property
    def event_types(self) -> list[str]:
        return sorted(self._versions)

    def versions(self, event_type: str) -> dict[int, SchemaVersion]:
        try:
            return self._versions[event_type]
        except KeyError:
            raise UnknownEventType(f"unknown event type {event_type!r}; known: {', '.join(self.event_types)}") from None

    def current(self, event_type: str) -> SchemaVersion:
        versions = self.versions(event_type)
        return versions[max(versions)]

    def by_fingerprint(self, fp: bytes) -> SchemaVersion | None:
        return self._by_fingerprint.get(fp)


class EventCodec:
    """Encode with the current schema of a type; decode any known version into the current one."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry or SchemaRegistry()

    def encode(self, event_type: str, record: Mapping[str, Any], version: int | None = None) -> bytes:
        schema = self.registry.current(event_type) if version is None else self.registry.versions(event_type)[version]
        buf = io.BytesIO()
        buf.write(SINGLE_OBJECT_MAGIC)
        buf.write(schema.fingerprint)
        try:
            fastavro.schemaless_writer(buf, schema.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError, struct.error, OverflowError) as exc:
            raise EncodeError(f"{event_type} event does not match schema v{schema.version}: {exc}") from exc
        return buf.getvalue()

    def decode(self, data: bytes) -> DecodedEvent:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        if len(data) < HEADER_LEN or data[:2] != SINGLE_OBJECT_MAGIC:
            raise DecodeError("not an Avro single-object encoded message (missing 0xC3 0x01 header)")
        fp = bytes(data[2:HEADER_LEN])
        writer = self.registry.by_fingerprint(fp)
        if writer is None:
            raise DecodeError(f"unknown schema fingerprint {fp[::-1].hex()}: written with a schema this build does not know")
        reader = self.registry.current(writer.event_type)
        body = io.BytesIO(data[HEADER_LEN:])
        try:
            record = fastavro.schemaless_reader(
                body, writer.parsed, reader.parsed if reader is not writer else None
            )
        except Exception as exc:  # fastavro raises a zoo of types on truncated/corrupt bodies
            raise DecodeError(f"corrupt {writer.event_type} v{writer.version} body: {type(exc).__name__}: {exc}") from exc
        if body.tell() != len(data) - HEADER_LEN:
            raise DecodeError(
                f"corrupt {writer.event_type} v{writer.version} body: {len(data) - HEADER_LEN - body.tell()} trailing bytes"
            )
        return DecodedEvent(writer.event_type, writer.version, record)  # type: ignore[arg-type]


@lru_cache(maxsize=1)
def default_codec() -> EventCodec:
    return EventCodec()
