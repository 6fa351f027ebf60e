"""trackstream's exception tree; edges (CLI, HTTP) map these to exit codes and status codes.

TrackstreamError
 ├── InvalidInput            bad user input: names the key/value at fault (HTTP 400)
 │    └── ParamConflict      a different value for an already-logged param
 ├── NotFound                unknown experiment / run (HTTP 404)
 ├── ResourceAlreadyExists   a name that is taken (HTTP 400, as MLflow)
 ├── PermissionDenied        authenticated, but not allowed (HTTP 403)
 ├── Unauthenticated         no or wrong credentials (HTTP 401)
 ├── TooManyRequests         too many failed sign-ins from an address or for a user (HTTP 429)
 ├── SchemaError
 │    ├── UnknownEventType   an event type the contract does not define
 │    ├── EncodeError        a record that does not fit its schema
 │    └── DecodeError        bytes that are not a known, intact event
 ├── DeliveryError          events the broker did not acknowledge in time
 │    └── MetricsNotSpooled  buffered metric points the local spool refused (e.g. disk full)
 ├── StorageError            ClickHouse refused or the schema version is unknown
 └── ServiceUnavailable      Kafka / the server is not reachable
      └── Overloaded          the server refuses work it has no room for now (HTTP 503)
"""


class TrackstreamError(Exception):
    """Base of every error trackstream raises on purpose."""


class InvalidInput(TrackstreamError, ValueError):
    pass


class ParamConflict(InvalidInput):
    pass


class NotFound(TrackstreamError, LookupError):
    pass


class ResourceAlreadyExists(TrackstreamError):
    pass


class PermissionDenied(TrackstreamError):
    pass


class Unauthenticated(TrackstreamError):
    pass


class TooManyRequests(TrackstreamError):
    """Refused for a while; ``retry_after_s`` says how long (the HTTP edge sends it as Retry-After)."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SchemaError(TrackstreamError):
    pass


class UnknownEventType(SchemaError):
    pass


class EncodeError(SchemaError):
    pass


class DecodeError(SchemaError):
    pass


class DeliveryError(TrackstreamError):
    pass


class MetricsNotSpooled(DeliveryError):
    """Metric points were drained from the SDK's buffer but the event spool refused them; they are
    kept in memory (in order) and retried, and this names the spool directory and the cause."""


class StorageError(TrackstreamError):
    pass


class ServiceUnavailable(TrackstreamError):
    pass


class Overloaded(ServiceUnavailable):
    """No room for the work now (a full queue); ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
