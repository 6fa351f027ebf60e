"""The ClickHouse connection string may hold a password: it is redacted everywhere it is shown
(settings' repr, the server's startup line and server.json, connect errors, `trackstream status`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trackstream.config import Settings, redact_secrets
from trackstream.errors import StorageError

DSN = "http://user:s3cret@host:8123"


@pytest.mark.parametrize("text, shown", [
    (DSN, "http://user:***@host:8123"),
    (f"cannot open ClickHouse at {DSN}/db?secure=1: refused", "cannot open ClickHouse at http://user:***@host:8123/db?secure=1: refused"),
    ("https://default:p%40ss:w@ch.example.com/", "https://default:***@ch.example.com/"),
    ("http://host:8123/?user=u&password=s3cret&secure=1", "http://host:8123/?user=u&password=***&secure=1"),
    ("clickhouse://u:s3cret@h:9000/db", "clickhouse://u:***@h:9000/db"),
    ("chdb:///home/me/.trackstream/clickhouse", "chdb:///home/me/.trackstream/clickhouse"),
    ("http://user@host:8123 and http://host:8123", "http://user@host:8123 and http://host:8123"),
])
def test_redact_secrets_masks_passwords_in_urls_and_query_strings(text: str, shown: str) -> None:
    assert redact_secrets(text) == shown


def test_redact_secrets_also_masks_the_password_of_a_given_dsn_anywhere() -> None:
    assert redact_secrets("Code: 516. user: password s3cret is wrong", DSN) == "Code: 516. user: password *** is wrong"
    assert redact_secrets("nothing secret here", "chdb:///tmp/x") == "nothing secret here"


def test_settings_repr_hides_the_password() -> None:
    settings = Settings(home=Path("/tmp/h"), clickhouse_dsn=DSN)
    assert "s3cret" not in repr(settings) and "http://user:***@host:8123" in repr(settings)
    assert settings.clickhouse_dsn == DSN  # the value itself is intact for connecting


def test_server_startup_line_and_state_file_hide_the_password() -> None:
    from trackstream.server.main import server_state, startup_line

    settings = Settings(home=Path("/tmp/h"), clickhouse_dsn=DSN, kafka_bootstrap="k:9092")
    line = startup_line(settings, None)
    assert "s3cret" not in line and "http://user:***@host:8123" in line
    state = server_state(settings, 1234)
    assert "s3cret" not in json.dumps(state) and state["clickhouse"] == "http://user:***@host:8123"
    assert state["pid"] == 1234 and state["url"] == settings.server_url


def test_connect_errors_hide_the_password() -> None:
    from trackstream.consumers.store import connect

    with pytest.raises(StorageError) as raised:
        connect("http://user:s3cret@127.0.0.1:1/", "secrets-test")
    assert "s3cret" not in str(raised.value) and "http://user:***@127.0.0.1:1/" in str(raised.value)
    chained = raised.value.__cause__ or raised.value.__context__
    assert chained is None or "s3cret" not in str(chained)


def test_cli_status_hides_the_password_even_from_an_older_state_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from trackstream import cli, reading

    (tmp_path / "server.json").write_text(json.dumps({"pid": 1, "url": "http://127.0.0.1:5055", "clickhouse": DSN,
                                                      "database": "trackstream"}))
    monkeypatch.setenv("TRACKSTREAM_HOME", str(tmp_path))
    monkeypatch.setenv("TRACKSTREAM_CLICKHOUSE", DSN)
    monkeypatch.setattr(cli, "cmd_infra", lambda args, settings: 0)
    monkeypatch.setattr(reading, "running_server_url", lambda settings: "http://127.0.0.1:5055")
    monkeypatch.setattr(reading.HttpReader, "status", lambda self: {"events": 3})
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out and "http://user:***@host:8123" in out
