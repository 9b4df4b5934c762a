"""Service functions behind the HTTP routes: each one commits before it enqueues.

Entry points (routes, the reaper) stay thin; the database decides, the broker is told after.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app import engine
from app.db.lifecycle import (
    cancel_sweep,
    forget_report_request,
    lock_study_name,
    mark_enqueued,
    reap,
    request_reports,
    retry_sweep,
    settle_sweep_status,
)
from app.db.models import Run, Study, StudyStatus, Sweep
from app.db.session import session_scope
from app.db.sweeps import sweep_is_done, utcnow
from app.queue import RunQueue
from app.settings import Settings
from core.config import SweepConfig
from core.datasets import check_dataset_shapes
from core.errors import Conflict, StudyExists
from core.hpo_config import HpoConfig, continued_config, parallel_trials_ok, study_shapes

log = logging.getLogger("tftsweep.server")


def submit(
    factory: sessionmaker[Session],
    queue: RunQueue,
    settings: Settings,
    asset: str,
    config: SweepConfig,
    *,
    merge: bool,
    continue_on_error: bool,
    send: bool = True,
) -> engine.Submitted:
    """Record the sweep (adopting its folder first if the database does not know it), commit,
    then enqueue its new runs; a merge that added no run gets its reports rebuilt.

    With `send=False` the caller enqueues (`send_submitted`), e.g. after answering the
    request; runs whose message is never sent are sent by the reaper.

    Raises:
        DatasetError, SweepFolderError, InvalidSweepConfig, SweepExists, MergeRejected:
            nothing of the submission is written.
    """
    submitted = engine.submit(
        factory,
        settings.store(),
        asset,
        config,
        merge=merge,
        continue_on_error=continue_on_error,
        max_runs=settings.max_runs,
    )
    if send:
        send_submitted(factory, queue, submitted)
    return submitted


def send_submitted(factory: sessionmaker[Session], queue: RunQueue, submitted: engine.Submitted) -> None:
    """The messages a submission needs: its new (and adopted queued) runs, or its reports."""
    send_runs(factory, queue, submitted.adopted_run_ids + submitted.new_run_ids)
    if submitted.done:
        _reports(queue, submitted.sweep_id)


STUDY_CONTINUABLE = ("n_trials", "timeout_s")


def submit_study(
    factory: sessionmaker[Session], queue: RunQueue, settings: Settings, asset: str, config: HpoConfig
) -> tuple[Study, bool]:
    """Record an HPO study (or continue the stored one) and queue its trial tasks.

    A study with the same (asset, output_subdir) continues when only `n_trials` or
    `timeout_s` changed; anything else is refused (nothing written).

    Raises:
        DatasetError, StudyExists: nothing is written.
    """
    settings.store().fetch_dataset(asset)
    check_dataset_shapes(settings.data_root, asset, config, study_shapes(config))
    parallel = parallel_trials_ok(settings.hpo_storage_url(config.storage))
    tasks = min(config.n_trials, settings.hpo_parallel_tasks) if parallel else 1
    try:
        study_id, continued = _record_study(factory, asset, config, tasks)
    except IntegrityError as exc:  # the name lock makes this unreachable; should it not, a 409, never a 500
        raise StudyExists(
            f"study {asset}/{config.output_subdir} was created by a concurrent submission: submit again to continue it"
        ) from exc
    queue.enqueue_study(study_id, tasks)
    with session_scope(factory) as session:
        return session.get_one(Study, study_id), continued


def _record_study(factory: sessionmaker[Session], asset: str, config: HpoConfig, tasks: int) -> tuple[int, bool]:
    """Create the study row, or continue the stored one; its id, and whether it continued.

    Raises:
        StudyExists: the stored study has another config (nothing is written).
    """
    now = utcnow()
    with session_scope(factory) as session:
        # Concurrent identical submissions: one creates, the others wait here and continue it.
        lock_study_name(session, asset, config.output_subdir)
        study = session.scalars(
            select(Study).where(Study.asset == asset, Study.output_subdir == config.output_subdir)
        ).first()
        continued = study is not None
        if study is None:
            study = Study(asset=asset, output_subdir=config.output_subdir, created_at=now)
            session.add(study)
        else:
            config, changed = continued_config(json.loads(study.config_json), config, STUDY_CONTINUABLE)
            if changed:
                raise StudyExists(
                    f"study {asset}/{config.output_subdir} exists with another config (differs in {changed}); "
                    "only n_trials and timeout_s may change to continue it"
                )
        study.config_json = json.dumps(config.to_json_dict())
        study.status = StudyStatus.QUEUED
        study.tasks = tasks
        study.error = None
        study.updated_at = now
        session.flush()
        return study.id, continued


def cancel_study(factory: sessionmaker[Session], study_id: int) -> Study:
    """Mark the study cancelled: its workers start no new trial, and a running trial ends at
    its next pruning check (worker.tasks.StudyCancelCheck).

    Raises:
        Conflict: the study already finished.
    """
    with session_scope(factory) as session:
        study = session.get_one(Study, study_id)
        if study.status not in (StudyStatus.QUEUED, StudyStatus.RUNNING):
            raise Conflict(f"study {study_id} is {study.status}: there is nothing to cancel")
        study.status = StudyStatus.CANCELLED
        study.updated_at = utcnow()
        return study


def send_runs(factory: sessionmaker[Session], queue: RunQueue, run_ids: list[int]) -> None:
    """Enqueue committed runs; if the broker is down they stay queued and the reaper sends them later."""
    if not run_ids:
        return
    try:
        queue.enqueue_runs(run_ids)
    except Exception:
        log.exception("could not enqueue %d runs; the reaper will send them", len(run_ids))
        return
    with session_scope(factory) as session:
        mark_enqueued(session, run_ids)


def cancel(factory: sessionmaker[Session], queue: RunQueue, sweep_id: int) -> dict[str, int]:
    """Cancel the sweep's queued and running runs.

    Raises:
        Conflict: nothing is queued or running (a finished sweep stays as it is).
    """
    with session_scope(factory) as session:
        if sweep_is_done(session, sweep_id):
            raise Conflict(f"sweep {sweep_id} has no queued or running run: there is nothing to cancel")
        counts = cancel_sweep(session, session.get_one(Sweep, sweep_id))
    _reports(queue, sweep_id)
    return counts


def retry(factory: sessionmaker[Session], queue: RunQueue, sweep_id: int) -> list[int]:
    with session_scope(factory) as session:
        ids = retry_sweep(session, session.get_one(Sweep, sweep_id))
    send_runs(factory, queue, ids)
    return ids


def regenerate(factory: sessionmaker[Session], queue: RunQueue, settings: Settings, sweep_id: int) -> bool:
    """Ask for a build of the sweep's reports. True when this request queued the build; False
    when it joined one already asked for that has not started (requests during a build cost
    at most one more build: `app.db.lifecycle.request_reports`).

    The flag is committed before the message is sent; a message that cannot be sent clears
    it again (the next request sends) and the error propagates.
    """
    with session_scope(factory) as session:
        if not request_reports(session, sweep_id, settings.requeue_after_seconds):
            return False
    try:
        queue.enqueue_reports(sweep_id)
    except Exception:
        with session_scope(factory) as session:
            forget_report_request(session, sweep_id)
        raise
    return True


def _reports(queue: RunQueue, sweep_id: int) -> None:
    try:
        queue.enqueue_reports(sweep_id)
    except Exception:
        log.exception("could not enqueue the reports of sweep %s", sweep_id)


def reap_once(
    factory: sessionmaker[Session], queue: RunQueue, settings: Settings, told: dict[int, float] | None = None
) -> dict[str, list[int]]:
    """One reaper pass: expired leases, runs out of attempts, lost messages.

    A queued run whose message is older than `requeue_after_seconds` is sent again each period
    until a worker takes it, which is harmless (a run trains once) and, with busy workers, the
    usual case: the log names it once, with why. `told` (kept by the caller between passes)
    holds the runs already named, with when they were last sent again; a run not sent again for
    two periods (a worker took it) is forgotten."""
    finished: list[int] = []
    with session_scope(factory) as session:
        result = reap(session, settings.max_attempts, settings.requeue_after_seconds)
        touched = set(result.touched_sweeps)
        for run_id in result.failed:
            run = session.get_one(Run, run_id)
            touched.add(run.sweep_id)
            engine.stop_after_failure(session, run.sweep, run)
        for sweep_id in sorted(touched):
            if sweep_is_done(session, sweep_id):
                settle_sweep_status(session, session.get_one(Sweep, sweep_id))
                finished.append(sweep_id)
    send_runs(factory, queue, result.requeued + result.resend)
    for sweep_id in sorted(set(finished) | set(result.unpublished)):
        _reports(queue, sweep_id)
    waited = [r for r in result.resend if r not in set(result.unsent)]
    told = {} if told is None else told
    first_time = [r for r in waited if r not in told]
    now = time.monotonic()
    for run_id in [r for r, seen in told.items() if now - seen > 2 * settings.requeue_after_seconds]:
        del told[run_id]
    told.update(dict.fromkeys(waited, now))
    if first_time:
        log.info(
            "reaper: runs %s have been queued over %.0f s without a worker taking them (all busy, or the "
            "message was lost); their messages are sent again every %.0f s until one does (harmless: a run "
            "trains once; each run is named here once)",
            first_time,
            settings.requeue_after_seconds,
            settings.requeue_after_seconds,
        )
    if result.requeued or result.failed or result.unsent or result.unpublished:
        log.warning(
            "reaper: requeued %s (lease expired), failed %s (out of attempts), sent %s (never sent), "
            "reports rebuilt for sweeps %s",
            result.requeued,
            result.failed,
            result.unsent,
            result.unpublished,
        )
    return {
        "requeued": result.requeued,
        "failed": result.failed,
        "resent": result.resend,
        "unpublished": result.unpublished,
    }


class Reaper(threading.Thread):
    """Runs `reap_once` every `reaper_interval_seconds` until stopped."""

    def __init__(self, factory: sessionmaker[Session], queue: RunQueue, settings: Settings) -> None:
        super().__init__(name="tftsweep-reaper", daemon=True)
        self.factory = factory
        self.queue = queue
        self.settings = settings
        self._stop_event = threading.Event()
        self._told: dict[int, float] = {}  # queued runs whose long wait was logged

    def run(self) -> None:
        while not self._stop_event.wait(self.settings.reaper_interval_seconds):
            try:
                reap_once(self.factory, self.queue, self.settings, self._told)
            except Exception:
                log.exception("reaper pass failed")

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)
