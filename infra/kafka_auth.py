"""Brokers that check who connects, and what each trackstream role may do there.

``BrokerAuth`` turns a KafkaBroker (infra/kafka_broker.py) into one whose client listener takes
only SASL/SCRAM sign-ins and whose StandardAuthorizer refuses everything no ACL allows. The KRaft
controller listener signs in with SASL/PLAIN (Kafka does not support SCRAM there: SCRAM users
live in the metadata the controllers serve). The first user, the administrator, is written at
storage-format time (``kafka-storage format --add-scram``); every other user is added through
the Admin API (``add_scram_user``).

``ROLE_ACLS`` is the least each role needs, and docs/deploy.md shows the same ACLs as
``kafka-acls.sh`` commands:

- ``trainer`` (the SDK on a training node): write to the events topic, nothing else: it cannot
  read anyone's events, write dead letters, join consumer groups or create topics;
- ``gateway``: write to the events topic and read its end offsets (read-your-writes);
- ``worker``: read the events topic in the materializer's consumer group, write dead letters,
  append the events it decides itself (a run failed for artifacts overdue), and create the
  internal topics faust keeps beside its group.

WRITE on a topic implies idempotent produce since Kafka 3.0 (KIP-679): no cluster-level
IdempotentWrite grant is needed for our idempotent producers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trackstream.errors import PermissionDenied, ServiceUnavailable
from trackstream.kafka_security import refused_by_broker

SCRAM_MECHANISM = "SCRAM-SHA-512"
CLIENT_LISTENER = "SASL_PLAINTEXT"
SUPER_USERS_CONTROLLER = "controller"

# (resource type, resource name, pattern, operation) per role; {topic}, {dlq} and {group} are
# filled from the deployment's settings. Pattern "prefixed" also covers names that start with it.
ROLE_ACLS: Mapping[str, tuple[tuple[str, str, str, str], ...]] = {
    "trainer": (
        ("topic", "{topic}", "literal", "write"),
        ("topic", "{topic}", "literal", "describe"),
    ),
    "gateway": (
        ("topic", "{topic}", "literal", "write"),
        ("topic", "{topic}", "literal", "describe"),
    ),
    "worker": (
        ("topic", "{topic}", "literal", "read"),
        ("topic", "{topic}", "literal", "write"),
        ("topic", "{topic}", "literal", "describe"),
        ("topic", "{dlq}", "literal", "write"),
        ("topic", "{dlq}", "literal", "describe"),
        ("group", "{group}", "literal", "read"),
        # faust's own changelog/leader topics are named after the consumer group (its app id)
        ("topic", "{group}", "prefixed", "all"),
    ),
}


@dataclass(frozen=True)
class BrokerAuth:
    """SASL/SCRAM on the client listener, ACLs enforced, ``admin`` as the super user."""

    admin_user: str = "admin"
    admin_password: str = field(default="", repr=False)
    controller_password: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        for what, secret in (("admin", self.admin_password), ("controller", self.controller_password)):
            if len(secret) < 8 or any(c in secret for c in '"\\,[]='):
                raise ValueError(f"the broker's {what} password must be at least 8 characters, "
                                 f"without quotes, backslashes, commas, brackets or '='")

    def properties(self, host: str, port: int, controller_port: int) -> dict[str, str]:
        """Settings layered over the plain broker's (they replace its listeners)."""
        scram_login = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
                       f'username="{self.admin_user}" password="{self.admin_password}";')
        plain_login = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
                       f'username="{SUPER_USERS_CONTROLLER}" password="{self.controller_password}" '
                       f'user_{SUPER_USERS_CONTROLLER}="{self.controller_password}";')
        return {
            "listeners": f"{CLIENT_LISTENER}://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"{CLIENT_LISTENER}://{host}:{port}",
            "listener.security.protocol.map": f"{CLIENT_LISTENER}:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
            "inter.broker.listener.name": CLIENT_LISTENER,
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
            f"listener.name.{CLIENT_LISTENER.lower()}.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": scram_login,
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain_login,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{self.admin_user};User:{SUPER_USERS_CONTROLLER}",
            "allow.everyone.if.no.acl.found": "false",
        }

    def format_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create the administrator before the first start."""
        return ["--add-scram", f"{SCRAM_MECHANISM}=[name={self.admin_user},password={self.admin_password}]"]

    def admin_config(self) -> dict[str, str]:
        """librdkafka settings that sign in as the administrator."""
        return {"security.protocol": "sasl_plaintext", "sasl.mechanisms": SCRAM_MECHANISM,
                "sasl.username": self.admin_user, "sasl.password": self.admin_password}


def add_scram_user(admin_config: Mapping[str, Any], user: str, password: str, timeout: float = 30.0) -> None:
    """Create (or change the password of) a SCRAM user, signed in as an administrator."""
    from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)

    admin = AdminClient(dict(admin_config))
    upsert = UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
                                          password.encode())
    _wait_all(admin.alter_user_scram_credentials([upsert], request_timeout=timeout).values(), timeout,
              f"creating Kafka user {user}")


def role_acl_bindings(role: str, user: str, *, topic: str, dead_letter_topic: str, group: str) -> list[Any]:
    """The ACL bindings that give ``user`` what ``role`` needs (``ROLE_ACLS``)."""
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, ResourcePatternType,
                                       ResourceType)

    if role not in ROLE_ACLS:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLE_ACLS)}")
    names = {"topic": topic, "dlq": dead_letter_topic, "group": group}
    return [AclBinding(ResourceType[resource.upper()], name.format(**names), ResourcePatternType[pattern.upper()],
                       f"User:{user}", "*", AclOperation[operation.upper()], AclPermissionType.ALLOW)
            for resource, name, pattern, operation in ROLE_ACLS[role]]


def grant_role(admin_config: Mapping[str, Any], role: str, user: str, *, topic: str, dead_letter_topic: str,
               group: str, timeout: float = 30.0) -> None:
    """Create ``role``'s ACLs for ``user``, signed in as an administrator."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(dict(admin_config))
    bindings = role_acl_bindings(role, user, topic=topic, dead_letter_topic=dead_letter_topic, group=group)
    _wait_all(admin.create_acls(bindings, request_timeout=timeout).values(), timeout,
              f"granting the {role} role to Kafka user {user}")


def _wait_all(futures: Any, timeout: float, what: str) -> None:
    from confluent_kafka import KafkaException

    for future in futures:
        try:
            future.result(timeout)
        except KafkaException as exc:
            if refused_by_broker(exc):
                raise PermissionDenied(f"{what} was refused: {exc}; sign in as the broker's administrator "
                                       f"(TRACKSTREAM_KAFKA_USERNAME / TRACKSTREAM_KAFKA_PASSWORD)") from exc
            raise ServiceUnavailable(f"{what} failed: {exc}") from exc
