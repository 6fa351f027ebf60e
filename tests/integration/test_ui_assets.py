"""The vendored JavaScript (server/ui_assets/vendor) is exactly what web/package-lock.json pins: the
locked tarball is fetched with npm, checked against the lock's sha512 integrity, and every
vendored file compared byte for byte with the package's own (web/vendor.sh is what copies them)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.integration.harness import REPO

LOCK = REPO / "web" / "package-lock.json"
VENDOR = REPO / "server" / "ui_assets" / "vendor"
# vendored file -> its path inside the npm tarball
VENDORED = {"uPlot.esm.js": "package/dist/uPlot.esm.js", "uPlot.min.css": "package/dist/uPlot.min.css",
            "uPlot.LICENSE": "package/LICENSE"}


def test_lock_pins_exact_versions_that_package_json_asks_for():
    lock = json.loads(LOCK.read_text())
    wanted = json.loads((REPO / "web" / "package.json").read_text())["dependencies"]
    for name, version in wanted.items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version, f"{name} is not pinned exactly"


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_vendored_files_match_the_locked_package(tmp_path: Path):
    locked = json.loads(LOCK.read_text())["packages"]["node_modules/uplot"]
    result = subprocess.run(["npm", "pack", f"uplot@{locked['version']}", "--pack-destination", str(tmp_path),
                             "--silent"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    tarball = tmp_path / result.stdout.strip().splitlines()[-1]
    algorithm, digest = locked["integrity"].split("-", 1)
    assert algorithm == "sha512"
    assert base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode() == digest
    with tarfile.open(tarball) as archive:
        for vendored, member in VENDORED.items():
            assert (VENDOR / vendored).read_bytes() == archive.extractfile(member).read(), \
                f"{vendored} differs from uplot@{locked['version']}: run sh web/vendor.sh"
    assert sorted(p.name for p in VENDOR.iterdir()) == sorted(VENDORED)
