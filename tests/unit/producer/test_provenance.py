import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from trackstream.producer import provenance
from trackstream.producer.provenance import DISABLE_ENV, collect_provenance

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch):
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    provenance._tags_for.cache_clear()
    yield
    provenance._tags_for.cache_clear()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "train.py").write_text("print('hi')\n")
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "first")
    return root


@needs_git
def test_clean_checkout_gives_commit_and_not_dirty(repo):
    tags = collect_provenance(str(repo / "train.py"))
    assert tags["mlflow.source.git.commit"] == git(repo, "rev-parse", "HEAD")
    assert tags["mlflow.source.git.dirty"] == "false"
    assert tags["mlflow.source.name"] == str(repo / "train.py")
    assert tags["mlflow.source.type"] == "LOCAL"


@needs_git
def test_modified_file_makes_it_dirty(repo):
    (repo / "train.py").write_text("print('changed')\n")
    tags = collect_provenance(str(repo / "train.py"))
    assert tags["mlflow.source.git.dirty"] == "true"


def test_outside_git_there_are_no_git_tags(tmp_path):
    script = tmp_path / "plain" / "train.py"
    script.parent.mkdir()
    script.write_text("")
    tags = collect_provenance(str(script))
    assert not any(key.startswith("mlflow.source.git") for key in tags)
    assert tags["mlflow.source.name"] == str(script)


def test_process_tags(tmp_path):
    tags = collect_provenance(str(tmp_path))
    assert tags["trackstream.python"] == platform.python_version()
    assert tags["trackstream.host"]
    packages = dict(item.split("==") for item in tags["trackstream.packages"].split(","))
    assert "numpy" in packages and "trackstream" in packages
    assert set(packages) <= set(provenance.PACKAGES)


def test_missing_git_binary_is_silent(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    tags = collect_provenance(str(tmp_path))
    assert "mlflow.source.git.commit" not in tags and tags["mlflow.source.type"] == "LOCAL"


def test_default_source_is_the_main_script():
    assert collect_provenance()["mlflow.source.name"].endswith(("pytest", "__main__.py", "py.test"))


def test_results_are_copies_of_a_per_process_cache(tmp_path):
    first = collect_provenance(str(tmp_path))
    first["mlflow.user"] = "mallory"
    assert collect_provenance(str(tmp_path)).get("mlflow.user") != "mallory"
    assert provenance._tags_for.cache_info().hits == 1


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_disabled_by_environment(monkeypatch, value):
    monkeypatch.setenv(DISABLE_ENV, value)
    assert collect_provenance() == {}
