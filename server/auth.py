"""Authentication (bearer tokens, HTTP basic) and per-experiment authorization for the HTTP API.

The auth file (``TRACKSTREAM_AUTH_FILE``) holds only hashes of secrets: salted scrypt for
passwords (``server/passwords.py``), SHA-256 for tokens::

    {"users": {"alice": {"password_hash": "scrypt$16384$8$1$<salt>$<key>", "tokens_sha256": ["<hex>"],
                         "experiments": {"*": "read", "12345": "write"}, "admin": false}}}

``password_sha256`` (an unsalted hex SHA-256) is still read, for files written before scrypt.

``experiments`` maps experiment ids to ``none`` / ``read`` / ``write``; ``*`` is the level for
every experiment not listed, and creating an experiment needs ``"*": "write"``. Admins may do
everything, including trackstream's SQL, replay and rejects endpoints.

Every decision is a pure function or method here (unit-tested without a server):
:meth:`AuthConfig.authenticate`, :func:`requirement` (what a request needs) and
:func:`authorize` (does the user have it). :func:`auth_middleware` is the aiohttp glue that
reads the request, resolves run ids and experiment names to experiment ids and calls them.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import ipaddress
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Mapping, Protocol

import msgspec
from aiohttp import web
from multidict import MultiMapping

from trackstream.server.errors import error_response
from trackstream.server import json_codec
from trackstream.server.mlflow_api import trim_dir, body_bytes, ok, run_id_param, safe_artifact_path
from trackstream.server.mlflow_service import required_experiment_id
from trackstream.server.ui import is_ui_page
from trackstream.config import Settings
from trackstream.server.password_checks import PasswordChecks
from trackstream.server.passwords import SCRYPT_N, SCRYPT_P, SCRYPT_R, PasswordHash, PasswordHashError
from trackstream.errors import InvalidInput, PermissionDenied, Unauthenticated

__all__ = [
    "Access", "AllExperiments", "AuthConfig", "AuthConfigError", "Experiments", "ExperimentName", "Requirement",
    "Models", "Runs", "Scope", "User", "VisibleExperiments", "auth_middleware", "authorize", "check_exposure",
    "experiments_visible_to", "hash_secret", "is_loopback", "load_auth", "requirement", "routing_fields",
]

REALM = "trackstream"
OPEN_PATHS = frozenset({"/health"})
SESSION_PATH = "/api/ts/session"  # browser sign-in (server/web_session.py)
MLFLOW_PREFIXES = ("/api/2.0", "/ajax-api/2.0")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_USER_KEYS = {"password_hash", "password_sha256", "tokens_sha256", "experiments", "admin"}
# Checked for unknown user names, so they take as long to refuse as a wrong password.
_DUMMY_PASSWORD = PasswordHash("scrypt", bytes(32), b"trackstream-none", SCRYPT_N, SCRYPT_R, SCRYPT_P)
VERIFIED_CACHE_SIZE = 4096


def hash_secret(secret: str) -> str:
    """The hex SHA-256 of a token, as the auth file stores it (passwords: ``hash_password``)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class AuthConfigError(InvalidInput):
    """The auth file is missing or malformed, or the server would be exposed without auth."""


class Access(enum.IntEnum):
    NONE = 0
    READ = 1
    WRITE = 2


@dataclass(frozen=True)
class User:
    name: str
    password: PasswordHash | None = None
    tokens_sha256: tuple[str, ...] = ()
    experiments: Mapping[str, Access] = field(default_factory=dict)
    admin: bool = False

    @property
    def default_access(self) -> Access:
        """The ``*`` level: every experiment not listed, and experiments not created yet."""
        return Access.WRITE if self.admin else self.experiments.get("*", Access.NONE)

    def access(self, experiment_id: str) -> Access:
        if self.admin:
            return Access.WRITE
        return self.experiments.get(experiment_id, self.default_access)

    def access_to_all(self) -> Access:
        """The level the user has on every experiment at once (explicit entries may lower ``*``)."""
        if self.admin:
            return Access.WRITE
        return min((self.default_access, *(a for k, a in self.experiments.items() if k != "*")))


@dataclass(frozen=True)
class AuthConfig:
    users: Mapping[str, User]
    # Basic credentials already checked against a slow hash: SHA-256 of the header value -> user name.
    _verified: "OrderedDict[bytes, str]" = field(default_factory=OrderedDict, compare=False, repr=False)
    _verified_lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: Any, source: str = "auth file") -> "AuthConfig":
        if not isinstance(data, dict) or not isinstance(data.get("users"), dict) or set(data) - {"users"}:
            raise AuthConfigError(f'{source}: expected {{"users": {{"<name>": {{...}}}}}} and nothing else')
        if not data["users"]:
            raise AuthConfigError(f"{source}: defines no users, so nobody could sign in")
        users = {name: _parse_user(name, spec, source) for name, spec in data["users"].items()}
        tokens = [t for user in users.values() for t in user.tokens_sha256]
        if len(tokens) != len(set(tokens)):
            raise AuthConfigError(f"{source}: the same token hash is listed twice; a token must name one user")
        return cls(users)

    @classmethod
    def load(cls, path: Path) -> "AuthConfig":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise AuthConfigError(f"cannot read the auth file {path}: {exc}") from exc
        except ValueError as exc:
            raise AuthConfigError(f"the auth file {path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data, str(path))

    def is_quick(self, authorization: str | None) -> bool:
        """Whether :meth:`authenticate` answers without deriving a password hash (~60 ms of CPU):
        anything but basic credentials not seen before."""
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        return scheme.lower() != "basic" or _credentials_digest(credentials.strip()) in self._verified

    def authenticate(self, authorization: str | None) -> User:
        """The user an ``Authorization`` header (``Bearer <token>`` or ``Basic <b64 user:pass>``) proves."""
        if not authorization:
            raise Unauthenticated("Authentication required: send 'Authorization: Bearer <token>' or HTTP basic "
                                  "credentials (MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD)")
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            user = self._by_token(credentials.strip())
        elif scheme == "basic":
            user = self._by_password(credentials.strip())
        else:
            raise Unauthenticated(f"Unsupported authorization scheme {scheme!r}: use Bearer or Basic")
        if user is None:
            raise Unauthenticated("Invalid credentials")
        return user

    def _by_token(self, token: str) -> User | None:
        if not token:
            return None
        digest = hash_secret(token)
        found = None
        for user in self.users.values():
            for expected in user.tokens_sha256:
                if hmac.compare_digest(expected, digest):
                    found = user
        return found

    def _by_password(self, credentials: str) -> User | None:
        digest = _credentials_digest(credentials)
        with self._verified_lock:
            name = self._verified.get(digest)
            if name is not None:
                self._verified.move_to_end(digest)
                return self.users[name]
        user = self._check_password(credentials)
        if user is not None:
            with self._verified_lock:
                self._verified[digest] = user.name
                while len(self._verified) > VERIFIED_CACHE_SIZE:
                    self._verified.popitem(last=False)
        return user

    def claimed_user(self, authorization: str | None) -> str | None:
        """The existing user that basic credentials name (right password or not), else None."""
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            name, sep, _ = _decode_basic(credentials.strip()).partition(":")
        except Unauthenticated:
            return None
        return name if sep and name in self.users else None

    def _check_password(self, credentials: str) -> User | None:
        name, sep, password = _decode_basic(credentials).partition(":")
        user = self.users.get(name) if sep else None
        stored = user.password if user is not None and user.password is not None else None
        matches = (stored or _DUMMY_PASSWORD).matches(password)
        return user if matches and stored is not None else None


def _decode_basic(credentials: str) -> str:
    try:
        return base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("Malformed basic credentials: expected base64 of 'user:password'") from None


def _credentials_digest(credentials: str) -> bytes:
    return hashlib.sha256(credentials.encode("utf-8", "surrogatepass")).digest()


def _parse_user(name: Any, spec: Any, source: str) -> User:
    where = f"{source}: user {name!r}"
    if not isinstance(name, str) or not name or ":" in name:
        raise AuthConfigError(f"{where}: user names must be non-empty strings without ':'")
    if not isinstance(spec, dict):
        raise AuthConfigError(f"{where}: expected an object")
    unknown = set(spec) - _USER_KEYS
    if unknown:
        plain = unknown & {"password", "token", "tokens"}
        hint = " (store hashes only: password_hash / tokens_sha256)" if plain else ""
        raise AuthConfigError(f"{where}: unknown keys {sorted(unknown)}{hint}")
    password = _parse_password(spec, where)
    tokens = spec.get("tokens_sha256", [])
    if not isinstance(tokens, list) or not all(isinstance(t, str) and _HEX64.fullmatch(t) for t in tokens):
        raise AuthConfigError(f"{where}: tokens_sha256 must be a list of 64-lowercase-hex-digit hashes")
    if password is None and not tokens:
        raise AuthConfigError(f"{where}: has neither password_hash nor tokens_sha256, so cannot sign in")
    admin = spec.get("admin", False)
    if not isinstance(admin, bool):
        raise AuthConfigError(f"{where}: admin must be true or false")
    experiments = spec.get("experiments", {})
    if not isinstance(experiments, dict):
        raise AuthConfigError(f"{where}: experiments must map experiment ids (or '*') to none/read/write")
    levels: dict[str, Access] = {}
    for experiment_id, level in experiments.items():
        if experiment_id != "*" and not (experiment_id.isascii() and experiment_id.isdigit()):
            raise AuthConfigError(f"{where}: experiment id {experiment_id!r} must be an integer string or '*'")
        if not isinstance(level, str) or level.upper() not in Access.__members__:
            raise AuthConfigError(f"{where}: experiment {experiment_id!r}: level must be none, read or write, "
                                  f"got {level!r}")
        levels[experiment_id] = Access[level.upper()]
    return User(name, password, tuple(tokens), levels, admin)


def _parse_password(spec: dict[str, Any], where: str) -> PasswordHash | None:
    if "password_hash" in spec and "password_sha256" in spec:
        raise AuthConfigError(f"{where}: give password_hash or the older password_sha256, not both")
    if "password_sha256" in spec:
        legacy = spec["password_sha256"]
        if not (isinstance(legacy, str) and _HEX64.fullmatch(legacy)):
            raise AuthConfigError(f"{where}: password_sha256 must be 64 lowercase hex digits "
                                  "(better: a salted password_hash from `trackstream auth hash-password`)")
        return PasswordHash.parse(legacy)
    stored = spec.get("password_hash")
    if stored is None:
        return None
    if not isinstance(stored, str):
        raise AuthConfigError(f"{where}: password_hash must be a string from `trackstream auth hash-password`")
    try:
        return PasswordHash.parse(stored)
    except PasswordHashError as exc:
        raise AuthConfigError(f"{where}: password_hash: {exc}") from None


# bind address ----------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (also IPv4-mapped) or the name ``localhost``; anything else may be reachable."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_exposure(host: str, auth: AuthConfig | None) -> None:
    """Refuse to serve without authentication on an address other machines can reach."""
    if auth is None and not is_loopback(host):
        raise AuthConfigError(
            f"refusing to start: TRACKSTREAM_SERVER_HOST={host!r} is not a loopback address and "
            "TRACKSTREAM_AUTH_FILE is not set, so anyone who can reach the server could read and write every "
            "experiment. Set TRACKSTREAM_AUTH_FILE to a users file (see README, Authentication) or bind to 127.0.0.1.")


def load_auth(auth_file: Path | None, host: str) -> AuthConfig | None:
    """The server's auth configuration (None: auth off), after the exposure check."""
    auth = AuthConfig.load(auth_file) if auth_file is not None else None
    check_exposure(host, auth)
    return auth


# what a request needs --------------------------------------------------------------------


class Scope(enum.Enum):
    ANYONE = "any signed-in user"
    ADMIN = "admin"
    GLOBAL_WRITE = "write on '*' (create experiments)"


@dataclass(frozen=True)
class Experiments:
    access: Access
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Runs:
    """Resolved to the runs' experiments by the glue."""
    access: Access
    run_ids: tuple[str, ...]


@dataclass(frozen=True)
class Models:
    """Logged models; resolved to their experiments by the glue."""
    access: Access
    model_ids: tuple[str, ...]


@dataclass(frozen=True)
class ExperimentName:
    """Resolved to the experiment's id by the glue."""
    access: Access
    name: str


@dataclass(frozen=True)
class AllExperiments:
    access: Access


@dataclass(frozen=True)
class VisibleExperiments:
    """Allowed for anyone; the response is cut down to the experiments the user may read."""


Requirement = Scope | Experiments | Runs | Models | ExperimentName | AllExperiments | VisibleExperiments

Query = MultiMapping[str]
Body = Mapping[str, Any]


def _experiment_in(source: str, access: Access) -> Callable[[Query, Body], Requirement]:
    def need(query: Query, body: Body) -> Requirement:
        return Experiments(access, (required_experiment_id((query if source == "query" else body).get("experiment_id")),))
    return need


def _run_in(source: str, access: Access) -> Callable[[Query, Body], Requirement]:
    def need(query: Query, body: Body) -> Requirement:
        return Runs(access, (run_id_param(query if source == "query" else body),))
    return need


def _experiment_by_name(query: Query, body: Body) -> Requirement:
    name = query.get("experiment_name")
    if not name:
        raise InvalidInput("Missing value for required parameter 'experiment_name'.")
    return ExperimentName(Access.READ, name)


def _searched_experiments(query: Query, body: Body) -> Requirement:
    return Experiments(Access.READ, _experiment_ids(body.get("experiment_ids")))


def _artifact_listing(query: Query, body: Body) -> Requirement:
    path = trim_dir(query.get("path", ""))
    return Experiments(Access.READ, (_artifact_experiment(path),)) if path else AllExperiments(Access.READ)


_MLFLOW_ROUTES: dict[tuple[str, str], Callable[[Query, Body], Requirement]] = {
    ("POST", "/mlflow/experiments/create"): lambda q, b: Scope.GLOBAL_WRITE,
    ("GET", "/mlflow/experiments/get"): _experiment_in("query", Access.READ),
    ("GET", "/mlflow/experiments/get-by-name"): _experiment_by_name,
    ("GET", "/mlflow/experiments/search"): lambda q, b: VisibleExperiments(),
    ("POST", "/mlflow/experiments/search"): lambda q, b: VisibleExperiments(),
    **{("POST", f"/mlflow/experiments/{action}"): _experiment_in("body", Access.WRITE)
       for action in ("update", "delete", "restore", "set-experiment-tag", "delete-experiment-tag")},
    ("POST", "/mlflow/runs/create"): _experiment_in("body", Access.WRITE),
    ("GET", "/mlflow/runs/get"): _run_in("query", Access.READ),
    ("POST", "/mlflow/runs/search"): _searched_experiments,
    **{("POST", f"/mlflow/runs/{action}"): _run_in("body", Access.WRITE)
       for action in ("update", "delete", "restore", "log-metric", "log-parameter", "set-tag", "delete-tag",
                      "log-batch", "log-inputs", "outputs")},
    ("POST", "/mlflow/logged-models"): _experiment_in("body", Access.WRITE),
    ("GET", "/mlflow/metrics/get-history"): _run_in("query", Access.READ),
    ("GET", "/mlflow/artifacts/list"): _run_in("query", Access.READ),
    ("POST", "/mlflow/logged-models/search"): _searched_experiments,
    ("GET", "/mlflow/openapi.json"): lambda q, b: Scope.ANYONE,
    ("GET", "/mlflow-artifacts/artifacts"): _artifact_listing,
}
_ARTIFACT_FILE = "/mlflow-artifacts/artifacts/{path}"
_MODEL_ROUTE = "/mlflow/logged-models/{model_id}"  # get, finalize, delete, tags, params, artifact listing


def requirement(method: str, route: str, query: Query, body: Body | None, match: Mapping[str, str]) -> Requirement:
    """What ``method`` on the route template ``route`` (``/api/2.0/mlflow/runs/get``,
    ``/api/ts/runs/{run_id}``...) needs, from the request's query, JSON body and path parameters.

    Inputs are read the way the handlers read them, so the ids checked are the ids used; a
    missing or malformed id raises the handler's own :class:`InvalidInput`. Routes not listed
    here need admin, so a new endpoint is closed until someone decides who may call it.
    """
    method = "GET" if method == "HEAD" else method
    for prefix in MLFLOW_PREFIXES:
        if route.startswith(prefix + "/"):
            route = route[len(prefix):]
            break
    else:
        return _trackstream_requirement(method, route, query, match)
    if route == _ARTIFACT_FILE and method in ("GET", "PUT"):
        return Experiments(Access.WRITE if method == "PUT" else Access.READ, (_artifact_experiment(match["path"]),))
    if route.startswith(_MODEL_ROUTE):
        return Models(Access.READ if method == "GET" else Access.WRITE, (match["model_id"],))
    decide = _MLFLOW_ROUTES.get((method, route))
    return decide(query, body if body is not None else {}) if decide else Scope.ADMIN


def _trackstream_requirement(method: str, route: str, query: Query, match: Mapping[str, str]) -> Requirement:
    if route in ("/metrics", "/api/ts/status") and method == "GET":
        return Scope.ANYONE
    if route == "/api/ts/runs" and method == "GET":
        experiment_id = query.get("experiment_id")
        return Experiments(Access.READ, (experiment_id,)) if experiment_id else AllExperiments(Access.READ)
    if route in ("/api/ts/runs/{run_id}", "/api/ts/runs/{run_id}/metrics/{key}",
                 "/api/ts/runs/{run_id}/lifecycle") and method == "GET":
        return Runs(Access.READ, (match["run_id"],))
    if route == "/api/ts/models/{model_id}" and method == "GET":
        return Models(Access.READ, (match["model_id"],))
    if route == "/api/ts/experiments/activity" and method == "GET":
        return Experiments(Access.READ, tuple(query.getall("experiment_id", [])))
    if route == "/api/ts/experiments/{experiment_id}/keys" and method == "GET":
        return Experiments(Access.READ, (match["experiment_id"],))
    if route == "/api/ts/compare" and method == "GET":
        return Runs(Access.READ, tuple(query.getall("run_id", [])))
    return Scope.ADMIN


def _artifact_experiment(path: str) -> str:
    """The experiment directory an artifact path starts with (``<experiment_id>/<run_id>/artifacts/...``)."""
    return safe_artifact_path(path).split("/", 1)[0]


def _experiment_ids(ids: Any) -> tuple[str, ...]:
    if ids is None:
        return ()
    if not isinstance(ids, list) or not all(isinstance(e, (str, int)) and not isinstance(e, bool) for e in ids):
        raise InvalidInput("Invalid value for parameter 'experiment_ids': expected a list of experiment id strings")
    return tuple(str(e) for e in ids)


def authorize(user: User, need: Scope | Experiments | AllExperiments | VisibleExperiments) -> None:
    """Raise :class:`PermissionDenied` unless ``user`` may do what ``need`` (already resolved) says."""
    if isinstance(need, VisibleExperiments) or need is Scope.ANYONE or user.admin:
        return
    if need is Scope.GLOBAL_WRITE:
        if user.default_access < Access.WRITE:
            raise PermissionDenied(f"User {user.name!r} may not create experiments (needs \"*\": \"write\")")
    elif need is Scope.ADMIN:
        raise PermissionDenied(f"User {user.name!r} is not an admin; this endpoint is for admins only")
    elif isinstance(need, AllExperiments):
        if user.access_to_all() < need.access:
            raise PermissionDenied(f"User {user.name!r} needs {need.access.name.lower()} access to every experiment "
                                   "for this request; pass an experiment id or path to narrow it")
    else:
        denied = [e for e in dict.fromkeys(need.ids) if user.access(e) < need.access]
        if denied:
            raise PermissionDenied(f"User {user.name!r} has no {need.access.name.lower()} access to experiment(s) "
                                   f"{', '.join(denied)}")


def experiments_visible_to(user: User, experiments: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in experiments if user.access(str(e.get("experiment_id"))) >= Access.READ]


# aiohttp glue ----------------------------------------------------------------------------


class Resolver(Protocol):
    """What the glue needs from MlflowService to map runs and names to experiments."""

    async def run_experiment(self, run_id: str) -> str: ...

    async def get_experiment_by_name(self, name: Any) -> dict[str, Any]: ...


class ModelResolver(Protocol):
    """What the glue needs from LoggedModelService to map logged models to experiments."""

    async def experiment_of(self, model_id: str) -> str: ...


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _RoutingFields(msgspec.Struct):
    run_id: Any = None
    run_uuid: Any = None
    experiment_id: Any = None
    experiment_ids: Any = None


_ROUTING_DECODER = msgspec.json.Decoder(_RoutingFields)


def routing_fields(raw: bytes) -> dict[str, Any]:
    """The body fields :func:`requirement` reads. The rest of the body is only scanned, not built
    into objects: a 1000-metric log-batch is decoded in full once, by its handler, not twice."""
    try:
        fields = _ROUTING_DECODER.decode(raw)
    except msgspec.DecodeError:
        return json_codec.decode_object(raw)  # names what is wrong, or reads what msgspec refuses (NaN)
    return {name: value for name in _RoutingFields.__struct_fields__
            if (value := getattr(fields, name)) is not None}


def unauthenticated_response(exc: Unauthenticated) -> web.Response:
    response = error_response(exc)
    response.headers.add("WWW-Authenticate", f'Bearer realm="{REALM}"')
    response.headers.add("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')
    return response


Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def auth_middleware(config: AuthConfig, resolver: Resolver, models: ModelResolver | None = None,
                    session_user: Callable[[web.Request], str | None] | None = None,
                    checks: PasswordChecks | None = None) -> Middleware:
    """Authenticate every request but ``/health``, the UI's static files and browser sign-in, then
    check the route's :func:`requirement`. Without an ``Authorization`` header, ``session_user``
    (the web UI's session cookie, server/web_session.py) may name the user.
    Passwords are checked by ``checks`` (rate-limited, bounded, off the event loop; by default with
    the default settings). Must sit inside ``error_middleware`` so PermissionDenied and friends
    (and the 429 / 503 of ``checks``) become MLflow error bodies."""
    checks = checks or PasswordChecks.of(config, Settings())

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (request.path in OPEN_PATHS or is_ui_page(request.path)) and request.method in ("GET", "HEAD"):
            return await handler(request)
        if session_user is not None and request.path == SESSION_PATH:
            return await handler(request)  # signing in, out, or asking who is signed in
        header = request.headers.get("Authorization")
        by_cookie = session_user(request) if session_user is not None and not header else None
        try:
            if by_cookie is not None and by_cookie in config.users:
                user = config.users[by_cookie]
            else:
                user = await checks.authenticate(header, request.remote)
        except Unauthenticated as exc:
            return unauthenticated_response(exc)
        if request.match_info.http_exception is not None:
            return await handler(request)
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else request.path
        wants_body = request.method == "POST" and route.startswith(MLFLOW_PREFIXES)
        body = routing_fields(await body_bytes(request)) if wants_body else None
        need = requirement(request.method, route, request.query, body, request.match_info)
        if isinstance(need, Runs):
            need = Experiments(need.access, tuple([await resolver.run_experiment(r) for r in need.run_ids]))
        elif isinstance(need, Models):
            if models is None:
                raise PermissionDenied("logged models are not served here")
            need = Experiments(need.access, tuple([await models.experiment_of(m) for m in need.model_ids]))
        elif isinstance(need, ExperimentName):
            need = Experiments(need.access, ((await resolver.get_experiment_by_name(need.name))["experiment_id"],))
        authorize(user, need)
        response = await handler(request)
        if isinstance(need, VisibleExperiments) and user.access_to_all() < Access.READ \
                and isinstance(response, web.Response) and response.status == 200:
            payload = json.loads(response.text)
            payload["experiments"] = experiments_visible_to(user, payload.get("experiments", []))
            if not payload["experiments"]:
                del payload["experiments"]
            return ok(payload)
        return response

    return middleware
