"""How Kafka credentials are read from the environment and handed to each client library."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackstream.config import Settings
from trackstream.errors import InvalidInput
from trackstream.kafka_security import KafkaSecurity


def test_no_settings_means_plaintext_without_sign_in() -> None:
    security = KafkaSecurity.from_env({})
    assert security.protocol == "PLAINTEXT"
    assert security.librdkafka_config() == {"security.protocol": "plaintext"}
    assert security.faust_credentials() is None


def test_a_user_name_alone_implies_sasl_with_scram_sha_512() -> None:
    security = KafkaSecurity.from_env({"TRACKSTREAM_KAFKA_USERNAME": "trainer", "TRACKSTREAM_KAFKA_PASSWORD": "pw"})
    assert security.librdkafka_config() == {"security.protocol": "sasl_plaintext", "sasl.mechanisms": "SCRAM-SHA-512",
                                            "sasl.username": "trainer", "sasl.password": "pw"}


def test_faust_gets_the_same_sasl_credentials() -> None:
    credentials = KafkaSecurity.from_env({"TRACKSTREAM_KAFKA_USERNAME": "worker", "TRACKSTREAM_KAFKA_PASSWORD": "pw",
                                          "TRACKSTREAM_KAFKA_SASL_MECHANISM": "scram-sha-256"}).faust_credentials()
    assert (credentials.username, credentials.password, credentials.mechanism.value) == ("worker", "pw", "SCRAM-SHA-256")
    assert credentials.protocol.value == "SASL_PLAINTEXT"


def test_password_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("from-file\n")
    security = KafkaSecurity.from_env({"TRACKSTREAM_KAFKA_USERNAME": "u", "TRACKSTREAM_KAFKA_PASSWORD_FILE": str(secret)})
    assert security.password == "from-file"


def test_password_never_shows_in_settings_repr() -> None:
    settings = Settings(kafka_security=KafkaSecurity(protocol="SASL_SSL", username="u", password="hunter2-secret"))
    assert "hunter2-secret" not in repr(settings)
    assert "username='u'" in repr(settings)


def test_settings_give_every_client_the_brokers_and_the_sign_in() -> None:
    settings = Settings(kafka_bootstrap="b:9092", kafka_security=KafkaSecurity(protocol="SASL_PLAINTEXT",
                                                                               username="u", password="p"))
    assert settings.kafka_config()["bootstrap.servers"] == "b:9092"
    assert settings.kafka_config()["sasl.username"] == "u"


def test_client_certificate_goes_to_librdkafka_and_to_python_tls(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("x")
    security = KafkaSecurity.from_env({"TRACKSTREAM_KAFKA_SSL_CA": str(tmp_path / "ca.pem"),
                                       "TRACKSTREAM_KAFKA_SSL_CERT": str(tmp_path / "client.pem"),
                                       "TRACKSTREAM_KAFKA_SSL_KEY": str(tmp_path / "client.key")})
    assert security.protocol == "SSL"
    assert security.librdkafka_config() == {"security.protocol": "ssl", "ssl.ca.location": str(tmp_path / "ca.pem"),
                                            "ssl.certificate.location": str(tmp_path / "client.pem"),
                                            "ssl.key.location": str(tmp_path / "client.key")}


@pytest.mark.parametrize(("env", "names"), [
    ({"TRACKSTREAM_KAFKA_SECURITY_PROTOCOL": "KERBEROS"}, "TRACKSTREAM_KAFKA_SECURITY_PROTOCOL"),
    ({"TRACKSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "TRACKSTREAM_KAFKA_USERNAME"),
    ({"TRACKSTREAM_KAFKA_USERNAME": "u"}, "TRACKSTREAM_KAFKA_PASSWORD"),
    ({"TRACKSTREAM_KAFKA_USERNAME": "u", "TRACKSTREAM_KAFKA_PASSWORD": "p", "TRACKSTREAM_KAFKA_SASL_MECHANISM": "MD5"},
     "TRACKSTREAM_KAFKA_SASL_MECHANISM"),
    ({"TRACKSTREAM_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "TRACKSTREAM_KAFKA_PASSWORD": "p"},
     "TRACKSTREAM_KAFKA_SECURITY_PROTOCOL"),
    ({"TRACKSTREAM_KAFKA_SSL_CA": "/nonexistent/ca.pem"}, "TRACKSTREAM_KAFKA_SSL_CA"),
    ({"TRACKSTREAM_KAFKA_USERNAME": "u", "TRACKSTREAM_KAFKA_PASSWORD_FILE": "/nonexistent/pw"},
     "TRACKSTREAM_KAFKA_PASSWORD_FILE"),
])
def test_bad_settings_are_refused_naming_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(InvalidInput, match=names):
        KafkaSecurity.from_env(env)


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "client.pem").write_text("x")
    with pytest.raises(InvalidInput, match="TRACKSTREAM_KAFKA_SSL_KEY"):
        KafkaSecurity.from_env({"TRACKSTREAM_KAFKA_SSL_CERT": str(tmp_path / "client.pem")})


def test_the_brokers_refusals_are_told_apart_from_other_errors_by_code() -> None:
    from confluent_kafka import KafkaError, KafkaException

    from trackstream.kafka_security import kafka_error_code, refused_by_broker

    refused = KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    exists = KafkaException(KafkaError(KafkaError.TOPIC_ALREADY_EXISTS))
    assert refused_by_broker(refused) and not refused_by_broker(exists)
    assert kafka_error_code(exists) == KafkaError.TOPIC_ALREADY_EXISTS
    assert kafka_error_code(ValueError("AUTHORIZATION_FAILED")) is None  # a message alone decides nothing
