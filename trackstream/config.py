"""Where things are: one place reads the environment, everything else takes a Settings."""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

from trackstream.errors import InvalidInput
from trackstream.kafka_security import KafkaSecurity

DEFAULT_KAFKA_PORT = 19092
DEFAULT_SERVER_PORT = 5055


def default_home() -> Path:
    return Path(os.environ.get("TRACKSTREAM_HOME", Path.home() / ".trackstream")).expanduser()


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=default_home)
    kafka_bootstrap: str = ""
    clickhouse_dsn: str = ""
    database: str = "trackstream"
    topic: str = "trackstream.events"
    dead_letter_topic: str = "trackstream.events.dlq"
    partitions: int = 4
    server_host: str = "127.0.0.1"
    server_port: int = DEFAULT_SERVER_PORT
    consumer_group: str = "trackstream-materializer"
    finalize_timeout_s: float = 3600.0
    auth_file: Path | None = None
    # The worker's batch window: how long a quiet stream's first event waits for company. Shorter
    # means fresher reads (read-your-writes), longer means fewer, bigger inserts (see README).
    batch_window_s: float = 0.1
    # Where the SDK stores artifacts: "" is the local store at ``artifact_root``; ``s3://bucket/prefix``
    # an S3-compatible bucket (endpoint and credentials as boto3 reads them: AWS_ENDPOINT_URL, ...).
    artifact_store: str = ""
    # Staging uploads untouched this long belong to a killed process: `trackstream gc-staging` and the
    # worker's periodic task remove them (producer/staging_gc.py).
    staging_grace_s: float = 86400.0
    # Where SDK reads (``ts.search_runs``...) go: "" is this server's own http://host:port.
    reads_url: str = ""
    # Browser-facing checks (server/web_security.py): Host names accepted besides loopback ones
    # (DNS rebinding), and foreign origins allowed to make cross-origin requests (CORS, closed by default).
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    # How long a gateway request waits for Kafka's acknowledgement before answering 503; the event may
    # still land, and the client's retry of the same request is then dropped as a repeat.
    gateway_ack_timeout_s: float = 30.0
    # How often a `trackstream gateway` polls the workers' materialized positions in ClickHouse.
    positions_poll_s: float = 0.05
    # Password guessing (server/password_checks.py): failed basic-auth attempts allowed per client
    # address and per user in a burst, then per minute; threads checking passwords (scrypt), and
    # how many checks may wait for one before the server answers 503.
    auth_failure_burst: int = 10
    auth_failures_per_minute: int = 5
    auth_threads: int = 2
    auth_queue: int = 32
    # New event topics' replication: 1 on one broker; 3 and 2 on a cluster (`trackstream up --cluster`),
    # so an acknowledged write (acks=all) survives the loss of a broker.
    replication_factor: int = 1
    min_insync_replicas: int = 1
    # How our Kafka clients sign in to the brokers (trackstream/kafka_security.py, TRACKSTREAM_KAFKA_*).
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        home = default_home()
        return cls(
            home=home,
            kafka_bootstrap=env.get("TRACKSTREAM_KAFKA", f"127.0.0.1:{DEFAULT_KAFKA_PORT}"),
            clickhouse_dsn=env.get("TRACKSTREAM_CLICKHOUSE", f"chdb://{home / 'clickhouse'}"),
            database=env.get("TRACKSTREAM_DATABASE", "trackstream"),
            topic=env.get("TRACKSTREAM_TOPIC", "trackstream.events"),
            dead_letter_topic=env.get("TRACKSTREAM_DLQ_TOPIC", env.get("TRACKSTREAM_TOPIC", "trackstream.events") + ".dlq"),
            partitions=int(env.get("TRACKSTREAM_PARTITIONS", "4")),
            server_host=env.get("TRACKSTREAM_SERVER_HOST", "127.0.0.1"),
            server_port=int(env.get("TRACKSTREAM_SERVER_PORT", str(DEFAULT_SERVER_PORT))),
            consumer_group=env.get("TRACKSTREAM_CONSUMER_GROUP", "trackstream-materializer"),
            finalize_timeout_s=float(env.get("TRACKSTREAM_FINALIZE_TIMEOUT_S", "3600")),
            auth_file=Path(env["TRACKSTREAM_AUTH_FILE"]).expanduser() if env.get("TRACKSTREAM_AUTH_FILE") else None,
            batch_window_s=_positive_ms(env, "TRACKSTREAM_BATCH_WINDOW_MS", 100) / 1000,
            artifact_store=artifact_store_location(env.get("TRACKSTREAM_ARTIFACT_STORE", "")),
            staging_grace_s=_seconds(env, "TRACKSTREAM_STAGING_GRACE_S", 86400.0),
            reads_url=env.get("TRACKSTREAM_SERVER_URL", "").strip().rstrip("/"),
            allowed_hosts=_comma_list(env.get("TRACKSTREAM_ALLOWED_HOSTS", "")),
            cors_origins=_comma_list(env.get("TRACKSTREAM_CORS_ORIGINS", "")),
            gateway_ack_timeout_s=_positive_ms(env, "TRACKSTREAM_GATEWAY_ACK_TIMEOUT_MS", 30_000) / 1000,
            positions_poll_s=_positive_ms(env, "TRACKSTREAM_POSITIONS_POLL_MS", 50) / 1000,
            auth_failure_burst=_whole_number(env, "TRACKSTREAM_AUTH_FAILURE_BURST", 10, 1, 1_000_000),
            auth_failures_per_minute=_whole_number(env, "TRACKSTREAM_AUTH_FAILURES_PER_MINUTE", 5, 1, 1_000_000),
            auth_threads=_whole_number(env, "TRACKSTREAM_AUTH_THREADS", 2, 1, 64),
            auth_queue=_whole_number(env, "TRACKSTREAM_AUTH_QUEUE", 32, 0, 100_000),
            replication_factor=_whole_number(env, "TRACKSTREAM_REPLICATION_FACTOR", 1, 1, 16),
            min_insync_replicas=_whole_number(env, "TRACKSTREAM_MIN_INSYNC_REPLICAS", 1, 1, 16),
            kafka_security=KafkaSecurity.from_env(env),
        )

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"Settings({redact_secrets(shown, self.clickhouse_dsn)})"

    def kafka_config(self) -> dict[str, str]:
        """The brokers and how to sign in to them, for any confluent-kafka client."""
        return {"bootstrap.servers": self.kafka_bootstrap, **self.kafka_security.librdkafka_config()}

    @property
    def server_url(self) -> str:
        return f"http://{self.server_host}:{self.server_port}"

    @property
    def client_read_url(self) -> str:
        """The server the SDK reads from: ``TRACKSTREAM_SERVER_URL``, else ``server_url``."""
        return self.reads_url or self.server_url

    @property
    def artifact_root(self) -> Path:
        """The local artifact store (also where the MLflow artifact proxy keeps uploads)."""
        return self.home / "artifacts"

    @property
    def artifact_uri_root(self) -> str:
        """The URI runs' ``artifact_uri`` starts with: the S3 location, else the local root's file URI."""
        return self.artifact_store or self.artifact_root.as_uri()


_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@\s/]*@")
_QUERY_SECRET = re.compile(r"(?i)(?P<head>[?&](?:password|passwd|pwd|secret|token|access_token)=)[^&\s#'\"]*")
MASK = "***"


def redact_secrets(text: str, dsn: str | None = None) -> str:
    """``text`` with passwords masked: in URLs (``scheme://user:***@host``), in query strings
    (``password=***``) and, given the connection string ``dsn``, its password wherever it appears
    (an engine's error may quote it). Every place that shows a connection string goes through here:
    the server's startup line and ``server.json``, connect errors, ``repr(Settings)``, ``trackstream status``."""
    shown = _QUERY_SECRET.sub(lambda m: m["head"] + MASK, _URL_PASSWORD.sub(lambda m: m["head"] + ":" + MASK + "@", text))
    for secret in _dsn_passwords(dsn):
        shown = shown.replace(secret, MASK)
    return shown


def _dsn_passwords(dsn: str | None) -> set[str]:
    """The password of a connection string (raw and percent-decoded), if it has one long enough to
    find in text without masking ordinary words."""
    if not dsn:
        return set()
    try:
        parts = urllib.parse.urlsplit(dsn)
        found = [parts.password or ""] + [value for key, value in urllib.parse.parse_qsl(parts.query)
                                          if key.lower() in ("password", "passwd", "pwd")]
    except ValueError:
        return set()
    return {form for secret in found for form in (secret, urllib.parse.unquote(secret)) if len(form) >= 3}


def split_s3_location(location: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` -> (bucket, prefix without surrounding slashes); anything else is refused."""
    location = location.strip()
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    if not location.startswith("s3://") or not bucket:
        raise InvalidInput(f"TRACKSTREAM_ARTIFACT_STORE must be s3://bucket[/prefix], or unset for the local store "
                           f"under $TRACKSTREAM_HOME/artifacts; got {location!r}")
    return bucket, prefix.strip("/")


def artifact_store_location(raw: str) -> str:
    """``""`` (local store) or a normalised ``s3://bucket[/prefix]``."""
    if not raw.strip():
        return ""
    bucket, prefix = split_s3_location(raw)
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def _positive_ms(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, str(default))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 60_000:
        raise InvalidInput(f"{name} must be a whole number of milliseconds between 1 and 60000, got {raw!r}")
    return int(raw)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise InvalidInput(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def _whole_number(env: Mapping[str, str], name: str, default: int, lowest: int, highest: int) -> int:
    raw = env.get(name, str(default)).strip()
    if not (raw.isascii() and raw.isdigit()) or not lowest <= int(raw) <= highest:
        raise InvalidInput(f"{name} must be a whole number between {lowest} and {highest}, got {raw!r}")
    return int(raw)


def _comma_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())
