"""producer.environment: what a run's environment artifact holds, and when the client stores it."""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
from pathlib import Path

import pytest

from trackstream.config import Settings
from trackstream.producer import environment as env
from trackstream.producer.client import TrackingClient
from tests.unit.producer.test_client import FailingStore, FakeWriter, tags_of


def site(tmp_path: Path, name: str, *entries: str) -> str:
    directory = tmp_path / name
    directory.mkdir()
    for entry in entries:
        (directory / entry).mkdir()
    return str(directory)


def test_distributions_come_from_dist_info_and_egg_info_names_and_the_first_path_wins(tmp_path):
    first = site(tmp_path, "a", "numpy-2.1.0.dist-info", "aiohttp_cors-0.8.1.dist-info", "not_a_package")
    second = site(tmp_path, "b", "numpy-1.0.0.dist-info", "legacy-0.3-py3.11.egg-info")
    found = env.installed_distributions([first, str(tmp_path / "missing"), second])
    assert env.requirements_text(found) == "aiohttp-cors==0.8.1\nlegacy==0.3\nnumpy==2.1.0\n"


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirements(text: str) -> dict[str, str]:
    return {normalized(name): version for name, version in (line.split("==") for line in text.splitlines())}


def installed_by_metadata() -> dict[str, str]:
    """What pip freeze would list, from the packages' own metadata (the slow way)."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        found.setdefault(normalized(dist.metadata["Name"]), dist.version)
    return found


def test_the_real_environment_lists_what_package_metadata_says_is_installed():
    text = env.capture_environment(environ={}).files[0][1].decode()
    assert parse_requirements(text) == installed_by_metadata()


def test_a_conda_prefix_adds_conda_yaml_with_the_pip_packages(tmp_path):
    prefix = tmp_path / "envs" / "train"
    (prefix / "conda-meta").mkdir(parents=True)
    for record in ("python-3.11.9-h955ad1f_0.json", "libzlib-1.3.1-hb9d3cd8_2.json", "history"):
        (prefix / "conda-meta" / record).write_text("{}")
    files = env.capture_environment([site(tmp_path, "sp", "torch-2.5.0.dist-info")], {"CONDA_PREFIX": str(prefix)})
    assert [path for path, _ in files.files] == [env.REQUIREMENTS_PATH, env.CONDA_PATH]
    assert files.files[1][1].decode() == (
        f"name: train\nprefix: {prefix}\ndependencies:\n  - libzlib=1.3.1=hb9d3cd8_2\n"
        "  - python=3.11.9=h955ad1f_0\n  - pip:\n    - torch==2.5.0\n")
    assert env.capture_environment([], {"CONDA_PREFIX": str(tmp_path / "no-conda")}).files[1:] == ()


def test_tags_carry_each_file_digest_and_the_run_holding_the_files():
    files = env.EnvironmentFiles(((env.REQUIREMENTS_PATH, b"a==1\n"), (env.CONDA_PATH, b"name: x\n")))
    assert files.tags("r1") == {env.SHA256_TAG: hashlib.sha256(b"a==1\n").hexdigest(),
                                env.CONDA_SHA256_TAG: hashlib.sha256(b"name: x\n").hexdigest(),
                                env.SOURCE_RUN_TAG: "r1"}


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A client with a fake writer, a fresh process memory and a fixed package list."""
    monkeypatch.setattr(env, "PROCESS_MEMORY", env.EnvironmentMemory())
    monkeypatch.delenv(env.DISABLE_ENV, raising=False)
    monkeypatch.delenv("TRACKSTREAM_DISABLE_PROVENANCE", raising=False)
    packages = {"text": "numpy==2.1.0\n"}
    monkeypatch.setattr(env, "capture_environment",
                        lambda: env.EnvironmentFiles(((env.REQUIREMENTS_PATH, packages["text"].encode()),)))
    writer = FakeWriter()
    client = TrackingClient(Settings(home=tmp_path / "home", kafka_bootstrap="unused"), writer=writer, linger_s=3600)
    yield client, writer, packages
    client.close()


def environment_tags(writer: FakeWriter, run_id: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for fields in writer.of("tags_set"):
        if fields["run_id"] == run_id:
            tags.update({k: val for k, val in tags_of(fields).items() if k.startswith("trackstream.environment")})
    return tags


def test_the_first_run_stores_the_file_and_a_later_unchanged_run_only_points_at_it(fresh):
    client, writer, packages = fresh
    first = client.create_run("0")
    client.set_terminated(first)
    (committed,) = writer.of("artifact_committed")
    assert committed["path"] == env.REQUIREMENTS_PATH and committed["run_id"] == first
    assert environment_tags(writer, first) == {env.SHA256_TAG: committed["sha256"], env.SOURCE_RUN_TAG: first}
    manifest = writer.of("finalize_requested")[0]["manifest"]
    assert [m["path"] for m in manifest] == [env.REQUIREMENTS_PATH]  # ending the run waited for it

    second = client.create_run("0")
    client.wait_for_environment(second)
    assert len(writer.of("artifact_committed")) == 1
    assert environment_tags(writer, second) == {env.SHA256_TAG: committed["sha256"], env.SOURCE_RUN_TAG: first}

    packages["text"] = "numpy==2.2.0\n"
    third = client.create_run("0")
    client.wait_for_environment(third)
    assert [c["run_id"] for c in writer.of("artifact_committed")] == [first, third]
    assert environment_tags(writer, third)[env.SOURCE_RUN_TAG] == third


@pytest.mark.parametrize("how", ["variable", "client option", "run option", "no provenance"])
def test_opting_out(fresh, monkeypatch, how):
    client, writer, _ = fresh
    kwargs = {}
    if how == "variable":
        monkeypatch.setenv(env.DISABLE_ENV, "1")
    elif how == "client option":
        client.capture_environment = False
    elif how == "run option":
        kwargs = {"environment": False}
    else:
        kwargs = {"provenance": False}
    run_id = client.create_run("0", **kwargs)
    client.set_terminated(run_id)
    assert not writer.of("artifact_committed") and not environment_tags(writer, run_id)


def test_a_failed_upload_warns_and_the_run_still_ends(monkeypatch, tmp_path):
    monkeypatch.setattr(env, "PROCESS_MEMORY", env.EnvironmentMemory())
    monkeypatch.delenv(env.DISABLE_ENV, raising=False)
    writer = FakeWriter()
    client = TrackingClient(Settings(home=tmp_path / "home", kafka_bootstrap="unused"), writer=writer,
                            linger_s=3600, artifact_store=FailingStore(tmp_path / "store"))
    with pytest.warns(RuntimeWarning, match="environment of run .* was not recorded"):
        run_id = client.create_run("0", environment=True)
        client.set_terminated(run_id)
    assert not writer.of("artifact_committed") and writer.of("finalize_requested")
    client.close()
