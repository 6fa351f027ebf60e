"""A local scale-out cluster on loopback (``trackstream up --cluster`` / ``down --cluster``):
3 KRaft brokers (broker+controller each, a 3-voter quorum), the chdb-core ClickHouse server,
N ``trackstream worker`` and M ``trackstream gateway`` processes.

Event topics get replication factor 3 and ``min.insync.replicas=2``; producers use acks=all, so
an acknowledged event is on two brokers at least and survives the loss of any one. Everything
lives under ``<home>``::

    broker-1/ broker-2/ broker-3/   one KafkaBroker home each (infra/kafka_broker.py)
    clickhouse-server/              infra/clickhouse_server.py
    worker-1/ ... gateway-1/ ...    a role's home: its log, pid file, faust data, artifacts

``down`` stops exactly what ``up`` started: every pid is checked to still be that process (its
command line and working directory) before it is signalled.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from trackstream.config import Settings
from trackstream.infra.clickhouse_server import ClickHouseServer
from trackstream.infra.kafka_broker import InfraError, KafkaBroker, new_cluster_id
from trackstream.infra.processes import (
    launch_detached,
    launched_log_tail,
    pid_alive,
    read_cmdline,
    read_pid,
    stop_recorded,
    wait_for_exec,
    write_atomically,
)
from trackstream.infra.topics import ensure_topics

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K")

HOST = "127.0.0.1"
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2
CLUSTER_BROKER_JAVA_OPTS = ("-Xmx384m", "-Xms128m", "-XX:+UseG1GC", "-Djava.awt.headless=true")
ROLE_LAUNCH_MARKER = "==== trackstream: launching"
ROLES = ("worker", "gateway")


@dataclass(frozen=True)
class ClusterPorts:
    brokers: tuple[tuple[int, int], ...]  # (client port, controller port) per broker
    clickhouse_http: int
    clickhouse_tcp: int
    gateways: tuple[int, ...]

    @classmethod
    def default(cls) -> "ClusterPorts":
        return cls(brokers=((19192, 19193), (19292, 19293), (19392, 19393)), clickhouse_http=18123,
                   clickhouse_tcp=19000, gateways=(5055, 5056))


def controller_voters(host: str, brokers: Sequence[tuple[int, int]]) -> str:
    """``controller.quorum.voters``: every broker is a controller too (node ids from 1)."""
    return ",".join(f"{node}@{host}:{controller}" for node, (_, controller) in enumerate(brokers, start=1))


def cluster_broker_overrides(voters: str) -> dict[str, str]:
    """What a cluster member sets on top of the single-node defaults."""
    return {
        "controller.quorum.voters": voters,
        "default.replication.factor": str(REPLICATION_FACTOR),
        "min.insync.replicas": str(MIN_INSYNC_REPLICAS),
        "offsets.topic.replication.factor": str(REPLICATION_FACTOR),
        "transaction.state.log.replication.factor": str(REPLICATION_FACTOR),
        "transaction.state.log.min.isr": str(MIN_INSYNC_REPLICAS),
        "share.coordinator.state.topic.replication.factor": str(REPLICATION_FACTOR),
        "share.coordinator.state.topic.min.isr": str(MIN_INSYNC_REPLICAS),
    }


def role_env(settings: Settings, home: Path, port: int) -> dict[str, str]:
    """The environment a worker or gateway reads its settings from (trackstream/config.py)."""
    return {
        "TRACKSTREAM_HOME": str(home), "TRACKSTREAM_KAFKA": settings.kafka_bootstrap,
        "TRACKSTREAM_CLICKHOUSE": settings.clickhouse_dsn, "TRACKSTREAM_DATABASE": settings.database,
        "TRACKSTREAM_TOPIC": settings.topic, "TRACKSTREAM_DLQ_TOPIC": settings.dead_letter_topic,
        "TRACKSTREAM_PARTITIONS": str(settings.partitions), "TRACKSTREAM_CONSUMER_GROUP": settings.consumer_group,
        "TRACKSTREAM_SERVER_HOST": settings.server_host, "TRACKSTREAM_SERVER_PORT": str(port),
        "TRACKSTREAM_REPLICATION_FACTOR": str(settings.replication_factor),
        "TRACKSTREAM_MIN_INSYNC_REPLICAS": str(settings.min_insync_replicas),
        "TRACKSTREAM_BATCH_WINDOW_MS": str(round(settings.batch_window_s * 1000)),
        "TRACKSTREAM_FINALIZE_TIMEOUT_S": str(settings.finalize_timeout_s),
    }


def is_role_cmdline(cmdline: Sequence[str], role: str) -> bool:
    return role in cmdline and "trackstream.cli" in cmdline


def run_on_each(items: Sequence[T], action: Callable[[T], R], key: Callable[[T], K]) -> dict[K, R]:
    """``action`` on every item at once (one thread each); the first error is raised after all end."""
    results: dict[K, R] = {}
    errors: list[BaseException] = []

    def run(item: T) -> None:
        try:
            results[key(item)] = action(item)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@dataclass
class RoleProcess:
    """One ``trackstream worker`` or ``gateway`` run detached with ``home`` as its working
    directory (which, with its command line, is how its pid is recognised as ours)."""

    role: str
    home: Path
    env: Mapping[str, str]
    port: int = 0

    @property
    def name(self) -> str:
        return self.home.name

    @property
    def pid_path(self) -> Path:
        return self.home / f"{self.role}.pid"

    @property
    def log_path(self) -> Path:
        return self.home / f"{self.role}.log"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def owned_pid(self) -> int | None:
        pid = read_pid(self.pid_path)
        if pid is None or not pid_alive(pid):
            return None
        cmdline = read_cmdline(pid) or []
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            return None
        return pid if is_role_cmdline(cmdline, self.role) and cwd == self.home else None

    def start(self) -> int:
        pid = self.owned_pid()
        if pid is not None:
            return pid
        self.home.mkdir(parents=True, exist_ok=True)
        pid = launch_detached([sys.executable, "-m", "trackstream.cli", self.role], self.log_path,
                              env={**os.environ, **self.env}, cwd=self.home,
                              banner=f"{ROLE_LAUNCH_MARKER} {self.role}")
        write_atomically(self.pid_path, f"{pid}\n")
        wait_for_exec(pid)  # until then owned_pid() cannot recognise it
        return pid

    def stop(self, timeout: float = 30.0) -> bool:
        return stop_recorded(self.pid_path, self.owned_pid(), timeout, f"trackstream {self.role}")

    def log_tail(self) -> str:
        return launched_log_tail(self.log_path, ROLE_LAUNCH_MARKER, 30, self.role)


@dataclass
class LocalCluster:
    home: Path
    settings: Settings
    ports: ClusterPorts = field(default_factory=ClusterPorts.default)
    workers: int = 2

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser().resolve()
        voters = controller_voters(HOST, self.ports.brokers)
        self.brokers = [
            KafkaBroker(self.home / f"broker-{node}", port=port, controller_port=controller, host=HOST,
                        java_opts=CLUSTER_BROKER_JAVA_OPTS, node_id=node, overrides=cluster_broker_overrides(voters))
            for node, (port, controller) in enumerate(self.ports.brokers, start=1)]
        self.clickhouse = ClickHouseServer(self.home, http_port=self.ports.clickhouse_http,
                                           tcp_port=self.ports.clickhouse_tcp, host=HOST)
        self.settings = replace(
            self.settings, kafka_bootstrap=",".join(b.bootstrap for b in self.brokers),
            clickhouse_dsn=self.clickhouse.dsn, replication_factor=REPLICATION_FACTOR,
            min_insync_replicas=MIN_INSYNC_REPLICAS, server_host=HOST, server_port=self.ports.gateways[0])
        self.worker_processes = [self._role("worker", n) for n in range(1, self.workers + 1)]
        self.gateway_processes = [self._role("gateway", n, port) for n, port in enumerate(self.ports.gateways, 1)]

    def _role(self, role: str, number: int, port: int = 0) -> RoleProcess:
        home = self.home / f"{role}-{number}"
        return RoleProcess(role, home, role_env(self.settings, home, port), port)

    def add_worker(self) -> RoleProcess:
        worker = self._role("worker", len(self.worker_processes) + 1)
        self.worker_processes.append(worker)
        worker.start()
        return worker

    def up(self, timeout: float = 180.0) -> None:
        self.start_brokers(timeout)
        ensure_topics(self.settings)
        self.clickhouse.start(timeout=60)
        for worker in self.worker_processes:
            worker.start()
        for gateway in self.gateway_processes:
            gateway.start()
        self.wait_for_gateways(timeout)

    def start_brokers(self, timeout: float) -> None:
        """All at once: a broker answers only once a majority of the controller quorum runs."""
        classpath = self.brokers[0].install()
        cluster_id = self._shared_cluster_id()
        for broker in self.brokers:
            if not broker.classpath_path.exists():
                write_atomically(broker.classpath_path, classpath + "\n")
            if not broker.cluster_id_path.exists():
                write_atomically(broker.cluster_id_path, cluster_id + "\n")
        run_on_each(self.brokers, lambda broker: broker.start(timeout=timeout), key=lambda b: b.node_id)

    def _shared_cluster_id(self) -> str:
        for broker in self.brokers:
            if broker.cluster_id_path.exists():
                return broker.cluster_id_path.read_text().strip()
        return new_cluster_id()

    def wait_for_gateways(self, timeout: float) -> None:
        from trackstream.reading import HttpReader

        deadline = time.monotonic() + timeout
        for process in self.worker_processes + self.gateway_processes:
            if process.owned_pid() is None:
                raise InfraError(f"trackstream {process.role} {process.name} exited during start:\n{process.log_tail()}")
        for gateway in self.gateway_processes:
            reader = HttpReader(gateway.url, timeout=2)
            while not reader.healthy():
                if gateway.owned_pid() is None:
                    raise InfraError(f"trackstream gateway {gateway.name} exited during start:\n{gateway.log_tail()}")
                if time.monotonic() > deadline:
                    raise InfraError(f"gateway {gateway.url} did not answer within {timeout:.0f} s:\n"
                                     f"{gateway.log_tail()}")
                time.sleep(0.3)

    def down(self) -> list[str]:
        """Stop what ``up`` started (gateways, workers, ClickHouse, brokers); names what was stopped.
        Every role home under ``home`` counts, also workers another process added later."""
        roles = [p for role in reversed(ROLES) for p in self._role_homes(role)]
        # Together: each may take its shutdown timeout (a worker commits and leaves the group).
        stopped_roles = run_on_each(roles, RoleProcess.stop, key=lambda p: p.home)
        stopped = [f"{p.role} {p.name}" for p in roles if stopped_roles[p.home]]
        if self.clickhouse.stop():
            stopped.append("clickhouse-server")
        # Together: one by one, the last broker waits out its shutdown timeout for a quorum.
        stopped_brokers = run_on_each(self.brokers, KafkaBroker.stop, key=lambda b: b.node_id)
        stopped += [f"broker-{b.node_id}" for b in self.brokers if stopped_brokers[b.node_id]]
        return stopped

    def _role_homes(self, role: str) -> list[RoleProcess]:
        return [RoleProcess(role, home, {}) for home in sorted(self.home.glob(f"{role}-*")) if home.is_dir()]

    def describe(self) -> str:
        return "\n".join([
            f"Kafka: {self.settings.kafka_bootstrap} (3 KRaft brokers, RF {REPLICATION_FACTOR}, "
            f"min.insync.replicas {MIN_INSYNC_REPLICAS})",
            f"ClickHouse: {self.clickhouse.dsn} (native TCP {self.ports.clickhouse_tcp})",
            f"workers: {len(self.worker_processes)} (group {self.settings.consumer_group}), logs "
            f"{self.home}/worker-*/worker.log",
            "gateways: " + ", ".join(g.url for g in self.gateway_processes),
        ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trackstream.infra.cluster")
    parser.add_argument("action", choices=["up", "down"])
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    cluster = LocalCluster(settings.home / "cluster", settings)
    if args.action == "up":
        cluster.up()
        print(cluster.describe())
    else:
        print("stopped: " + (", ".join(cluster.down()) or "nothing of ours was running"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
