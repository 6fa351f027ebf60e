"""The web UI with auth on, in Debian's headless Chromium against a real server: the sign-in form,
the HttpOnly SameSite=Strict session cookie it sets, and the data it then shows."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.integration.harness import ServerHandle, make_server
from trackstream.server.passwords import hash_password

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (infra/setup.sh installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def secured(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, str]]:
    home = tmp_path_factory.mktemp("webui-auth")
    password = secrets.token_urlsafe(12)
    (home / "auth.json").write_text(json.dumps({"users": {"ada": {"password_hash": hash_password(password),
                                                                  "experiments": {"*": "write"}}}}))
    server = make_server(kafka_bootstrap, home, f"uia{uuid.uuid4().hex[:6]}")
    server.env_overrides = {"TRACKSTREAM_AUTH_FILE": str(home / "auth.json")}
    server.start()
    basic = "Basic " + base64.b64encode(f"ada:{password}".encode()).decode()
    created = requests.post(f"{server.settings.server_url}/api/2.0/mlflow/experiments/create",
                            json={"name": "signed-in-only"}, headers={"Authorization": basic}, timeout=30)
    assert created.status_code == 200
    yield server, password
    server.stop()


def test_sign_in_sets_an_httponly_strict_cookie_and_shows_the_data(secured, tmp_path):
    server, password = secured
    base = server.settings.server_url
    assert requests.get(f"{base}/api/2.0/mlflow/experiments/search", timeout=30).status_code == 401
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page()
        page.goto(base + "/")
        page.locator("#signin").wait_for()  # the UI's own form, not the browser's basic-auth dialog
        page.fill("#signin-user", "ada")
        page.fill("#signin-password", "wrong")
        page.click("#signin button[type=submit]")
        expect(page.locator("#signin .error")).to_contain_text("Invalid credentials")
        page.fill("#signin-password", password)
        page.click("#signin button[type=submit]")
        page.get_by_role("link", name="signed-in-only", exact=True).wait_for()
        page.screenshot(path=str(tmp_path / "signed-in.png"))
        cookie, = [c for c in page.context.cookies() if c["name"] == "ts_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert "ts_session" not in page.evaluate("document.cookie")  # script cannot read it
        browser.close()
    # the cookie is a credential only for this server's own pages: a cross-site write with it is refused
    session = requests.Session()
    session.post(f"{base}/api/ts/session", json={"username": "ada", "password": password}, timeout=30)
    refused = session.post(f"{base}/api/2.0/mlflow/experiments/create", json={"name": "csrf"},
                           headers={"Origin": "http://evil.example"}, timeout=30)
    assert refused.status_code == 403
    assert session.post(f"{base}/api/2.0/mlflow/experiments/create", json={"name": f"own-{uuid.uuid4().hex[:6]}"},
                        timeout=30).status_code == 200
    session.delete(f"{base}/api/ts/session", timeout=30)
    assert session.get(f"{base}/api/2.0/mlflow/experiments/search", timeout=30).status_code == 401
