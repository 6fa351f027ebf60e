from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest

from trackstream.infra.processes import parse_proc_cmdline, parse_proc_stat_state, read_pid
from trackstream.infra.kafka_broker import (
    BrokerStatus,
    InfraError,
    KafkaBroker,
    broker_properties,
    is_broker_cmdline,
    is_valid_cluster_id,
    java_major_version,
    missing_classpath_entries,
    new_cluster_id,
    render_properties,
    tail_text,
)

PROPERTIES = Path("/home/dev/.trackstream/kafka/server.properties")


def parse_properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_cluster_id_is_16_random_bytes_base64url_unpadded() -> None:
    cluster_id = new_cluster_id()
    assert len(cluster_id) == 22
    assert "=" not in cluster_id and "+" not in cluster_id and "/" not in cluster_id
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert is_valid_cluster_id(cluster_id)
    assert new_cluster_id() != cluster_id


@pytest.mark.parametrize(
    "bad", ["", "short", "q1Sh-9_ISia_zwGINzRvyQ==", "q1Sh+9/ISia_zwGINzRvyQ", "q1Sh-9_ISia_zwGINzRvyQx"]
)
def test_invalid_cluster_ids_are_rejected(bad: str) -> None:
    assert not is_valid_cluster_id(bad)


def test_broker_properties_describe_a_combined_single_voter_node() -> None:
    props = broker_properties(host="127.0.0.1", port=29092, controller_port=29093, data_dir=Path("/d/data"))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert props["log.dirs"] == "/d/data"
    assert props["num.partitions"] == "4"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_events_are_kept_forever_and_topics_may_be_auto_created() -> None:
    props = broker_properties(host="127.0.0.1", port=1, controller_port=2, data_dir=Path("/d"))
    assert props["log.retention.ms"] == "-1"
    assert props["log.retention.bytes"] == "-1"
    assert "auto.create.topics.enable" not in props


def test_overrides_win() -> None:
    props = broker_properties(
        host="127.0.0.1", port=1, controller_port=2, data_dir=Path("/d"), overrides={"num.partitions": "8"}
    )
    assert props["num.partitions"] == "8"


def test_rendered_properties_round_trip_in_order() -> None:
    props = broker_properties(
        host="127.0.0.1", port=19092, controller_port=19093, data_dir=Path("/tmp/x y/data")
    )
    text = render_properties(props)
    assert text.endswith("\n")
    assert parse_properties(text) == props
    assert [line.split("=", 1)[0] for line in text.splitlines()] == list(props)


def test_rendering_escapes_backslashes_and_key_separators() -> None:
    text = render_properties({"a:b": "C:\\data", "k": "line1\nline2"})
    assert text == "a\\:b=C:\\\\data\nk=line1\\nline2\n"


def test_proc_cmdline_is_split_on_nul() -> None:
    raw = b"java\0-Xmx768m\0-cp\0/a.jar:/b.jar\0kafka.Kafka\0/h/kafka/server.properties\0"
    assert parse_proc_cmdline(raw) == [
        "java", "-Xmx768m", "-cp", "/a.jar:/b.jar", "kafka.Kafka", "/h/kafka/server.properties"
    ]
    assert parse_proc_cmdline(b"") == []


def test_broker_cmdline_must_name_kafka_main_and_our_properties() -> None:
    ours = ["/usr/bin/java", "-Xmx768m", "-cp", "/x.jar", "kafka.Kafka", str(PROPERTIES)]
    assert is_broker_cmdline(ours, PROPERTIES)


@pytest.mark.parametrize(
    "cmdline",
    [
        [],
        ["sleep", "300"],
        ["java", "-cp", "/x.jar", "kafka.Kafka", "/other/home/kafka/server.properties"],
        ["java", "-cp", "/x.jar", "kafka.tools.StorageTool", "format", "-c", str(PROPERTIES)],
        ["vim", str(PROPERTIES), "kafka.Kafka"],
        ["java", "kafka.Kafka", str(PROPERTIES) + ".bak"],
    ],
)
def test_other_processes_are_not_our_broker(cmdline: list[str]) -> None:
    assert not is_broker_cmdline(cmdline, PROPERTIES)


def test_missing_classpath_entries(tmp_path: Path) -> None:
    present = tmp_path / "a.jar"
    present.write_bytes(b"")
    absent = tmp_path / "b.jar"
    assert missing_classpath_entries(f"{present}\n") == []
    assert missing_classpath_entries(f"{present}:{absent}") == [str(absent)]
    assert missing_classpath_entries("  ") == ["<empty classpath>"]


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_402"', 8),
        ("garbage", None),
    ],
)
def test_java_major_version(output: str, major: int | None) -> None:
    assert java_major_version(output) == major


def test_read_pid(tmp_path: Path) -> None:
    pid_path = tmp_path / "broker.pid"
    assert read_pid(pid_path) is None
    pid_path.write_text("1234\n")
    assert read_pid(pid_path) == 1234
    pid_path.write_text("not a pid")
    assert read_pid(pid_path) is None
    pid_path.write_text("0")
    assert read_pid(pid_path) is None


def test_tail_text() -> None:
    assert tail_text("a\nb\nc\n", 2) == "b\nc"
    assert tail_text("", 5) == ""


def test_broker_layout_lives_under_home_kafka(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path, port=39092, controller_port=39093)
    assert broker.bootstrap == "127.0.0.1:39092"
    assert broker.properties_path == tmp_path.resolve() / "kafka" / "server.properties"
    assert broker.data_dir == tmp_path.resolve() / "kafka" / "data"
    assert broker.log_path.name == "broker.log"
    assert broker.pid_path.name == "broker.pid"
    assert broker.classpath_path.name == "classpath.txt"


def test_default_ports() -> None:
    assert KafkaBroker("/nonexistent").bootstrap == "127.0.0.1:19092"


def test_same_broker_and_controller_port_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="must differ"):
        KafkaBroker(tmp_path, port=19092, controller_port=19092)


def test_status_without_a_pidfile_is_not_running(tmp_path: Path) -> None:
    status = KafkaBroker(tmp_path, port=39092, controller_port=39093).status()
    assert status == BrokerStatus(
        running=False,
        pid=None,
        bootstrap="127.0.0.1:39092",
        log_path=tmp_path.resolve() / "kafka" / "broker.log",
        data_dir=tmp_path.resolve() / "kafka" / "data",
        answering=False,
    )


def fake_tool(directory: Path, name: str, script: str) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def fake_java(tmp_path: Path) -> str:
    return fake_tool(tmp_path, "java", """echo 'openjdk version "17.0.15" 2025-04-15' >&2\n""")


def test_install_without_java_names_the_missing_tool(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path, java="definitely-not-java-xyz")
    with pytest.raises(InfraError, match="definitely-not-java-xyz.*not found on PATH"):
        broker.install()


def test_install_without_maven_names_the_missing_tool(tmp_path: Path, fake_java: str) -> None:
    broker = KafkaBroker(tmp_path, java=fake_java, mvn="definitely-not-mvn-xyz")
    with pytest.raises(InfraError, match="definitely-not-mvn-xyz.*not found on PATH"):
        broker.install()


def test_install_rejects_old_java(tmp_path: Path) -> None:
    old_java = fake_tool(tmp_path, "java", """echo 'java version "1.8.0_402"' >&2\n""")
    with pytest.raises(InfraError, match="Java 8.*needs Java 17"):
        KafkaBroker(tmp_path, java=old_java).install()


def test_maven_failure_reports_its_output_tail(tmp_path: Path, fake_java: str) -> None:
    failing_mvn = fake_tool(
        tmp_path, "mvn", "echo '[ERROR] Could not resolve dependencies for kafka_2.13'\nexit 1\n"
    )
    broker = KafkaBroker(tmp_path, java=fake_java, mvn=failing_mvn)
    with pytest.raises(InfraError, match="(?s)exit 1.*Could not resolve dependencies"):
        broker.install()
    assert not broker.classpath_path.exists()


def test_classpath_is_resolved_once_and_again_when_a_jar_disappears(tmp_path: Path, fake_java: str) -> None:
    jar = tmp_path / "kafka.jar"
    jar.write_bytes(b"")
    calls = tmp_path / "mvn-calls"
    mvn = fake_tool(
        tmp_path,
        "mvn",
        f"""echo "$@" >> {calls}
for arg in "$@"; do
  case "$arg" in -Dmdep.outputFile=*) printf '%s' '{jar}' > "${{arg#-Dmdep.outputFile=}}";; esac
done
""",
    )
    broker = KafkaBroker(tmp_path / "home", java=fake_java, mvn=mvn)
    assert broker.install() == str(jar)
    assert broker.install() == str(jar)
    invocations = calls.read_text().splitlines()
    assert len(invocations) == 1
    assert {"-q", "-C", "-B", "dependency:build-classpath"} <= set(invocations[0].split())
    assert broker.classpath_path.read_text().strip() == str(jar)

    jar.unlink()
    with pytest.raises(InfraError, match="missing entries"):
        broker.install()
    assert len(calls.read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("stat_line", "state"),
    [
        ("4242 (java) S 1 4242 4242 0 -1", "S"),
        ("4242 (odd) name)) Z 1 4242", "Z"),
        ("7 (kworker/0:1 (x)) R 2 0 0", "R"),
    ],
)
def test_proc_stat_state(stat_line: str, state: str) -> None:
    assert parse_proc_stat_state(stat_line) == state


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def broker_with_fake_java(tmp_path: Path, on_launch: str) -> KafkaBroker:
    """A broker whose `java` is a shell script, already 'installed' and 'formatted'."""
    java = fake_tool(
        tmp_path,
        "java",
        f"""case "$*" in
  *-version*) echo 'openjdk version "17.0.15"' >&2 ;;
  *kafka.Kafka*) {on_launch} ;;
esac
""",
    )
    broker = KafkaBroker(tmp_path / "home", port=unused_port(), controller_port=unused_port(), java=java)
    jar = tmp_path / "kafka.jar"
    jar.write_bytes(b"")
    broker.data_dir.mkdir(parents=True)
    (broker.data_dir / "meta.properties").write_text("")
    broker.classpath_path.write_text(str(jar))
    return broker


def test_a_broker_that_dies_at_startup_reports_its_log(tmp_path: Path) -> None:
    broker = broker_with_fake_java(tmp_path, "echo 'ERROR boom: cannot start'; exit 1")
    with pytest.raises(InfraError, match="(?s)exited during startup.*boom: cannot start"):
        broker.start(timeout=10)
    assert not broker.pid_path.exists()
    assert broker.status().running is False


def test_a_broker_that_never_answers_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    launched_pid_path = tmp_path / "launched.pid"
    broker = broker_with_fake_java(
        tmp_path, f"echo $$ > {launched_pid_path}; echo 'still warming up'; exec sleep 300"
    )
    with pytest.raises(InfraError, match="(?s)did not answer.*within 1s.*stopped again.*still warming up"):
        broker.start(timeout=1)
    assert not broker.pid_path.exists()
    assert not Path(f"/proc/{launched_pid_path.read_text().strip()}").exists()


def test_cluster_ids_never_start_with_a_dash(monkeypatch):
    """One random id in 64 would start with "-": kafka-storage then read it as an option (seen in CI)."""
    draws = iter([b"\xfb" + bytes(15), b"\x00" * 16])  # base64url of 0xfb... starts with "-"
    monkeypatch.setattr("trackstream.infra.kafka_broker.os.urandom", lambda n: next(draws))
    assert new_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"
