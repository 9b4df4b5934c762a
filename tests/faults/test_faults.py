"""Fault injection with real processes: kills, restarts, duplicates, crashes, contention.

Run by `make test-faults` (and CI). Leases are 4 s and the reaper runs every 0.5 s here.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from app.queue import CeleryQueue, make_celery
from app.settings import Settings
from tests.faults.harness import Cluster, kill_run_process
from tests.utils.data import ASSET, tiny_fold, tiny_sweep
from tests.utils.processes import free_port
from tests.utils.services import service_url

pytestmark = pytest.mark.faults


def slow_sweep(name: str, **overrides: Any) -> dict[str, Any]:
    """Runs long enough (a few seconds) to be caught mid-training."""
    data = tiny_sweep(output_subdir=name, **overrides)
    data["training_config"] |= {"max_epochs": 8, "limit_train_batches": None, "early_stopping_patience": 8}
    return data


def submit(cluster: Cluster, config: dict[str, Any], **extra: Any) -> int:
    response = cluster.http.client.post("/sweeps", json={"asset": ASSET, "config": config, **extra})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def assert_recorded_once(cluster: Cluster, sweep_id: int) -> list[dict[str, Any]]:
    runs = cluster.runs(sweep_id)
    assert all(r["status"] == "succeeded" for r in runs), runs
    folder = cluster.root / "models/SYN/sweeps"
    leftovers = [p for p in folder.rglob("*.tmp")] + [p for p in folder.rglob(".*.old-*")]
    assert leftovers == []  # nothing half-published
    return runs


def test_kill_9_mid_run_reexecutes_and_records_once(cluster: Cluster) -> None:
    cluster.start_api()
    cluster.start_worker()
    sweep_id = submit(cluster, slow_sweep("kill9"))
    victim = cluster.wait_running(sweep_id)
    kill_run_process(victim["owner"])
    sweep = cluster.http.wait_sweep(sweep_id, timeout=180)
    assert sweep["status"] == "succeeded"
    runs = assert_recorded_once(cluster, sweep_id)
    killed = next(r for r in runs if r["run_id"] == victim["run_id"])
    assert killed["attempts"] == 2  # the lease expired once, then it ran to completion
    assert "database is locked" not in cluster.logs()


def test_kill_9_on_redis(tmp_path: Path) -> None:
    from tests.utils.data import make_data_root

    redis_url = service_url("TFTSWEEP_TEST_REDIS_URL").rsplit("/", 1)[0] + "/3"
    cluster = Cluster(make_data_root(tmp_path / "data"), env={"REDIS_URL": redis_url})
    try:
        cluster.start_api()
        cluster.start_worker()
        sweep_id = submit(cluster, slow_sweep("kill9redis"))
        kill_run_process(cluster.wait_running(sweep_id)["owner"])
        assert cluster.http.wait_sweep(sweep_id, timeout=180)["status"] == "succeeded"
        assert_recorded_once(cluster, sweep_id)
    finally:
        cluster.close()


def test_a_run_that_always_crashes_fails_after_max_attempts(cluster: Cluster) -> None:
    cluster.start_api()
    cluster.start_worker()
    sweep_id = submit(cluster, slow_sweep("crashy", param_ranges={}), continue_on_error=True)
    seen: set[str] = set()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        runs = cluster.runs(sweep_id)
        if runs[0]["status"] == "failed":
            break
        try:
            running = cluster.wait_running(sweep_id, timeout=30)
        except AssertionError:
            continue
        if running["owner"] not in seen:
            seen.add(running["owner"])
            kill_run_process(running["owner"])
    run = cluster.runs(sweep_id)[0]
    assert run["status"] == "failed", run
    assert run["attempts"] == 3 and "gave up after 3 attempts" in run["error"]
    assert len(seen) == 3
    time.sleep(3)
    assert cluster.runs(sweep_id)[0]["attempts"] == 3  # no loop


def test_duplicate_delivery_runs_once(cluster: Cluster) -> None:
    cluster.start_api()
    sweep_id = submit(cluster, tiny_sweep(output_subdir="dupes", param_ranges={}))
    run_id = cluster.runs(sweep_id)[0]["run_id"]
    queue = CeleryQueue(make_celery(Settings(data_dir=cluster.root, database_url=None, redis_url=None)))
    queue.enqueue_runs([run_id, run_id])  # two more messages for the same run
    cluster.start_worker()
    assert cluster.http.wait_sweep(sweep_id)["status"] == "succeeded"
    time.sleep(2)  # let the extra messages drain
    run = cluster.runs(sweep_id)[0]
    assert run["attempts"] == 1
    assert cluster.logs().count(f"run {run_id}: skipped") >= 1


def test_restarting_the_api_mid_sweep_loses_nothing(cluster: Cluster) -> None:
    cluster.start_api()
    cluster.start_worker()
    sweep_id = submit(cluster, slow_sweep("restart_api", replica_seeds=[1, 2]))
    cluster.wait_running(sweep_id)
    cluster.stop(cluster.api)
    time.sleep(2)
    cluster.start_api()
    sweep = cluster.http.wait_sweep(sweep_id, timeout=240)
    assert sweep["status"] == "succeeded" and sweep["runs"]["succeeded"] == 4
    assert_recorded_once(cluster, sweep_id)


@pytest.mark.parametrize("whole_group", [False, True], ids=["worker-process", "process-group"])
def test_sigterm_to_a_worker_finishes_or_releases_its_run(cluster: Cluster, whole_group: bool) -> None:
    """SIGTERM to the worker: the run in hand is finished (warm shutdown); SIGTERM to the whole
    process group (the training process too): it is released back to the queue."""
    cluster.start_api()
    worker = cluster.start_worker()
    sweep_id = submit(cluster, slow_sweep("sigterm"))
    running = cluster.wait_running(sweep_id)
    if whole_group:
        cluster.stop(worker, signal.SIGTERM, timeout=120)
    else:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=120)
    run = next(r for r in cluster.runs(sweep_id) if r["run_id"] == running["run_id"])
    assert run["status"] in ("succeeded", "queued"), run  # never left running
    if whole_group:
        assert run["status"] == "queued" and run["attempts"] == 1
    cluster.start_worker()
    assert cluster.http.wait_sweep(sweep_id, timeout=180)["status"] == "succeeded"
    assert_recorded_once(cluster, sweep_id)


def test_restarting_redis_with_runs_queued(tmp_path: Path) -> None:
    from tests.utils.data import make_data_root

    service_url("TFTSWEEP_TEST_REDIS_URL")  # Redis must be installed
    port = free_port()
    redis = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(redis, stdout=subprocess.DEVNULL)
    cluster = Cluster(make_data_root(tmp_path / "data"), env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    try:
        time.sleep(0.5)
        cluster.start_api()
        sweep_id = submit(cluster, tiny_sweep(output_subdir="redis_restart", replica_seeds=[1, 2]))
        server.terminate()
        server.wait()
        server = subprocess.Popen(redis, stdout=subprocess.DEVNULL)  # empty: every queued message is gone
        time.sleep(0.5)
        cluster.start_worker()
        sweep = cluster.http.wait_sweep(sweep_id, timeout=180)
        assert sweep["status"] == "succeeded" and sweep["runs"]["succeeded"] == 4
    finally:
        cluster.close()
        server.terminate()
        server.wait()


def test_unpublishable_artifacts_fail_the_run_cleanly(cluster: Cluster) -> None:
    cluster.start_api()
    cluster.start_worker()
    blocker = cluster.root / "models/SYN/sweeps/blocked/folds/f1/models"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the models folder must go")
    sweep_id = submit(cluster, tiny_sweep(output_subdir="blocked", param_ranges={}))
    sweep = cluster.http.wait_sweep(sweep_id)
    run = cluster.runs(sweep_id)[0]
    assert sweep["status"] == "failed" and run["status"] == "failed"
    assert "FileExistsError" in run["error"] or "NotADirectoryError" in run["error"]
    assert blocker.read_text().startswith("a file")
    # No temporary model folder was left behind (reports of the failed sweep are fine).
    assert [p.name for p in blocker.parent.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")] == []


def test_sqlite_api_two_workers_and_reaper_without_lock_errors(cluster: Cluster) -> None:
    cluster.env["TFTSWEEP_REAPER_INTERVAL_SECONDS"] = "0.2"
    cluster.env["TFTSWEEP_LEASE_SECONDS"] = "2"
    cluster.start_api()
    cluster.start_worker()
    cluster.start_worker()
    config = tiny_sweep(
        output_subdir="contention",
        replica_seeds=[1, 2, 3],
        walk_forward={"enabled": True, "folds": [tiny_fold("f1", 2012), tiny_fold("f2", 2013)]},
        param_ranges={"hidden_size": [4, 6, 8]},
    )
    sweep_id = submit(cluster, config)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # the API is polled hard meanwhile
        sweep = cluster.http.sweep(sweep_id)
        cluster.http.client.get(f"/sweeps/{sweep_id}/ranking")
        if sweep["status"] in ("succeeded", "failed", "partial") and sweep["reports_at"]:
            break
    assert sweep["runs"]["succeeded"] == 18, sweep
    logs = cluster.logs()
    assert "database is locked" not in logs
    assert "Traceback" not in logs, logs[-3000:]
    assert json.loads((cluster.root / "models/SYN/sweeps/contention/summary.json").read_text())["complete"]
