"""Service functions behind the HTTP routes: each one commits before it enqueues.

Entry points (routes, the reaper) stay thin; the database decides, the broker is told after.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Run, Sweep
from app.db.session import session_scope
from app.db.sweeps import (
    SubmitResult,
    cancel_sweep,
    fail_sweep,
    mark_enqueued,
    reap,
    retry_sweep,
    settle_sweep_status,
    submit_sweep,
    sweep_is_done,
)
from app.queue import RunQueue
from app.settings import Settings
from core.config import SweepConfig
from core.datasets import check_dataset_for_sweep

log = logging.getLogger("tftsweep.server")


@dataclass(frozen=True)
class Submitted:
    sweep_id: int
    asset: str
    output_subdir: str
    status: str
    new_runs: int
    total_runs: int
    merged: bool


def submit(
    factory: sessionmaker[Session],
    queue: RunQueue,
    settings: Settings,
    asset: str,
    config: SweepConfig,
    *,
    merge: bool,
    continue_on_error: bool,
) -> Submitted:
    """Validate against the dataset, record the sweep (or merge), commit, then enqueue the new runs.

    Raises:
        DatasetError, InvalidSweepConfig, SweepExists, MergeRejected: nothing is written.
    """
    check_dataset_for_sweep(settings.data_root, asset, config)
    with session_scope(factory) as session:
        result: SubmitResult = submit_sweep(
            session, asset, config, merge=merge, continue_on_error=continue_on_error, max_runs=settings.max_runs
        )
        submitted = Submitted(
            result.sweep.id,
            asset,
            config.output_subdir,
            result.sweep.status,
            len(result.new_run_ids),
            result.total_runs,
            result.merged,
        )
    send_runs(factory, queue, result.new_run_ids)
    return submitted


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
    with session_scope(factory) as session:
        counts = cancel_sweep(session, session.get_one(Sweep, sweep_id))
    _reports(queue, sweep_id)
    return counts


def retry(factory: sessionmaker[Session], queue: RunQueue, sweep_id: int) -> list[int]:
    with session_scope(factory) as session:
        ids = retry_sweep(session, session.get_one(Sweep, sweep_id))
    send_runs(factory, queue, ids)
    return ids


def regenerate(queue: RunQueue, sweep_id: int) -> None:
    queue.enqueue_reports(sweep_id)


def _reports(queue: RunQueue, sweep_id: int) -> None:
    try:
        queue.enqueue_reports(sweep_id)
    except Exception:
        log.exception("could not enqueue the reports of sweep %s", sweep_id)


def reap_once(factory: sessionmaker[Session], queue: RunQueue, settings: Settings) -> dict[str, list[int]]:
    """One reaper pass: expired leases, runs out of attempts, lost messages."""
    finished: list[int] = []
    with session_scope(factory) as session:
        result = reap(session, settings.max_attempts, settings.requeue_after_seconds)
        touched = set(result.touched_sweeps)
        for run_id in result.failed:
            run = session.get_one(Run, run_id)
            touched.add(run.sweep_id)
            if not run.sweep.continue_on_error:
                fail_sweep(session, run.sweep, f"cancelled: run {run_id} failed and continue_on_error is off")
        for sweep_id in sorted(touched):
            if sweep_is_done(session, sweep_id):
                settle_sweep_status(session, session.get_one(Sweep, sweep_id))
                finished.append(sweep_id)
    send_runs(factory, queue, result.requeued + result.resend)
    for sweep_id in finished:
        _reports(queue, sweep_id)
    if result.requeued or result.failed or result.resend:
        log.warning("reaper: requeued %s, failed %s, re-sent %s", result.requeued, result.failed, result.resend)
    return {"requeued": result.requeued, "failed": result.failed, "resent": result.resend}


class Reaper(threading.Thread):
    """Runs `reap_once` every `reaper_interval_seconds` until stopped."""

    def __init__(self, factory: sessionmaker[Session], queue: RunQueue, settings: Settings) -> None:
        super().__init__(name="tftsweep-reaper", daemon=True)
        self.factory = factory
        self.queue = queue
        self.settings = settings
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.settings.reaper_interval_seconds):
            try:
                reap_once(self.factory, self.queue, self.settings)
            except Exception:
                log.exception("reaper pass failed")

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)
