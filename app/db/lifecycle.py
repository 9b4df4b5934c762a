"""The run state machine in the database: submit (merge, adopt), claim, lease, finish, release,
cancel, retry, reap, the name locks of submissions, and the one-at-a-time lock and pending
requests of a sweep's report build.

A run is `queued -> running -> succeeded | failed | cancelled`. Every change is a
conditional update (`... WHERE state = 'queued'`), so a duplicate message or a second
worker can never record a run twice. Callers commit; `app.engine` and `app.services` are
the entry points over these functions.

Over 500 lines: planning, merge validation and adoption still happen here beside the state
changes; they move to the planned service layer, leaving this module the conditional updates.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from app.db.models import Run, RunState, Sweep, SweepStatus
from app.db.revisions import touch_run, touch_sweeps
from app.db.sweeps import find_sweep, run_counts, stored_config, stored_dataset, utcnow
from core.config import SweepConfig
from core.errors import DatasetError, SweepExists, SweepFolderError
from core.merge import validate_merge
from core.plan import PlannedRun, expand_sweep
from core.runs import METRIC_COLUMNS, extra_scores
from core.sweep_folder import SweepFolderConfig


@dataclass(frozen=True)
class SubmitResult:
    sweep: Sweep
    new_run_ids: list[int]
    total_runs: int
    merged: bool


def submit_sweep(
    session: Session,
    asset: str,
    config: SweepConfig,
    *,
    dataset: dict[str, Any] | None = None,
    merge: bool = False,
    continue_on_error: bool = False,
    resume_identical: bool = False,
    max_runs: int | None = None,
) -> SubmitResult:
    """Record a sweep and its runs (or merge into the stored one); the caller commits, then enqueues.

    `dataset` is the fingerprint of the dataset the runs will train on; a stored sweep
    recorded with another one cannot take new runs. `resume_identical` (the CLI's
    behaviour) accepts an existing sweep whose stored config equals `config` without
    `merge`, adding no runs.

    Raises:
        SweepExists: the sweep exists and neither `merge` nor an identical resume applies.
        MergeRejected: the merge breaks a rule (nothing is written).
        InvalidSweepConfig: the plan is invalid or over the cap.
        DatasetError: the stored sweep trained on another dataset.
    """
    lock_sweep_name(session, asset, config.output_subdir)
    existing = find_sweep(session, asset, config.output_subdir)
    now = utcnow()
    if existing is None:
        plan = expand_sweep(config, max_runs=max_runs)
        sweep = _add_sweep(session, SweepFolderConfig(asset, dataset, config), continue_on_error)
        ids = _insert_runs(session, sweep, plan.runs, start=0)
        return SubmitResult(sweep, ids, len(plan.runs), merged=False)

    old = stored_config(existing)
    if not merge:
        if resume_identical and old == config:
            _check_same_dataset(existing, dataset)
            total = session.scalar(select(func.count()).where(Run.sweep_id == existing.id)) or 0
            existing.continue_on_error = continue_on_error
            return SubmitResult(existing, [], total, merged=False)
        raise SweepExists(
            f"sweep {asset}/{config.output_subdir} exists (id {existing.id}); "
            "submit with merge_tests (--merge-tests) to add runs to it"
        )
    result = validate_merge(old, config, max_runs=max_runs)
    if result.new_runs:
        _check_same_dataset(existing, dataset)
    existing.config_json = json.dumps(result.config.to_json_dict())
    existing.continue_on_error = continue_on_error
    existing.updated_at = now
    if result.new_runs:
        existing.status = SweepStatus.QUEUED
    start = session.scalar(select(func.coalesce(func.max(Run.ordinal), -1)).where(Run.sweep_id == existing.id))
    ids = _insert_runs(session, existing, result.new_runs, start=int(start if start is not None else -1) + 1)
    touch_sweeps(session, [existing.id])  # the config changed: cached answers and reports are stale
    return SubmitResult(existing, ids, len(result.plan.runs), merged=True)


def lock_sweep_name(session: Session, asset: str, output_subdir: str) -> None:
    """Serialise submissions of one sweep for the rest of the transaction: concurrent merges
    each see the runs the previous one added (never a duplicate run key, never a 500)."""
    _lock_name(session, f"tftsweep.sweep:{asset}/{output_subdir}")


def lock_study_name(session: Session, asset: str, output_subdir: str) -> None:
    """Serialise submissions of one HPO study for the rest of the transaction: of concurrent
    identical submissions one creates the study and the others continue it (never a
    unique-key violation, never a 500)."""
    _lock_name(session, f"tftsweep.study:{asset}/{output_subdir}")


def _lock_name(session: Session, key: str) -> None:
    """SQLite: BEGIN IMMEDIATE (it must be the transaction's first statement) takes the write
    lock, and a concurrent submission waits for it (busy timeout). PostgreSQL: a
    transaction-scoped advisory lock on the name, which also covers a row that does not
    exist yet (a row lock could not)."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def _add_sweep(session: Session, folder: SweepFolderConfig, continue_on_error: bool) -> Sweep:
    """A new sweep row (queued), flushed so it has its id."""
    now = utcnow()
    sweep = Sweep(
        asset=folder.asset,
        output_subdir=folder.config.output_subdir,
        config_json=json.dumps(folder.config.to_json_dict()),
        dataset_json=json.dumps(folder.dataset) if folder.dataset is not None else None,
        status=SweepStatus.QUEUED,
        continue_on_error=continue_on_error,
        created_at=now,
        updated_at=now,
    )
    session.add(sweep)
    session.flush()
    return sweep


def _check_same_dataset(sweep: Sweep, dataset: dict[str, Any] | None) -> None:
    recorded = stored_dataset(sweep)
    if dataset is None:
        return
    if recorded is None:  # recorded before fingerprints: from now on it has one
        sweep.dataset_json = json.dumps(dataset)
        return
    if recorded.get("sha256") != dataset.get("sha256"):
        raise DatasetError(
            f"the dataset {dataset.get('file')} changed since sweep {sweep.asset}/{sweep.output_subdir} was recorded "
            f"(sha256 {str(recorded.get('sha256'))[:12]}... then, {str(dataset.get('sha256'))[:12]}... now): its runs "
            "would not be comparable; restore that dataset or submit under a new output_subdir"
        )


def _insert_runs(session: Session, sweep: Sweep, planned: list[PlannedRun], start: int) -> list[int]:
    """Insert the planned runs in one multi-row statement; return their ids in plan order."""
    if not planned:
        return []
    now = utcnow()
    rows = [_run_row(sweep, start + i, p, now) for i, p in enumerate(planned)]
    ids = session.scalars(insert(Run).returning(Run.id, sort_by_parameter_order=True), rows).all()
    return list(ids)


_ADOPTED_STATES = (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


def adopt_sweep(session: Session, folder: SweepFolderConfig, records: list[dict[str, Any]]) -> Sweep:
    """Record a sweep the database does not know from what its folder holds: its config, and
    each run with its state, metrics and model version (a run that was queued or running
    when the folder was written is queued again). The caller commits.

    Raises:
        SweepFolderError: a run of `sweep_runs.json` is not one the folder's config plans.
    """
    planned = {p.run_key: p for p in expand_sweep(folder.config, max_runs=sys.maxsize).runs}  # history has no cap
    now = utcnow()
    sweep = _add_sweep(session, folder, continue_on_error=False)
    rows: list[dict[str, Any]] = []
    for record in records:
        plan = planned.pop(str(record.get("run_key")), None)
        if plan is None:
            raise SweepFolderError(
                f"sweep_runs.json lists run {record.get('run_key')} ({record.get('config_id')}, fold "
                f"{record.get('fold')}, seed {record.get('seed')}) that analysis_config.json does not plan"
            )
        state = record.get("status") if record.get("status") in _ADOPTED_STATES else RunState.QUEUED
        done = state != RunState.QUEUED
        rows.append(
            _run_row(sweep, len(rows), plan, now)
            | {
                "state": state,
                "attempts": int(record.get("attempts") or 0),
                "model_version": record.get("model_version") if done else None,
                "error": record.get("error") if done else None,
                "started_at": _parse_time(record.get("started_at")) if done else None,
                "finished_at": _parse_time(record.get("finished_at")) if done else None,
                **{key: record.get(key) if done else None for key in METRIC_COLUMNS},
                "scores_json": json.dumps(extra_scores(record)) if done else None,
            }
        )
    rows += [_run_row(sweep, len(rows) + i, plan, now) for i, plan in enumerate(planned.values())]
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


def requeue_unfinished(session: Session, sweep_id: int) -> int:
    """Put back in the queue every run that did not succeed and that no live worker holds
    (the CLI's resume); a run whose lease is still live stays with its worker."""
    now = utcnow()
    result = session.execute(
        update(Run)
        .where(
            Run.sweep_id == sweep_id,
            Run.state != RunState.SUCCEEDED,
            or_(Run.state != RunState.RUNNING, Run.lease_expires_at < now),
        )
        .values(state=RunState.QUEUED, lease_owner=None, lease_expires_at=None, error=None, queued_at=now)
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
    values["scores_json"] = json.dumps(extra_scores(metrics)) if metrics else None
    result = session.execute(
        update(Run).where(Run.id == run_id, Run.state == RunState.RUNNING, Run.lease_owner == owner).values(**values)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    touch_run(session, run_id)
    return True


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
    - A finished sweep whose reports were not published for its last change (the build's
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


# -- one report build at a time per sweep, and the requests it has not taken yet --------------
#
# `Sweep.reports_wanted_at` is the dirty flag of the sweep's reports: set by a request for a
# build (POST /regenerate), cleared by the build that takes it, in the statement that takes the
# build's lock and before the build reads the sweep. So any number of requests while no build
# has taken the flag are one build, and requests during a build cost at most one more.


def request_reports(session: Session, sweep_id: int, stale_after: float) -> bool:
    """Ask for a build of the sweep's reports. True when this request set the flag (the
    caller sends the build's message after its commit); False when an earlier request's
    build has not started yet, and this one joins it. A flag older than `stale_after`
    seconds (its message lost) is set again, and the caller sends a new message."""
    now = utcnow()
    result = session.execute(
        update(Sweep)
        .where(
            Sweep.id == sweep_id,
            or_(Sweep.reports_wanted_at.is_(None), Sweep.reports_wanted_at < now - timedelta(seconds=stale_after)),
        )
        .values(reports_wanted_at=now),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def forget_report_request(session: Session, sweep_id: int) -> None:
    """Clear the flag a request set when its message could not be sent: the next request sends again."""
    session.execute(
        update(Sweep).where(Sweep.id == sweep_id).values(reports_wanted_at=None),
        execution_options={"synchronize_session": False},
    )


def reports_wanted(session: Session, sweep_id: int) -> bool:
    """Whether a build of the sweep's reports has anything to do: a request is pending, or the
    sweep is finished and its published reports do not describe its last change. False for a
    message whose build already ran (it was coalesced into a build that started after it)."""
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        return False
    if sweep.reports_wanted_at is not None:
        return True
    active = session.scalar(
        select(func.count()).where(Run.sweep_id == sweep_id, Run.state.in_((RunState.QUEUED, RunState.RUNNING)))
    )
    return sweep.reports_at is None and not active


def acquire_publisher(session: Session, sweep_id: int, publisher: str, seconds: float) -> bool:
    """Take the sweep's report lock for `publisher`, and with it the pending request (the
    build about to read the sweep serves it); False while another live build holds it."""
    now = utcnow()
    result = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, or_(Sweep.publisher.is_(None), Sweep.publisher_until < now))
        .values(publisher=publisher, publisher_until=now + timedelta(seconds=seconds), reports_wanted_at=None),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release_publisher(session: Session, sweep_id: int, publisher: str) -> None:
    session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.publisher == publisher)
        .values(publisher=None, publisher_until=None),
        execution_options={"synchronize_session": False},
    )


def mark_published(session: Session, sweep_id: int, revision: int) -> bool:
    """Record that the reports on disk describe the sweep's final state at `revision`; False
    (nothing written) when the sweep changed since that revision was read."""
    result = session.execute(
        update(Sweep).where(Sweep.id == sweep_id, Sweep.revision == revision).values(reports_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
