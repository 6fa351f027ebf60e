"""Building encoded events for consumer tests."""

import uuid

import numpy as np

from trackstream.schemas import MetricBatch, aggregate_id, default_codec
from trackstream.consumers.materializer import SourceMessage


class EventLog:
    """Appends encoded events as SourceMessages with increasing offsets on one partition."""

    def __init__(self, partition: int = 0, writer_id: str = "w1") -> None:
        self.partition = partition
        self.writer_id = writer_id
        self.messages: list[SourceMessage] = []
        self._seq: dict[str, int] = {}

    def add(self, event_type: str, seq: int | None = None, writer_id: str | None = None, **fields) -> SourceMessage:
        agg = aggregate_id(event_type, fields)
        writer = writer_id or self.writer_id
        if seq is None:
            seq = self._seq.get((writer, agg), 0) + 1
        self._seq[(writer, agg)] = seq
        record = {"event_id": uuid.uuid4().hex, "writer_id": writer, "seq": seq, "timestamp_ms": 1000 + seq, **fields}
        return self.raw(default_codec().encode(event_type, record), key=agg.encode())

    def raw(self, value: bytes | None, key: bytes | None = None) -> SourceMessage:
        msg = SourceMessage(self.partition, len(self.messages), value, key)
        self.messages.append(msg)
        return msg

    def run_created(self, run_id: str, **extra) -> SourceMessage:
        fields = dict(run_id=run_id, experiment_id="0", user_id="u", source_name="train.py", parent_run_id=None,
                      start_time_ms=5, run_name="r", tags=[])
        fields.update(extra)
        return self.add("run_created", **fields)

    def metrics(self, run_id: str, n: int, key: str = "loss", seq: int | None = None,
                writer_id: str | None = None) -> SourceMessage:
        batch = MetricBatch([key], np.zeros(n, np.uint32), np.arange(n), np.arange(n) + 1000, np.arange(n) * 0.5)
        return self.add("metrics_logged", seq=seq, writer_id=writer_id, run_id=run_id, **batch.to_record_fields())
