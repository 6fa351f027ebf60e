"""The event contract: Avro schemas (``avro/<event_type>/v<N>.avsc``) and the codec."""

from trackstream.schemas.codec import (
    EXPERIMENT_EVENT_TYPES,
    MODEL_EVENT_TYPES,
    RUN_EVENT_TYPES,
    DecodedEvent,
    EventCodec,
    SchemaRegistry,
    aggregate_id,
    default_codec,
)
from trackstream.schemas.metric_batch import MetricBatch

__all__ = [
    "EXPERIMENT_EVENT_TYPES", "MODEL_EVENT_TYPES", "RUN_EVENT_TYPES", "DecodedEvent", "EventCodec", "MetricBatch",
    "SchemaRegistry", "aggregate_id", "default_codec",
]
