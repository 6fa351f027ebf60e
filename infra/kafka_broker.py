"""A single-node Apache Kafka broker (KRaft, broker+controller) run as a plain Java process.

Everything lives under ``<home>/kafka/``::

    classpath.txt      broker classpath resolved by Maven from infra/kafka/pom.xml (cached)
    server.properties  rendered on every start from the constructor arguments
    cluster.id         chosen once, before the first storage format
    data/              log.dirs (the event log itself; retention is infinite)
    broker.log         the JVM's stdout/stderr, where log4j2 writes too
    broker.pid         pid of the running broker

The broker runs detached in its own session so it outlives the Python process that started it.
Ownership is always re-checked against ``/proc/<pid>/cmdline`` before signalling a pid.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from trackstream.infra.kafka_auth import BrokerAuth
from trackstream.infra.processes import (
    InfraError,
    directory_lock,
    ensure_ports_free,
    launched_log_tail,
    launch_detached,
    owned_pid,
    stop_recorded,
    wait_until_answering,
    write_atomically,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 19092
DEFAULT_CONTROLLER_PORT = 19093
DEFAULT_JAVA_OPTS: tuple[str, ...] = (
    "-Xmx768m",
    "-Xms256m",
    "-XX:+UseG1GC",
    "-Djava.awt.headless=true",
)
MIN_JAVA_MAJOR = 17
KAFKA_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"

KAFKA_ASSETS_DIR = Path(__file__).resolve().parent / "kafka"
POM_PATH = KAFKA_ASSETS_DIR / "pom.xml"
LOG4J2_CONFIG_PATH = KAFKA_ASSETS_DIR / "log4j2.xml"

MAVEN_TIMEOUT_S = 900.0
FORMAT_TIMEOUT_S = 180.0
LOG_ROTATE_BYTES = 64 * 1024 * 1024
ERROR_TAIL_LINES = 30
LAUNCH_MARKER = "==== trackstream: launching Kafka broker"

_quiet_librdkafka_logger = logging.getLogger("trackstream.infra.kafka_broker.librdkafka")
_quiet_librdkafka_logger.addHandler(logging.NullHandler())
_quiet_librdkafka_logger.propagate = False

@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    log_path: Path
    data_dir: Path
    answering: bool


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, base64url without padding (22 characters). Like Kafka's
    own ``Uuid.randomUuid``, never one starting with "-", which command lines read as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


_CLUSTER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")


def is_valid_cluster_id(cluster_id: str) -> bool:
    if not _CLUSTER_ID_RE.match(cluster_id):
        return False
    decoded = base64.urlsafe_b64decode(cluster_id + "==")
    return len(decoded) == 16


def broker_properties(
    *,
    host: str,
    port: int,
    controller_port: int,
    data_dir: Path,
    node_id: int = 1,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Settings for a combined broker+controller node with a static single-voter quorum.

    A static ``controller.quorum.voters`` (rather than ``format --standalone``) keeps the
    controller endpoint out of the formatted metadata, so ports can change between runs.
    """
    properties = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": f"{node_id}@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "4",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # The event log is the source of truth: never delete events by age or size.
        "log.retention.ms": "-1",
        "log.retention.bytes": "-1",
    }
    properties.update(overrides or {})
    return properties


def _escape_property(text: str, *, is_key: bool) -> str:
    escaped = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    if is_key:
        escaped = re.sub(r"([=: #!])", r"\\\1", escaped)
    return escaped


def render_properties(properties: Mapping[str, str]) -> str:
    """Java ``.properties`` text, one ``key=value`` per line in the mapping's order."""
    lines = [
        f"{_escape_property(key, is_key=True)}={_escape_property(value, is_key=False)}"
        for key, value in properties.items()
    ]
    return "\n".join(lines) + "\n"


def is_broker_cmdline(cmdline: Sequence[str], properties_path: Path) -> bool:
    """True when the arguments launch ``kafka.Kafka`` with exactly this properties file."""
    if KAFKA_MAIN_CLASS not in cmdline:
        return False
    main_index = cmdline.index(KAFKA_MAIN_CLASS)
    return str(properties_path) in cmdline[main_index + 1 :]


def missing_classpath_entries(classpath: str) -> list[str]:
    entries = [entry for entry in classpath.strip().split(os.pathsep) if entry]
    if not entries:
        return ["<empty classpath>"]
    return [entry for entry in entries if not Path(entry).exists()]


def java_major_version(version_output: str) -> int | None:
    """Major version from ``java -version`` output: '1.8.0_402' -> 8, '17.0.15' -> 17."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2) is not None:
        return int(match.group(2))
    return major


def tail_text(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def metadata_answers(bootstrap: str, timeout: float = 2.0, client_config: Mapping[str, str] | None = None) -> bool:
    """Whether a Kafka broker at ``bootstrap`` answers a metadata request and lists itself."""
    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=min(timeout, 1.0)):
            pass
    except OSError:
        return False
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _quiet_librdkafka_logger, **(client_config or {})})
    try:
        metadata = admin.list_topics(timeout=timeout)
    except Exception:
        return False
    return bool(metadata.brokers)


def _require_tool(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise InfraError(f"`{name}` was not found on PATH; the local Kafka broker needs {what}.")
    return path


def _check_java_version(java: str) -> None:
    result = subprocess.run(
        [java, "-version"], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    major = java_major_version(result.stderr + result.stdout)
    if major is not None and major < MIN_JAVA_MAJOR:
        raise InfraError(f"`{java}` is Java {major}; the Kafka broker needs Java {MIN_JAVA_MAJOR} or newer.")


class KafkaBroker:
    """A local broker whose files live under ``<home>/kafka/``."""

    def __init__(
        self,
        home: Path | str,
        *,
        port: int = DEFAULT_PORT,
        controller_port: int = DEFAULT_CONTROLLER_PORT,
        host: str = DEFAULT_HOST,
        java: str = "java",
        mvn: str = "mvn",
        java_opts: Sequence[str] = DEFAULT_JAVA_OPTS,
        node_id: int = 1,
        overrides: Mapping[str, str] | None = None,
        auth: BrokerAuth | None = None,
    ) -> None:
        if port == controller_port:
            raise InfraError(f"broker port and controller port must differ (both are {port})")
        self.home = Path(home).expanduser().resolve()
        self.port = port
        self.controller_port = controller_port
        self.host = host
        self.java = java
        self.mvn = mvn
        self.java_opts = tuple(java_opts)
        self.node_id = node_id
        # Settings on top of broker_properties' (a cluster member's quorum voters, replication).
        self.overrides = dict(overrides or {})
        # SASL/SCRAM sign-in and ACLs (infra/kafka_auth.py); None is the plain loopback broker.
        self.auth = auth

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def classpath_path(self) -> Path:
        return self.kafka_dir / "classpath.txt"

    @property
    def properties_path(self) -> Path:
        return self.kafka_dir / "server.properties"

    @property
    def cluster_id_path(self) -> Path:
        return self.kafka_dir / "cluster.id"

    @property
    def data_dir(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.kafka_dir / "broker.log"

    @property
    def pid_path(self) -> Path:
        return self.kafka_dir / "broker.pid"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def install(self) -> str:
        """Resolve (once) and return the broker classpath; re-resolves if a jar went missing
        or pom.xml changed since the last resolution."""
        java = _require_tool(self.java, "Java 17+ (e.g. `apt-get install openjdk-17-jre-headless`)")
        _check_java_version(java)
        cached = self._cached_classpath()
        if cached is not None:
            return cached
        mvn = _require_tool(self.mvn, "Apache Maven (e.g. `apt-get install maven`)")
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        output_file = self.kafka_dir / ".classpath.resolving"
        command = [
            mvn, "-q", "-C", "-B", "-Dstyle.color=never",
            "-f", str(POM_PATH),
            "dependency:build-classpath",
            f"-Dmdep.outputFile={output_file}",
        ]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S, check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise InfraError(
                f"Maven did not resolve the Kafka classpath within {MAVEN_TIMEOUT_S:.0f}s "
                f"(is Maven Central reachable?): {' '.join(command)}"
            ) from exc
        if result.returncode != 0 or not output_file.exists():
            output = tail_text(result.stdout + result.stderr, ERROR_TAIL_LINES)
            raise InfraError(
                f"Maven failed to resolve the Kafka classpath (exit {result.returncode}).\n"
                f"command: {' '.join(command)}\n{output}"
            )
        classpath = output_file.read_text().strip()
        output_file.unlink()
        missing = missing_classpath_entries(classpath)
        if missing:
            raise InfraError(f"Maven reported a classpath with missing entries: {missing[:5]}")
        write_atomically(self.classpath_path, classpath + "\n")
        return classpath

    @property
    def client_config(self) -> dict[str, str]:
        """librdkafka settings (beyond bootstrap.servers) with which our own checks sign in."""
        return self.auth.admin_config() if self.auth else {}

    def status(self) -> BrokerStatus:
        pid = self._owned_pid()
        return self._status(pid, answering=pid is not None and metadata_answers(self.bootstrap,
                                                                                client_config=self.client_config))

    def start(self, timeout: float = 60) -> BrokerStatus:
        """Start the broker unless it already runs; return once it answers metadata requests.

        ``timeout`` bounds the wait for the broker to answer, not a first-time Maven resolution.
        """
        with self._lock():
            pid = self._owned_pid()
            if pid is not None:
                return self._wait_until_answering(pid, timeout, stop_on_failure=False)
            self.pid_path.unlink(missing_ok=True)
            self._ensure_ports_free()
            classpath = self.install()
            write_atomically(
                self.properties_path,
                render_properties(
                    broker_properties(
                        host=self.host,
                        port=self.port,
                        controller_port=self.controller_port,
                        data_dir=self.data_dir,
                        node_id=self.node_id,
                        overrides={**(self.auth.properties(self.host, self.port, self.controller_port)
                                      if self.auth else {}), **self.overrides},
                    )
                ),
            )
            self._format_storage_once(classpath)
            pid = self._launch(classpath)
            return self._wait_until_answering(pid, timeout, stop_on_failure=True)

    def stop(self, timeout: float = 30) -> bool:
        """Stop the broker named by our pidfile, if it really is ours. True if one was stopped."""
        with self._lock():
            return stop_recorded(self.pid_path, self._owned_pid(), timeout, "Kafka broker")

    def _status(self, pid: int | None, *, answering: bool) -> BrokerStatus:
        return BrokerStatus(
            running=pid is not None,
            pid=pid,
            bootstrap=self.bootstrap,
            log_path=self.log_path,
            data_dir=self.data_dir,
            answering=answering,
        )

    def _owned_pid(self) -> int | None:
        """The pidfile's pid if that process is alive and is this home's broker."""
        return owned_pid(self.pid_path, lambda cmdline: is_broker_cmdline(cmdline, self.properties_path))

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return directory_lock(self.kafka_dir)

    def _cached_classpath(self) -> str | None:
        try:
            classpath = self.classpath_path.read_text().strip()
            cached_at = self.classpath_path.stat().st_mtime
        except FileNotFoundError:
            return None
        if POM_PATH.stat().st_mtime > cached_at or missing_classpath_entries(classpath):
            return None
        return classpath

    def _ensure_ports_free(self) -> None:
        ensure_ports_free(self.host, {"broker": self.port, "controller": self.controller_port},
                          f"the broker recorded in {self.pid_path}")

    def _format_storage_once(self, classpath: str) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = self._cluster_id()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            self.java, *self.java_opts, f"-Dlog4j2.configurationFile={LOG4J2_CONFIG_PATH}",
            "-cp", classpath, STORAGE_TOOL_CLASS,
            "format", f"--cluster-id={cluster_id}", "-c", str(self.properties_path),
            *(self.auth.format_arguments() if self.auth else []),
        ]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=FORMAT_TIMEOUT_S, check=False,
                stdin=subprocess.DEVNULL, cwd=self.kafka_dir,
            )
        except subprocess.TimeoutExpired as exc:
            raise InfraError(f"formatting Kafka storage in {self.data_dir} timed out") from exc
        if result.returncode != 0:
            output = tail_text(result.stdout + result.stderr, ERROR_TAIL_LINES)
            raise InfraError(
                f"formatting Kafka storage in {self.data_dir} failed (exit {result.returncode}):\n"
                f"{output}"
            )

    def _cluster_id(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            existing = self.cluster_id_path.read_text().strip()
            if is_valid_cluster_id(existing):
                return existing
        cluster_id = new_cluster_id()
        write_atomically(self.cluster_id_path, cluster_id + "\n")
        return cluster_id

    def _launch(self, classpath: str) -> int:
        self._rotate_log_if_large()
        command = [
            self.java, *self.java_opts, f"-Dlog4j2.configurationFile={LOG4J2_CONFIG_PATH}",
            "-cp", classpath, KAFKA_MAIN_CLASS, str(self.properties_path),
        ]
        pid = launch_detached(command, self.log_path, cwd=self.kafka_dir, banner=LAUNCH_MARKER)
        write_atomically(self.pid_path, f"{pid}\n")
        return pid

    def _rotate_log_if_large(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.log_path.stat().st_size > LOG_ROTATE_BYTES:
                os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))

    def _wait_until_answering(self, pid: int, timeout: float, *, stop_on_failure: bool) -> BrokerStatus:
        wait_until_answering(pid, self.pid_path, lambda: metadata_answers(self.bootstrap, timeout=1.0,
                                                                          client_config=self.client_config), timeout,
                             stop_on_failure=stop_on_failure, what="Kafka broker", where=self.bootstrap,
                             log_path=self.log_path, log_tail=self._log_tail, poll_s=0.25)
        return self._status(pid, answering=True)

    def _log_tail(self) -> str:
        """The last lines the current (most recently launched) broker wrote."""
        return launched_log_tail(self.log_path, LAUNCH_MARKER, ERROR_TAIL_LINES, "broker")
