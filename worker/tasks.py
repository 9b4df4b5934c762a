"""Celery tasks: thin adapters that re-fetch state from the database and call the services.

`train_run(run_id)` trains one run at most once in effect: it claims the run with a
conditional update and a lease it renews while training; a duplicate message, a
cancelled or finished run makes it return at once. `write_reports(sweep_id)` rebuilds
a sweep's reports and plots.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass
from typing import Any

from celery.signals import worker_process_init
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Run, Study, StudyStatus, Sweep
from app.db.session import make_engine, make_session_factory, session_scope
from app.db.sweeps import (
    claim_run,
    fail_sweep,
    finish_run,
    release_run,
    renew_lease,
    run_records,
    settle_sweep_status,
    stored_config,
    sweep_is_done,
    utcnow,
)
from app.queue import RUN_STUDY, TRAIN_RUN, WRITE_REPORTS, CeleryQueue, RunQueue
from app.settings import Settings, get_settings
from core.feature_sets import resolve_features
from core.paths import sweep_dir
from worker.celery_app import celery
from worker.run_executor import RunOutcome, RunSpec, execute_run

log = logging.getLogger("tftsweep.worker")


@dataclass
class _Process:
    """Per-process state, created after fork: engines and sockets must not cross a fork."""

    pid: int
    factory: sessionmaker[Session]
    queue: RunQueue


_process: _Process | None = None

# Set when this pool process is told to terminate while it trains: training stops at the
# next batch and the run goes back to the queue (released), instead of dying half-way.
_shutdown = threading.Event()
_busy = threading.Event()


def _on_sigterm(signum: int, _frame: object) -> None:
    if not _busy.is_set():
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _shutdown.set()


@worker_process_init.connect
def _install_sigterm_handler(**_kwargs: object) -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)


def _context() -> _Process:
    global _process
    if _process is None or _process.pid != os.getpid():
        settings = get_settings()
        _process = _Process(os.getpid(), make_session_factory(make_engine(settings.db_url)), CeleryQueue(celery))
        _set_threads(settings)
    return _process


def _set_threads(settings: Settings) -> None:
    threads = int(os.environ.get("TFTSWEEP_TORCH_THREADS", "0") or 0)
    if not threads:
        threads = max(1, (os.cpu_count() or 1) // settings.worker_concurrency)
    os.environ["TFTSWEEP_TORCH_THREADS"] = str(threads)


class LeaseKeeper(threading.Thread):
    """Renews a run's lease while it trains; sets `lost` when the run is no longer ours."""

    def __init__(self, factory: sessionmaker[Session], run_id: int, owner: str, lease_seconds: float) -> None:
        super().__init__(name=f"lease-{run_id}", daemon=True)
        self.factory = factory
        self.run_id = run_id
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.interval = max(0.5, min(lease_seconds / 4, 5.0))
        self.lost = threading.Event()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                with session_scope(self.factory) as session:
                    if not renew_lease(session, self.run_id, self.owner, self.lease_seconds):
                        self.lost.set()
                        return
            except Exception:  # a transient DB error: keep training, try again next tick
                log.exception("lease renewal of run %s failed", self.run_id)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


def process_run(run_id: int, factory: sessionmaker[Session], queue: RunQueue, settings: Settings, owner: str) -> str:
    """Claim, train and record one run; returns what happened (for logs and tests)."""
    with session_scope(factory) as session:
        run = session.get(Run, run_id)
        if run is None:
            return "missing"
        if not claim_run(session, run_id, owner, settings.lease_seconds):
            return f"skipped ({run.state})"
        spec = _spec(session, run, settings)
    keeper = LeaseKeeper(factory, run_id, owner, settings.lease_seconds)
    keeper.start()
    _busy.set()
    try:
        outcome = execute_run(spec, stop_requested=lambda: keeper.lost.is_set() or _shutdown.is_set())
    finally:
        _busy.clear()
        keeper.stop()
    if _shutdown.is_set() and not keeper.lost.is_set():
        return release_for_shutdown(factory, queue, run_id, owner)
    return record_outcome(factory, queue, outcome, owner)


def release_for_shutdown(factory: sessionmaker[Session], queue: RunQueue, run_id: int, owner: str) -> str:
    """Give the run back to the queue and end this process (it was told to terminate)."""
    with session_scope(factory) as session:
        released = release_run(session, run_id, owner)
    if released:
        queue.enqueue_runs([run_id])
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGTERM)).start()
    return "released (worker shutting down)"


def _spec(session: Session, run: Run, settings: Settings) -> RunSpec:
    sweep = session.get_one(Sweep, run.sweep_id)
    config = stored_config(sweep)
    fold = next(f for f in config.folds if f.name == run.fold)
    return RunSpec(
        run_id=run.id,
        run_key=run.run_key,
        asset=sweep.asset,
        config_id=run.config_id,
        fold={"name": fold.name, **fold.window_dict()},
        seed=run.seed,
        params=json.loads(run.params_json),
        features=resolve_features(config.features),
        data_root=str(settings.data_root),
        sweep_dir=str(sweep_dir(settings.data_root, sweep.asset, sweep.output_subdir)),
    )


def record_outcome(factory: sessionmaker[Session], queue: RunQueue, outcome: RunOutcome, owner: str) -> str:
    """Record the result once; apply fail-fast; start the reports when the sweep is done."""
    with session_scope(factory) as session:
        recorded = finish_run(
            session,
            outcome.run_id,
            owner,
            metrics=outcome.metrics,
            model_version=outcome.model_version,
            error=outcome.error,
        )
        run = session.get_one(Run, outcome.run_id)
        sweep = session.get_one(Sweep, run.sweep_id)
        if recorded and outcome.error is not None and not sweep.continue_on_error:
            fail_sweep(session, sweep, f"cancelled: run {run.id} failed and continue_on_error is off")
        done = sweep_is_done(session, sweep.id)
        if done:
            settle_sweep_status(session, sweep)
        sweep_id = sweep.id
    if done:
        queue.enqueue_reports(sweep_id)
    if not recorded:
        return "discarded (cancelled or lease lost)"
    return "failed" if outcome.error else "succeeded"


def build_reports(sweep_id: int, factory: sessionmaker[Session], settings: Settings) -> dict[str, Any]:
    from core.sweep_report import write_sweep_reports

    with session_scope(factory) as session:
        sweep = session.get_one(Sweep, sweep_id)
        config = stored_config(sweep)
        records = run_records(session, sweep_id)
        out = sweep_dir(settings.data_root, sweep.asset, sweep.output_subdir)
    summary = write_sweep_reports(out, records, config)
    with session_scope(factory) as session:
        sweep = session.get_one(Sweep, sweep_id)
        sweep.reports_at = utcnow()
        settle_sweep_status(session, sweep)
    return summary


def process_study(study_id: int, factory: sessionmaker[Session], settings: Settings) -> str:
    """Run trials of a study until it holds `n_trials` finished ones; record its status."""
    from core.hpo import run_study
    from core.hpo_config import validate_hpo_config
    from core.paths import hpo_dir

    with session_scope(factory) as session:
        study = session.get(Study, study_id)
        if study is None:
            return "missing"
        config = validate_hpo_config(json.loads(study.config_json))
        asset = study.asset
        study.status = StudyStatus.RUNNING
        study.updated_at = utcnow()
    try:
        summary = run_study(settings.data_root, asset, config, hpo_dir(settings.data_root, asset, config.output_subdir))
    except Exception as exc:
        with session_scope(factory) as session:
            study = session.get_one(Study, study_id)
            study.status = StudyStatus.FAILED
            study.error = f"{type(exc).__name__}: {exc}"
            study.updated_at = utcnow()
        raise
    with session_scope(factory) as session:
        study = session.get_one(Study, study_id)
        if summary["complete"]:
            study.status = StudyStatus.SUCCEEDED
        elif summary["best"] is None and summary["n_trials"]["fail"]:
            study.status = StudyStatus.FAILED
            study.error = "every trial failed"
        study.updated_at = utcnow()
    return f"study {study_id}: {summary['n_trials']}"


@celery.task(name=TRAIN_RUN, bind=True, acks_late=True)
def train_run(self: Any, run_id: int) -> str:
    ctx = _context()
    owner = f"{socket.gethostname()}:{os.getpid()}:{self.request.id}"
    result = process_run(run_id, ctx.factory, ctx.queue, get_settings(), owner)
    log.info("run %s: %s", run_id, result)
    return result


@celery.task(name=WRITE_REPORTS, acks_late=True)
def write_reports(sweep_id: int) -> str:
    ctx = _context()
    summary = build_reports(sweep_id, ctx.factory, get_settings())
    best = summary.get("best_config") or {}
    return f"reports written (best {best.get('config_id')})"


@celery.task(name=RUN_STUDY, acks_late=True)
def run_study_task(study_id: int) -> str:
    ctx = _context()
    return process_study(study_id, ctx.factory, get_settings())


__all__ = ["LeaseKeeper", "build_reports", "process_run", "record_outcome", "train_run", "write_reports"]
