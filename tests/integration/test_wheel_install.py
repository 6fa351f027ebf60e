"""The built wheel, installed as a user would: one `trackstream` namespace and a slim client.

Dependencies come from the package index (pip's cache on a warm machine), so this is in
`integration/`; no broker is needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_client_install import SERVER_ONLY_PACKAGES, build_wheel, import_probe, make_venv, pip_install, site_packages  # noqa: E402


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_holds_only_the_trackstream_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"trackstream", "trackstream-0.1.0.dist-info"}
    for module in ("producer/client.py", "consumers/worker.py", "schemas/codec.py", "server/main.py",
                   "infra/kafka_broker.py", "schemas/avro/metrics_logged/v1.avsc", "server/openapi.json"):
        assert f"trackstream/{module}" in names, module
    shipped = {p.relative_to(REPO / "server").as_posix() for p in (REPO / "server" / "ui_assets").rglob("*") if p.is_file()}
    assert {f"trackstream/server/{p}" for p in shipped} <= set(names), "the web UI's assets are not all in the wheel"


def test_installed_client_adds_only_trackstream_to_site_packages_and_imports_the_api(wheel: Path, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv")
    before = set(p.name for p in site_packages(python).iterdir())
    pip_install(python, str(wheel), no_deps=True)
    added = set(p.name for p in site_packages(python).iterdir()) - before - {"__pycache__"}
    assert added == {"trackstream", "trackstream-0.1.0.dist-info"}

    pip_install(python, str(wheel))  # now with the client's dependencies
    probe = import_probe(python)
    assert probe["server_modules_loaded"] == []

    check_api = """
import trackstream as ts
for name in ts.__all__:
    assert getattr(ts, name) is not None, name
assert issubclass(ts.InvalidInput, ts.TrackstreamError) and issubclass(ts.DeliveryError, ts.TrackstreamError)
import importlib.util
print([p for p in %r if importlib.util.find_spec(p) is not None])
""" % (sorted(SERVER_ONLY_PACKAGES),)
    out = subprocess.run([str(python), "-c", check_api], check=True, capture_output=True, text=True,
                         cwd=tmp_path).stdout
    assert json.loads(out.strip().replace("'", '"')) == [], "the slim client installed server-side packages"

    for module in ("producer", "consumers", "schemas", "server", "infra"):
        found = subprocess.run([str(python), "-c", f"import importlib.util; print(importlib.util.find_spec({module!r}))"],
                               check=True, capture_output=True, text=True, cwd=tmp_path).stdout.strip()
        assert found == "None", f"{module} is importable at the top level"
