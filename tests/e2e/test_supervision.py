"""`tftsweep serve` keeps its embedded worker alive and seen, and stops it cleanly (real processes)."""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.db.models import Run
from app.db.session import session_scope
from tests.utils.data import ASSET, make_data_root, tiny_sweep
from tests.utils.processes import ServerProcess, children, group_members, orphans
from worker.local_sweep import open_database

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Heartbeats every second; a worker silent for 6 s is restarted.
FAST = {"TFTSWEEP_HEARTBEAT_SECONDS": "1", "TFTSWEEP_WORKER_STALE_SECONDS": "6"}


def slow_sweep(name: str, epochs: int = 6, **overrides: Any) -> dict[str, Any]:
    """Runs of a few seconds each, long enough to be caught mid-training."""
    data = tiny_sweep(output_subdir=name, **overrides)
    data["training_config"] |= {"max_epochs": epochs, "limit_train_batches": None, "early_stopping_patience": epochs}
    return data


def submit(server: ServerProcess, config: dict[str, Any]) -> int:
    response = server.client.post("/sweeps", json={"asset": ASSET, "config": config})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def live_worker(server: ServerProcess, other_than: int | None = None) -> dict[str, Any]:
    """The embedded worker's heartbeat row, once it is live (and not the worker `other_than`)."""

    def found() -> dict[str, Any] | None:
        rows = server.client.get("/workers").json()["data"]
        return next((w for w in rows if w["live"] and w["pid"] != other_than), None)

    return dict(server.wait(found, 90, "a live worker"))


def wait_running(server: ServerProcess, sweep_id: int) -> None:
    server.wait(lambda: server.sweep(sweep_id)["runs"]["running"] == 1, 90, "a run to start")


def error_lines(server: ServerProcess) -> list[str]:
    return [line for line in server.log.read_text().splitlines() if re.search(r"\bERROR\b|Traceback", line)]


def recorded(server: ServerProcess) -> Counter[int]:
    """How many times each run's result was recorded, from the worker's log lines."""
    return Counter(int(m) for m in re.findall(r"run (\d+) \([^)]*\): (?:succeeded|failed)", server.log.read_text()))


def test_killing_every_worker_process_mid_sweep_loses_nothing(tmp_path: Path) -> None:
    server = ServerProcess(make_data_root(tmp_path / "data"), env=FAST).start()
    try:
        first = live_worker(server)
        sweep_id = submit(server, slow_sweep("killall", replica_seeds=[1, 2]))
        wait_running(server, sweep_id)
        victims = group_members(first["pid"])
        assert first["pid"] in victims and len(victims) >= 2  # the main process and its pool process
        for pid in victims:
            os.kill(pid, signal.SIGKILL)

        second = live_worker(server, other_than=first["pid"])  # a new worker, with no action from us
        sweep = server.wait_sweep(sweep_id, timeout=240)
        assert sweep["status"] == "succeeded" and sweep["runs"]["succeeded"] == 4
        runs = server.client.get(f"/sweeps/{sweep_id}/runs").json()["data"]
        assert recorded(server) == Counter({r["run_id"]: 1 for r in runs})  # each run recorded exactly once
        assert sorted(r["attempts"] for r in runs) == [1, 1, 1, 2]  # the killed run, once more
        assert f"embedded worker (pid {first['pid']}) was killed by signal 9: restarting it" in server.log.read_text()
        assert second["pid"] != first["pid"]
    finally:
        server.stop()
    assert orphans() == []
    assert error_lines(server) == []


def test_a_silent_worker_is_restarted(tmp_path: Path) -> None:
    server = ServerProcess(make_data_root(tmp_path / "data"), env=FAST).start()
    try:
        first = live_worker(server)
        os.kill(first["pid"], signal.SIGSTOP)  # alive, but it neither consumes nor beats
        health = server.wait(
            lambda: (h := server.client.get("/healthz").json())["live_workers"] == 0 and h, 30, "the worker to go stale"
        )
        assert health["status"] == "ok"  # nothing is queued: a stale worker alone is no degradation
        second = live_worker(server, other_than=first["pid"])
        assert "sent no heartbeat for" in server.log.read_text()
        assert not Path(f"/proc/{first['pid']}").exists()  # the stopped worker was killed, not left behind
        sweep_id = submit(server, tiny_sweep(output_subdir="after", param_ranges={}))
        assert server.wait_sweep(sweep_id, timeout=120)["status"] == "succeeded"
        assert second["runs_in_hand"] == 0
    finally:
        server.stop()
    assert orphans() == []


def test_serve_gives_up_when_its_worker_keeps_dying(tmp_path: Path) -> None:
    server = ServerProcess(make_data_root(tmp_path / "data"), env={**FAST, "TFTSWEEP_WORKER_MAX_RESTARTS": "2"})
    server.start()
    try:
        seen: set[int] = set()
        for _ in range(3):
            worker = server.wait(
                lambda: next((w for w in server.client.get("/workers").json()["data"] if w["pid"] not in seen), None),
                90,
                "a new worker",
            )
            seen.add(worker["pid"])
            os.killpg(worker["pid"], signal.SIGKILL)
        assert server.proc is not None
        assert server.proc.wait(timeout=60) == 1
    finally:
        server.stop()
    assert "restarted 2 times in 300 s: giving up" in server.log.read_text()
    assert orphans() == []


def test_stopping_serve_mid_run_ends_its_worker_and_releases_the_run(tmp_path: Path) -> None:
    server = ServerProcess(make_data_root(tmp_path / "data"), env=FAST).start()
    worker = live_worker(server)
    sweep_id = submit(server, slow_sweep("stopped", epochs=200))
    wait_running(server, sweep_id)
    assert server.proc is not None
    started = time.monotonic()
    os.killpg(server.proc.pid, signal.SIGTERM)  # as a service manager stops it: the whole group
    assert server.proc.wait(timeout=60) == 0
    assert time.monotonic() - started < 45
    assert group_members(worker["pid"]) == [] and orphans() == []
    assert error_lines(server) == []

    # The run in hand went back to the queue, for the next server to train.
    with session_scope(open_database(server.root)) as session:
        assert [run.state for run in session.scalars(select(Run))] == ["queued", "queued"]
    server.client.close()


def test_serve_without_a_worker(tmp_path: Path) -> None:
    """`--no-worker`: the API alone; queued runs show as degraded health, nothing trains them."""
    server = ServerProcess(make_data_root(tmp_path / "data"), env=FAST, args=["--no-worker"]).start()
    try:
        submit(server, tiny_sweep())
        time.sleep(3)
        health = server.client.get("/healthz")
        assert health.status_code == 200
        assert (health.json()["status"], health.json()["live_workers"]) == ("degraded", 0)
        assert server.client.get("/workers").json()["count"] == 0
        assert server.proc is not None and children(server.proc.pid) == []
    finally:
        server.stop()
