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
