"""Worker tasks without a broker: claims, duplicates, cancel, fail-fast, reports, the reaper."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Run, Sweep
from app.db.session import session_scope
from app.db.sweeps import claim_run, run_counts, utcnow
from app.queue import RecordingQueue
from app.services import reap_once, submit
from core.config import validate_sweep_config
from tests.utils.data import ASSET, make_data_root, tiny_sweep
from tests.utils.server import server_settings
from worker import tasks
from worker.local_sweep import open_database
from worker.run_executor import RunOutcome, RunSpec, execute_run


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    root = make_data_root(tmp_path / "data")
    settings = server_settings(root, lease_seconds=5)
    factory = open_database(root)
    return {"root": root, "settings": settings, "factory": factory, "queue": RecordingQueue()}


def submit_tiny(env: dict[str, Any], continue_on_error: bool = False, **overrides: Any) -> list[int]:
    config = validate_sweep_config(tiny_sweep(**overrides))
    submit(
        env["factory"], env["queue"], env["settings"], ASSET, config, merge=False, continue_on_error=continue_on_error
    )
    return list(env["queue"].runs)


def states(factory: sessionmaker[Session]) -> dict[str, int]:
    with session_scope(factory) as session:
        return run_counts(session, session.scalars(select(Sweep.id)).one())


def process(env: dict[str, Any], run_id: int, owner: str = "w1") -> str:
    return tasks.process_run(run_id, env["factory"], env["queue"], env["settings"], owner)


@pytest.mark.slow
def test_runs_train_once_and_reports_follow_the_last(env: dict[str, Any]) -> None:
    first, second = submit_tiny(env)
    assert process(env, first) == "succeeded"
    assert process(env, first) == "skipped (succeeded)"  # a duplicate delivery does nothing
    assert env["queue"].reports == []
    assert process(env, second) == "succeeded"
    assert env["queue"].reports == [1]
    assert states(env["factory"])["succeeded"] == 2
    summary = tasks.build_reports(1, env["factory"], env["settings"])
    assert summary["counts"]["runs_by_status"]["succeeded"] == 2
    assert (env["root"] / "models/SYN/sweeps/tiny/config_ranking.csv").is_file()


def test_a_claimed_run_is_not_trained_again(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    (first, _) = submit_tiny(env)
    with session_scope(env["factory"]) as session:
        assert claim_run(session, first, "other-worker", 60)
    calls: list[int] = []
    monkeypatch.setattr(tasks, "execute_run", lambda spec, stop_requested=None: calls.append(spec.run_id))
    assert process(env, first) == "skipped (running)"
    assert calls == []


def test_failure_without_continue_on_error_cancels_the_rest(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = submit_tiny(env, param_ranges={"hidden_size": [6, 8]})
    monkeypatch.setattr(tasks, "execute_run", lambda spec, stop_requested=None: RunOutcome(spec.run_id, error="boom"))
    assert process(env, ids[0]) == "failed"
    assert states(env["factory"]) == {"queued": 0, "running": 0, "succeeded": 0, "failed": 1, "cancelled": 2}
    assert env["queue"].reports == [1]
    assert process(env, ids[1]) == "skipped (cancelled)"
    with session_scope(env["factory"]) as session:
        assert session.get_one(Sweep, 1).status == "failed"


@pytest.mark.slow
def test_cancel_stops_a_training_run_within_seconds(env: dict[str, Any]) -> None:
    ids = submit_tiny(env)
    env["settings"] = server_settings(env["root"], lease_seconds=2)
    slow = tiny_sweep()["training_config"] | {
        "max_epochs": 200,
        "limit_train_batches": None,
        "early_stopping_patience": 200,
    }
    with session_scope(env["factory"]) as session:
        session.execute(update(Run).where(Run.id == ids[0]).values(params_json=json.dumps(slow)))
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(r=process(env, ids[0])))
    started = time.monotonic()
    thread.start()
    time.sleep(4)
    from app.services import cancel

    cancel(env["factory"], env["queue"], 1)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert result["r"] == "discarded (cancelled or lease lost)"
    assert time.monotonic() - started < 15
    assert states(env["factory"])["cancelled"] == 2


def expire(factory: sessionmaker[Session], run_id: int, attempts: int) -> None:
    with session_scope(factory) as session:
        session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(
                state="running", attempts=attempts, lease_owner="dead", lease_expires_at=utcnow() - timedelta(seconds=1)
            )
        )


def test_reaper_requeues_expired_leases_and_fails_after_max_attempts(env: dict[str, Any]) -> None:
    ids = submit_tiny(env, continue_on_error=False)
    expire(env["factory"], ids[0], attempts=1)
    expire(env["factory"], ids[1], attempts=3)
    env["queue"].runs.clear()
    result = reap_once(env["factory"], env["queue"], env["settings"])
    assert result["requeued"] == [ids[0]] and result["failed"] == [ids[1]]
    assert ids[0] in env["queue"].runs
    with session_scope(env["factory"]) as session:
        failed = session.get_one(Run, ids[1])
        assert failed.state == "failed" and "gave up after 3 attempts" in (failed.error or "")
        # continue_on_error is off: the failure cancelled the requeued run too
        assert session.get_one(Run, ids[0]).state == "cancelled"
    assert env["queue"].reports == [1]


def test_reaper_resends_lost_messages(env: dict[str, Any]) -> None:
    ids = submit_tiny(env)
    env["queue"].runs.clear()
    assert reap_once(env["factory"], env["queue"], env["settings"])["resent"] == []
    with session_scope(env["factory"]) as session:
        session.execute(update(Run).values(enqueued_at=utcnow() - timedelta(hours=1)))
    assert reap_once(env["factory"], env["queue"], env["settings"])["resent"] == ids
    assert env["queue"].runs == ids


def test_failing_executor_records_the_error(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    ids = submit_tiny(env)

    def broken(spec: RunSpec, stop_requested: Any = None) -> RunOutcome:
        spec_with_bad_root = RunSpec(**{**spec.__dict__, "data_root": str(env["root"] / "missing")})
        return execute_run(spec_with_bad_root)

    monkeypatch.setattr(tasks, "execute_run", broken)
    assert process(env, ids[0]) == "failed"
    with session_scope(env["factory"]) as session:
        assert "no dataset for asset 'SYN'" in (session.get_one(Run, ids[0]).error or "")


def test_worker_processes_use_their_share_of_threads(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool process sets torch's threads from TFTSWEEP_TORCH_THREADS before its first run
    (two processes each using every core would fight over them)."""
    import torch

    from worker import run_executor

    before = torch.get_num_threads()
    monkeypatch.setenv("TFTSWEEP_TORCH_THREADS", "1")
    monkeypatch.setattr(run_executor, "_cache", None)
    spec = RunSpec(
        run_id=1,
        run_key="k",
        asset="NONE",
        config_id="baseline",
        fold=tiny_sweep()["walk_forward"]["folds"][0],
        seed=1,
        params={},
        features=["rsi_14"],
        data_root=str(env["root"]),
        sweep_dir=str(env["root"]),
    )
    try:
        assert execute_run(spec).error is not None  # no dataset: fails fast, after the set-up
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
