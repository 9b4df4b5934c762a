"""Factories for run records (the rows reports are built from)."""

from __future__ import annotations

from typing import Any

from core.config import TrainingConfig


def record(
    config_id: str,
    fold: str,
    seed: int,
    val: float | None,
    test: float | None = None,
    *,
    status: str | None = None,
    run_id: int = 0,
    **params: Any,
) -> dict[str, Any]:
    """A run record; `val=None` makes a failed run. The param is parsed from `name=value` ids."""
    param_name, param_value = None, None
    if "=" in config_id:
        param_name, raw = config_id.split("=", 1)
        param_value = type(getattr(TrainingConfig(), param_name))(raw)
        params.setdefault(param_name, param_value)
    ok = val is not None
    if test is None and val is not None:
        test = val + 0.1
    return {
        "run_id": run_id,
        "run_key": f"{config_id}-{fold}-{seed}",
        "config_id": config_id,
        "param_name": param_name,
        "param_value": param_value,
        "fold": fold,
        "seed": seed,
        "status": status or ("succeeded" if ok else "failed"),
        "val_rmse": val,
        "test_rmse": test,
        "val_mae": val / 2 if val is not None else None,
        "test_mae": test / 2 if ok and test is not None else None,
        "val_naive_rmse": 2.2 if ok else None,
        "test_naive_rmse": 2.4 if ok else None,
        "best_epoch": 1 if ok else None,
        "epochs_trained": 2 if ok else None,
        "train_seconds": 1.5 if ok else None,
        "model_version": f"{config_id}__seed{seed}" if ok else None,
        "error": None if ok else "RuntimeError: boom",
        "attempts": 1,
        "started_at": None,
        "finished_at": None,
        "params": TrainingConfig(**{"seed": seed, **params}).model_dump(),
    }


def hand_computed_records() -> list[dict[str, Any]]:
    """The table the report tests check by hand (see tests/unit/test_reports.py)."""
    rows = [
        record("baseline", "f1", 1, 1.0),
        record("learning_rate=0.01", "f1", 1, 1.5),
        record("hidden_size=8", "f1", 1, 0.5, 0.7),
        record("cand", "f1", 1, None, hidden_size=20),
        record("baseline", "f1", 2, 2.0),
        record("learning_rate=0.01", "f1", 2, 1.5),
        record("hidden_size=8", "f1", 2, None),
        record("cand", "f1", 2, None, hidden_size=20),
        record("baseline", "f2", 1, 3.0),
        record("learning_rate=0.01", "f2", 1, 2.5),
        record("hidden_size=8", "f2", 1, None),
        record("cand", "f2", 1, None, hidden_size=20),
        record("baseline", "f2", 2, None),
        record("learning_rate=0.01", "f2", 2, 2.5),
        record("hidden_size=8", "f2", 2, None, status="queued"),
        record("cand", "f2", 2, None, hidden_size=20),
    ]
    for i, row in enumerate(rows, start=1):
        row["run_id"] = i
    rows[14]["error"] = None
    return rows
