"""The software environment of a run: the installed packages (a ``pip freeze`` equivalent) and,
in a conda environment, a ``conda.yaml``, stored as run artifacts with their sha256 in tags.

Capture reads directory listings only — the ``<name>-<version>.dist-info`` entries on
``sys.path`` and the ``<name>-<version>-<build>.json`` files of ``$CONDA_PREFIX/conda-meta`` —
with no subprocess and no metadata parsing (parsing every package's METADATA costs about half a
second in a 150-package environment; listing costs a few ms). ``EnvironmentMemory`` remembers
what this process last stored, so a run whose environment is unchanged only gets the tags,
pointing at the run that holds the files.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

__all__ = [
    "CONDA_PATH", "CONDA_SHA256_TAG", "DISABLE_ENV", "REQUIREMENTS_PATH", "SHA256_TAG", "SOURCE_RUN_TAG",
    "EnvironmentFiles", "EnvironmentMemory", "capture_environment", "environment_enabled",
]

DISABLE_ENV = "TRACKSTREAM_DISABLE_ENVIRONMENT"
REQUIREMENTS_PATH = "environment/requirements.txt"
CONDA_PATH = "environment/conda.yaml"
SHA256_TAG = "trackstream.environment.sha256"
CONDA_SHA256_TAG = "trackstream.environment.conda_sha256"
SOURCE_RUN_TAG = "trackstream.environment.run_id"
_TAG_OF_PATH = {REQUIREMENTS_PATH: SHA256_TAG, CONDA_PATH: CONDA_SHA256_TAG}


def environment_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(DISABLE_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def _project_name(name: str) -> str:
    """A dist-info name as pip prints it: dist-info directories escape ``-`` as ``_``."""
    return name.replace("_", "-")


def installed_distributions(paths: Iterable[str]) -> dict[str, str]:
    """``{normalized name: version}`` of every distribution on ``paths``; the first one found
    wins, as the import system's order decides which one is used."""
    found: dict[str, str] = {}
    for entry in paths:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for item in names:
            if item.endswith(".dist-info"):
                name, _, version = item[:-len(".dist-info")].partition("-")
            elif item.endswith(".egg-info"):
                name, _, rest = item[:-len(".egg-info")].partition("-")
                version = rest.split("-py", 1)[0]
            else:
                continue
            if name and version:
                found.setdefault(_project_name(name).lower(), f"{_project_name(name)}=={version}")
    return found


def requirements_text(distributions: Mapping[str, str]) -> str:
    """``name==version`` lines sorted by name, like ``pip freeze``."""
    return "".join(f"{distributions[key]}\n" for key in sorted(distributions))


def conda_environment_text(prefix: Path, requirements: str) -> str | None:
    """A ``conda.yaml`` (``conda env export --no-builds`` layout, with builds kept) from the
    ``conda-meta`` records of ``prefix``, with the pip requirements under ``pip:``; None when
    ``prefix`` is not a conda environment."""
    try:
        records = sorted(name[:-5] for name in os.listdir(prefix / "conda-meta") if name.endswith(".json"))
    except OSError:
        return None
    lines = [f"name: {prefix.name}", f"prefix: {prefix}", "dependencies:"]
    for record in records:
        parts = record.rsplit("-", 2)
        lines.append(f"  - {'='.join(parts)}" if len(parts) == 3 else f"  - {record}")
    pip = requirements.splitlines()
    if pip:
        lines.append("  - pip:")
        lines += [f"    - {line}" for line in pip]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class EnvironmentFiles:
    """Artifact path -> content, in a stable order."""

    files: tuple[tuple[str, bytes], ...]

    def sha256(self) -> dict[str, str]:
        return {path: hashlib.sha256(data).hexdigest() for path, data in self.files}

    def tags(self, holder_run_id: str) -> dict[str, str]:
        """The run's tags: each file's sha256 (equal to the artifact's recorded sha256) and the run
        whose artifacts hold the files."""
        tags = {_TAG_OF_PATH[path]: digest for path, digest in self.sha256().items()}
        tags[SOURCE_RUN_TAG] = holder_run_id
        return tags


def capture_environment(paths: Iterable[str] | None = None,
                        environ: Mapping[str, str] = os.environ) -> EnvironmentFiles:
    """The packages importable from ``paths`` (default ``sys.path``), plus ``conda.yaml`` when
    ``CONDA_PREFIX`` names a conda environment."""
    requirements = requirements_text(installed_distributions(sys.path if paths is None else paths))
    files = [(REQUIREMENTS_PATH, requirements.encode())]
    prefix = environ.get("CONDA_PREFIX")
    conda = conda_environment_text(Path(prefix), requirements) if prefix else None
    if conda is not None:
        files.append((CONDA_PATH, conda.encode()))
    return EnvironmentFiles(tuple(files))


class EnvironmentMemory:
    """What this process last stored, per artifact store: the files' digests and the run holding them."""

    def __init__(self) -> None:
        self._stored: dict[str, tuple[dict[str, str], str]] = {}
        self._lock = threading.Lock()

    def holder(self, store: str, files: EnvironmentFiles) -> str | None:
        """The run that already holds exactly these files in ``store``, if any."""
        with self._lock:
            known = self._stored.get(store)
        return known[1] if known is not None and known[0] == files.sha256() else None

    def remember(self, store: str, files: EnvironmentFiles, run_id: str) -> None:
        with self._lock:
            self._stored[store] = (files.sha256(), run_id)


PROCESS_MEMORY = EnvironmentMemory()
