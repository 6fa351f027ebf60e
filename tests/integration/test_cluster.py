"""`trackstream up --cluster`'s topology (the session's `local_cluster`): three brokers replicating
the event topics, a ClickHouse server, two workers sharing the partitions, two gateways."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, ConfigResource

from trackstream.infra.processes import pid_alive


def test_three_brokers_replicate_event_topics_with_two_in_sync(local_cluster):
    settings = local_cluster.settings
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.brokers) == 3
    for topic in (settings.topic, settings.dead_letter_topic):
        partitions = metadata.topics[topic].partitions
        assert len(partitions) == settings.partitions
        assert all(len(p.replicas) == 3 for p in partitions.values())
        config = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
        (described,) = [f.result(10) for f in config.values()]
        assert described["min.insync.replicas"].value == "2"


def test_every_process_runs_under_its_own_recorded_pid(local_cluster):
    pids = [b.status().pid for b in local_cluster.brokers] + [local_cluster.clickhouse.status().pid]
    pids += [p.owned_pid() for p in local_cluster.worker_processes + local_cluster.gateway_processes]
    assert len(pids) == 3 + 1 + 2 + 2
    assert None not in pids and len(set(pids)) == len(pids)
    assert all(pid_alive(pid) for pid in pids)
