"""Worker tasks without a broker: claims, duplicates, cancel, fail-fast, reports, the reaper."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.lifecycle import claim_run
from app.db.models import Run, Sweep
from app.db.session import session_scope
from app.db.sweeps import run_counts, utcnow
from app.service.reaper import reap_once
from app.service.reports import build_reports
from app.service.submission import submit_sweep
from core.config import validate_sweep_config
from core.runs import RunOutcome, RunSpec, Trainer
from core.store import LocalStore
from tests.utils.data import ASSET, make_data_root, tiny_sweep
from tests.utils.fakes import FailingTrainer, RecordingQueue, fake_train
from tests.utils.server import server_settings
from worker.local_sweep import open_database
from worker.tasks import WorkerContext, handle_train_run
from worker.trainer import train_tft


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Any]:
    root = make_data_root(tmp_path / "data")
    settings = server_settings(root, lease_seconds=5)
    factory = open_database(root)
    return {"root": root, "settings": settings, "factory": factory, "queue": RecordingQueue()}


def submit_tiny(env: dict[str, Any], continue_on_error: bool = False, **overrides: Any) -> list[int]:
    config = validate_sweep_config(tiny_sweep(**overrides))
    submit_sweep(
        env["factory"], env["queue"], env["settings"], ASSET, config, merge=False, continue_on_error=continue_on_error
    )
    return list(env["queue"].runs)


def states(factory: sessionmaker[Session]) -> dict[str, int]:
    with session_scope(factory) as session:
        return run_counts(session, session.scalars(select(Sweep.id)).one())


def process(env: dict[str, Any], run_id: int, trainer: Trainer = fake_train, task: str = "t1") -> str:
    ctx = WorkerContext(0, 0, env["factory"], env["queue"], env["settings"], trainer)
    return handle_train_run(ctx, run_id, task)


@pytest.mark.slow
def test_runs_train_once_and_reports_follow_the_last(env: dict[str, Any]) -> None:
    first, second = submit_tiny(env)
    assert process(env, first, train_tft) == "succeeded"
    assert process(env, first, train_tft) == "skipped (succeeded)"  # a duplicate delivery does nothing
    assert env["queue"].reports == []
    assert process(env, second, train_tft) == "succeeded"
    assert env["queue"].reports == [1]
    assert states(env["factory"])["succeeded"] == 2
    summary = build_reports(env["factory"], LocalStore(env["root"]), 1, builder="test")
    assert summary is not None and summary["counts"]["runs_by_status"]["succeeded"] == 2
    assert (env["root"] / "models/SYN/sweeps/tiny/config_ranking.csv").is_file()


def test_a_claimed_run_is_not_trained_again(env: dict[str, Any]) -> None:
    (first, _) = submit_tiny(env)
    with session_scope(env["factory"]) as session:
        assert claim_run(session, first, "other-worker", 60)
    spy = FailingTrainer(set())
    assert process(env, first, spy) == "skipped (running)"
    assert spy.calls == []


def test_failure_without_continue_on_error_cancels_the_rest(env: dict[str, Any]) -> None:
    ids = submit_tiny(env, param_ranges={"hidden_size": [6, 8]})
    assert process(env, ids[0], FailingTrainer({"baseline"})) == "failed"
    assert states(env["factory"]) == {
        "queued": 0,
        "running": 0,
        "succeeded": 0,
        "failed": 1,
        "cancelled": 2,
        "skipped": 0,
    }
    assert env["queue"].reports == [1]
    assert process(env, ids[1]) == "skipped (cancelled)"
    with session_scope(env["factory"]) as session:
        assert session.get_one(Sweep, 1).status == "failed"
        cancelled = session.get_one(Run, ids[1])
        # One rule, one message: it names the run that failed.
        assert cancelled.error == (
            f"cancelled: run {ids[0]} (baseline, fold f1, seed 1) failed and continue_on_error is off"
        )


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
    thread = threading.Thread(target=lambda: result.update(r=process(env, ids[0], train_tft)))
    started = time.monotonic()
    thread.start()
    time.sleep(4)
    from app.service.sweeps import cancel_runs

    cancel_runs(env["factory"], env["queue"], 1)
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
        # continue_on_error is off: the failure cancelled the requeued run too, with the rule's message
        requeued = session.get_one(Run, ids[0])
        assert requeued.state == "cancelled"
        assert requeued.error == (
            f"cancelled: run {ids[1]} (hidden_size=6, fold f1, seed 1) failed and continue_on_error is off"
        )
    assert env["queue"].reports == [1]


def test_reaper_resends_lost_messages(env: dict[str, Any]) -> None:
    ids = submit_tiny(env)
    env["queue"].runs.clear()
    assert reap_once(env["factory"], env["queue"], env["settings"])["resent"] == []
    with session_scope(env["factory"]) as session:
        session.execute(update(Run).values(enqueued_at=utcnow() - timedelta(hours=1)))
    assert reap_once(env["factory"], env["queue"], env["settings"])["resent"] == ids
    assert env["queue"].runs == ids


def test_a_run_that_waits_long_is_logged_once_with_why(env: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    ids = submit_tiny(env)
    told: dict[int, float] = {}
    for _ in range(3):  # three periods: each time the messages are old again and sent again
        with session_scope(env["factory"]) as session:
            session.execute(update(Run).values(enqueued_at=utcnow() - timedelta(hours=1)))
        with caplog.at_level(logging.INFO, logger="tftsweep.server"):
            assert reap_once(env["factory"], env["queue"], env["settings"], told)["resent"] == ids
    named = [r for r in caplog.records if "queued over" in r.getMessage()]
    assert len(named) == 1 and named[0].levelno == logging.INFO
    assert str(ids) in named[0].getMessage() and "without a worker taking them" in named[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # not a fault


def test_a_run_never_sent_is_a_warning(env: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    ids = submit_tiny(env)
    with session_scope(env["factory"]) as session:
        session.execute(update(Run).values(enqueued_at=None, queued_at=utcnow() - timedelta(hours=1)))
    with caplog.at_level(logging.INFO, logger="tftsweep.server"):
        assert reap_once(env["factory"], env["queue"], env["settings"])["resent"] == ids
    assert [r.levelno for r in caplog.records if "never sent" in r.getMessage()] == [logging.WARNING]


def test_reaper_rebuilds_reports_whose_build_was_lost(env: dict[str, Any]) -> None:
    ids = submit_tiny(env)
    for run_id in ids:
        process(env, run_id)
    assert env["queue"].reports == [1]  # that message is lost: nobody builds
    assert reap_once(env["factory"], env["queue"], env["settings"])["unpublished"] == []  # too early to tell
    with session_scope(env["factory"]) as session:
        session.execute(update(Sweep).values(updated_at=utcnow() - timedelta(hours=1)))
    assert reap_once(env["factory"], env["queue"], env["settings"])["unpublished"] == [1]
    assert env["queue"].reports == [1, 1]
    assert reap_once(env["factory"], env["queue"], env["settings"])["unpublished"] == []  # once per period


def test_failing_trainer_records_the_error(env: dict[str, Any]) -> None:
    ids = submit_tiny(env)

    def broken(spec: RunSpec, stop_requested: Any = None) -> RunOutcome:
        spec_with_bad_root = RunSpec(**{**spec.__dict__, "data_root": str(env["root"] / "missing")})
        return train_tft(spec_with_bad_root)

    assert process(env, ids[0], broken) == "failed"
    with session_scope(env["factory"]) as session:
        assert "no dataset for asset 'SYN'" in (session.get_one(Run, ids[0]).error or "")


def test_a_replaced_dataset_fails_the_run(env: dict[str, Any]) -> None:
    """Runs train on the dataset their sweep recorded: a file replaced since is an error, not silent drift."""
    from tests.utils.data import make_data_root as rebuild

    ids = submit_tiny(env)
    rebuild(env["root"], seed=5)  # another dataset under the same name
    assert process(env, ids[0], train_tft) == "failed"
    with session_scope(env["factory"]) as session:
        assert "is not the one its sweep recorded" in (session.get_one(Run, ids[0]).error or "")


def test_worker_processes_use_their_share_of_threads() -> None:
    """A pool process sets torch's threads before its first run (two processes each using
    every core would fight over them)."""
    import torch

    from worker.trainer import init_worker_process

    before = torch.get_num_threads()
    try:
        init_worker_process(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
