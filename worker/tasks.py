"""Celery tasks: thin adapters over the run engine (`app.engine`), with ids in and strings out.

`train_run(run_id)` claims, trains and records one run (`app.engine.train_run`, the pipeline
every way of training a run goes through) and, when that was the sweep's last run, queues
its reports; a duplicate message, a cancelled or finished run makes it return at once.
`write_reports(sweep_id)` publishes a sweep's files (`app.engine.publish_sweep`), unless a
later build already served the request it was sent for. `run_study(study_id)` runs trials
of an Optuna study.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass
from typing import Any

from celery.signals import worker_process_init, worker_shutting_down
from sqlalchemy.orm import Session, sessionmaker

from app import engine
from app.db.lifecycle import drop_message
from app.db.models import Study, StudyStatus
from app.db.session import make_engine, make_session_factory, session_scope
from app.db.sweeps import utcnow
from app.db.workers import lease_owner
from app.queue import RUN_STUDY, TRAIN_RUN, WRITE_REPORTS, CeleryQueue, RunQueue
from app.settings import Settings, get_settings
from core.runs import Trainer
from worker.celery_app import celery
from worker.run_executor import execute_run, init_worker_process
from worker.serve import die_with_parent

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
        _process = WorkerContext(os.getpid(), os.getppid(), factory, CeleryQueue(celery), settings, execute_run)
    return _process


def train_one(ctx: WorkerContext, run_id: int, task_id: str) -> str:
    """Claim, train and record one run; queue the sweep's reports after its last run. A worker
    shutting down gives the run in training back to the queue and starts no other; the
    reaper sends those runs again, to whichever worker is up by then."""
    if _stopping.is_set():
        with session_scope(ctx.factory) as session:
            drop_message(session, run_id)
        return "not started (worker shutting down)"
    done = engine.train_run(
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


def process_study(study_id: int, factory: sessionmaker[Session], settings: Settings) -> str:
    """Run trials of a study until it holds `n_trials` finished ones (or it is cancelled);
    record its status."""
    from core.hpo import run_stored_study
    from core.hpo_config import stored_hpo_config
    from core.paths import hpo_dir

    with session_scope(factory) as session:
        study = session.get(Study, study_id)
        if study is None:
            return "missing"
        if study.status == StudyStatus.CANCELLED:
            return "cancelled"
        config = stored_hpo_config(json.loads(study.config_json))
        asset = study.asset
        study.status = StudyStatus.RUNNING
        study.updated_at = utcnow()
    cancelled = StudyCancelCheck(factory, study_id)
    try:
        summary = run_stored_study(
            settings.store(),
            asset,
            config,
            hpo_dir(settings.data_root, asset, config.output_subdir),
            storage_url=settings.hpo_storage_url(config.storage),
            cancelled=cancelled,
        )
    except Exception as exc:
        with session_scope(factory) as session:
            study = session.get_one(Study, study_id)
            study.status = StudyStatus.FAILED
            study.error = f"{type(exc).__name__}: {exc}"
            study.updated_at = utcnow()
        raise
    with session_scope(factory) as session:
        study = session.get_one(Study, study_id)
        if study.status == StudyStatus.CANCELLED:
            pass  # it stays cancelled, whatever its trials reached
        elif summary["complete"]:
            study.status = StudyStatus.SUCCEEDED
        elif summary["best"] is None and summary["n_trials"]["fail"]:
            study.status = StudyStatus.FAILED
            study.error = "every trial failed"
        study.updated_at = utcnow()
    return f"study {study_id}: {summary['n_trials']}"


class StudyCancelCheck:
    """Whether the study was cancelled, read from the database at most every `every` seconds
    (it is asked at every pruning check)."""

    def __init__(self, factory: sessionmaker[Session], study_id: int, every: float = 2.0) -> None:
        self.factory = factory
        self.study_id = study_id
        self.every = every
        self._checked = -every
        self._cancelled = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._checked >= self.every:
            self._checked = now
            with session_scope(self.factory) as session:
                self._cancelled = session.get_one(Study, self.study_id).status == StudyStatus.CANCELLED
        return self._cancelled


@celery.task(name=TRAIN_RUN, bind=True, acks_late=True)
def train_run(self: Any, run_id: int) -> str:
    return train_one(_context(), run_id, str(self.request.id))


def build_reports(ctx: WorkerContext, sweep_id: int) -> str:
    """Publish the sweep's files, unless nothing asks for them any more: a message whose
    request a later build already served (coalesced regenerate requests) returns at once."""
    summary = engine.publish_sweep(
        ctx.factory,
        ctx.settings.store(),
        sweep_id,
        publisher=lease_owner(ctx.worker_pid, "reports"),
        when_wanted=True,
    )
    if summary is None:
        return "nothing built: the reports are current, or the build that is running publishes the newest state"
    best = summary.get("best_config") or {}
    return f"reports written (best {best.get('config_id')})"


@celery.task(name=WRITE_REPORTS, acks_late=True)
def write_reports(sweep_id: int) -> str:
    return build_reports(_context(), sweep_id)


@celery.task(name=RUN_STUDY, acks_late=True)
def run_study_task(study_id: int) -> str:
    ctx = _context()
    return process_study(study_id, ctx.factory, ctx.settings)


__all__ = [
    "WorkerContext",
    "build_reports",
    "process_study",
    "run_study_task",
    "train_one",
    "train_run",
    "write_reports",
]
