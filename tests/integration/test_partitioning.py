"""Every producer of the log puts a run's events on one partition: the SDK and gateway
(confluent-kafka) must agree with faust's producer (aiokafka), which the finalizer uses."""

from __future__ import annotations

import uuid

from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka.admin import AdminClient, NewTopic

from trackstream.producer.kafka_writer import PRODUCER_DEFAULTS
from trackstream.server.event_log import GATEWAY_PRODUCER_CONFIG


def delivered_partitions(bootstrap: str, topic: str, config: dict, keys: list[bytes]) -> list[int]:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, **config})
    partitions: dict[bytes, int] = {}
    for key in keys:
        producer.produce(topic, b"x", key, on_delivery=lambda err, msg: partitions.__setitem__(msg.key(), msg.partition()))
    assert producer.flush(30) == 0
    return [partitions[k] for k in keys]


def test_sdk_gateway_and_faust_place_each_run_on_the_same_partition(kafka_bootstrap, unique_name):
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(unique_name, num_partitions=4, replication_factor=1)])[unique_name].result(30)
    keys = [uuid.uuid4().hex.encode() for _ in range(64)]
    faust_side = [DefaultPartitioner()(k, [0, 1, 2, 3], [0, 1, 2, 3]) for k in keys]
    assert len(set(faust_side)) > 1
    for config in (PRODUCER_DEFAULTS, GATEWAY_PRODUCER_CONFIG):
        settings = {k: v for k, v in config.items() if k != "delivery.timeout.ms"}
        assert delivered_partitions(kafka_bootstrap, unique_name, settings, keys) == faust_side
