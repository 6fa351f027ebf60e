"""Session-wide services for integration tests: a Kafka broker and a ClickHouse DSN.

Each service is picked in order: an explicit environment variable, a container when a Docker
engine answers, otherwise a local fallback (plain-Java broker / embedded chdb).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import os
import re
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

from trackstream.infra.clickhouse_server import ClickHouseServer
from trackstream.infra.cluster import LocalCluster
from trackstream.infra.kafka_broker import KafkaBroker

REPO_ROOT = Path(__file__).resolve().parent.parent
INTEGRATION_DIR = REPO_ROOT / "tests" / "integration"

KAFKA_IMAGE = "apache/kafka:4.1.0"
CLICKHOUSE_IMAGE = "clickhouse/clickhouse-server:25.8"
TEST_BROKER_PORT = 29092
TEST_BROKER_CONTROLLER_PORT = 29093
BROKER_START_TIMEOUT_S = 120.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.path).resolve().is_relative_to(INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)


@functools.lru_cache(maxsize=1)
def docker_available() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


class ApacheKafkaContainer(DockerContainer):
    """A KRaft single-node ``apache/kafka`` container advertising its host-mapped port.

    testcontainers-python 4.15's ``KafkaContainer`` drives the Confluent image's scripts
    (/etc/confluent/docker/...) and its ``with_kraft()`` rejects tags below 7.0.0, so it cannot
    run ``apache/kafka``. This follows testcontainers-java's ``KafkaContainer`` for that image:
    the container waits for a starter script that exports the advertised listener (known only
    once the port is mapped) and then runs the image's own ``/etc/kafka/docker/run``.
    """

    KAFKA_PORT = 9092
    STARTER_SCRIPT = "/tmp/trackstream_start.sh"
    STARTER_READY_FLAG = "/tmp/trackstream_start.ready"

    def __init__(self, image: str = KAFKA_IMAGE) -> None:
        super().__init__(image)
        self.with_exposed_ports(self.KAFKA_PORT)
        self.with_envs(
            CLUSTER_ID="4L6g3nShT-eMCtK--X86sw",
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS="PLAINTEXT://:9092,BROKER://:9093,CONTROLLER://:9094",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
            KAFKA_INTER_BROKER_LISTENER_NAME="BROKER",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9094",
            KAFKA_NUM_PARTITIONS="4",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            KAFKA_LOG_RETENTION_MS="-1",
        )
        self.with_command(
            [
                "sh",
                "-c",
                f"while [ ! -f {self.STARTER_READY_FLAG} ]; do sleep 0.1; done; "
                f"exec sh {self.STARTER_SCRIPT}",
            ]
        )

    def start(self, timeout: float = BROKER_START_TIMEOUT_S) -> ApacheKafkaContainer:
        super().start()
        container_hostname = self.get_wrapped_container().attrs["Config"]["Hostname"]
        script = (
            "export KAFKA_ADVERTISED_LISTENERS="
            f"PLAINTEXT://{self.get_bootstrap_server()},BROKER://{container_hostname}:9093\n"
            "exec /etc/kafka/docker/run\n"
        )
        self._put_file(self.STARTER_SCRIPT, script.encode())
        self._put_file(self.STARTER_READY_FLAG, b"")
        ready = LogMessageWaitStrategy(
            re.compile(r"Transitioning from RECOVERY to RUNNING|Kafka Server started")
        )
        ready.with_startup_timeout(int(timeout)).wait_until_ready(self)
        return self

    def get_bootstrap_server(self) -> str:
        return f"{self.get_container_host_ip()}:{self.get_exposed_port(self.KAFKA_PORT)}"

    def _put_file(self, path: str, content: bytes) -> None:
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo(name=path.lstrip("/"))
            info.size = len(content)
            info.mode = 0o755
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(content))
        self.get_wrapped_container().put_archive("/", archive.getvalue())


def services_home() -> Path:
    configured = os.environ.get("TRACKSTREAM_TEST_HOME")
    return Path(configured) if configured else REPO_ROOT / "var" / "test-services"


STARTED_BY_TESTS_MARKER = "broker-started-by-tests"


@contextlib.contextmanager
def locked_session_registry(home: Path) -> Iterator[Path]:
    """The directory where pytest sessions sharing ``home``'s broker leave a lease, locked.

    Several sessions may share the broker (two terminals, xdist workers); the last one out stops
    it, and only if a test session started it (not e.g. a developer's `trackstream up`).
    """
    registry = home / "test-sessions"
    registry.mkdir(parents=True, exist_ok=True)
    with open(registry / ".lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield registry
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def live_session_leases(registry: Path) -> list[Path]:
    live = []
    for lease in registry.glob("session-*"):
        pid = int(lease.name.removeprefix("session-"))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            lease.unlink(missing_ok=True)
            continue
        except PermissionError:
            pass
        live.append(lease)
    return live


def shared_local_broker() -> Iterator[str]:
    broker = KafkaBroker(services_home(), port=TEST_BROKER_PORT, controller_port=TEST_BROKER_CONTROLLER_PORT)
    with locked_session_registry(broker.home) as registry:
        started_by_tests = registry / STARTED_BY_TESTS_MARKER
        if not broker.status().running:
            started_by_tests.touch()
        status = broker.start(timeout=BROKER_START_TIMEOUT_S)
        lease = registry / f"session-{os.getpid()}"
        lease.touch()
    try:
        yield status.bootstrap
    finally:
        with locked_session_registry(broker.home) as registry:
            lease.unlink(missing_ok=True)
            if started_by_tests.exists() and not live_session_leases(registry):
                broker.stop()
                started_by_tests.unlink(missing_ok=True)


def wait_for_group_coordinator(bootstrap: str, timeout: float = BROKER_START_TIMEOUT_S) -> None:
    """Block until the broker's group coordinator answers. A cold broker creates and loads
    ``__consumer_offsets`` on the first group request; a worker started meanwhile can sit in
    coordinator retries for a minute, so the session's first tests would time out waiting for it."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.describe_consumer_groups(["trackstream-test-warmup"], request_timeout=10)[
                "trackstream-test-warmup"].result(timeout=15)
            return
        except Exception as exc:  # coordinator not available / loading: retried until the deadline
            error = exc.args[0] if exc.args else None
            if getattr(error, "code", lambda: None)() == KafkaError.GROUP_ID_NOT_FOUND:
                return  # newer brokers say so for a group never used: the coordinator answered
            if time.monotonic() > deadline:
                raise RuntimeError(f"the broker's group coordinator did not answer within {timeout:.0f} s: {exc}")
            time.sleep(0.5)


def _broker_bootstraps() -> Iterator[str]:
    configured = os.environ.get("TRACKSTREAM_TEST_KAFKA")
    if configured:
        yield configured
        return
    if docker_available():
        container = ApacheKafkaContainer()
        container.start()
        try:
            yield container.get_bootstrap_server()
        finally:
            container.stop()
        return
    yield from shared_local_broker()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a Kafka broker shared by the whole session, its group coordinator ready."""
    for bootstrap in _broker_bootstraps():
        wait_for_group_coordinator(bootstrap)
        yield bootstrap


@pytest.fixture(scope="session")
def clickhouse_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ClickHouse DSN shared by the whole session; tests isolate by database name.

    The chdb fallback uses one path for the session because chdb allows a single data path per
    process (and a single process per path).
    """
    configured = os.environ.get("TRACKSTREAM_TEST_CLICKHOUSE")
    if configured:
        yield configured
        return
    if docker_available():
        from testcontainers.community.clickhouse import ClickHouseContainer

        container = ClickHouseContainer(CLICKHOUSE_IMAGE)
        container.start()
        try:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(8123)
            yield f"http://{container.username}:{container.password}@{host}:{port}"
        finally:
            container.stop()
        return
    yield f"chdb://{tmp_path_factory.mktemp('chdb', numbered=True) / 'clickhouse'}"


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    """A ClickHouse *server* (HTTP + TCP on loopback) run from the chdb-core wheel, one per test
    run; tests isolate by database name. Several processes can share it, unlike embedded chdb."""
    from tests.integration.harness import free_port

    server = ClickHouseServer(tmp_path_factory.mktemp("clickhouse-server"), http_port=free_port(),
                              tcp_port=free_port())
    server.start(timeout=60)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def clickhouse_server_dsn(request: pytest.FixtureRequest) -> str:
    """The DSN of a ClickHouse server: TRACKSTREAM_TEST_CLICKHOUSE when it names one, otherwise
    the session's chdb-core server."""
    configured = os.environ.get("TRACKSTREAM_TEST_CLICKHOUSE", "")
    if configured and not configured.startswith("chdb"):
        return configured
    return request.getfixturevalue("clickhouse_server").dsn


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """`trackstream up --cluster`'s topology, started once per test run on free loopback ports:
    3 KRaft brokers (RF 3, min.insync.replicas 2), a ClickHouse server, 2 workers, 2 gateways.
    Stopped (exactly what it started) when the session ends."""
    from tests.integration.harness import free_port
    from trackstream.config import Settings
    from trackstream.infra.cluster import ClusterPorts

    home = tmp_path_factory.mktemp("cluster")
    name = f"cl{uuid.uuid4().hex[:6]}"
    ports = ClusterPorts(brokers=tuple((free_port(), free_port()) for _ in range(3)), clickhouse_http=free_port(),
                         clickhouse_tcp=free_port(), gateways=(free_port(), free_port()))
    cluster = LocalCluster(home, Settings(home=home, database=f"ts_{name}", topic=f"events.{name}",
                                          dead_letter_topic=f"events.{name}.dlq", consumer_group=f"materializer-{name}"),
                           ports)
    try:
        cluster.up(timeout=BROKER_START_TIMEOUT_S)
        yield cluster
    finally:
        cluster.down()


@pytest.fixture
def unique_name() -> str:
    """A short name unique to this test, usable as a Kafka topic or ClickHouse database."""
    return f"t_{uuid.uuid4().hex[:8]}"
