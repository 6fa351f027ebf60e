"""The plain-Java broker against a real JVM, on its own home and ports (chosen free, below the
ephemeral range) so the session broker used by other integration tests is left alone."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from trackstream.infra.kafka_broker import InfraError, KafkaBroker, is_broker_cmdline
from trackstream.infra.processes import parse_proc_cmdline
from tests.integration.harness import free_port

PRIVATE_PORT = free_port()
PRIVATE_CONTROLLER_PORT = free_port()


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(
        tmp_path_factory.mktemp("broker-home"), port=PRIVATE_PORT, controller_port=PRIVATE_CONTROLLER_PORT
    )
    try:
        yield broker
    finally:
        broker.stop()


def broker_pids(properties_path: Path) -> list[int]:
    pids = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = parse_proc_cmdline((proc_dir / "cmdline").read_bytes())
        except OSError:
            continue
        if is_broker_cmdline(cmdline, properties_path):
            pids.append(int(proc_dir.name))
    return pids


def create_topic(bootstrap: str, topic: str, partitions: int = 4) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(timeout=30)


def topic_names(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def test_start_twice_runs_one_broker_that_answers(private_broker: KafkaBroker) -> None:
    first = private_broker.start(timeout=90)
    second = private_broker.start(timeout=90)

    assert first.pid is not None
    assert second.pid == first.pid
    assert broker_pids(private_broker.properties_path) == [first.pid]
    status = private_broker.status()
    assert status.running and status.answering
    assert status.pid == first.pid
    assert status.bootstrap == f"127.0.0.1:{PRIVATE_PORT}"
    assert status.log_path.exists()
    assert "Kafka Server started" in status.log_path.read_text()
    assert (status.data_dir / "meta.properties").exists()


def test_stop_ignores_a_pidfile_naming_someone_elses_process(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        impostor_home = tmp_path / "impostor"
        pid_path = impostor_home / "kafka" / "broker.pid"
        pid_path.parent.mkdir(parents=True)
        pid_path.write_text(f"{bystander.pid}\n")
        broker = KafkaBroker(impostor_home, port=free_port(), controller_port=free_port())

        assert broker.stop(timeout=5) is False
        assert broker.status().running is False
        time.sleep(0.2)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait(timeout=10)


def test_port_taken_by_a_foreign_listener_is_named(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken_port = squatter.getsockname()[1]
        broker = KafkaBroker(tmp_path, port=taken_port, controller_port=free_port())

        with pytest.raises(InfraError, match=rf"port {taken_port}\b.*already in use"):
            broker.start(timeout=10)
    assert not broker.pid_path.exists()


def test_restart_keeps_cluster_and_topics_then_stop_is_idempotent(private_broker: KafkaBroker) -> None:
    private_broker.start(timeout=90)
    cluster_id = private_broker.cluster_id_path.read_text()
    create_topic(private_broker.bootstrap, "kept_across_restarts")

    assert private_broker.stop() is True
    assert private_broker.stop() is False
    assert broker_pids(private_broker.properties_path) == []
    assert not private_broker.pid_path.exists()
    assert private_broker.status().running is False

    restarted = private_broker.start(timeout=90)
    assert restarted.answering
    assert private_broker.cluster_id_path.read_text() == cluster_id
    assert "kept_across_restarts" in topic_names(private_broker.bootstrap)

    assert private_broker.stop() is True
    assert private_broker.stop() is False


def test_produce_consume_round_trip(kafka_bootstrap: str, unique_name: str) -> None:
    create_topic(kafka_bootstrap, unique_name)
    sent = {f"run-{i}".encode(): f"event-{i}".encode() for i in range(20)}

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all", "enable.idempotence": True})
    for key, value in sent.items():
        producer.produce(unique_name, key=key, value=value)
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": unique_name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    received: dict[bytes, bytes] = {}
    try:
        consumer.subscribe([unique_name])
        deadline = time.monotonic() + 30
        while len(received) < len(sent) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            assert message.error() is None, message.error()
            received[message.key()] = message.value()
    finally:
        consumer.close()
    assert received == sent
