"""infra/docker-compose.yml stays in step with the code: the variables it sets are ones
trackstream/config.py reads, and the brokers form one 3-voter quorum replicating 3 times."""

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]


def test_every_trackstream_variable_in_compose_is_read_by_the_code():
    compose = yaml.safe_load((REPO / "infra" / "docker-compose.yml").read_text())
    config = (REPO / "trackstream" / "config.py").read_text()
    used = {k for s in compose["services"].values() for k in (s.get("environment") or {}) if k.startswith("TRACKSTREAM_")}
    assert used
    assert sorted(v for v in used if f'"{v}"' not in config) == []


def test_three_brokers_one_quorum_rf3_min_isr2():
    services = yaml.safe_load((REPO / "infra" / "docker-compose.yml").read_text())["services"]
    brokers = [s for name, s in services.items() if name.startswith("kafka-")]
    assert len(brokers) == 3
    assert {b["environment"]["KAFKA_NODE_ID"] for b in brokers} == {1, 2, 3}
    for broker in brokers:
        env = broker["environment"]
        assert len(re.findall(r"\d@kafka-\d:9093", env["KAFKA_CONTROLLER_QUORUM_VOTERS"])) == 3
        assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == (3, 2)
    assert services["worker"]["environment"]["TRACKSTREAM_REPLICATION_FACTOR"] == 3
