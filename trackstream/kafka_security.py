"""How every Kafka client of ours authenticates to the brokers: the SDK's producer, the gateway's
producer and position reader, the worker (faust/aiokafka), replay, and the admin clients that
create topics.

One ``KafkaSecurity`` comes from the environment (``TRACKSTREAM_KAFKA_*``, see ``from_env``) as
part of ``Settings`` and is turned into each client library's own configuration here, so the
SDK, workers and gateways can never disagree on how they sign in:

- ``PLAINTEXT`` (default): no authentication, for a broker on loopback or a private network;
- ``SASL_PLAINTEXT`` / ``SASL_SSL``: a user name and password checked by the broker with
  SCRAM-SHA-512 (default), SCRAM-SHA-256 or PLAIN; ``SASL_SSL`` also encrypts;
- ``SSL``: TLS, with a client certificate and key when the broker asks for one (mTLS).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trackstream.errors import InvalidInput

PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
DEFAULT_SASL_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = DEFAULT_SASL_MECHANISM
    username: str = ""
    password: str = field(default="", repr=False)
    ssl_ca: Path | None = None  # CA bundle that signed the brokers' certificates (else the system's)
    ssl_cert: Path | None = None  # client certificate (mTLS)
    ssl_key: Path | None = None
    ssl_key_password: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise InvalidInput(f"TRACKSTREAM_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, "
                               f"got {self.protocol!r}")
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise InvalidInput(f"TRACKSTREAM_KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}, "
                               f"got {self.sasl_mechanism!r}")
        if self.uses_sasl and not (self.username and self.password):
            raise InvalidInput(f"TRACKSTREAM_KAFKA_SECURITY_PROTOCOL={self.protocol} needs TRACKSTREAM_KAFKA_USERNAME "
                               f"and TRACKSTREAM_KAFKA_PASSWORD (or TRACKSTREAM_KAFKA_PASSWORD_FILE)")
        if not self.uses_sasl and (self.username or self.password):
            raise InvalidInput(f"a Kafka user name or password is set but TRACKSTREAM_KAFKA_SECURITY_PROTOCOL is "
                               f"{self.protocol}; set it to SASL_PLAINTEXT or SASL_SSL to sign in with them")
        if (self.ssl_cert is None) != (self.ssl_key is None):
            raise InvalidInput("TRACKSTREAM_KAFKA_SSL_CERT and TRACKSTREAM_KAFKA_SSL_KEY go together: "
                               "a client certificate needs its private key")
        if not self.uses_tls and (self.ssl_ca or self.ssl_cert):
            raise InvalidInput(f"TLS files are set but TRACKSTREAM_KAFKA_SECURITY_PROTOCOL is {self.protocol}; "
                               f"set it to SSL or SASL_SSL to use them")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values to mask wherever settings or errors are shown."""
        return tuple(s for s in (self.password, self.ssl_key_password) if s)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "KafkaSecurity":
        """``TRACKSTREAM_KAFKA_SECURITY_PROTOCOL`` (default PLAINTEXT, or SASL_PLAINTEXT when a user
        name is set), ``TRACKSTREAM_KAFKA_SASL_MECHANISM``, ``TRACKSTREAM_KAFKA_USERNAME``,
        ``TRACKSTREAM_KAFKA_PASSWORD`` or ``TRACKSTREAM_KAFKA_PASSWORD_FILE``,
        ``TRACKSTREAM_KAFKA_SSL_CA``, ``TRACKSTREAM_KAFKA_SSL_CERT``, ``TRACKSTREAM_KAFKA_SSL_KEY``,
        ``TRACKSTREAM_KAFKA_SSL_KEY_PASSWORD``."""
        username = env.get("TRACKSTREAM_KAFKA_USERNAME", "").strip()
        password = env.get("TRACKSTREAM_KAFKA_PASSWORD", "")
        password_file = env.get("TRACKSTREAM_KAFKA_PASSWORD_FILE", "").strip()
        if password_file:
            if password:
                raise InvalidInput("set TRACKSTREAM_KAFKA_PASSWORD or TRACKSTREAM_KAFKA_PASSWORD_FILE, not both")
            password = _read_secret_file(Path(password_file).expanduser(), "TRACKSTREAM_KAFKA_PASSWORD_FILE")
        ssl_ca, ssl_cert, ssl_key = (_existing_file(env, name) for name in (
            "TRACKSTREAM_KAFKA_SSL_CA", "TRACKSTREAM_KAFKA_SSL_CERT", "TRACKSTREAM_KAFKA_SSL_KEY"))
        default_protocol = "SASL_PLAINTEXT" if username else ("SSL" if ssl_ca or ssl_cert else "PLAINTEXT")
        return cls(
            protocol=env.get("TRACKSTREAM_KAFKA_SECURITY_PROTOCOL", "").strip().upper() or default_protocol,
            sasl_mechanism=env.get("TRACKSTREAM_KAFKA_SASL_MECHANISM", "").strip().upper() or DEFAULT_SASL_MECHANISM,
            username=username,
            password=password,
            ssl_ca=ssl_ca,
            ssl_cert=ssl_cert,
            ssl_key=ssl_key,
            ssl_key_password=env.get("TRACKSTREAM_KAFKA_SSL_KEY_PASSWORD", ""),
        )

    def librdkafka_config(self) -> dict[str, str]:
        """Settings for confluent-kafka's Producer, Consumer and AdminClient."""
        config = {"security.protocol": self.protocol.lower()}
        if self.uses_sasl:
            config.update({"sasl.mechanisms": self.sasl_mechanism, "sasl.username": self.username,
                           "sasl.password": self.password})
        if self.ssl_ca is not None:
            config["ssl.ca.location"] = str(self.ssl_ca)
        if self.ssl_cert is not None and self.ssl_key is not None:
            config["ssl.certificate.location"] = str(self.ssl_cert)
            config["ssl.key.location"] = str(self.ssl_key)
            if self.ssl_key_password:
                config["ssl.key.password"] = self.ssl_key_password
        return config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for Python clients (aiokafka under faust); None without TLS."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ssl_ca) if self.ssl_ca else None)
        if self.ssl_cert is not None and self.ssl_key is not None:
            context.load_cert_chain(str(self.ssl_cert), str(self.ssl_key), self.ssl_key_password or None)
        return context

    def faust_credentials(self) -> Any:
        """``broker_credentials`` for a faust App: None (PLAINTEXT), SASLCredentials or SSLCredentials."""
        if self.protocol == "PLAINTEXT":
            return None
        import faust

        if self.uses_sasl:
            return faust.SASLCredentials(username=self.username, password=self.password,
                                         mechanism=self.sasl_mechanism, ssl_context=self.ssl_context())
        return faust.SSLCredentials(self.ssl_context())


def kafka_error_code(exc: BaseException) -> int | None:
    """The broker's error code in a confluent-kafka exception (an admin future's, say), else None."""
    from confluent_kafka import KafkaError, KafkaException

    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return err.code() if isinstance(err, KafkaError) else None


def refused_by_broker(exc: BaseException) -> bool:
    """Whether the broker refused these credentials (sign-in or ACLs): retrying cannot help."""
    from confluent_kafka import KafkaError

    return kafka_error_code(exc) in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._AUTHENTICATION)


def _existing_file(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise InvalidInput(f"{name} names {path}, which is not a readable file")
    return path


def _read_secret_file(path: Path, name: str) -> str:
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise InvalidInput(f"{name}: cannot read {path}: {exc.strerror}") from exc
    if not secret:
        raise InvalidInput(f"{name}: {path} is empty")
    return secret
