"""Authenticated brokers: a real Kafka broker that takes only SASL/SCRAM sign-ins and enforces ACLs
(infra/kafka_auth.py), with the SDK, `trackstream worker` and `trackstream gateway` each signing in
with their own credentials from settings (TRACKSTREAM_KAFKA_*), under the ACLs docs/deploy.md shows.

The broker is this module's own (own home and ports); the session broker other tests share is
left alone."""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from trackstream.config import Settings
from trackstream.errors import DeliveryError
from trackstream.infra.kafka_auth import BrokerAuth, add_scram_user, grant_role
from trackstream.infra.kafka_broker import KafkaBroker
from trackstream.kafka_security import KafkaSecurity
from trackstream.producer.client import TrackingClient
from trackstream.producer.kafka_writer import EventWriter
from trackstream.producer.sync import sync_spools
from tests.integration.harness import ServerHandle, free_port, make_server, mlflow_call, wait_until

BROKER_START_S = 90
PASSWORDS = {"trainer": "trainer-pw-" + uuid.uuid4().hex[:8], "worker": "worker-pw-" + uuid.uuid4().hex[:8],
             "gateway": "gateway-pw-" + uuid.uuid4().hex[:8]}


@dataclasses.dataclass
class SecuredKafka:
    broker: KafkaBroker
    auth: BrokerAuth
    base: ServerHandle  # names (topic, dead-letter topic, consumer group) the users' ACLs are for

    def security(self, user: str, password: str | None = None) -> KafkaSecurity:
        return KafkaSecurity(protocol="SASL_PLAINTEXT", username=user,
                             password=PASSWORDS[user] if password is None else password)

    def settings(self, user: str, **changes) -> Settings:
        return dataclasses.replace(self.base.settings, kafka_security=self.security(user), **changes)

    def client_config(self, user: str, password: str | None = None) -> dict[str, str]:
        return {"bootstrap.servers": self.broker.bootstrap, **self.security(user, password).librdkafka_config()}


def role_env(user: str) -> dict[str, str]:
    return {"TRACKSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "TRACKSTREAM_KAFKA_USERNAME": user,
            "TRACKSTREAM_KAFKA_PASSWORD": PASSWORDS[user]}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    auth = BrokerAuth(admin_password="admin-pw-" + uuid.uuid4().hex[:8],
                      controller_password="controller-pw-" + uuid.uuid4().hex[:8])
    broker = KafkaBroker(tmp_path_factory.mktemp("scram-broker"), port=free_port(), controller_port=free_port(),
                         auth=auth)
    broker.start(timeout=BROKER_START_S)
    try:
        name = f"auth{uuid.uuid4().hex[:6]}"
        base = make_server(broker.bootstrap, tmp_path_factory.mktemp("auth-base"), name)
        admin = {"bootstrap.servers": broker.bootstrap, **broker.client_config}
        # topics and one user through the operator's commands, signed in as the administrator
        administrator = dataclasses.replace(base, env_overrides={
            "TRACKSTREAM_KAFKA_USERNAME": auth.admin_user, "TRACKSTREAM_KAFKA_PASSWORD": auth.admin_password})
        created = administrator.cli("infra", "topics")
        assert base.settings.topic in created.stdout and base.settings.dead_letter_topic in created.stdout
        made = administrator.cli("kafka-user", "gateway", "--role", "gateway", stdin=PASSWORDS["gateway"] + "\n")
        assert "Kafka user gateway can now sign in" in made.stdout
        for user in ("trainer", "worker"):
            add_scram_user(admin, user, PASSWORDS[user])
            grant_role(admin, user, user, topic=base.settings.topic, dead_letter_topic=base.settings.dead_letter_topic,
                       group=base.settings.consumer_group)
        yield SecuredKafka(broker, auth, base)
    finally:
        broker.stop()


def delivery_errors(config: dict[str, str], topic: str, count: int = 1, timeout: float = 30) -> list[KafkaError | None]:
    """Produce ``count`` messages; the delivery result of each (None = acknowledged)."""
    results: list[KafkaError | None] = []
    producer = Producer({**config, "message.timeout.ms": 10_000})
    for i in range(count):
        producer.produce(topic, key=b"k", value=f"v{i}".encode(), on_delivery=lambda err, msg: results.append(err))
    producer.flush(timeout)
    return results


def test_sdk_worker_and_gateway_each_sign_in_with_their_own_credentials(
        secured: SecuredKafka, clickhouse_server_dsn: str, tmp_path: Path) -> None:
    base = dataclasses.replace(secured.base.settings, clickhouse_dsn=clickhouse_server_dsn)
    worker = ServerHandle(dataclasses.replace(base, home=tmp_path / "worker"), tmp_path / "worker.log",
                          env_overrides=role_env("worker"), role="worker")
    gateway = ServerHandle(dataclasses.replace(base, home=tmp_path / "gateway", server_port=free_port()),
                           tmp_path / "gateway.log", env_overrides=role_env("gateway"), role="gateway")
    for handle in (worker, gateway):
        handle.settings.home.mkdir(parents=True)
    worker.start()
    try:
        gateway.start()
        url = gateway.settings.server_url
        # the SDK on a training node: the trainer's credentials, experiments looked up at the gateway
        sdk_settings = dataclasses.replace(secured.settings("trainer"), home=tmp_path / "trainer",
                                           server_port=gateway.settings.server_port)
        client = TrackingClient(sdk_settings, capture_environment=False)
        try:
            run_id = client.create_run(run_name="signed-in")
            client.log_param(run_id, "lr", 0.01)
            client.log_metric(run_id, "loss", 0.5, step=1)
            assert client.flush(30) == 0
        finally:
            client.close()

        def sdk_run_materialized() -> bool:
            data = mlflow_call(url, f"runs/get?run_id={run_id}")["run"]["data"]
            return ({p["key"]: p["value"] for p in data.get("params", [])} == {"lr": "0.01"}
                    and [m["value"] for m in data.get("metrics", [])] == [0.5])
        wait_until(sdk_run_materialized, 60, "the SDK's run to be materialized by the signed-in worker")

        # a write through the gateway (its own producer signs in) read back through it
        mlflow_call(url, "runs/log-metric", {"run_id": run_id, "key": "acc", "value": 0.9, "step": 2,
                                             "timestamp": 1_700_000_000_000})
        metrics = {m["key"]: m["value"] for m in mlflow_call(url, f"runs/get?run_id={run_id}")["run"]["data"]["metrics"]}
        assert metrics == {"loss": 0.5, "acc": 0.9}
        assert worker.process.poll() is None and gateway.process.poll() is None
        for handle in (worker, gateway):
            assert "Authentication failed" not in handle.log_path.read_text(errors="replace")
    finally:
        gateway.stop()
        worker.stop()


def test_trainer_can_only_produce_to_the_events_topic(secured: SecuredKafka) -> None:
    settings = secured.base.settings
    trainer = secured.client_config("trainer")
    assert delivery_errors(trainer, settings.topic) == [None]

    [refused] = delivery_errors(trainer, settings.dead_letter_topic)
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    consumer = Consumer({**trainer, "group.id": settings.consumer_group, "auto.offset.reset": "earliest"})
    consumer.subscribe([settings.topic])
    try:
        deadline = time.monotonic() + 30
        error = None
        while error is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                assert msg.error() is not None, "the trainer read an event from the topic"
                error = msg.error()
        assert error is not None and error.code() in (KafkaError.GROUP_AUTHORIZATION_FAILED,
                                                      KafkaError.TOPIC_AUTHORIZATION_FAILED), error
    finally:
        consumer.close()

    admin = AdminClient(trainer)
    futures = admin.create_topics([NewTopic(f"sneaky.{uuid.uuid4().hex[:6]}", 1, 1)])
    with pytest.raises(KafkaException) as refused_topic:
        for future in futures.values():
            future.result(30)
    assert refused_topic.value.args[0].code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                                  KafkaError.CLUSTER_AUTHORIZATION_FAILED)

    # nor can it make itself a worker
    as_trainer = dataclasses.replace(secured.base, env_overrides=role_env("trainer"))
    escalate = as_trainer.cli("kafka-user", "trainer2", "--role", "worker", stdin="another-password\n", check=False)
    assert escalate.returncode == 1 and "refused" in escalate.stderr and "administrator" in escalate.stderr
    assert "Traceback" not in escalate.stderr


def test_a_wrong_password_is_reported_and_the_spooled_events_are_delivered_once_it_is_fixed(
        secured: SecuredKafka, tmp_path: Path) -> None:
    topic = secured.base.settings.topic
    spool_root = tmp_path / "spool"
    wrong = secured.security("trainer", password="not-the-password")
    writer = EventWriter(secured.broker.bootstrap, topic, producer_config=wrong.librdkafka_config(),
                         spool_dir=spool_root / "w-wrong", deliver_leftovers=False)
    run_id = uuid.uuid4().hex
    for i in range(20):
        writer.append("params_set", {"run_id": run_id, "params": [{"key": f"p{i}", "value": str(i)}]})
    with pytest.raises(DeliveryError, match="invalid credentials.*TRACKSTREAM_KAFKA_USERNAME"):
        writer.flush(10)
    assert writer.pending == 20  # nothing reached Kafka, everything is on local disk
    with contextlib.suppress(DeliveryError):  # closing may report the failure again; the events stay on disk
        writer.close(1)

    report = sync_spools(spool_root, secured.broker.bootstrap, topic, timeout=60,
                         producer_config=secured.security("trainer").librdkafka_config())
    assert report.remaining == 0 and report.delivered == 20
