"""A training stops at its next batch, with real processes and real training: Ctrl-C to
`tftsweep sweep --workers 2`, and a cancel through the API while `tftsweep worker` trains.

Run by `make test-faults` (and CI).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.db.models import Run
from app.db.session import make_engine, make_session_factory, session_scope
from tests.faults.harness import Cluster
from tests.utils.data import ASSET, make_data_root, tiny_sweep

pytestmark = pytest.mark.faults


def long_sweep(name: str, epochs: int) -> dict[str, Any]:
    """Two runs whose training lasts `epochs` full epochs (no early stop)."""
    data = tiny_sweep(output_subdir=name)
    data["training_config"] |= {"max_epochs": epochs, "limit_train_batches": None, "early_stopping_patience": epochs}
    return data


def run_states(root: Path) -> dict[str, tuple[str, int]]:
    """Each run's state and attempts, by config id."""
    factory = make_session_factory(make_engine(f"sqlite:///{root / 'tftsweep.db'}"))
    with session_scope(factory) as session:
        return {r.config_id: (r.state, r.attempts) for r in session.scalars(select(Run))}


def wait_for(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_ctrl_c_to_a_sweep_with_two_worker_processes_stops_both_trainings(tmp_path: Path) -> None:
    root = make_data_root(tmp_path / "data")
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps(long_sweep("ctrl_c", epochs=60)))
    env = {**os.environ, "TFTSWEEP_DATA_DIR": str(root), "TFTSWEEP_TORCH_THREADS": "1"}
    env.pop("DATABASE_URL", None)
    command = [sys.executable, "-m", "worker.cli", "sweep", "--asset", ASSET, "--config-json", str(config)]
    log = tmp_path / "sweep.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*command, "--workers", "2"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(
            "both runs to train",
            lambda: (
                (root / "tftsweep.db").exists() and [s for s, _ in run_states(root).values()] == ["running", "running"]
            ),
            180,
        )
        time.sleep(3)  # past the dataset build: inside the epochs
        assert proc.poll() is None
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)  # the sweep's process only: it tells its pool processes
        assert proc.wait(timeout=120) == 130
        stopped_after = time.monotonic() - interrupted
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert "interrupted" in output
    assert "Traceback" not in output, output
    print(f"stopped {stopped_after:.1f}s after SIGINT")
    assert stopped_after < 15, output  # at the next batch, not after 60 epochs (a minute or more)
    # Given back to the queue, never failed; nothing was published for them.
    assert run_states(root) == {"baseline": ("queued", 1), "hidden_size=6": ("queued", 1)}
    assert not list((root / "models" / ASSET / "sweeps" / "ctrl_c").rglob("model.ckpt"))
    rerun = subprocess.run([*command, "--workers", "2"], env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "succeeded; runs: succeeded 2" in rerun.stdout
    assert run_states(root) == {"baseline": ("succeeded", 2), "hidden_size=6": ("succeeded", 2)}


def test_a_cancel_through_the_api_stops_the_worker_mid_training(cluster: Cluster) -> None:
    cluster.start_api()
    cluster.start_worker()
    response = cluster.http.client.post("/sweeps", json={"asset": ASSET, "config": long_sweep("cancel_me", 500)})
    assert response.status_code == 201, response.text
    sweep_id = int(response.json()["id"])
    running = cluster.wait_running(sweep_id)
    time.sleep(3)  # inside the epochs
    cancelled = time.monotonic()
    assert cluster.http.client.post(f"/sweeps/{sweep_id}/cancel").status_code == 200
    # The worker's task returns once its training stopped (lease interval 1 s here).
    stopped = re.compile(rf"run {running['run_id']} \(.*\): discarded \(cancelled or lease lost\)")
    wait_for("the training to stop", lambda: stopped.search(cluster.logs()), 60)
    assert time.monotonic() - cancelled < 30  # 500 epochs would take many minutes
    runs = {r["run_id"]: r for r in cluster.runs(sweep_id)}
    assert runs[running["run_id"]]["status"] == "cancelled"
    assert {r["status"] for r in runs.values()} == {"cancelled"}
    assert cluster.http.sweep(sweep_id)["status"] == "cancelled"
    assert not list((cluster.root / "models" / ASSET / "sweeps" / "cancel_me").rglob("model.ckpt"))
