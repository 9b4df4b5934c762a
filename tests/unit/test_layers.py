"""The API process stays light: importing it pulls in no ML stack (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys


def test_api_and_worker_parent_import_no_ml_stack() -> None:
    code = (
        "import sys, app.api.main, worker.celery_app, worker.tasks, worker.cli;"
        "heavy = sorted(m for m in ('torch', 'lightning', 'pytorch_forecasting', 'optuna') if m in sys.modules);"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_worker_module_but_the_command_line_is_kept_from_the_http_layer() -> None:
    """The import contract lists worker modules one by one (the command line, which starts
    the HTTP server, is the one left out): a new module must join the list."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    contracts = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    contract = next(c for c in contracts if "never the HTTP layer" in c["name"])
    modules = {f"worker.{p.stem}" for p in (root / "worker").glob("*.py") if p.stem != "__init__"}
    assert set(contract["source_modules"]) == modules - {"worker.cli"}
