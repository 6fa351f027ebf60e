"""Dataset inputs of a run (MLflow's ``log_input`` / ``runs/log-inputs``): the value object, its
validation with MLflow's limits, and conversion from what callers hand in.

Pure logic shared by the SDK and the gateway. The limits are those of MLflow's
``mlflow/utils/validation.py`` (``_validate_dataset``, ``_validate_input_tag``); a failure raises
:class:`trackstream.errors.InvalidInput` naming the field. ``mlflow`` is never imported: an
``mlflow.data`` dataset is read through its public ``to_dict()``, anything else by attributes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from trackstream.errors import InvalidInput

__all__ = [
    "CONTEXT_TAG",
    "DatasetInput",
    "MAX_DATASETS_PER_BATCH",
    "dataset_input",
    "dataset_input_from_json",
    "dedupe_dataset_inputs",
]

CONTEXT_TAG = "mlflow.data.context"
MAX_DATASETS_PER_BATCH = 1000
MAX_DATASET_NAME_SIZE = 500
MAX_DATASET_DIGEST_SIZE = 36
MAX_DATASET_SOURCE_SIZE = 65535
MAX_DATASET_SCHEMA_SIZE = 1048575
MAX_DATASET_PROFILE_SIZE = 16777215
MAX_INPUT_TAG_KEY_SIZE = 255
MAX_INPUT_TAG_VALUE_SIZE = 500
_REQUIRED_LIMITS = (("name", MAX_DATASET_NAME_SIZE), ("digest", MAX_DATASET_DIGEST_SIZE),
                    ("source_type", None), ("source", MAX_DATASET_SOURCE_SIZE))
_OPTIONAL_LIMITS = (("schema", MAX_DATASET_SCHEMA_SIZE), ("profile", MAX_DATASET_PROFILE_SIZE))


@dataclass(frozen=True)
class DatasetInput:
    """One dataset used by a run, with its input tags (in order). Construction validates."""

    name: str
    digest: str
    source_type: str
    source: str
    schema: str | None = None
    profile: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for field_name, limit in _REQUIRED_LIMITS:
            _check_text(getattr(self, field_name), f"dataset {field_name}", limit, required=True)
        for field_name, limit in _OPTIONAL_LIMITS:
            _check_text(getattr(self, field_name), f"dataset {field_name}", limit, required=False)
        for key, value in self.tags:
            _check_text(key, "input tag key", MAX_INPUT_TAG_KEY_SIZE, required=True)
            _check_text(value, f"value of input tag {key!r}", MAX_INPUT_TAG_VALUE_SIZE, required=True)

    @property
    def context(self) -> str | None:
        return dict(self.tags).get(CONTEXT_TAG)

    def to_record(self) -> dict[str, Any]:
        """The ``inputs_logged`` event's item."""
        return {"name": self.name, "digest": self.digest, "source_type": self.source_type, "source": self.source,
                "schema": self.schema, "profile": self.profile,
                "tags": [{"key": k, "value": val} for k, val in self.tags]}


def _check_text(value: Any, what: str, limit: int | None, required: bool) -> None:
    if value is None:
        if required:
            raise InvalidInput(f"Invalid dataset input: {what} is required (got None)")
        return
    if not isinstance(value, str):
        raise InvalidInput(f"Invalid dataset input: {what} must be a string, got {type(value).__name__}")
    if limit is not None and len(value) > limit:
        raise InvalidInput(f"Invalid dataset input: {what} exceeds the maximum length of {limit} characters "
                           f"(got {len(value)})")


def _tag_pairs(context: str | None, tags: Mapping[str, Any] | Iterable[Any] | None) -> tuple[tuple[str, str], ...]:
    pairs: dict[str, str] = {}
    if context is not None:
        pairs[CONTEXT_TAG] = context
    items = tags.items() if isinstance(tags, Mapping) else (tags or ())
    for item in items:
        key, value = item if isinstance(item, tuple) else (getattr(item, "key", None), getattr(item, "value", None))
        pairs[key] = value
    return tuple(pairs.items())


def _as_text(value: Any) -> str | None:
    """Schema / profile / source objects as MLflow stores them: JSON text."""
    if value is None or isinstance(value, str):
        return value
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"Invalid dataset input: cannot store {type(value).__name__} as JSON: {exc}") from None


def _fields_of(dataset: Any) -> dict[str, Any]:
    """name / digest / source_type / source / schema / profile of a dataset-like object."""
    if isinstance(dataset, Mapping):
        return dict(dataset)
    to_dict = getattr(dataset, "to_dict", None)
    if callable(to_dict):  # mlflow.data.dataset.Dataset: every field already as MLflow stores it
        fields = to_dict()
        if isinstance(fields, Mapping) and "name" in fields:
            return dict(fields)
    fields = {name: getattr(dataset, name, None) for name in ("name", "digest", "source_type", "source", "schema",
                                                             "profile")}
    source = fields["source"]
    if fields["source_type"] is None and source is not None and not isinstance(source, str):
        get_type = getattr(source, "_get_source_type", None)
        fields["source_type"] = get_type() if callable(get_type) else type(source).__name__
    return fields


def default_digest(name: str, source: str, schema: str | None) -> str:
    """An 8-hex digest of the dataset's description, for callers who have no content hash."""
    return hashlib.sha256(json.dumps([name, source, schema]).encode()).hexdigest()[:8]


def dataset_input(dataset: Any = None, context: str | None = None,
                  tags: Mapping[str, str] | None = None, **fields: Any) -> DatasetInput:
    """A validated :class:`DatasetInput` from an MLflow-style dataset object (``mlflow.data``'s, or
    anything with ``name`` / ``digest`` / ``source_type`` / ``source`` / ``schema`` / ``profile``),
    a mapping, or keyword fields (which override the object's). ``context`` becomes the
    ``mlflow.data.context`` tag. Without a digest, one is derived from name, source and schema;
    ``source_type`` defaults to ``"unknown"``."""
    unknown = set(fields) - {"name", "digest", "source_type", "source", "schema", "profile"}
    if unknown:
        raise InvalidInput(f"Invalid dataset input: unknown field(s) {sorted(unknown)}; use name, digest, "
                           "source_type, source, schema and profile")
    merged = {**(_fields_of(dataset) if dataset is not None else {}),
              **{k: val for k, val in fields.items() if val is not None}}
    name = merged.get("name")
    source = _as_text(merged.get("source")) if merged.get("source") is not None else ""
    schema, profile = _as_text(merged.get("schema")), _as_text(merged.get("profile"))
    digest = merged.get("digest")
    if digest is None and isinstance(name, str):
        digest = default_digest(name, source or "", schema)
    return DatasetInput(name=name, digest=digest, source_type=merged.get("source_type") or "unknown",
                        source=source, schema=schema, profile=profile, tags=_tag_pairs(context, tags))


def dataset_input_from_json(item: Any) -> DatasetInput:
    """One element of log-inputs' ``datasets``: ``{"dataset": {...}, "tags": [{"key", "value"}]}``."""
    if not isinstance(item, Mapping) or not isinstance(item.get("dataset"), Mapping):
        raise InvalidInput("Invalid value for parameter 'datasets': each item needs a 'dataset' object")
    dataset, tags = item["dataset"], item.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, Mapping) for t in tags):
        raise InvalidInput("Invalid value for parameter 'datasets': 'tags' must be a list of {key, value} objects")
    return DatasetInput(name=dataset.get("name"), digest=dataset.get("digest"),
                        source_type=dataset.get("source_type"), source=dataset.get("source"),
                        schema=dataset.get("schema") or None, profile=dataset.get("profile") or None,
                        tags=tuple((t.get("key"), t.get("value")) for t in tags))


def dedupe_dataset_inputs(inputs: Iterable[DatasetInput],
                          seen: set[tuple[str, str]] | None = None) -> list[DatasetInput]:
    """The first input per (name, digest), skipping those already in ``seen`` (MLflow's store
    keeps a run's first input of a dataset and ignores later ones, tags included). ``seen`` is
    updated."""
    seen = set() if seen is None else seen
    kept = []
    for item in inputs:
        key = (item.name, item.digest)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept
