"""Password guessing against a real server: a flood of bad basic credentials is refused with 429
REQUEST_LIMIT_EXCEEDED and Retry-After after a small burst (per client address and per user),
quickly, while a user with the right password still signs in from another address and ingest
with a bearer token keeps flowing."""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from trackstream.server.auth import hash_secret
from trackstream.server.passwords import hash_password
from tests.integration.harness import ServerHandle, make_server

API = "/api/2.0/mlflow"
BURST = 3


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def call(server: ServerHandle, method: str, path: str, authorization: str, body: Any = None,
         source: str = "127.0.0.1") -> tuple[int, dict[str, str], Any, float]:
    """One request from the loopback address ``source``: status, headers, JSON body, seconds taken."""
    connection = http.client.HTTPConnection("127.0.0.1", server.settings.server_port, timeout=60,
                                            source_address=(source, 0))
    started = time.monotonic()
    try:
        data = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=data, headers={"Authorization": authorization,
                                                             "Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
        return response.status, dict(response.getheaders()), json.loads(raw or b"{}"), time.monotonic() - started
    finally:
        connection.close()


@pytest.fixture(scope="module")
def guarded(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("guessing")
    secret = {name: secrets.token_urlsafe(12) for name in ("alice", "bob", "carol", "writer")}
    auth_file = home / "auth.json"
    auth_file.write_text(json.dumps({"users": {
        "alice": {"password_hash": hash_password(secret["alice"]), "experiments": {"*": "read"}},
        "bob": {"password_hash": hash_password(secret["bob"]), "experiments": {"*": "read"}},
        "carol": {"password_hash": hash_password(secret["carol"]), "experiments": {"*": "read"}},
        "writer": {"tokens_sha256": [hash_secret(secret["writer"])], "experiments": {"*": "write"}},
    }}))
    server = make_server(kafka_bootstrap, home, f"pg{uuid.uuid4().hex[:6]}")
    server.env_overrides = {"TRACKSTREAM_AUTH_FILE": str(auth_file), "TRACKSTREAM_AUTH_FAILURE_BURST": str(BURST),
                            "TRACKSTREAM_AUTH_FAILURES_PER_MINUTE": "6", "TRACKSTREAM_AUTH_THREADS": "1",
                            "TRACKSTREAM_AUTH_QUEUE": "4"}
    server.start()
    try:
        yield server, secret
    finally:
        server.stop()


def test_a_flood_of_bad_credentials_is_limited_while_good_users_and_ingest_go_on(guarded: Any) -> None:
    server, secret = guarded
    writer = f"Bearer {secret['writer']}"
    status, _, body, _ = call(server, "POST", API + "/experiments/create", writer, {"name": "guessing"})
    assert status == 200, body
    status, _, body, _ = call(server, "POST", API + "/runs/create", writer, {"experiment_id": body["experiment_id"]})
    run_id = body["run"]["info"]["run_id"]

    stop = threading.Event()
    ingest: list[tuple[int, float]] = []

    def keep_ingesting() -> None:
        step = 0
        while not stop.is_set():
            status, _, _, took = call(server, "POST", API + "/runs/log-metric", writer, {
                "run_id": run_id, "key": "loss", "value": 1.0, "step": step, "timestamp": int(time.time() * 1000)})
            ingest.append((status, took))
            step += 1

    def guess(i: int) -> tuple[int, dict[str, str], Any, float]:
        who = "bob" if i % 2 else f"nobody{i}"
        return call(server, "GET", API + "/experiments/search?max_results=1", basic(who, f"guess{i}"))

    ingester = threading.Thread(target=keep_ingesting, daemon=True)
    ingester.start()
    try:
        with ThreadPoolExecutor(16) as pool:
            flood = list(pool.map(guess, range(120)))
        alice = call(server, "GET", API + "/experiments/search?max_results=1", basic("alice", secret["alice"]),
                     source="127.0.0.2")
        web_sign_in = call(server, "POST", "/api/ts/session", "", {"username": "nobody", "password": "x"})
    finally:
        stop.set()
        ingester.join(60)

    statuses = [status for status, *_ in flood]
    limited = [(headers, body, took) for status, headers, body, took in flood if status == 429]
    print(f"\nflood of {len(flood)} bad credentials: {statuses.count(401)} checked (401), {len(limited)} refused "
          f"(429), {statuses.count(503)} busy (503); slowest 429 {max(t for *_, t in limited) * 1000:.0f} ms; "
          f"{len(ingest)} log-metric calls meanwhile, slowest {max(t for _, t in ingest) * 1000:.0f} ms")
    assert 200 not in statuses and set(statuses) <= {401, 429, 503}
    assert statuses.count(401) <= BURST + 1  # the burst, plus at most one token refilled meanwhile
    assert len(limited) > 100
    for headers, body, took in limited:
        assert body["error_code"] == "REQUEST_LIMIT_EXCEEDED" and "retry" in body["message"].lower()
        assert 1 <= int(headers["Retry-After"]) <= 10
        assert took < 1.0
    assert alice[0] == 200, alice  # right password, another address: signs in
    assert web_sign_in[0] == 429 and web_sign_in[2]["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert ingest and all(status == 200 for status, _ in ingest)
    assert max(took for _, took in ingest) < 2.0


def test_signed_in_credentials_are_never_limited(guarded: Any) -> None:
    server, secret = guarded
    good = basic("alice", secret["alice"])
    assert call(server, "GET", API + "/experiments/search?max_results=1", good, source="127.0.0.4")[0] == 200
    for i in range(BURST + 2):
        call(server, "GET", API + "/experiments/search", basic("nobody", f"x{i}"), source="127.0.0.4")
    # the address is refused now, but credentials already verified cost no hash and pass
    assert call(server, "GET", API + "/experiments/search", basic("nobody", "y"), source="127.0.0.4")[0] == 429
    assert call(server, "GET", API + "/experiments/search?max_results=1", good, source="127.0.0.4")[0] == 200


def test_guesses_at_one_user_from_many_addresses_are_limited_per_user(guarded: Any) -> None:
    server, secret = guarded
    search = API + "/experiments/search?max_results=1"
    spread = [call(server, "GET", search, basic("carol", f"guess{i}"), source=f"127.0.1.{i + 1}")[0]
              for i in range(BURST)]
    assert spread == [401] * BURST
    refused = call(server, "GET", search, basic("carol", "one-more"), source="127.0.1.100")
    assert refused[0] == 429 and int(refused[1]["Retry-After"]) >= 1
    # until carol's bucket refills, not even her password is checked; other users are not held up
    assert call(server, "GET", search, basic("carol", secret["carol"]), source="127.0.1.101")[0] == 429
    assert call(server, "GET", search, basic("alice", secret["alice"]), source="127.0.1.102")[0] == 200
