"""The in-process sweep: records, files, resume, merge, continue-on-error, interrupts.

One test trains for real; the others pass a fake trainer (the run pipeline takes it as an argument).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app.db.lifecycle import cancel_sweep
from app.db.models import Run, Sweep
from app.db.session import make_engine, make_session_factory, session_scope
from app.settings import database_url
from core.config import validate_sweep_config
from core.errors import DatasetError, MergeRejected, SweepExists
from core.runs import RunOutcome, RunSpec
from tests.utils.data import ASSET, make_data_root, tiny_fold, tiny_sweep
from tests.utils.fakes import FailingTrainer, fake_train
from worker import local_sweep
from worker.local_sweep import LocalSetup, open_database, run_local_sweep


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return make_data_root(tmp_path / "data")


def sweep(root: Path, data: dict[str, Any], **kwargs: Any) -> local_sweep.SweepOutcome:
    kwargs.setdefault("trainer", fake_train)
    return run_local_sweep(root, ASSET, validate_sweep_config(data), **kwargs)


def runs_by_state(root: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with session_scope(open_database(root)) as session:
        for run in session.scalars(select(Run).order_by(Run.ordinal)):
            out.setdefault(run.state, []).append(f"{run.config_id}/{run.fold}/{run.seed}")
    return out


@pytest.mark.slow
def test_sweep_trains_every_run_and_writes_its_files(root: Path) -> None:
    from worker.trainer import train_tft

    outcome = sweep(root, tiny_sweep(replica_seeds=[1, 2]), trainer=train_tft)
    assert outcome.status == "succeeded"
    assert outcome.counts["succeeded"] == 4 and outcome.trained == 4
    out = root / "models/SYN/sweeps/tiny"
    assert outcome.sweep_dir == out
    effective = json.loads((out / "analysis_config.json").read_text())
    assert effective["training_config"]["gradient_clip_val"] == 0.1  # defaults filled in
    frame = pd.read_csv(out / "sweep_runs.csv", dtype={"param_value": str})
    assert len(frame) == 4
    assert set(frame["status"]) == {"succeeded"}
    assert {
        "run_id",
        "run_key",
        "config_id",
        "param_name",
        "param_value",
        "val_rmse",
        "test_rmse",
        "val_mae",
        "test_mae",
        "best_epoch",
        "epochs_trained",
        "train_seconds",
        "model_version",
        "error",
        "hidden_size",
        "dropout",
        "max_encoder_length",
    } <= set(frame.columns)
    variant = frame[frame["config_id"] == "hidden_size=6"].iloc[0]
    assert (variant["param_name"], str(variant["param_value"]), variant["hidden_size"]) == ("hidden_size", "6", 6)
    assert frame[frame["config_id"] == "baseline"]["param_name"].isna().all()
    rows = json.loads((out / "sweep_runs.json").read_text())
    assert len(rows) == 4 and rows[0]["val_rmse"] == pytest.approx(frame["val_rmse"][0])
    for version in frame["model_version"]:
        assert (out / "folds/f1/models" / version / "model.ckpt").is_file()
    assert not (root.parent / "lightning_logs").exists()


def test_rerun_resumes_without_retraining(root: Path) -> None:
    sweep(root, tiny_sweep())
    spy = FailingTrainer(set())
    again = sweep(root, tiny_sweep(), trainer=spy)
    assert spy.calls == []
    assert again.status == "succeeded" and again.new_runs == 0


def test_existing_sweep_with_another_config_needs_merge(root: Path) -> None:
    sweep(root, tiny_sweep())
    with pytest.raises(SweepExists, match="merge"):
        sweep(root, tiny_sweep(param_ranges={"hidden_size": [4, 6, 8]}))


def test_merge_trains_only_the_new_runs(root: Path) -> None:
    sweep(root, tiny_sweep())
    spy = FailingTrainer(set())
    merged = sweep(
        root, tiny_sweep(param_ranges={"hidden_size": [4, 6, 8]}, replica_seeds=[1, 2]), merge=True, trainer=spy
    )
    # new: hidden_size=8 with seed 1, and every config with seed 2
    assert sorted(spy.calls) == sorted(["hidden_size=8", "baseline", "hidden_size=6", "hidden_size=8"])
    assert merged.counts["succeeded"] == 6 and merged.new_runs == 4
    stored = json.loads((merged.sweep_dir / "analysis_config.json").read_text())
    assert stored["replica_seeds"] == [1, 2]


def test_refused_merge_changes_nothing(root: Path) -> None:
    sweep(root, tiny_sweep())
    before = (root / "models/SYN/sweeps/tiny/analysis_config.json").read_text()
    with pytest.raises(MergeRejected) as info:
        sweep(root, tiny_sweep(param_ranges={"hidden_size": [6]}, replica_seeds=[2]), merge=True)
    assert {v.field for v in info.value.violations} == {"param_ranges.hidden_size", "replica_seeds"}
    assert (root / "models/SYN/sweeps/tiny/analysis_config.json").read_text() == before
    assert runs_by_state(root) == {"succeeded": ["baseline/f1/1", "hidden_size=6/f1/1"]}


def test_first_failure_stops_the_sweep(root: Path) -> None:
    data = tiny_sweep(param_ranges={"hidden_size": [6, 8]})
    outcome = sweep(root, data, trainer=FailingTrainer({"hidden_size=6"}))
    assert outcome.status == "failed"
    assert runs_by_state(root) == {
        "succeeded": ["baseline/f1/1"],
        "failed": ["hidden_size=6/f1/1"],
        "cancelled": ["hidden_size=8/f1/1"],
    }
    frame = pd.read_csv(outcome.sweep_dir / "sweep_runs.csv")
    assert frame.loc[frame["config_id"] == "hidden_size=6", "error"].item() == "RuntimeError: injected failure"


def test_continue_on_error_goes_on(root: Path) -> None:
    data = tiny_sweep(param_ranges={"hidden_size": [6, 8]})
    outcome = sweep(root, data, continue_on_error=True, trainer=FailingTrainer({"hidden_size=6"}))
    assert outcome.status == "partial"
    assert runs_by_state(root) == {
        "succeeded": ["baseline/f1/1", "hidden_size=8/f1/1"],
        "failed": ["hidden_size=6/f1/1"],
    }
    # A rerun retries only the failed run.
    spy = FailingTrainer(set())
    assert sweep(root, data, trainer=spy).status == "succeeded"
    assert spy.calls == ["hidden_size=6"]


def test_interrupt_releases_the_running_run(root: Path) -> None:
    def interrupt(outcome: RunOutcome) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(root, tiny_sweep(), on_run_finished=interrupt)
    states = runs_by_state(root)
    assert "running" not in states
    assert states == {"succeeded": ["baseline/f1/1"], "queued": ["hidden_size=6/f1/1"]}
    spy = FailingTrainer(set())
    sweep(root, tiny_sweep(), trainer=spy)
    assert spy.calls == ["hidden_size=6"]


def test_bad_data_fails_before_any_training(root: Path) -> None:
    spy = FailingTrainer(set())
    with pytest.raises(DatasetError, match="not columns"):
        sweep(root, tiny_sweep(features=["rsi_14", "no_such_column"]), trainer=spy)
    with pytest.raises(DatasetError, match="max_encoder_length=700"):
        sweep(root, tiny_sweep(param_ranges={"max_encoder_length": [10, 700]}), trainer=spy)
    assert spy.calls == []
    assert not (root / "models").exists()


@pytest.mark.slow
def test_two_local_worker_processes(root: Path) -> None:
    from worker.trainer import train_tft

    data = tiny_sweep(walk_forward={"enabled": True, "folds": [tiny_fold("f1", 2012), tiny_fold("f2", 2013)]})
    single = sweep(root, data | {"output_subdir": "one"}, trainer=train_tft)
    double = sweep(root, data | {"output_subdir": "two"}, workers=2, trainer=train_tft)
    assert double.counts["succeeded"] == 4 and double.status == "succeeded"
    a = pd.read_csv(single.sweep_dir / "sweep_runs.csv").set_index("run_key")
    b = pd.read_csv(double.sweep_dir / "sweep_runs.csv").set_index("run_key")
    # Same runs, same results whichever process trained them.
    pd.testing.assert_series_equal(a["val_rmse"].sort_index(), b["val_rmse"].sort_index())


def train_until_stopped(spec: RunSpec, stop_requested: Callable[[], bool] | None = None) -> RunOutcome:
    """A trainer that trains until it is asked to stop (as the real one does at its next
    batch), then returns the stopped run's error; a module-level function, so pools pickle it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if stop_requested is not None and stop_requested():
            return RunOutcome(spec.run_id, error="training stopped on request (run cancelled or lease lost)")
        time.sleep(0.05)
    raise AssertionError("never asked to stop")


def when_runs_are_running(root: Path, n: int, then: Callable[[], None]) -> threading.Thread:
    """In a thread: once `n` runs are running, call `then`."""

    def watch() -> None:
        factory = make_session_factory(make_engine(database_url(root)))  # the sweep migrates it
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(OperationalError), session_scope(factory) as session:
                if len(session.scalars(select(Run.id).where(Run.state == "running")).all()) >= n:
                    break
            time.sleep(0.1)
        time.sleep(0.5)  # inside the trainer by now
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_the_trainings_and_a_rerun_resumes(root: Path, workers: int) -> None:
    interrupted_at: list[float] = []

    def ctrl_c() -> None:
        interrupted_at.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs in the main thread, which trains

    watcher = when_runs_are_running(root, workers, ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        sweep(root, tiny_sweep(), workers=workers, trainer=train_until_stopped)
    watcher.join()
    assert time.monotonic() - interrupted_at[0] < 30  # stopped at the next check, not at the deadline
    assert runs_by_state(root) == {"queued": ["baseline/f1/1", "hidden_size=6/f1/1"]}  # given back, not failed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    again = sweep(root, tiny_sweep(), workers=workers)
    assert again.status == "succeeded" and again.trained == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_a_cancel_stops_the_trainings(root: Path, workers: int) -> None:
    def cancel() -> None:
        with session_scope(make_session_factory(make_engine(database_url(root)))) as session:
            cancel_sweep(session, session.scalars(select(Sweep)).one())

    watcher = when_runs_are_running(root, workers, cancel)
    started = time.monotonic()
    outcome = sweep(root, tiny_sweep(), workers=workers, trainer=train_until_stopped, setup=LocalSetup(lease_seconds=2))
    watcher.join()
    assert time.monotonic() - started < 60
    assert outcome.status == "cancelled" and outcome.trained == workers  # discarded outcomes
    assert runs_by_state(root) == {"cancelled": ["baseline/f1/1", "hidden_size=6/f1/1"]}
