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


def test_http_reader_joins_every_page_of_a_history_following_the_next_page_header():
    import http.server
    import threading
    import urllib.parse

    import numpy as np

    from trackstream.read_protocol import NEXT_PAGE_HEADER, encode_history_columns
    from trackstream.reading import HttpReader

    pages = {None: (np.arange(0, 3), "t1"), "t1": (np.arange(3, 5), "t2"), "t2": (np.arange(5, 6), None)}
    asked = []

    class Pages(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            asked.append((query["format"][0], query.get("page_token", [None])[0]))
            steps, token = pages[asked[-1][1]]
            body = encode_history_columns(steps, steps * 0.5, steps + 100)
            self.send_response(200)
            if token:
                self.send_header(NEXT_PAGE_HEADER, token)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        history = HttpReader(f"http://127.0.0.1:{server.server_port}").history_columns("r1", "loss")
    finally:
        server.shutdown()
        server.server_close()
    assert asked == [("columns", None), ("columns", "t1"), ("columns", "t2")]
    assert history.steps.tolist() == list(range(6)) and history.values.tolist() == [s * 0.5 for s in range(6)]
    assert history.timestamps.tolist() == [s + 100 for s in range(6)]
