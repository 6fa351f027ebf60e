"""The local cluster's decisions: quorum voters, replication settings, role settings, ownership."""

import subprocess
import sys

from trackstream.config import Settings
from trackstream.infra.cluster import (
    RoleProcess,
    cluster_broker_overrides,
    controller_voters,
    is_role_cmdline,
    role_env,
)
from trackstream.infra.kafka_broker import broker_properties


def test_every_broker_votes_in_one_quorum_with_node_ids_from_one():
    assert controller_voters("127.0.0.1", [(9092, 9093), (9192, 9193), (9292, 9293)]) == \
        "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293"


def test_a_member_replicates_everything_three_times_and_needs_two_in_sync(tmp_path):
    properties = broker_properties(host="127.0.0.1", port=9192, controller_port=9193, data_dir=tmp_path, node_id=2,
                                   overrides=cluster_broker_overrides("1@h:1,2@h:2,3@h:3"))
    assert properties["node.id"] == "2"
    assert properties["controller.quorum.voters"] == "1@h:1,2@h:2,3@h:3"
    assert properties["offsets.topic.replication.factor"] == "3"
    assert properties["default.replication.factor"] == "3"
    assert properties["min.insync.replicas"] == "2"
    assert properties["transaction.state.log.min.isr"] == "2"


def test_roles_get_the_cluster_settings_through_the_environment(tmp_path, monkeypatch):
    settings = Settings(home=tmp_path, kafka_bootstrap="a:1,b:2,c:3", clickhouse_dsn="http://default:@127.0.0.1:8123",
                        database="ts_x", topic="ev.x", dead_letter_topic="ev.x.dlq", consumer_group="g",
                        replication_factor=3, min_insync_replicas=2)
    env = role_env(settings, tmp_path / "worker-1", 5057)
    for key in list(env):
        monkeypatch.setenv(key, env[key])
    read_back = Settings.from_env()
    assert (read_back.home, read_back.kafka_bootstrap, read_back.clickhouse_dsn) == \
        (tmp_path / "worker-1", "a:1,b:2,c:3", "http://default:@127.0.0.1:8123")
    assert (read_back.database, read_back.topic, read_back.dead_letter_topic, read_back.consumer_group) == \
        ("ts_x", "ev.x", "ev.x.dlq", "g")
    assert (read_back.replication_factor, read_back.min_insync_replicas, read_back.server_port) == (3, 2, 5057)


def test_role_cmdlines():
    assert is_role_cmdline(["/usr/bin/python3", "-m", "trackstream.cli", "worker"], "worker")
    assert not is_role_cmdline(["/usr/bin/python3", "-m", "trackstream.cli", "gateway"], "worker")
    assert not is_role_cmdline(["/usr/bin/python3", "worker"], "worker")


def test_stop_never_signals_a_process_it_did_not_start(tmp_path):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        role = RoleProcess("worker", tmp_path / "worker-1", {})
        role.home.mkdir()
        role.pid_path.write_text(f"{stranger.pid}\n")
        assert role.owned_pid() is None
        assert role.stop() is False
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_more_in_sync_replicas_than_replicas_is_refused():
    import pytest

    from trackstream.errors import InvalidInput
    from trackstream.infra.topics import event_topic_config

    assert event_topic_config(Settings(replication_factor=3, min_insync_replicas=2))["min.insync.replicas"] == "2"
    with pytest.raises(InvalidInput, match="cannot exceed"):
        event_topic_config(Settings(replication_factor=1, min_insync_replicas=2))
