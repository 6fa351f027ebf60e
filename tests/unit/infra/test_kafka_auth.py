"""The authenticated broker's settings and the roles' ACLs, without a broker."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from trackstream.infra.kafka_auth import BrokerAuth, role_acl_bindings
from trackstream.infra.kafka_broker import broker_properties, render_properties

AUTH = BrokerAuth(admin_password="admin-secret", controller_password="controller-secret")


def test_client_listener_takes_only_scram_and_acls_are_enforced() -> None:
    props = AUTH.properties("127.0.0.1", 9092, 9093)
    assert props["listeners"] == "SASL_PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert "PLAINTEXT:PLAINTEXT" not in props["listener.security.protocol.map"]
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:controller"


def test_rendered_properties_keep_the_login_modules_intact() -> None:
    text = render_properties(broker_properties(host="127.0.0.1", port=9092, controller_port=9093, data_dir="/d",
                                               overrides=AUTH.properties("127.0.0.1", 9092, 9093)))
    assert ('listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.'
            'ScramLoginModule required username="admin" password="admin-secret";\n') in text
    assert 'user_controller="controller-secret";\n' in text


def test_the_administrator_is_created_at_format_time() -> None:
    assert AUTH.format_arguments() == ["--add-scram", "SCRAM-SHA-512=[name=admin,password=admin-secret]"]


def test_passwords_that_would_break_the_broker_config_are_refused() -> None:
    with pytest.raises(ValueError, match="admin password"):
        BrokerAuth(admin_password='pa"ss-word', controller_password="controller-secret")
    with pytest.raises(ValueError, match="controller password"):
        BrokerAuth(admin_password="admin-secret", controller_password="short")


def test_trainer_may_only_write_and_describe_the_events_topic() -> None:
    bindings = role_acl_bindings("trainer", "node-7", topic="ev", dead_letter_topic="ev.dlq", group="g")
    assert {(b.restype, b.name, b.operation) for b in bindings} == {
        (ResourceType.TOPIC, "ev", AclOperation.WRITE), (ResourceType.TOPIC, "ev", AclOperation.DESCRIBE)}
    assert all(b.principal == "User:node-7" for b in bindings)


def test_worker_reads_in_its_group_writes_dead_letters_and_owns_its_internal_topics() -> None:
    bindings = role_acl_bindings("worker", "w", topic="ev", dead_letter_topic="ev.dlq", group="g")
    granted = {(b.restype, b.name, b.resource_pattern_type, b.operation) for b in bindings}
    assert (ResourceType.GROUP, "g", ResourcePatternType.LITERAL, AclOperation.READ) in granted
    assert (ResourceType.TOPIC, "ev.dlq", ResourcePatternType.LITERAL, AclOperation.WRITE) in granted
    assert (ResourceType.TOPIC, "g", ResourcePatternType.PREFIXED, AclOperation.ALL) in granted
    assert (ResourceType.TOPIC, "ev", ResourcePatternType.LITERAL, AclOperation.READ) in granted
    assert not any(name == "ev" and op == AclOperation.ALL for _, name, _, op in granted)


def test_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown role 'admin'"):
        role_acl_bindings("admin", "x", topic="ev", dead_letter_topic="d", group="g")
