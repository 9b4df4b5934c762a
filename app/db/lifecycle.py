"""The run state machine in the database: claim, lease, finish, release, cancel, retry, reap,
and the sweep status they settle.

A run is `queued -> running -> succeeded | failed | cancelled`. Every change is a
conditional update (`... WHERE state = 'queued'`), so a duplicate message or a second
worker can never record a run twice. Callers commit; `app.service` is the entry point over
these functions. A submission's rows are written by `app.db.recording`, the report build's
lock by `app.db.reports`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.db.models import Run, RunState, Sweep, SweepStatus
from app.db.revisions import touch_run, touch_sweeps
from app.db.sweeps import run_counts, utcnow
from core.runs import METRIC_COLUMNS, extra_scores


def requeue_unfinished(session: Session, sweep_id: int, *, keep_skipped: bool = False) -> int:
    """Put back in the queue every run that did not succeed and that no live worker holds
    (the CLI's resume); a run whose lease is still live stays with its worker. Runs racing
    skipped stay skipped with `keep_skipped` (the sweep still races)."""
    now = utcnow()
    kept = (RunState.SUCCEEDED, RunState.SKIPPED) if keep_skipped else (RunState.SUCCEEDED,)
    result = session.execute(
        update(Run)
        .where(
            Run.sweep_id == sweep_id,
            Run.state.not_in(kept),
            or_(Run.state != RunState.RUNNING, Run.lease_expires_at < now),
        )
        .values(
            state=RunState.QUEUED, lease_owner=None, lease_expires_at=None, error=None, skip_reason=None, queued_at=now
        )
    )
    if not keep_skipped:
        session.execute(update(Sweep).where(Sweep.id == sweep_id).values(racing_json=None))
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
    touch_run(session, run_id)
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
    cache_key: str | None = None,
    cached_from: str | None = None,
) -> bool:
    """Record a run's result once: only the lease holder of a running run may finish it."""
    values: dict[str, Any] = {
        "state": RunState.SUCCEEDED if error is None else RunState.FAILED,
        "finished_at": utcnow(),
        "lease_owner": None,
        "lease_expires_at": None,
        "error": error,
        "model_version": model_version,
        "cache_key": cache_key,
        "cached_from": cached_from if error is None else None,
    }
    for key in METRIC_COLUMNS:
        values[key] = (metrics or {}).get(key)
    values["scores_json"] = json.dumps(extra_scores(metrics)) if metrics else None
    result = session.execute(
        update(Run).where(Run.id == run_id, Run.state == RunState.RUNNING, Run.lease_owner == owner).values(**values)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    touch_run(session, run_id)
    return True


def record_scores(session: Session, scores: dict[int, tuple[str, dict[str, Any]]]) -> int:
    """Replace the extra scores (`runs.scores_json`) of succeeded runs, each only while it is
    still the model version they were computed from (`run_id -> (model_version, scores)`).
    Returns how many runs changed."""
    changed = 0
    for run_id, (version, values) in scores.items():
        result = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.state == RunState.SUCCEEDED, Run.model_version == version)
            .values(scores_json=json.dumps(values))
        )
        if result.rowcount:  # type: ignore[attr-defined]
            touch_run(session, run_id)
            changed += 1
    return changed


def release_run(session: Session, run_id: int, owner: str) -> bool:
    """Give a running run back to the queue (interrupted before it finished). Its message was
    consumed: the reaper sends a new one (to whichever worker is up by then)."""
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.state == RunState.RUNNING, Run.lease_owner == owner)
        .values(
            state=RunState.QUEUED,
            lease_owner=None,
            lease_expires_at=None,
            started_at=None,
            queued_at=utcnow(),
            enqueued_at=None,
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    touch_run(session, run_id)
    return True


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
    if status != sweep.status:
        sweep.status = status
        sweep.updated_at = utcnow()
    return status


def drop_message(session: Session, run_id: int) -> None:
    """A queued run's message was consumed without claiming it (a worker shutting down): the
    reaper sends a new one."""
    session.execute(
        update(Run).where(Run.id == run_id, Run.state == RunState.QUEUED).values(enqueued_at=None, queued_at=utcnow())
    )


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
    counts: dict[str, int] = {}
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
        sweep.updated_at = utcnow()
    return ids


@dataclass(frozen=True)
class ReapResult:
    requeued: list[int]
    failed: list[int]
    resend: list[int]
    touched_sweeps: list[int]
    unpublished: list[int]
    # Those of `resend` whose first message was never sent (the rest waited past the period).
    unsent: list[int] = field(default_factory=list)


def reap(session: Session, max_attempts: int, requeue_after_seconds: float) -> ReapResult:
    """Recover from dead workers and lost messages; the caller commits, then enqueues `requeued + resend`
    and the reports of `unpublished`.

    - A running run whose lease expired goes back to the queue, or fails once it has
      used `max_attempts` attempts.
    - A queued run whose message is older than `requeue_after_seconds` (or was never
      sent) is sent again; a duplicate message is harmless (claims are conditional).
    - A finished sweep whose reports were not built for its last change (the build's
      message was lost, or its builder died) gets a new build, and so does a sweep whose
      report request no build took within `requeue_after_seconds`.
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
    stale = session.execute(
        select(Run.id, Run.enqueued_at.is_(None)).where(
            Run.state == RunState.QUEUED,
            (Run.enqueued_at.is_(None) & (Run.queued_at < unsent_cutoff)) | (Run.enqueued_at < cutoff),
        )
    ).all()
    again = set(requeued)
    resend = [r for r, _ in stale if r not in again]
    unsent = [r for r, never in stale if never and r not in again]
    touch_sweeps(session, touched)
    unpublished = sorted(set(_unpublished_sweeps(session, now, cutoff)) | set(_unbuilt_requests(session, now, cutoff)))
    return ReapResult(requeued, failed, resend, sorted(touched), unpublished, unsent)


FINISHED_STATUSES = (SweepStatus.SUCCEEDED, SweepStatus.PARTIAL, SweepStatus.FAILED, SweepStatus.CANCELLED)


def _unpublished_sweeps(session: Session, now: datetime, cutoff: datetime) -> list[int]:
    """Finished sweeps without reports for their last change, untouched since `cutoff` and with
    no live builder; their `updated_at` moves to now so each is re-sent once per period."""
    active = select(Run.id).where(Run.sweep_id == Sweep.id, Run.state.in_((RunState.QUEUED, RunState.RUNNING)))
    ids = list(
        session.scalars(
            select(Sweep.id).where(
                Sweep.status.in_(FINISHED_STATUSES),
                Sweep.reports_at.is_(None),
                Sweep.updated_at < cutoff,
                or_(Sweep.publisher.is_(None), Sweep.publisher_until < now),
                ~active.exists(),
            )
        )
    )
    if ids:
        session.execute(update(Sweep).where(Sweep.id.in_(ids)).values(updated_at=now))
    return ids


def _unbuilt_requests(session: Session, now: datetime, cutoff: datetime) -> list[int]:
    """Sweeps whose report request (`reports_wanted_at`) is older than `cutoff` and that no
    live build holds: the request's message was lost (or its build died before it took the
    request). Their request moves to now, so each is re-sent once per period."""
    ids = list(
        session.scalars(
            select(Sweep.id).where(
                Sweep.reports_wanted_at < cutoff,
                or_(Sweep.publisher.is_(None), Sweep.publisher_until < now),
            )
        )
    )
    if ids:
        session.execute(
            update(Sweep).where(Sweep.id.in_(ids)).values(reports_wanted_at=now),
            execution_options={"synchronize_session": False},
        )
    return ids
