"""`trackstream auth`: auth-file entries made from the command line, without a server."""

from __future__ import annotations

import base64
import io

import pytest

from trackstream.server.auth import AuthConfig, hash_secret
from trackstream.cli import EXIT_USAGE, main


def test_new_token_prints_a_token_and_the_hash_the_auth_file_takes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["auth", "new-token"]) == 0
    token_line, hash_line = capsys.readouterr().out.splitlines()
    token, digest = token_line.split()[-1], hash_line.split()[-1]
    assert len(token) >= 40 and digest == hash_secret(token)
    config = AuthConfig.from_dict({"users": {"ci": {"tokens_sha256": [digest]}}})
    assert config.authenticate(f"Bearer {token}").name == "ci"


def test_hash_password_from_stdin_gives_an_entry_that_signs_in(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert main(["auth", "hash-password"]) == 0
    stored = capsys.readouterr().out.strip()
    config = AuthConfig.from_dict({"users": {"ops": {"password_hash": stored}}})

    header = "Basic " + base64.b64encode(b"ops:correct horse battery").decode()
    assert config.authenticate(header).name == "ops"


def test_short_password_is_refused_with_a_reason(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["auth", "hash-password"]) == EXIT_USAGE
    assert "at least 8 characters" in capsys.readouterr().err
