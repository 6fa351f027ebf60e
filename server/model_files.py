"""Which files an MLflow model declares (pure): its ``MLmodel`` file and the files its flavors name.

MLflow writes ``MLmodel`` as YAML; each flavor names the files it loads from (sklearn's
``pickled_model``, pyfunc's ``model_path`` / ``data``, the ``env`` files, lightgbm's ``data``...).
A finalize READY checks these are committed, so a model whose ``model.pkl`` never arrived cannot be
READY even if its ``MLmodel`` did.
"""

from __future__ import annotations

from typing import Any

import yaml

from trackstream.errors import InvalidInput

MLMODEL = "MLmodel"
_FILE_KEYS = ("pickled_model", "model_path", "model_file", "data", "model_data")


def _relative_paths(value: Any) -> list[str]:
    if isinstance(value, str) and value and not value.startswith("/") and "://" not in value and ".." not in value:
        return [value.strip("/")]
    if isinstance(value, dict):
        return [p for v in value.values() for p in _relative_paths(v)]
    return []


def declared_files(mlmodel_text: str | bytes) -> list[str]:
    """Paths (relative to the model root) the MLmodel's flavors name, in first-seen order."""
    try:
        spec = yaml.safe_load(mlmodel_text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"the model's MLmodel file is not valid YAML: {exc}") from exc
    if not isinstance(spec, dict):
        raise InvalidInput("the model's MLmodel file is not a YAML mapping")
    flavors = spec.get("flavors") or {}  # an external model's MLmodel names no flavors: nothing more declared
    if not isinstance(flavors, dict):
        raise InvalidInput("the 'flavors' section of the model's MLmodel file is not a mapping")
    declared: dict[str, None] = {}
    for flavor in flavors.values():
        if not isinstance(flavor, dict):
            continue
        for key in _FILE_KEYS:
            for path in _relative_paths(flavor.get(key)):
                declared[path] = None
        for path in _relative_paths(flavor.get("env")):
            declared[path] = None
    return list(declared)


def missing_declared(declared: list[str], committed: set[str] | frozenset[str]) -> list[str]:
    """Declared paths with no committed file at them (a declared directory needs a file under it)."""
    return [d for d in declared
            if d not in committed and not any(c.startswith(d + "/") for c in committed)]
