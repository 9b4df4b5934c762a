"""`tftsweep sweep`: a whole sweep in-process (no server), recorded in the server's database.

Runs train in this process (`--workers 1`) or in N spawned worker processes. The
database holds every run's state, so running the same command again resumes: succeeded
runs are skipped, the rest are trained.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TextIO

from sqlalchemy.orm import Session, sessionmaker

from app.db.migrate import upgrade_database
from app.db.models import Run, Sweep
from app.db.session import make_engine, make_session_factory, session_scope
from app.db.sweeps import (
    claim_run,
    fail_sweep,
    finish_run,
    queued_run_ids,
    release_run,
    requeue_unfinished,
    run_counts,
    run_records,
    settle_sweep_status,
    submit_sweep,
)
from core.config import Fold, SweepConfig
from core.datasets import check_dataset_for_sweep
from core.feature_sets import resolve_features
from core.files import write_json_atomic
from core.paths import database_url, sweep_dir
from core.reports import write_sweep_runs
from core.sweep_report import write_sweep_reports
from worker.run_executor import RunOutcome, RunSpec, execute_run, init_worker_process

# A local run holds its lease for a day: nothing else competes for it while this
# process lives, and a later `tftsweep sweep` re-queues whatever it left running.
LOCAL_LEASE_SECONDS = 24 * 3600


@dataclass
class SweepOutcome:
    sweep_id: int
    sweep_dir: Path
    counts: dict[str, int]
    new_runs: int
    trained: int
    status: str


def open_database(root: Path) -> sessionmaker[Session]:
    url = database_url(root)
    upgrade_database(url)
    return make_session_factory(make_engine(url))


def run_local_sweep(
    root: Path,
    asset: str,
    config: SweepConfig,
    *,
    merge: bool = False,
    continue_on_error: bool = False,
    workers: int = 1,
    progress: Progress | None = None,
    on_run_finished: Callable[[RunOutcome], None] | None = None,
) -> SweepOutcome:
    """Record (or merge, or resume) the sweep, then train every run that has not succeeded."""
    check_dataset_for_sweep(root, asset, config)
    factory = open_database(root)
    with session_scope(factory) as session:
        submitted = submit_sweep(
            session, asset, config, merge=merge, continue_on_error=continue_on_error, resume_identical=True
        )
        sweep_id = submitted.sweep.id
        requeue_unfinished(session, sweep_id)
        effective = json.loads(submitted.sweep.config_json)
        settle_sweep_status(session, submitted.sweep)
    out = sweep_dir(root, asset, config.output_subdir)
    write_json_atomic(out / "analysis_config.json", effective)
    features = resolve_features(config.features)
    owner = f"local:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    with session_scope(factory) as session:
        pending = queued_run_ids(session, sweep_id)
        folds = {f.name: f for f in SweepConfig.model_validate(effective).folds}
        specs = [_spec(session.get_one(Run, rid), folds, asset, features, root, out) for rid in pending]
        total = sum(run_counts(session, sweep_id).values())
        done_before = total - len(pending)
    progress = progress or Progress(total)
    progress.start(done_before)
    runner = _Runner(factory, sweep_id, owner, out, continue_on_error, progress, on_run_finished)
    try:
        if workers <= 1:
            runner.run_inline(specs)
        else:
            runner.run_pool(specs, workers)
    finally:
        with session_scope(factory) as session:
            for run_id in runner.in_flight:
                release_run(session, run_id, owner)
            sweep = session.get_one(Sweep, sweep_id)
            if runner.stopped_on_failure:
                fail_sweep(session, sweep, "cancelled: an earlier run failed and continue_on_error is off")
            status = settle_sweep_status(session, sweep)
            counts = run_counts(session, sweep_id)
        runner.export()
        progress.finish()
    with session_scope(factory) as session:
        records = run_records(session, sweep_id)
    write_sweep_reports(out, records, SweepConfig.model_validate(effective))
    return SweepOutcome(sweep_id, out, counts, len(submitted.new_run_ids), runner.trained, status)


def _spec(run: Run, folds: dict[str, Fold], asset: str, features: list[str], root: Path, out: Path) -> RunSpec:
    fold = folds[run.fold]
    return RunSpec(
        run_id=run.id,
        run_key=run.run_key,
        asset=asset,
        config_id=run.config_id,
        fold={"name": fold.name, **fold.window_dict()},
        seed=run.seed,
        params=json.loads(run.params_json),
        features=features,
        data_root=str(root),
        sweep_dir=str(out),
    )


class _Runner:
    """Claims, dispatches and records runs; stops after the first failure unless told not to."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        sweep_id: int,
        owner: str,
        out: Path,
        continue_on_error: bool,
        progress: Progress,
        on_run_finished: Callable[[RunOutcome], None] | None,
    ) -> None:
        self.factory = factory
        self.sweep_id = sweep_id
        self.owner = owner
        self.out = out
        self.continue_on_error = continue_on_error
        self.progress = progress
        self.on_run_finished = on_run_finished
        self.in_flight: set[int] = set()
        self.trained = 0
        self.stopped_on_failure = False

    def _claim(self, spec: RunSpec) -> bool:
        with session_scope(self.factory) as session:
            ok = claim_run(session, spec.run_id, self.owner, LOCAL_LEASE_SECONDS)
        if ok:
            self.in_flight.add(spec.run_id)
        return ok

    def _record(self, outcome: RunOutcome) -> None:
        with session_scope(self.factory) as session:
            finish_run(
                session,
                outcome.run_id,
                self.owner,
                metrics=outcome.metrics,
                model_version=outcome.model_version,
                error=outcome.error,
            )
        self.in_flight.discard(outcome.run_id)
        self.trained += 1
        self.export()
        self.progress.advance(outcome)
        if self.on_run_finished is not None:
            self.on_run_finished(outcome)
        if outcome.error is not None and not self.continue_on_error:
            self.stopped_on_failure = True

    def export(self) -> None:
        with session_scope(self.factory) as session:
            records = run_records(session, self.sweep_id)
        write_sweep_runs(self.out, records)

    def run_inline(self, specs: list[RunSpec]) -> None:
        for spec in specs:
            if self.stopped_on_failure:
                return
            if self._claim(spec):
                self._record(execute_run(spec))

    def run_pool(self, specs: list[RunSpec], workers: int) -> None:
        threads = max(1, (os.cpu_count() or 1) // workers)
        todo = list(specs)
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("spawn"), initializer=init_worker_process, initargs=(threads,)
        ) as pool:
            running: dict[Future[RunOutcome], RunSpec] = {}
            try:
                while todo or running:
                    while todo and len(running) < workers and not self.stopped_on_failure:
                        spec = todo.pop(0)
                        if self._claim(spec):
                            running[pool.submit(execute_run, spec)] = spec
                    if not running:
                        break
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        spec = running.pop(future)
                        try:
                            outcome = future.result()
                        except Exception as exc:  # the worker process died
                            outcome = RunOutcome(spec.run_id, error=f"worker process failed: {exc!r}")
                        self._record(outcome)
                    if self.stopped_on_failure:
                        todo.clear()
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise


class Progress:
    """Runs done/total, elapsed, ETA and the best val RMSE so far: a bar on a terminal, log lines otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done = 0
        self.failed = 0
        self.best: tuple[float, str] | None = None
        self.started = time.monotonic()
        self._fresh = 0

    def start(self, done_before: int) -> None:
        self.done = done_before
        self.started = time.monotonic()
        self._fresh = 0
        if done_before:
            self._line(f"resuming: {done_before}/{self.total} runs already finished")
        self._draw()

    def advance(self, outcome: RunOutcome) -> None:
        self.done += 1
        self._fresh += 1
        if outcome.error is not None:
            self.failed += 1
            self._line(f"run {outcome.run_id} failed: {outcome.error}")
        elif outcome.metrics is not None:
            val = float(outcome.metrics["val_rmse"])
            if self.best is None or val < self.best[0]:
                self.best = (val, f"run {outcome.run_id}")
            if not self.tty:
                self._line(
                    f"run {outcome.run_id} done: val_rmse={val:.6g} test_rmse={outcome.metrics['test_rmse']:.6g} "
                    f"({outcome.metrics['train_seconds']:.1f}s) | {self._status()}"
                )
                return
        self._draw()

    def _status(self) -> str:
        elapsed = time.monotonic() - self.started
        left = self.total - self.done
        eta = f"{elapsed / self._fresh * left:.0f}s" if self._fresh else "?"
        best = f"{self.best[0]:.6g}" if self.best else "-"
        return (
            f"runs {self.done}/{self.total}  failed {self.failed}  "
            f"elapsed {elapsed:.0f}s  eta {eta}  best val_rmse {best}"
        )

    def _draw(self) -> None:
        if self.tty:
            width = 24
            filled = int(width * self.done / self.total) if self.total else width
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self._status()}\x1b[K")
            self.stream.flush()
        else:
            self._line(self._status())

    def _line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
