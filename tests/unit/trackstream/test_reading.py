"""trackstream.reading: how the CLI decides between a running server and the embedded engine."""

from __future__ import annotations

import json
import subprocess
import sys

from trackstream.config import Settings
from trackstream.reading import running_server_url

UNANSWERED_URL = "http://127.0.0.1:9"  # the discard port: nothing answers HTTP there


def record_server(settings: Settings, pid: int) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "server.json").write_text(json.dumps({"pid": pid, "url": UNANSWERED_URL}))


def test_a_recorded_server_that_is_alive_counts_as_running_even_before_it_answers(tmp_path):
    settings = Settings(home=tmp_path)
    busy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "trackstream.cli", "server"])
    try:
        record_server(settings, busy.pid)
        assert running_server_url(settings) == UNANSWERED_URL
    finally:
        busy.kill()
        busy.wait()
    assert running_server_url(settings) is None  # gone, and nothing answers: open the engine directly


def test_a_recorded_pid_reused_by_another_program_is_not_taken_for_the_server(tmp_path):
    settings = Settings(home=tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record_server(settings, other.pid)
        assert running_server_url(settings) is None
    finally:
        other.kill()
        other.wait()


def test_no_or_a_garbled_state_file_means_no_server(tmp_path):
    settings = Settings(home=tmp_path)
    assert running_server_url(settings) is None
    (tmp_path / "server.json").write_text("{not json")
    assert running_server_url(settings) is None
