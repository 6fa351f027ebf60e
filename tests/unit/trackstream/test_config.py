"""Settings from the environment: defaults and refused values."""

from __future__ import annotations

import pytest

from trackstream.config import Settings
from trackstream.errors import InvalidInput


def test_batch_window_defaults_to_100_ms_and_follows_the_environment(monkeypatch):
    monkeypatch.delenv("TRACKSTREAM_BATCH_WINDOW_MS", raising=False)
    assert Settings.from_env().batch_window_s == 0.1
    monkeypatch.setenv("TRACKSTREAM_BATCH_WINDOW_MS", "30")
    assert Settings.from_env().batch_window_s == 0.03


@pytest.mark.parametrize("raw", ["0", "-5", "1.5", "fast", "60001"])
def test_a_batch_window_that_is_not_1_to_60000_ms_is_refused_by_name(monkeypatch, raw):
    monkeypatch.setenv("TRACKSTREAM_BATCH_WINDOW_MS", raw)
    with pytest.raises(InvalidInput, match="TRACKSTREAM_BATCH_WINDOW_MS"):
        Settings.from_env()


def test_artifacts_default_to_the_local_store_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("TRACKSTREAM_ARTIFACT_STORE", raising=False)
    monkeypatch.setenv("TRACKSTREAM_HOME", str(tmp_path))
    settings = Settings.from_env()
    assert settings.artifact_store == ""
    assert settings.artifact_uri_root == (tmp_path / "artifacts").as_uri()


@pytest.mark.parametrize(("raw", "location"), [
    ("s3://bucket", "s3://bucket"),
    ("s3://bucket/", "s3://bucket"),
    (" s3://bucket/team/runs/ ", "s3://bucket/team/runs"),
])
def test_an_s3_artifact_store_is_normalised_and_becomes_the_runs_artifact_uri(monkeypatch, raw, location):
    monkeypatch.setenv("TRACKSTREAM_ARTIFACT_STORE", raw)
    settings = Settings.from_env()
    assert settings.artifact_store == location
    assert settings.artifact_uri_root == location


@pytest.mark.parametrize("raw", ["s3://", "s3:///prefix", "gs://bucket", "/mnt/shared", "bucket/prefix"])
def test_an_artifact_store_that_is_not_an_s3_location_is_refused_by_name(monkeypatch, raw):
    monkeypatch.setenv("TRACKSTREAM_ARTIFACT_STORE", raw)
    with pytest.raises(InvalidInput, match="TRACKSTREAM_ARTIFACT_STORE must be s3://bucket"):
        Settings.from_env()


def test_sdk_reads_go_to_the_server_url_unless_trackstream_server_url_names_another(monkeypatch):
    monkeypatch.delenv("TRACKSTREAM_SERVER_URL", raising=False)
    monkeypatch.setenv("TRACKSTREAM_SERVER_PORT", "6000")
    assert Settings.from_env().client_read_url == "http://127.0.0.1:6000"
    monkeypatch.setenv("TRACKSTREAM_SERVER_URL", "https://tracking.example:443/")
    assert Settings.from_env().client_read_url == "https://tracking.example:443"


def test_allowed_hosts_and_cors_origins_are_comma_lists_empty_by_default(monkeypatch):
    monkeypatch.delenv("TRACKSTREAM_ALLOWED_HOSTS", raising=False)
    monkeypatch.delenv("TRACKSTREAM_CORS_ORIGINS", raising=False)
    assert Settings.from_env().allowed_hosts == () and Settings.from_env().cors_origins == ()
    monkeypatch.setenv("TRACKSTREAM_ALLOWED_HOSTS", " tracker.example , ,10.0.0.5")
    monkeypatch.setenv("TRACKSTREAM_CORS_ORIGINS", "https://notebook.example")
    settings = Settings.from_env()
    assert settings.allowed_hosts == ("tracker.example", "10.0.0.5")
    assert settings.cors_origins == ("https://notebook.example",)


def test_password_check_limits_follow_the_environment(monkeypatch):
    for name in ("TRACKSTREAM_AUTH_FAILURE_BURST", "TRACKSTREAM_AUTH_FAILURES_PER_MINUTE", "TRACKSTREAM_AUTH_THREADS",
                 "TRACKSTREAM_AUTH_QUEUE"):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings.from_env()
    assert (defaults.auth_failure_burst, defaults.auth_failures_per_minute, defaults.auth_threads,
            defaults.auth_queue) == (10, 5, 2, 32)
    monkeypatch.setenv("TRACKSTREAM_AUTH_FAILURE_BURST", "3")
    monkeypatch.setenv("TRACKSTREAM_AUTH_FAILURES_PER_MINUTE", "60")
    monkeypatch.setenv("TRACKSTREAM_AUTH_THREADS", "4")
    monkeypatch.setenv("TRACKSTREAM_AUTH_QUEUE", "0")
    chosen = Settings.from_env()
    assert (chosen.auth_failure_burst, chosen.auth_failures_per_minute, chosen.auth_threads,
            chosen.auth_queue) == (3, 60, 4, 0)


@pytest.mark.parametrize("name, raw", [("TRACKSTREAM_AUTH_FAILURE_BURST", "0"), ("TRACKSTREAM_AUTH_THREADS", "many"),
                                       ("TRACKSTREAM_AUTH_FAILURES_PER_MINUTE", "-1"), ("TRACKSTREAM_AUTH_QUEUE", "1e9")])
def test_bad_password_check_limits_are_refused_by_name(monkeypatch, name, raw):
    monkeypatch.setenv(name, raw)
    with pytest.raises(InvalidInput, match=name):
        Settings.from_env()
