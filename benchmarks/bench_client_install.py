"""What a training node pays for the client: install size and ``import trackstream`` time.

Builds the wheel from the tracked files, installs it into fresh virtualenvs (the slim client,
then ``trackstream[server]``), and reports each one's site-packages size, the number of
distributions, and the time of ``import trackstream`` plus first use of the SDK API
(median of --repeat fresh interpreters).

    python benchmarks/bench_client_install.py [--repeat 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

from trackstream.cli import SERVER_ONLY_PACKAGES

REPO = Path(__file__).resolve().parents[1]

IMPORT_PROBE = """
import json, sys, time
t0 = time.perf_counter()
import trackstream as ts
ts.TrackingClient, ts.start_run, ts.log_metric
elapsed_ms = (time.perf_counter() - t0) * 1000
loaded = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.argv[1])))
print(json.dumps({"import_ms": elapsed_ms, "server_modules_loaded": loaded}))
"""


def build_wheel(dest: Path) -> Path:
    """The project's wheel, built from a copy of the tracked files (nothing is written into the repo)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    source = dest / "source"
    for name in filter(None, files.decode().split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dest), str(source)],
                   check=True)
    (wheel,) = dest.glob("trackstream-*.whl")
    return wheel


def make_venv(path: Path) -> Path:
    """A clean virtualenv (no system site-packages); returns its python."""
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin" / "python"


def site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    return Path(out)


def pip_install(python: Path, *requirements: str, no_deps: bool = False) -> None:
    args = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if no_deps:
        args.append("--no-deps")
    subprocess.run([*args, *requirements], check=True)


def directory_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with_path = os.path.join(root, name)
            if not os.path.islink(with_path):
                total += os.path.getsize(with_path)
    return total / 1e6


def import_probe(python: Path) -> dict:
    out = subprocess.run([str(python), "-c", IMPORT_PROBE, json.dumps(sorted(SERVER_ONLY_PACKAGES))], check=True,
                         capture_output=True, text=True, cwd=tempfile.gettempdir()).stdout
    return json.loads(out)


def measure(python: Path, repeat: int) -> dict:
    probes = [import_probe(python) for _ in range(repeat)]
    packages = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], check=True,
                              capture_output=True, text=True).stdout
    return {
        "site_packages_mb": round(directory_mb(site_packages(python)), 1),
        "distributions": len(json.loads(packages)),
        "import_ms_median": round(statistics.median(p["import_ms"] for p in probes), 1),
        "server_modules_loaded": probes[-1]["server_modules_loaded"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_wheel(Path(tmp))
        for label, requirement in (("client", str(wheel)), ("server", f"trackstream[server] @ {wheel.as_uri()}")):
            python = make_venv(Path(tmp) / f"venv-{label}")
            pip_install(python, requirement)
            results[label] = measure(python, args.repeat)
            print(f"{label:>7}: {results[label]['site_packages_mb']:7.1f} MB in site-packages, "
                  f"{results[label]['distributions']:3d} distributions, import trackstream "
                  f"{results[label]['import_ms_median']:.0f} ms (median of {args.repeat}), "
                  f"server modules loaded: {results[label]['server_modules_loaded'] or 'none'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
