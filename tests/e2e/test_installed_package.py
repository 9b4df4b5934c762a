"""A normal (non-editable) install works from any directory: migrations and shipped configs are
package data, found with importlib.resources, not next to a source tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest

from tests.utils.data import make_data_root, tiny_sweep
from tests.utils.processes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with tftsweep installed from its wheel (no network: the
    build uses this environment's setuptools, and the dependencies are this environment's)."""
    work = tmp_path_factory.mktemp("install")
    source = work / "source"  # a copy: the build writes build/ and *.egg-info into the tree it builds
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("core", "app", "worker", "migrations"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "wheels"), str(source)]
    subprocess.run(build, check=True, cwd=source)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    (wheel,) = (work / "wheels").glob("tftsweep-*.whl")
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], check=True)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies come from this environment; only its directory is added (its .pth files,
    # the editable install among them, are not read from there).
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def run(venv: Path, args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "tftsweep"), *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_a_normal_install_migrates_sweeps_and_serves_from_any_directory(installed: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = make_data_root(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PYTHONPATH")}
    env |= {"TFTSWEEP_DATA_DIR": str(root), "TFTSWEEP_TORCH_THREADS": "1"}

    where = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import app, core, migrations; print(app.__file__, migrations.__file__)",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(REPO) not in where and str(installed) in where  # the installed copy, not the source tree

    upgraded = run(installed, ["db", "upgrade"], elsewhere, env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "database is at the newest schema" in upgraded.stdout

    plan = run(installed, ["plan"], elsewhere, env)  # the default config, from package data
    assert plan.returncode == 0, plan.stderr
    assert "model_analysis.default.json (shipped with tftsweep)" in plan.stderr

    config = elsewhere / "tiny.json"
    config.write_text(json.dumps(tiny_sweep()))
    swept = run(installed, ["sweep", "--asset", "SYN", "--config-json", str(config)], elsewhere, env)
    assert swept.returncode == 0, swept.stderr
    assert (root / "models/SYN/sweeps/tiny/summary.json").is_file()

    port = free_port()
    serve = subprocess.Popen(
        [str(installed / "bin" / "tftsweep"), "serve", "--port", str(port), "--no-worker"],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(120):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert serve.poll() is None, serve.stderr.read() if serve.stderr else ""
                time.sleep(0.25)
            assert client.get("/sweeps").json()["data"][0]["output_subdir"] == "tiny"
            page = client.get("/ui/submit")  # templates and the example config: package data
            assert page.status_code == 200 and "example_msft" in page.text
            assert client.get("/ui/static/app.js").status_code == 200
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    assert serve.returncode == 0
