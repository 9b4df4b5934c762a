"""Reads of sweeps and runs: lookups, counts, run records for reports and exports.

Writes (the run state machine) live in `app.db.lifecycle`.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import Run, RunState, Sweep, SweepStatus
from core.config import SweepConfig, validate_sweep_config
from core.sweep_folder import SweepFolderConfig


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """Stored times are UTC; SQLite hands them back without a zone, so put it back."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def stored_config(sweep: Sweep) -> SweepConfig:
    return validate_sweep_config(json.loads(sweep.config_json))


def stored_dataset(sweep: Sweep) -> dict[str, Any] | None:
    """The fingerprint of the dataset the sweep trains on (None for sweeps recorded before fingerprints)."""
    return json.loads(sweep.dataset_json) if sweep.dataset_json else None


def folder_config(sweep: Sweep) -> SweepFolderConfig:
    """What the sweep's `analysis_config.json` holds."""
    return SweepFolderConfig(sweep.asset, stored_dataset(sweep), stored_config(sweep))


def find_sweep(session: Session, asset: str, output_subdir: str) -> Sweep | None:
    return session.scalars(select(Sweep).where(Sweep.asset == asset, Sweep.output_subdir == output_subdir)).first()


def run_counts(session: Session, sweep_id: int) -> dict[str, int]:
    rows = session.execute(select(Run.state, func.count()).where(Run.sweep_id == sweep_id).group_by(Run.state)).all()
    counts = Counter({state: 0 for state in RunState.ALL})
    counts.update({state: int(n) for state, n in rows})
    return dict(counts)


def sweep_is_done(session: Session, sweep_id: int) -> bool:
    """No run of the sweep is queued or running."""
    counts = run_counts(session, sweep_id)
    return counts[RunState.QUEUED] + counts[RunState.RUNNING] == 0


def is_stopped(sweep: Sweep) -> bool:
    """The sweep was cancelled or failed fast: nothing more of it should start."""
    return sweep.status in (SweepStatus.CANCELLED, SweepStatus.FAILED)


def queued_run_ids(session: Session, sweep_id: int) -> list[int]:
    return list(
        session.scalars(
            select(Run.id).where(Run.sweep_id == sweep_id, Run.state == RunState.QUEUED).order_by(Run.ordinal)
        )
    )


def run_record(run: Run) -> dict[str, Any]:
    """A run as the reports read it (the `sweep_runs` row, params as a dict)."""
    record: dict[str, Any] = {
        "run_id": run.id,
        "run_key": run.run_key,
        "config_id": run.config_id,
        "param_name": run.param_name,
        "param_value": None if run.param_value_json is None else json.loads(run.param_value_json),
        "fold": run.fold,
        "seed": run.seed,
        "status": run.state,
        "attempts": run.attempts,
    }
    for key in METRIC_COLUMNS:
        record[key] = getattr(run, key)
    record["model_version"] = run.model_version
    record["error"] = run.error
    started, finished = as_utc(run.started_at), as_utc(run.finished_at)
    record["started_at"] = started.isoformat() if started else None
    record["finished_at"] = finished.isoformat() if finished else None
    record["params"] = json.loads(run.params_json)
    return record


METRIC_COLUMNS = (
    "val_rmse",
    "test_rmse",
    "val_mae",
    "test_mae",
    "val_naive_rmse",
    "test_naive_rmse",
    "best_epoch",
    "epochs_trained",
    "train_seconds",
)

REPORT_COLUMNS = (
    Run.id,
    Run.run_key,
    Run.config_id,
    Run.param_name,
    Run.param_value_json,
    Run.fold,
    Run.seed,
    Run.state,
    Run.attempts,
    Run.val_rmse,
    Run.test_rmse,
    Run.val_mae,
    Run.test_mae,
    Run.val_naive_rmse,
    Run.test_naive_rmse,
    Run.best_epoch,
    Run.epochs_trained,
    Run.train_seconds,
    Run.model_version,
    Run.error,
)


def report_records(session: Session, sweep_id: int, fold: str | None = None) -> list[dict[str, Any]]:
    """Run records for rankings and impact: plain column rows, no ORM objects, no params."""
    query = select(*REPORT_COLUMNS).where(Run.sweep_id == sweep_id).order_by(Run.ordinal)
    if fold is not None:
        query = query.where(Run.fold == fold)
    records = []
    for row in session.execute(query):
        rec = dict(row._mapping)
        rec["run_id"] = rec.pop("id")
        rec["status"] = rec.pop("state")
        raw = rec.pop("param_value_json")
        rec["param_value"] = None if raw is None else json.loads(raw)
        records.append(rec)
    return records


def run_records(session: Session, sweep_id: int) -> list[dict[str, Any]]:
    runs = session.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.ordinal))
    return [run_record(r) for r in runs]
