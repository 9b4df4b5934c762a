"""Celery tasks: thin adapters over the service layer (`app.service`), with ids in and strings out.

Each task hands its message to a `handle_*` function with the pool process's context:
`handle_train_run` trains one run through the one pipeline (`app.service.runs.train_run`)
and, when that was the sweep's last run, queues its reports (a duplicate message, a
cancelled or finished run returns at once); `handle_write_reports` builds a sweep's files
(`app.service.reports.build_reports`), unless a later build already served the request it
was sent for; `handle_run_study` runs trials of an Optuna study
(`app.service.studies.run_study`, with `core.hpo.run_stored_study` as its runner).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from dataclasses import dataclass
from typing import Any

from celery.signals import worker_process_init, worker_shutting_down
from sqlalchemy.orm import Session, sessionmaker

from app.db.lifecycle import drop_message
from app.db.session import make_engine, make_session_factory, session_scope
from app.db.workers import lease_owner
from app.queue import RUN_STUDY, TRAIN_RUN, WRITE_REPORTS, CeleryQueue, RunQueue
from app.service.reports import build_reports
from app.service.runs import train_run
from app.service.studies import run_study
from app.settings import Settings, get_settings
from core.runs import Trainer
from worker.celery_app import celery
from worker.lifetime import die_with_parent
from worker.trainer import init_worker_process, train_tft

log = logging.getLogger("tftsweep.worker")


@dataclass
class WorkerContext:
    """A pool process's state, created after fork (engines and sockets must not cross a fork);
    tests build one with a fake trainer."""

    pid: int
    worker_pid: int  # the Celery main process whose pool this process belongs to
    factory: sessionmaker[Session]
    queue: RunQueue
    settings: Settings
    trainer: Trainer


_process: WorkerContext | None = None

# Set by the Celery main process when it begins to shut down (SIGTERM: a warm shutdown). Made
# before the pool forks, so every pool process shares it: a run in training stops at the next
# batch and goes back to the queue, and the warm shutdown ends in seconds, not after the run.
_stopping = multiprocessing.get_context("fork").Event()


@worker_shutting_down.connect
def _tell_pool_processes(**_kwargs: object) -> None:
    _stopping.set()


@worker_process_init.connect
def _init_pool_process(**_kwargs: object) -> None:
    die_with_parent()  # a pool process dies with its Celery main process: no run outlives its worker
    settings = get_settings()
    init_worker_process(settings.threads_per_process(settings.worker_concurrency), settings.precision)


def _context() -> WorkerContext:
    global _process
    if _process is None or _process.pid != os.getpid():
        settings = get_settings()
        factory = make_session_factory(make_engine(settings.db_url))
        _process = WorkerContext(os.getpid(), os.getppid(), factory, CeleryQueue(celery), settings, train_tft)
    return _process


def handle_train_run(ctx: WorkerContext, run_id: int, task_id: str) -> str:
    """Train one run; queue the sweep's reports after its last run. A worker shutting down
    gives the run in training back to the queue and starts no other; the reaper sends those
    runs again, to whichever worker is up by then."""
    if _stopping.is_set():
        with session_scope(ctx.factory) as session:
            drop_message(session, run_id)
        return "not started (worker shutting down)"
    done = train_run(
        ctx.factory,
        ctx.settings.store(),
        run_id,
        lease_owner(ctx.worker_pid, task_id),
        ctx.trainer,
        lease_seconds=ctx.settings.lease_seconds,
        interrupted=_stopping.is_set,
    )
    if done.recorded is not None and done.recorded.sweep_done:
        ctx.queue.enqueue_reports(done.recorded.sweep_id)
    label = done.spec.label if done.spec is not None else f"run {run_id}"
    log.info("%s: %s", label, done.text)
    return done.text


def handle_write_reports(ctx: WorkerContext, sweep_id: int) -> str:
    """Build the sweep's files, unless nothing asks for them any more: a message whose
    request a later build already served (coalesced regenerate requests) returns at once."""
    summary = build_reports(
        ctx.factory,
        ctx.settings.store(),
        sweep_id,
        builder=lease_owner(ctx.worker_pid, "reports"),
        when_wanted=True,
    )
    if summary is None:
        return "nothing built: the reports are current, or the build that is running builds the newest state"
    best = summary.get("best_config") or {}
    return f"reports written (best {best.get('config_id')})"


def handle_run_study(ctx: WorkerContext, study_id: int) -> str:
    """Run trials of the study with Optuna (imported here, in the worker, on first use)."""
    from core.hpo import run_stored_study

    return run_study(ctx.factory, ctx.settings, study_id, run_stored_study)


@celery.task(name=TRAIN_RUN, bind=True, acks_late=True)
def train_run_task(self: Any, run_id: int) -> str:
    return handle_train_run(_context(), run_id, str(self.request.id))


@celery.task(name=WRITE_REPORTS, acks_late=True)
def write_reports_task(sweep_id: int) -> str:
    return handle_write_reports(_context(), sweep_id)


@celery.task(name=RUN_STUDY, acks_late=True)
def run_study_task(study_id: int) -> str:
    return handle_run_study(_context(), study_id)


__all__ = [
    "WorkerContext",
    "handle_run_study",
    "handle_train_run",
    "handle_write_reports",
    "run_study_task",
    "train_run_task",
    "write_reports_task",
]
