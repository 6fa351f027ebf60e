import json
import struct
import uuid

import numpy as np
import pytest

from trackstream.schemas import EXPERIMENT_EVENT_TYPES, MODEL_EVENT_TYPES, RUN_EVENT_TYPES, EventCodec, MetricBatch, SchemaRegistry
from trackstream.schemas.codec import HEADER_LEN, SINGLE_OBJECT_MAGIC
from trackstream.errors import DecodeError, EncodeError, UnknownEventType

CODEC = EventCodec()


def example_record(event_type: str, version: int | None = None) -> dict:
    """A valid record for any schema version, built from the schema itself."""
    registry = CODEC.registry
    schema = registry.current(event_type) if version is None else registry.versions(event_type)[version]
    samples = {"string": "x", "long": 7, "bytes": b"", "int": 1}
    record = {}
    for field in schema.raw["fields"]:
        ftype = field["type"]
        if field["name"] == "event_id":
            record[field["name"]] = uuid.uuid4().hex
        elif isinstance(ftype, str):
            record[field["name"]] = samples[ftype]
        elif isinstance(ftype, list):
            record[field["name"]] = None
        elif ftype["type"] == "array":
            record[field["name"]] = []
        elif ftype["type"] == "enum":
            record[field["name"]] = ftype["symbols"][0]
    if event_type == "metrics_logged":
        record["count"] = 0
    return record


def test_every_event_type_of_the_design_has_a_schema():
    assert RUN_EVENT_TYPES | EXPERIMENT_EVENT_TYPES | MODEL_EVENT_TYPES == set(CODEC.registry.event_types)


@pytest.mark.parametrize("event_type", sorted(RUN_EVENT_TYPES | EXPERIMENT_EVENT_TYPES | MODEL_EVENT_TYPES))
def test_every_event_type_round_trips(event_type):
    record = example_record(event_type)
    decoded = CODEC.decode(CODEC.encode(event_type, record))
    assert decoded.event_type == event_type
    assert decoded.record == record


@pytest.mark.parametrize(
    "event_type,version",
    [(t, v) for t in CODEC.registry.event_types for v in CODEC.registry.versions(t)],
)
def test_current_schema_reads_every_kept_version(event_type, version):
    old = example_record(event_type, version)
    decoded = CODEC.decode(CODEC.encode(event_type, old, version=version))
    current_fields = [f["name"] for f in CODEC.registry.current(event_type).raw["fields"]]
    assert decoded.writer_version == version
    assert list(decoded.record) == current_fields
    for name, value in old.items():
        assert decoded.record[name] == value


def test_run_created_v1_gets_v2_defaults():
    old = example_record("run_created", 1)
    decoded = CODEC.decode(CODEC.encode("run_created", old, version=1))
    assert decoded.record["run_name"] == "" and decoded.record["tags"] == []


def test_message_starts_with_single_object_header_and_fingerprint():
    data = CODEC.encode("run_deleted", example_record("run_deleted"))
    assert data[:2] == SINGLE_OBJECT_MAGIC
    assert CODEC.registry.by_fingerprint(data[2:HEADER_LEN]).event_type == "run_deleted"


def test_fingerprints_are_unique_across_all_versions():
    registry = SchemaRegistry()
    fps = [v.fingerprint for t in registry.event_types for v in registry.versions(t).values()]
    assert len(fps) == len(set(fps))


@pytest.mark.parametrize("garbage", [b"", b"hello world", b"\xc3\x01short", bytes(range(256))])
def test_garbage_is_a_decode_error(garbage):
    with pytest.raises(DecodeError):
        CODEC.decode(garbage)


def test_unknown_fingerprint_names_it():
    data = SINGLE_OBJECT_MAGIC + struct.pack("<Q", 0x1234) + b"\x00"
    with pytest.raises(DecodeError, match="unknown schema fingerprint"):
        CODEC.decode(data)


def test_truncated_body_is_a_decode_error():
    data = CODEC.encode("tag_deleted", example_record("tag_deleted"))
    with pytest.raises(DecodeError, match="corrupt tag_deleted"):
        CODEC.decode(data[:-3])


def test_trailing_bytes_are_a_decode_error():
    data = CODEC.encode("tag_deleted", example_record("tag_deleted"))
    with pytest.raises(DecodeError, match="trailing"):
        CODEC.decode(data + b"\x00\x00")


def test_encode_rejects_a_record_missing_a_field():
    record = example_record("params_set")
    del record["params"]
    with pytest.raises(EncodeError, match="params_set"):
        CODEC.encode("params_set", record)


def test_unknown_event_type_lists_known_ones():
    with pytest.raises(UnknownEventType, match="run_created"):
        CODEC.encode("no_such_event", {})


def test_metric_batch_round_trips_nan_and_infinities():
    values = np.array([1.5, np.nan, np.inf, -np.inf, -0.0])
    batch = MetricBatch(["loss", "acc"], np.array([0, 1, 0, 1, 0], np.uint32), np.array([0, -1, 2, 3, 2**40]),
                        np.arange(5) + 1_700_000_000_000, values)
    record = dict(example_record("metrics_logged"), **batch.to_record_fields())
    back = MetricBatch.from_record(CODEC.decode(CODEC.encode("metrics_logged", record)).record)
    np.testing.assert_array_equal(back.values, values)
    assert np.signbit(back.values[4])
    assert back.steps.tolist() == [0, -1, 2, 3, 2**40]
    assert back.key_column().tolist() == ["loss", "acc", "loss", "acc", "loss"]


def test_metric_batch_with_inconsistent_lengths_is_rejected():
    batch = MetricBatch(["loss"], np.zeros(3, np.uint32), np.arange(3), np.arange(3), np.ones(3))
    record = dict(batch.to_record_fields(), count=4)
    with pytest.raises(DecodeError, match="expected 4 x"):
        MetricBatch.from_record(record)


def test_metric_batch_key_index_out_of_range_is_rejected():
    batch = MetricBatch(["loss"], np.array([0, 5], np.uint32), np.arange(2), np.arange(2), np.ones(2))
    with pytest.raises(DecodeError, match="key_index"):
        MetricBatch.from_record(batch.to_record_fields())


def test_schema_files_are_valid_json_with_docs_for_envelope():
    for path in CODEC.registry.current("run_created").raw["fields"][:4]:
        assert path.get("doc")
    json.dumps(CODEC.registry.current("metrics_logged").raw)
