"""Input validation shared by the SDK (before anything is sent) and the REST gateway.

Pure functions, no I/O. The rules and limits follow MLflow 3.18's ``mlflow/utils/validation.py``
(see ``mlflow-compat.md`` section 2), with three deliberate differences: over-long values are
rejected instead of silently truncated, a non-integer step is rejected instead of being stored as
0, and a key with a trailing newline is rejected (as 3.18 does, unlike 3.17).
Every failure raises :class:`trackstream.errors.InvalidInput` naming the key at fault.
"""

from __future__ import annotations

import enum
import posixpath
import re
import uuid
import warnings
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from trackstream.errors import InvalidInput

__all__ = [
    "MAX_ENTITY_KEY_LENGTH",
    "MAX_PARAM_VAL_LENGTH",
    "MAX_TAG_VAL_LENGTH",
    "MAX_EXPERIMENT_NAME_LENGTH",
    "MAX_EXPERIMENT_TAG_KEY_LENGTH",
    "MAX_EXPERIMENT_TAG_VAL_LENGTH",
    "MAX_METRICS_PER_BATCH",
    "MAX_PARAMS_TAGS_PER_BATCH",
    "MAX_ENTITIES_PER_BATCH",
    "RUN_ID_REGEX",
    "INT64_MIN",
    "INT64_MAX",
    "REDACTED",
    "validate_key",
    "validate_param_value",
    "validate_tag_value",
    "validate_experiment_tag_value",
    "validate_experiment_name",
    "validate_metric",
    "validate_metric_arrays",
    "validate_run_id",
    "validate_batch_sizes",
    "looks_like_secret",
    "SecretPolicy",
    "SecretKeyWarning",
    "apply_secret_policy",
]

MAX_ENTITY_KEY_LENGTH = 250
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_EXPERIMENT_TAG_KEY_LENGTH = 250
MAX_EXPERIMENT_TAG_VAL_LENGTH = 20000
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
RUN_ID_REGEX = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
REDACTED = "***REDACTED***"

_BAD_KEY_CHAR = re.compile(r"[^/\w.\- :]")
_KEY_CHARS_RULE = (
    "names may only contain alphanumerics, underscores (_), dashes (-), periods (.), "
    "spaces ( ), colons (:) and slashes (/)"
)
_REAL_SCALARS = (int, float, np.integer, np.floating)
_INT_SCALARS = (int, np.integer)
_BOOLS = (bool, np.bool_)
_NUMPY_INTS = frozenset({
    np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
    np.intc, np.uintc, np.intp, np.uintp, np.longlong, np.ulonglong,
})
_NUMPY_FLOATS = frozenset({np.float16, np.float32, np.float64})
_NUMBERS = frozenset({int, np.longdouble} | _NUMPY_FLOATS | _NUMPY_INTS)
_KEY_CACHE_SIZE = 16384
_valid_keys: set[str] = set()


def _short(obj: object, limit: int = 80) -> str:
    """repr() cut to ``limit`` characters, so a 1 MB key or value never lands in a message."""
    text = repr(obj)
    return text if len(text) <= limit else f"{text[: limit - 4]}...{text[-1]}"


def _key_problem(key: str) -> str | None:
    """What is wrong with a non-empty key, or None."""
    if len(key) > MAX_ENTITY_KEY_LENGTH:
        return f"{len(key)} characters exceeds the maximum length of {MAX_ENTITY_KEY_LENGTH} characters"
    bad = _BAD_KEY_CHAR.search(key)
    if bad:
        return f"{_KEY_CHARS_RULE} (found {bad.group()!r} at position {bad.start()})"
    norm = posixpath.normpath(key)
    if norm != key or key == "." or key.startswith(("..", "/")):
        if key == ".":
            detail = "'.' is not a name"
        elif key.startswith("/"):
            detail = "it must not start with '/'"
        elif key.startswith(".."):
            detail = "it must not start with '..'"
        else:
            detail = f"this name would resolve to {norm!r}"
        return (
            "names may be treated as file paths and must not resolve to another name when "
            f"treated as such; {detail}"
        )
    return None


def validate_key(key: Any, kind: str) -> str:
    """Check a param / metric / tag / experiment tag key; return it as a plain ``str``.

    ``kind`` names the entity in the error message ("param", "metric", "tag", "experiment tag").
    Valid keys are remembered (up to 16384 distinct ones), so a repeated key costs one set lookup.
    """
    if type(key) is str and key in _valid_keys:
        return key
    if not isinstance(key, str):
        if key is None:
            raise InvalidInput(f"Missing {kind} key: got None; a non-empty string is required")
        raise InvalidInput(f"Invalid {kind} key {_short(key)}: must be a string, got {type(key).__name__}")
    if not key:
        raise InvalidInput(f"Missing {kind} key: got ''; a non-empty string is required")
    key = str.__str__(key)  # a str subclass (numpy.str_, ...) becomes a plain str
    problem = _key_problem(key)
    if problem is not None:
        raise InvalidInput(f"Invalid {kind} key {_short(key)}: {problem}")
    if len(_valid_keys) >= _KEY_CACHE_SIZE:
        _valid_keys.clear()
    _valid_keys.add(key)
    return key


def _validate_text_value(key: Any, value: Any, kind: str, limit: int) -> str:
    if value is None:
        raise InvalidInput(f"Invalid value for {kind} {_short(key)}: None is not allowed; pass a string")
    text = value if type(value) is str else str(value)
    if len(text) > limit:
        raise InvalidInput(
            f"Invalid value for {kind} {_short(key)}: {len(text)} characters exceeds the maximum "
            f"length of {limit} characters (trackstream rejects it rather than truncate it)"
        )
    return text


def validate_param_value(key: Any, value: Any) -> str:
    """Stringify a param value as MLflow does (``str(value)``) and check its length.

    Longer than ``MAX_PARAM_VAL_LENGTH`` raises: MLflow's server silently truncates to 6000
    characters, but a truncated hyperparameter is a wrong record, so the SDK refuses instead.
    ``None`` raises too (MLflow would store the string ``"None"``). ``key`` is only used in
    messages; check it with :func:`validate_key`.
    """
    return _validate_text_value(key, value, "param", MAX_PARAM_VAL_LENGTH)


def validate_tag_value(key: Any, value: Any) -> str:
    """Like :func:`validate_param_value`, for run tags (limit ``MAX_TAG_VAL_LENGTH``, no truncation)."""
    return _validate_text_value(key, value, "tag", MAX_TAG_VAL_LENGTH)


def validate_experiment_tag_value(key: Any, value: Any) -> str:
    """Like :func:`validate_tag_value`, for experiment tags (limit ``MAX_EXPERIMENT_TAG_VAL_LENGTH``)."""
    return _validate_text_value(key, value, "experiment tag", MAX_EXPERIMENT_TAG_VAL_LENGTH)


def validate_experiment_name(name: Any) -> str:
    """Return ``name`` unchanged if it is a non-blank string of at most 500 characters."""
    if not isinstance(name, str):
        raise InvalidInput(
            f"Invalid experiment name {_short(name)}: must be a string, got {type(name).__name__}"
        )
    if not name.strip():
        raise InvalidInput(f"Invalid experiment name {name!r}: must not be empty or only whitespace")
    if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
        raise InvalidInput(
            f"Invalid experiment name {_short(name)}: {len(name)} characters exceeds the maximum "
            f"length of {MAX_EXPERIMENT_NAME_LENGTH} characters"
        )
    return name


def _metric_value(key: Any, value: Any) -> float:
    if type(value) not in _NUMBERS:
        if isinstance(value, _BOOLS):
            raise InvalidInput(
                f"Invalid value {value!r} for metric {_short(key)}: a bool is not a metric value; "
                "pass float(value) if you mean 0.0/1.0"
            )
        if not isinstance(value, _REAL_SCALARS):
            hint = "; call .item() to get a Python number" if hasattr(value, "item") else ""
            raise InvalidInput(
                f"Invalid value {_short(value)} for metric {_short(key)}: must be a real number "
                f"(int, float, numpy integer or floating), got {type(value).__name__}{hint}"
            )
    try:
        return float(value)
    except OverflowError:
        raise InvalidInput(
            f"Invalid value {_short(value)} for metric {_short(key)}: too large for a 64-bit float"
        ) from None


def _int64(key: Any, number: Any, what: str, minimum: int) -> int:
    """Coerce an int / numpy integer ``what`` (step or timestamp) into [minimum, INT64_MAX]."""
    if type(number) in _NUMPY_INTS or (
        isinstance(number, _INT_SCALARS) and not isinstance(number, bool)
    ):
        result = int(number)
        if minimum <= result <= INT64_MAX:
            return result
        bound = "a non-negative 64-bit integer" if minimum == 0 else "a 64-bit integer"
        raise InvalidInput(f"Invalid {what} {result} for metric {_short(key)}: must be {bound}")
    if isinstance(number, (float, np.floating)):
        raise InvalidInput(
            f"Invalid {what} {number!r} for metric {_short(key)}: must be an integer, got "
            f"{type(number).__name__} (MLflow would silently store a fractional {what} as 0); "
            f"pass int({what}) if that is what you mean"
        )
    raise InvalidInput(
        f"Invalid {what} {_short(number)} for metric {_short(key)}: must be an integer "
        f"(int or numpy integer), got {type(number).__name__}"
    )


def validate_metric(key: Any, value: Any, step: Any, timestamp_ms: Any) -> tuple[float, int, int]:
    """Check one metric point; return ``(value, step, timestamp_ms)`` as float / int / int.

    NaN and ±inf are valid and returned unchanged. ``step`` may be negative; ``timestamp_ms``
    (Unix milliseconds) may not. Neither may be a float or a bool, and ``None`` is not defaulted
    here: the caller fills in step 0 and the current time. Hot path of ``log_metric``: plain
    ``str`` / ``float`` / ``int`` arguments take the fast branches below (int64 bounds are
    literals because a constant load is cheaper than a global one).
    """
    if type(key) is not str or key not in _valid_keys:
        validate_key(key, "metric")
    if type(value) is not float:
        value = float(value) if type(value) in _NUMPY_FLOATS else _metric_value(key, value)
    if type(step) is not int or not -0x8000000000000000 <= step <= 0x7FFFFFFFFFFFFFFF:
        step = _int64(key, step, "step", INT64_MIN)
    if type(timestamp_ms) is not int or not 0 <= timestamp_ms <= 0x7FFFFFFFFFFFFFFF:
        timestamp_ms = _int64(key, timestamp_ms, "timestamp", 0)
    return value, step, timestamp_ms


def _as_1d(name: str, array: Any) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim != 1:
        raise InvalidInput(f"Invalid metric {name}: expected a 1-D array, got shape {arr.shape}")
    return arr


def _is_real(item: Any) -> bool:
    return isinstance(item, _REAL_SCALARS) and not isinstance(item, _BOOLS)


def _is_integer(item: Any) -> bool:
    return isinstance(item, _INT_SCALARS) and not isinstance(item, _BOOLS)


def _is_fractional(item: Any) -> bool:
    return not float(item).is_integer()


def _overflows_float(item: Any) -> bool:
    try:
        float(item)
    except OverflowError:
        return True
    return False


def _first_bad(arr: np.ndarray, is_bad: Any) -> tuple[int, Any] | None:
    for index, item in enumerate(arr.tolist()):
        if is_bad(item):
            return index, item
    return None


def _dtype_error(name: str, arr: np.ndarray, expected: str, is_bad: Any) -> InvalidInput:
    bad = _first_bad(arr, is_bad)
    where = f"; first bad value at index {bad[0]}: {_short(bad[1])}" if bad else ""
    return InvalidInput(f"Invalid metric {name}: expected {expected}, got dtype {arr.dtype}{where}")


def _metric_values_array(arr: np.ndarray) -> np.ndarray:
    kind = arr.dtype.kind
    if kind in "fiu":
        return arr.astype(np.float64, copy=False)
    if kind == "O" and _first_bad(arr, lambda v: not _is_real(v)) is None:
        bad = _first_bad(arr, _overflows_float)
        if bad:
            raise InvalidInput(
                f"Invalid metric values at index {bad[0]}: {_short(bad[1])} is too large for a 64-bit float"
            )
        return np.array([float(v) for v in arr.tolist()], dtype=np.float64)
    raise _dtype_error("values", arr, "a float or integer array (not bool)", lambda v: not _is_real(v))


def _metric_int_array(name: str, arr: np.ndarray, minimum: int) -> np.ndarray:
    kind = arr.dtype.kind
    if kind == "O" and _first_bad(arr, lambda v: not _is_integer(v)) is None:
        arr = np.array([int(v) for v in arr.tolist()], dtype=object)
    elif kind not in "iu":
        is_bad = _is_fractional if kind == "f" else (lambda v: not _is_integer(v))
        raise _dtype_error(name, arr, "an integer array", is_bad)
    if len(arr) == 0:
        return np.empty(0, dtype=np.int64)
    may_overflow = kind == "O" or (kind == "u" and arr.dtype.itemsize >= 8)
    if (minimum > INT64_MIN and arr.min() < minimum) or (may_overflow and arr.max() > INT64_MAX):
        index = int(np.argmax((arr < minimum) | (arr > INT64_MAX)))
        bound = "non-negative 64-bit integers" if minimum == 0 else "64-bit integers"
        value = arr[index : index + 1].tolist()[0]
        raise InvalidInput(f"Invalid metric {name} at index {index}: {value!r}; {name} must be {bound}")
    return arr.astype(np.int64, copy=False)


def _metric_keys_array(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind not in "UO":
        raise InvalidInput(f"Invalid metric keys: expected strings, got dtype {arr.dtype}")
    keys = arr.tolist()
    for key in dict.fromkeys(keys):
        try:
            validate_key(key, "metric")
        except InvalidInput as exc:
            raise InvalidInput(f"Invalid metric keys at index {keys.index(key)}: {exc}") from None
    return arr


def validate_metric_arrays(
    keys: str | Sequence[str] | np.ndarray, values: Any, steps: Any, timestamps: Any
) -> tuple[str | np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised :func:`validate_metric` for the bulk path.

    ``keys`` is either one key for every point (returned as ``str``) or one key per point
    (returned as a 1-D array; each distinct key is checked once). ``values`` must hold floats or
    integers (not bools), ``steps`` and ``timestamps`` integers, ``timestamps`` non-negative, and
    all arrays the same length. Returns the arrays as float64 / int64 (no copy when they already
    are). Messages name the first offending index and value.
    """
    arrays = {"values": _as_1d("values", values), "steps": _as_1d("steps", steps),
              "timestamps": _as_1d("timestamps", timestamps)}
    if not isinstance(keys, str):
        arrays["keys"] = _as_1d("keys", keys)
    if len({len(arr) for arr in arrays.values()}) > 1:
        sizes = ", ".join(f"{name}={len(arr)}" for name, arr in arrays.items())
        raise InvalidInput(f"Invalid metric arrays: lengths differ ({sizes})")
    if isinstance(keys, str):
        checked_keys: str | np.ndarray = validate_key(keys, "metric")
    else:
        checked_keys = _metric_keys_array(arrays["keys"])
    return (
        checked_keys,
        _metric_values_array(arrays["values"]),
        _metric_int_array("steps", arrays["steps"], INT64_MIN),
        _metric_int_array("timestamps", arrays["timestamps"], 0),
    )


def new_model_id() -> str:
    """A fresh logged-model id in MLflow 3's form, ``m-<32 hex>``."""
    return f"m-{uuid.uuid4().hex}"


MODEL_NAME_BAD_CHARS = ("/", ":", ".", "%", '"', "'")


def validate_model_name(name: Any) -> str | None:
    """A logged model's name (MLflow's ``_validate_logged_model_name``); None or "" means "generate one"."""
    if name is None or name == "":
        return None
    if not isinstance(name, str) or any(c in name for c in MODEL_NAME_BAD_CHARS):
        raise InvalidInput(f"Invalid model name ({_short(name)}) provided. Model name must be a non-empty string "
                           f"and cannot contain the following characters: {MODEL_NAME_BAD_CHARS}")
    return name


def validate_run_id(run_id: Any) -> str:
    """Check a run ID against MLflow's ``_RUN_ID_REGEX`` (full match: no trailing newline)."""
    if not isinstance(run_id, str) or RUN_ID_REGEX.fullmatch(run_id) is None:
        raise InvalidInput(
            f"Invalid value {_short(run_id)} for parameter 'run_id' supplied: a run ID starts with "
            "a letter or digit, followed by at most 255 letters, digits, '_' or '-'"
        )
    return str.__str__(run_id)


def _check_batch_limit(entity_name: str, limit: int, length: int) -> None:
    if length > limit:
        raise InvalidInput(
            f"A batch logging request can contain at most {limit} {entity_name}. "
            f"Got {length} {entity_name}. Please split up {entity_name} across multiple"
            " requests and try again."
        )


def validate_batch_sizes(n_metrics: int, n_params: int, n_tags: int) -> None:
    """Apply MLflow's log-batch limits, with MLflow's exact messages (the REST path relies on them)."""
    _check_batch_limit("metrics", MAX_METRICS_PER_BATCH, n_metrics)
    _check_batch_limit("params", MAX_PARAMS_TAGS_PER_BATCH, n_params)
    _check_batch_limit("tags", MAX_PARAMS_TAGS_PER_BATCH, n_tags)
    total = n_metrics + n_params + n_tags
    _check_batch_limit("metrics, params, and tags", MAX_ENTITIES_PER_BATCH, total)


_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "passphrase", "secret", "secrets", "token", "apikey",
    "credential", "credentials", "auth", "authorization",
})
_SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key")})


@lru_cache(maxsize=_KEY_CACHE_SIZE)
def looks_like_secret(key: str) -> bool:
    """True if a word of ``key`` names a credential (``db_password``, ``HF_TOKEN``, ``openaiApiKey``).

    The key is split into words on non-alphanumerics and camelCase boundaries and compared word
    by word, so ``tokenizer``, ``num_tokens``, ``author`` and ``passes`` do not match.
    """
    words = [word.lower() for word in _WORD.findall(key)]
    if any(word in _SECRET_WORDS for word in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in zip(words, words[1:]))


class SecretKeyWarning(UserWarning):
    """A param or tag key looks like a credential (the value is never part of the message)."""


class SecretPolicy(enum.Enum):
    """What to do with the value of a key that :func:`looks_like_secret`."""

    WARN = "warn"
    REDACT = "redact"
    ALLOW = "allow"


def apply_secret_policy(
    key: str, value: str, policy: SecretPolicy | str = SecretPolicy.WARN, *, stacklevel: int = 2
) -> str:
    """Return the value to log for ``key`` under ``policy``.

    WARN logs the value but emits a :class:`SecretKeyWarning`; REDACT warns and returns
    ``REDACTED``; ALLOW returns the value silently. ``stacklevel`` is passed to
    :func:`warnings.warn` so the SDK can point the warning at the user's call.
    """
    policy = SecretPolicy(policy)
    if policy is SecretPolicy.ALLOW or not looks_like_secret(key):
        return value
    if policy is SecretPolicy.REDACT:
        warnings.warn(
            f"Key {key!r} looks like a credential; its value was replaced with {REDACTED!r}.",
            SecretKeyWarning,
            stacklevel=stacklevel,
        )
        return REDACTED
    warnings.warn(
        f"Key {key!r} looks like a credential; its value is being logged in plain text and will be "
        f"readable by anyone with access to the tracking store. Use SecretPolicy.REDACT to store "
        f"{REDACTED!r} instead, or SecretPolicy.ALLOW if it is not a secret.",
        SecretKeyWarning,
        stacklevel=stacklevel,
    )
    return value
