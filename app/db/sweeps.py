"""Sweep and run services over the database: submit (with merge), claim, finish, export.

The HTTP routes, the Celery tasks and the in-process `tftsweep sweep` are thin entry
points over these functions. State changes are conditional updates, so a duplicate
message or a second worker can never record a run twice.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, func, insert, select, update
from sqlalchemy.orm import Session

from app.db.models import Run, RunState, Sweep, SweepStatus
from core.config import SweepConfig, validate_sweep_config
from core.errors import SweepExists
from core.merge import validate_merge
from core.plan import PlannedRun, expand_sweep


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """Stored times are UTC; SQLite hands them back without a zone, so put it back."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SubmitResult:
    sweep: Sweep
    new_run_ids: list[int]
    total_runs: int
    merged: bool
    resumed: bool


def stored_config(sweep: Sweep) -> SweepConfig:
    return validate_sweep_config(json.loads(sweep.config_json))


def find_sweep(session: Session, asset: str, output_subdir: str) -> Sweep | None:
    return session.scalars(select(Sweep).where(Sweep.asset == asset, Sweep.output_subdir == output_subdir)).first()


def submit_sweep(
    session: Session,
    asset: str,
    config: SweepConfig,
    *,
    merge: bool = False,
    continue_on_error: bool = False,
    resume_identical: bool = False,
    max_runs: int | None = None,
) -> SubmitResult:
    """Record a sweep and its runs (or merge into the stored one); the caller commits, then enqueues.

    `resume_identical` (the CLI's behaviour) accepts an existing sweep whose stored
    config equals `config` without `merge`, adding no runs.

    Raises:
        SweepExists: the sweep exists and neither `merge` nor an identical resume applies.
        MergeRejected: the merge breaks a rule (nothing is written).
        InvalidSweepConfig: the plan is invalid or over the cap.
    """
    existing = find_sweep(session, asset, config.output_subdir)
    now = utcnow()
    if existing is None:
        plan = expand_sweep(config, max_runs=max_runs)
        sweep = Sweep(
            asset=asset,
            output_subdir=config.output_subdir,
            config_json=json.dumps(config.to_json_dict()),
            status=SweepStatus.QUEUED,
            continue_on_error=continue_on_error,
            created_at=now,
            updated_at=now,
        )
        session.add(sweep)
        session.flush()
        ids = _insert_runs(session, sweep, plan.runs, start=0)
        return SubmitResult(sweep, ids, len(plan.runs), merged=False, resumed=False)

    old = stored_config(existing)
    if not merge:
        if resume_identical and old == config:
            total = session.scalar(select(func.count()).where(Run.sweep_id == existing.id)) or 0
            existing.continue_on_error = continue_on_error
            return SubmitResult(existing, [], total, merged=False, resumed=True)
        raise SweepExists(
            f"sweep {asset}/{config.output_subdir} exists (id {existing.id}); "
            "submit with merge_tests (--merge-tests) to add runs to it"
        )
    result = validate_merge(old, config, max_runs=max_runs)
    existing.config_json = json.dumps(result.config.to_json_dict())
    existing.continue_on_error = continue_on_error
    existing.updated_at = now
    if result.new_runs:
        existing.status = SweepStatus.QUEUED
        existing.reports_at = None  # stale until the new runs finish
    start = session.scalar(select(func.coalesce(func.max(Run.ordinal), -1)).where(Run.sweep_id == existing.id))
    ids = _insert_runs(session, existing, result.new_runs, start=int(start if start is not None else -1) + 1)
    touch_sweeps(session, [existing.id])
    return SubmitResult(existing, ids, len(result.plan.runs), merged=True, resumed=False)


def _insert_runs(session: Session, sweep: Sweep, planned: list[PlannedRun], start: int) -> list[int]:
    """Insert the planned runs in one multi-row statement; return their ids in plan order."""
    if not planned:
        return []
    now = utcnow()
    rows = [
        {
            "sweep_id": sweep.id,
            "ordinal": start + i,
            "run_key": p.run_key,
            "config_id": p.config_id,
            "param_name": p.param_name,
            "param_value_json": None if p.param_name is None else json.dumps(p.param_value),
            "fold": p.fold,
            "seed": p.seed,
            "params_json": json.dumps(p.training.model_dump(mode="json")),
            "state": RunState.QUEUED,
            "attempts": 0,
            "queued_at": now,
        }
        for i, p in enumerate(planned)
    ]
    ids = session.scalars(insert(Run).returning(Run.id, sort_by_parameter_order=True), rows).all()
    return list(ids)


def requeue_unfinished(session: Session, sweep_id: int) -> int:
    """Put every run that did not succeed back in the queue (the CLI's resume)."""
    result = session.execute(
        update(Run)
        .where(Run.sweep_id == sweep_id, Run.state != RunState.SUCCEEDED)
        .values(state=RunState.QUEUED, lease_owner=None, lease_expires_at=None, error=None, queued_at=utcnow())
    )
    touch_sweeps(session, [sweep_id])
    return int(result.rowcount)  # type: ignore[attr-defined]


def claim_run(session: Session, run_id: int, owner: str, lease_seconds: float) -> bool:
    """Take a queued run for `owner` with a lease; False if someone else has or had it."""
    now = utcnow()
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.state == RunState.QUEUED)
        .values(
            state=RunState.RUNNING,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=now,
            attempts=Run.attempts + 1,
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    _touch_run(session, run_id)
    session.execute(
        update(Sweep)
        .where(
            Sweep.id == select(Run.sweep_id).where(Run.id == run_id).scalar_subquery(),
            Sweep.status == SweepStatus.QUEUED,
        )
        .values(status=SweepStatus.RUNNING, updated_at=now)
    )
    return True


def renew_lease(session: Session, run_id: int, owner: str, lease_seconds: float) -> bool:
    """Extend the lease; False when the run is no longer ours (cancelled or re-queued)."""
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.state == RunState.RUNNING, Run.lease_owner == owner)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def finish_run(
    session: Session,
    run_id: int,
    owner: str,
    *,
    metrics: dict[str, Any] | None = None,
    model_version: str | None = None,
    error: str | None = None,
) -> bool:
    """Record a run's result once: only the lease holder of a running run may finish it."""
    values: dict[str, Any] = {
        "state": RunState.SUCCEEDED if error is None else RunState.FAILED,
        "finished_at": utcnow(),
        "lease_owner": None,
        "lease_expires_at": None,
        "error": error,
        "model_version": model_version,
    }
    for key in METRIC_COLUMNS:
        values[key] = (metrics or {}).get(key)
    result = session.execute(
        update(Run).where(Run.id == run_id, Run.state == RunState.RUNNING, Run.lease_owner == owner).values(**values)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    _touch_run(session, run_id)
    return True


def release_run(session: Session, run_id: int, owner: str) -> bool:
    """Give a running run back to the queue (interrupted before it finished)."""
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.state == RunState.RUNNING, Run.lease_owner == owner)
        .values(state=RunState.QUEUED, lease_owner=None, lease_expires_at=None, started_at=None)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    _touch_run(session, run_id)
    return True


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


_TOUCHED = "tftsweep.touched_sweeps"


def touch_sweeps(session: Session, sweep_ids: Iterable[int]) -> None:
    """Record that runs of these sweeps changed (state, results, new runs): their
    `Sweep.revision`, the key of the API's cached answers, is bumped when the session
    commits, in the same transaction. Every write to runs calls this (or `_touch_run`).

    The bump is the transaction's last statement so the sweep row is locked last and
    briefly: a transaction that locked the sweep and then waited for a run row (a failure
    cancelling the queued runs) would deadlock with a worker that claimed one of them.
    """
    session.info.setdefault(_TOUCHED, set()).update(sweep_ids)


def _touch_run(session: Session, run_id: int) -> None:
    touch_sweeps(session, [session.execute(select(Run.sweep_id).where(Run.id == run_id)).scalar_one()])


@event.listens_for(Session, "before_commit")
def _bump_revisions(session: Session) -> None:
    touched = session.info.pop(_TOUCHED, None)
    if touched:
        session.execute(
            update(Sweep).where(Sweep.id.in_(sorted(touched))).values(revision=Sweep.revision + 1),
            execution_options={"synchronize_session": False},
        )


@event.listens_for(Session, "after_rollback")
def _forget_touches(session: Session) -> None:
    session.info.pop(_TOUCHED, None)


def run_counts(session: Session, sweep_id: int) -> dict[str, int]:
    rows = session.execute(select(Run.state, func.count()).where(Run.sweep_id == sweep_id).group_by(Run.state)).all()
    counts = Counter({state: 0 for state in RunState.ALL})
    counts.update({state: int(n) for state, n in rows})
    return dict(counts)


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


def fail_sweep(session: Session, sweep: Sweep, reason: str) -> int:
    """Stop a sweep after a failure (continue_on_error=false): cancel its queued runs."""
    result = session.execute(
        update(Run)
        .where(Run.sweep_id == sweep.id, Run.state == RunState.QUEUED)
        .values(state=RunState.CANCELLED, error=reason, finished_at=utcnow())
    )
    touch_sweeps(session, [sweep.id])
    sweep.status = SweepStatus.FAILED
    sweep.updated_at = utcnow()
    return int(result.rowcount)  # type: ignore[attr-defined]


def settle_sweep_status(session: Session, sweep: Sweep) -> str:
    """Derive and store the sweep's status from its runs (unless it was cancelled or failed fast)."""
    counts = run_counts(session, sweep.id)
    active = counts[RunState.QUEUED] + counts[RunState.RUNNING]
    if sweep.status in (SweepStatus.CANCELLED, SweepStatus.FAILED) and active == 0:
        return sweep.status
    if active:
        status = SweepStatus.RUNNING if counts[RunState.RUNNING] or counts[RunState.SUCCEEDED] else SweepStatus.QUEUED
    elif counts[RunState.FAILED] or counts[RunState.CANCELLED]:
        status = SweepStatus.PARTIAL if counts[RunState.SUCCEEDED] else SweepStatus.FAILED
    else:
        status = SweepStatus.SUCCEEDED
    sweep.status = status
    sweep.updated_at = utcnow()
    return status


def mark_enqueued(session: Session, run_ids: list[int]) -> None:
    """Remember when each run's message was sent, so the reaper can tell a lost one."""
    now = utcnow()
    for chunk in _chunks(run_ids, 500):
        session.execute(update(Run).where(Run.id.in_(chunk)).values(enqueued_at=now))


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def cancel_sweep(session: Session, sweep: Sweep) -> dict[str, int]:
    """Cancel a sweep: queued and running runs become cancelled.

    A running run's worker sees the change at its next lease check and stops training
    within seconds; its result, if any, is then not recorded.
    """
    now = utcnow()
    counts = {}
    for state in (RunState.QUEUED, RunState.RUNNING):
        result = session.execute(
            update(Run)
            .where(Run.sweep_id == sweep.id, Run.state == state)
            .values(
                state=RunState.CANCELLED,
                error="cancelled by request",
                finished_at=now,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        counts[state] = int(result.rowcount)  # type: ignore[attr-defined]
    touch_sweeps(session, [sweep.id])
    sweep.status = SweepStatus.CANCELLED
    sweep.updated_at = now
    return counts


def retry_sweep(session: Session, sweep: Sweep) -> list[int]:
    """Put failed and cancelled runs back in the queue with fresh attempts; return their ids."""
    ids = list(
        session.scalars(
            select(Run.id).where(Run.sweep_id == sweep.id, Run.state.in_((RunState.FAILED, RunState.CANCELLED)))
        )
    )
    if ids:
        session.execute(
            update(Run)
            .where(Run.id.in_(ids))
            .values(
                state=RunState.QUEUED,
                attempts=0,
                error=None,
                started_at=None,
                finished_at=None,
                queued_at=utcnow(),
                enqueued_at=None,
            )
        )
        touch_sweeps(session, [sweep.id])
        sweep.status = SweepStatus.QUEUED
        sweep.reports_at = None
        sweep.updated_at = utcnow()
    return ids


@dataclass(frozen=True)
class ReapResult:
    requeued: list[int]
    failed: list[int]
    resend: list[int]
    touched_sweeps: list[int]


def reap(session: Session, max_attempts: int, requeue_after_seconds: float) -> ReapResult:
    """Recover from dead workers and lost messages; the caller commits, then enqueues `requeued + resend`.

    - A running run whose lease expired goes back to the queue, or fails once it has
      used `max_attempts` attempts.
    - A queued run whose message is older than `requeue_after_seconds` (or was never
      sent) is sent again; a duplicate message is harmless (claims are conditional).
    """
    now = utcnow()
    expired = session.execute(
        select(Run.id, Run.attempts, Run.sweep_id).where(Run.state == RunState.RUNNING, Run.lease_expires_at < now)
    ).all()
    requeued: list[int] = []
    failed: list[int] = []
    touched: set[int] = set()
    for run_id, attempts, sweep_id in expired:
        if attempts >= max_attempts:
            values: dict[str, Any] = {
                "state": RunState.FAILED,
                "finished_at": now,
                "error": f"lease expired {attempts} times (worker died or lost); gave up after {max_attempts} attempts",
            }
        else:
            values = {"state": RunState.QUEUED, "queued_at": now, "started_at": None, "enqueued_at": None}
        result = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.state == RunState.RUNNING, Run.lease_expires_at < now)
            .values(lease_owner=None, lease_expires_at=None, **values)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            (failed if values["state"] == RunState.FAILED else requeued).append(run_id)
            touched.add(sweep_id)
    cutoff = now - timedelta(seconds=requeue_after_seconds)
    # Never-sent runs get a grace period: the submitter sends right after its commit.
    unsent_cutoff = now - timedelta(seconds=min(30.0, requeue_after_seconds))
    resend = list(
        session.scalars(
            select(Run.id).where(
                Run.state == RunState.QUEUED,
                (Run.enqueued_at.is_(None) & (Run.queued_at < unsent_cutoff)) | (Run.enqueued_at < cutoff),
            )
        )
    )
    resend = [r for r in resend if r not in set(requeued)]
    touch_sweeps(session, touched)
    return ReapResult(requeued, failed, resend, sorted(touched))


def sweep_is_done(session: Session, sweep_id: int) -> bool:
    """No run of the sweep is queued or running."""
    counts = run_counts(session, sweep_id)
    return counts[RunState.QUEUED] + counts[RunState.RUNNING] == 0
