"""Create the event topics with the settings the log needs (idempotent)."""

from __future__ import annotations

from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient, NewTopic

from trackstream.config import Settings
from trackstream.errors import InvalidInput, PermissionDenied, ServiceUnavailable
from trackstream.kafka_security import kafka_error_code, refused_by_broker

EVENT_TOPIC_CONFIG = {
    "retention.ms": "-1",          # the log is the source of truth: keep events forever by default
    "retention.bytes": "-1",
    "max.message.bytes": "8388608",
}


def event_topic_config(settings: Settings) -> dict[str, str]:
    """``min.insync.replicas``: how many replicas must hold an event before acks=all acknowledges it."""
    if settings.min_insync_replicas > settings.replication_factor:
        raise InvalidInput(f"TRACKSTREAM_MIN_INSYNC_REPLICAS ({settings.min_insync_replicas}) cannot exceed "
                           f"TRACKSTREAM_REPLICATION_FACTOR ({settings.replication_factor}): no write could succeed")
    return {**EVENT_TOPIC_CONFIG, "min.insync.replicas": str(settings.min_insync_replicas)}


def ensure_topics(settings: Settings, timeout: float = 30.0, *, dead_letters: bool = True) -> list[str]:
    """Create the event and (unless ``dead_letters`` is False: a gateway never writes them) the
    dead-letter topic if missing; returns the names it created.

    On a broker with ACLs a role sees only the topics it was granted, and may not create any: an
    administrator creates them first (docs/deploy.md)."""
    admin = AdminClient(settings.kafka_config())
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except Exception as exc:
        raise ServiceUnavailable(f"Kafka at {settings.kafka_bootstrap} does not answer: {exc}; "
                                 "start it with `trackstream infra up`") from exc
    wanted = [NewTopic(name, num_partitions=settings.partitions, replication_factor=settings.replication_factor,
                       config=event_topic_config(settings))
              for name in (settings.topic, *([settings.dead_letter_topic] if dead_letters else []))
              if name not in existing]
    created = []
    for name, future in (admin.create_topics(wanted, request_timeout=timeout).items() if wanted else []):
        try:
            future.result(timeout)
            created.append(name)
        except Exception as exc:
            if kafka_error_code(exc) == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            if refused_by_broker(exc):
                raise PermissionDenied(
                    f"topic {name} does not exist (or {settings.kafka_security.username or 'this client'} may not "
                    f"see it) and may not be created with these Kafka credentials: an administrator creates it "
                    f"and grants access (docs/deploy.md, \"Authenticated brokers\")") from exc
            raise ServiceUnavailable(f"could not create topic {name}: {exc}") from exc
    return created
