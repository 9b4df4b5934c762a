"""Test doubles: fake trainers (`core.runs.Trainer`), no torch, deterministic results, and
`RecordingQueue`, a queue (`app.queue.RunQueue`) that only remembers what was sent.

`fake_train` publishes a model version the way the real trainer does (metrics, run record,
test predictions), with metrics derived from the run key, so two ways of running the same
sweep give the same numbers. It is a module-level function: process pools can pickle it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.files import publish_dir_atomic
from core.paths import version_dir
from core.runs import RunOutcome, RunSpec


def fake_metrics(spec: RunSpec) -> dict[str, Any]:
    """Metrics that depend only on the run (its key): val RMSE between 0.010 and 0.011."""
    h = int(hashlib.sha256(spec.run_key.encode()).hexdigest()[:8], 16)
    val = 0.010 + (h % 1000) / 1e6
    test = val + ((h // 1000) % 100) / 1e6
    return {
        "val_rmse": val,
        "test_rmse": test,
        "val_mae": val * 0.8,
        "test_mae": test * 0.8,
        "val_naive_rmse": 0.0105,
        "test_naive_rmse": 0.0106,
        "best_epoch": 1 + h % 3,
        "epochs_trained": 3,
        "train_seconds": 0.25,
        "test_skill": 1 - test / 0.0106,
        "test_dm_stat": -2.5 + (h % 50) / 10,
        "test_dm_pvalue": ((h // 7) % 100) / 1000,
        "n_val": 20,
        "n_test": 20,
    }


def fake_train(spec: RunSpec, stop_requested: Callable[[], bool] | None = None) -> RunOutcome:
    metrics = fake_metrics(spec)
    target = version_dir(Path(spec.sweep_dir), spec.fold.name, spec.config_id, spec.seed)
    with publish_dir_atomic(target) as tmp:
        history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e} for e in (1, 2, 3)]
        (tmp / "metrics.json").write_text(json.dumps({**metrics, "history": history}))
        run = {k: getattr(spec, k) for k in ("run_id", "run_key", "config_id", "seed", "asset")}
        (tmp / "run.json").write_text(json.dumps({**run, "fold": spec.fold.name}))
        lines = ["date,horizon,actual,predicted,naive"]
        lines += [f"2012-07-{d:02d},1,{0.001 * d:.4f},{0.0008 * d:.4f},0" for d in range(2, 12)]
        (tmp / "test_predictions.csv").write_text("\n".join(lines) + "\n")
    return RunOutcome(spec.run_id, metrics=metrics, model_version=spec.version)


class FailingTrainer:
    """Fails the runs of the named configs and trains the others with `trainer`; counts calls."""

    def __init__(self, fail: set[str], trainer: Callable[..., RunOutcome] = fake_train) -> None:
        self.fail = fail
        self.trainer = trainer
        self.calls: list[str] = []

    def __call__(self, spec: RunSpec, stop_requested: Callable[[], bool] | None = None) -> RunOutcome:
        self.calls.append(spec.config_id)
        if spec.config_id in self.fail:
            return RunOutcome(spec.run_id, error="RuntimeError: injected failure")
        return self.trainer(spec, stop_requested)


@dataclass
class RecordingQueue:
    """A queue that only remembers what was sent: tests read the ids a service enqueued."""

    runs: list[int] = field(default_factory=list)
    reports: list[int] = field(default_factory=list)
    studies: list[int] = field(default_factory=list)

    def enqueue_runs(self, run_ids: list[int]) -> None:
        self.runs.extend(run_ids)

    def enqueue_reports(self, sweep_id: int) -> None:
        self.reports.append(sweep_id)

    def enqueue_study(self, study_id: int, tasks: int) -> None:
        self.studies.extend([study_id] * tasks)

    def ping(self) -> None:
        return None
