"""Where a run came from, as MLflow-named tags: user, source file, git commit, host, packages.

Everything is computed once per process (per source file for the git part), so creating many
runs costs one dict copy each. Git is asked with a short timeout; outside a repository, without
git, or when git is slow, the git tags are simply absent. ``TRACKSTREAM_DISABLE_PROVENANCE=1``
turns collection off.
"""

from __future__ import annotations

import functools
import getpass
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["PACKAGES", "DISABLE_ENV", "collect_provenance", "provenance_enabled"]

DISABLE_ENV = "TRACKSTREAM_DISABLE_PROVENANCE"
PACKAGES = ("numpy", "torch", "tensorflow", "jax", "scikit-learn", "trackstream")
GIT_TIMEOUT_S = 2.0
_NOT_A_SCRIPT = frozenset({"", "-c", "-m"})


def provenance_enabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def collect_provenance(entry_point: str | None = None) -> dict[str, str]:
    """Tags describing the current process; ``entry_point`` overrides the detected source file.

    Returns ``{}`` when ``TRACKSTREAM_DISABLE_PROVENANCE`` is set.
    """
    if not provenance_enabled():
        return {}
    return dict(_tags_for(_source_name(entry_point)))


@functools.lru_cache(maxsize=64)
def _tags_for(source: str) -> dict[str, str]:
    tags = {"mlflow.source.name": source} if source else {}
    tags["mlflow.source.type"] = "LOCAL"
    tags.update(_process_tags())
    tags.update(_git_tags(_source_dir(source)))
    return tags


def _source_name(entry_point: str | None) -> str:
    if entry_point:
        return entry_point
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file:
        return os.path.abspath(main_file)
    argv0 = sys.argv[0] if sys.argv else ""
    return os.path.abspath(argv0) if argv0 not in _NOT_A_SCRIPT else ""


def _source_dir(source: str) -> str:
    path = Path(source) if source else None
    if path is not None and path.is_file():
        return str(path.resolve().parent)
    if path is not None and path.is_dir():
        return str(path.resolve())
    return os.getcwd()


@functools.cache
def _process_tags() -> dict[str, str]:
    tags = {"trackstream.host": socket.gethostname(), "trackstream.python": platform.python_version()}
    try:
        tags["mlflow.user"] = getpass.getuser()
    except Exception:  # no login name (containers without a passwd entry): leave it out
        pass
    packages = _package_versions()
    if packages:
        tags["trackstream.packages"] = packages
    return tags


def _package_versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ",".join(found)


def _git_tags(directory: str) -> dict[str, str]:
    commit = _git(directory, "rev-parse", "HEAD")
    if not commit:
        return {}
    tags = {"mlflow.source.git.commit": commit}
    status = _git(directory, "status", "--porcelain")
    if status is not None:
        tags["mlflow.source.git.dirty"] = "true" if status else "false"
    return tags


def _git(directory: str, *args: str) -> str | None:
    """Stripped stdout of ``git -C directory args``, or None if git fails, is missing or is slow."""
    try:
        result = subprocess.run(["git", "-C", directory, *args], capture_output=True, text=True,
                                timeout=GIT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
