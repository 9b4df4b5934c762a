"""The rows a submission writes: a new sweep and its planned runs, the runs a merge adds, a
sweep adopted from its folder; and the name locks that serialise submissions.

Nothing is decided here: the plan, the merge rules and the dataset checks are the service's
(`app.service.submission`), which hands over the runs to insert. Callers commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from app.db.lifecycle import settle_sweep_status
from app.db.models import Run, RunState, Sweep, SweepStatus
from app.db.revisions import touch_sweeps
from app.db.sweeps import config_json, utcnow
from core.config import SweepConfig
from core.plan import PlannedRun
from core.runs import METRIC_COLUMNS, extra_scores
from core.sweep_folder import SweepFolderConfig


def lock_sweep_name(session: Session, asset: str, output_subdir: str) -> None:
    """Serialise submissions of one sweep for the rest of the transaction: concurrent merges
    each see the runs the previous one added (never a duplicate run key, never a 500)."""
    lock_name(session, f"tftsweep.sweep:{asset}/{output_subdir}")


def lock_name(session: Session, key: str) -> None:
    """SQLite: BEGIN IMMEDIATE (it must be the transaction's first statement) takes the write
    lock, and a concurrent submission waits for it (busy timeout). PostgreSQL: a
    transaction-scoped advisory lock on the name, which also covers a row that does not
    exist yet (a row lock could not)."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def insert_sweep(
    session: Session, folder: SweepFolderConfig, features: list[str], runs: list[PlannedRun], continue_on_error: bool
) -> tuple[Sweep, list[int]]:
    """A new sweep row (queued) with its planned runs; the sweep and the runs' ids in plan order."""
    sweep = _add_sweep(session, folder, features, continue_on_error)
    return sweep, _insert_runs(session, sweep, runs, start=0)


def add_runs(
    session: Session,
    sweep: Sweep,
    config: SweepConfig,
    features: list[str],
    runs: list[PlannedRun],
    continue_on_error: bool,
) -> list[int]:
    """Store a merge: the sweep's new effective config and the runs it adds, after the runs it
    holds; their ids in plan order."""
    sweep.config_json = config_json(config, features)
    sweep.continue_on_error = continue_on_error
    sweep.updated_at = utcnow()
    if runs:
        sweep.status = SweepStatus.QUEUED
    last = session.scalar(select(func.coalesce(func.max(Run.ordinal), -1)).where(Run.sweep_id == sweep.id))
    ids = _insert_runs(session, sweep, runs, start=int(last if last is not None else -1) + 1)
    touch_sweeps(session, [sweep.id])  # the config changed: cached answers and reports are stale
    return ids


def record_dataset(sweep: Sweep, dataset: dict[str, Any]) -> None:
    """Give a sweep recorded before fingerprints the fingerprint of the dataset it trains on."""
    sweep.dataset_json = json.dumps(dataset)


def _add_sweep(session: Session, folder: SweepFolderConfig, features: list[str], continue_on_error: bool) -> Sweep:
    """A new sweep row (queued), flushed so it has its id."""
    now = utcnow()
    sweep = Sweep(
        asset=folder.asset,
        output_subdir=folder.config.output_subdir,
        config_json=config_json(folder.config, features),
        dataset_json=json.dumps(folder.dataset) if folder.dataset is not None else None,
        status=SweepStatus.QUEUED,
        continue_on_error=continue_on_error,
        created_at=now,
        updated_at=now,
    )
    session.add(sweep)
    session.flush()
    return sweep


def _insert_runs(session: Session, sweep: Sweep, planned: list[PlannedRun], start: int) -> list[int]:
    """Insert the planned runs in one multi-row statement; return their ids in plan order."""
    if not planned:
        return []
    now = utcnow()
    rows = [_run_row(sweep, start + i, p, now) for i, p in enumerate(planned)]
    ids = session.scalars(insert(Run).returning(Run.id, sort_by_parameter_order=True), rows).all()
    return list(ids)


@dataclass(frozen=True)
class AdoptedRun:
    """A planned run of an adopted folder, with what `sweep_runs.json` recorded of it (None
    when the folder never recorded it: it is queued)."""

    plan: PlannedRun
    record: dict[str, Any] | None = None


_ADOPTED_STATES = (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.SKIPPED)
# What a folder's run record gives back of the run cache and of racing.
CACHE_FIELDS = ("cache_key", "cached_from", "skip_reason")


def adopt_sweep(session: Session, folder: SweepFolderConfig, features: list[str], runs: list[AdoptedRun]) -> Sweep:
    """Record a sweep the database does not know from what its folder holds: its config, and
    each run with its state, metrics and model version (a run that was queued or running
    when the folder was written is queued again). The caller commits."""
    now = utcnow()
    sweep = _add_sweep(session, folder, features, continue_on_error=False)
    rows: list[dict[str, Any]] = []
    for ordinal, run in enumerate(runs):
        row = _run_row(sweep, ordinal, run.plan, now)
        record = run.record
        if record is not None:
            state = record.get("status") if record.get("status") in _ADOPTED_STATES else RunState.QUEUED
            done = state != RunState.QUEUED
            row |= {
                "state": state,
                "attempts": int(record.get("attempts") or 0),
                "model_version": record.get("model_version") if done else None,
                "error": record.get("error") if done else None,
                "started_at": _parse_time(record.get("started_at")) if done else None,
                "finished_at": _parse_time(record.get("finished_at")) if done else None,
                **{key: record.get(key) if done else None for key in METRIC_COLUMNS},
                "scores_json": json.dumps(extra_scores(record)) if done else None,
                # The run cache survives a lost database: the folder's records hold the keys.
                **{key: record.get(key) if done else None for key in CACHE_FIELDS},
            }
        rows.append(row)
    if rows:
        session.execute(insert(Run), rows)
    touch_sweeps(session, [sweep.id])
    settle_sweep_status(session, sweep)
    return sweep


def _run_row(sweep: Sweep, ordinal: int, plan: PlannedRun, now: datetime) -> dict[str, Any]:
    """A planned run as a row of `runs`, queued."""
    return {
        "sweep_id": sweep.id,
        "ordinal": ordinal,
        "run_key": plan.run_key,
        "config_id": plan.config_id,
        "param_name": plan.param_name,
        "param_value_json": None if plan.param_name is None else json.dumps(plan.param_value),
        "fold": plan.fold,
        "seed": plan.seed,
        "params_json": json.dumps(plan.training.model_dump(mode="json")),
        "state": RunState.QUEUED,
        "attempts": 0,
        "queued_at": now,
    }


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
