"""`tftsweep sweep`: a whole sweep in this process (no server), recorded in the server's database.

Runs train here (`--workers 1`) or in N spawned worker processes, through the same run
engine as the server's workers (`app.engine`): same submission and adoption, same claims
and leases, same failure rule, same published files. The database holds every run's state,
so running the same command again resumes: succeeded runs are skipped, the rest trained.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.orm import Session, sessionmaker

from app import engine
from app.db.lifecycle import release_run, requeue_unfinished, settle_sweep_status
from app.db.migrate import upgrade_database
from app.db.models import Sweep
from app.db.session import make_engine, make_session_factory, session_scope
from app.db.sweeps import is_stopped, queued_run_ids, run_counts
from app.settings import Settings, threads_per_process
from core.config import SweepConfig
from core.paths import sweep_dir
from core.runs import RunOutcome, RunSpec, Trainer
from core.store import Store, open_store
from worker.run_executor import execute_run, init_worker_process

LEASE_SECONDS = 60.0


@dataclass
class SweepOutcome:
    sweep_id: int
    sweep_dir: Path
    counts: dict[str, int]
    new_runs: int
    trained: int
    status: str
    summary: dict[str, Any] | None


def open_database(root: Path, url: str | None = None) -> sessionmaker[Session]:
    """The server's database (`url`, default SQLite under `root`), migrated to the newest schema."""
    url = url or f"sqlite:///{root / 'tftsweep.db'}"
    upgrade_database(url)
    return make_session_factory(make_engine(url))


@dataclass(frozen=True)
class LocalSetup:
    """How `tftsweep sweep` runs: its database (default SQLite under the data root), the torch
    threads and precision of the processes that train (inline: this one), the lease it holds
    on a run, and the plan cap. `from_settings` takes them from the settings."""

    database_url: str | None = None
    store_url: str | None = None
    threads: int | None = None
    precision: str | None = None
    lease_seconds: float = LEASE_SECONDS
    max_runs: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings, workers: int) -> LocalSetup:
        return cls(
            settings.db_url,
            settings.store_url,
            settings.threads_per_process(workers),
            settings.precision,
            settings.lease_seconds,
            settings.max_runs,
        )


def run_local_sweep(
    root: Path,
    asset: str,
    config: SweepConfig,
    *,
    merge: bool = False,
    continue_on_error: bool = False,
    workers: int = 1,
    trainer: Trainer = execute_run,
    setup: LocalSetup = LocalSetup(),
    progress: Progress | None = None,
    on_run_finished: Callable[[RunOutcome], None] | None = None,
) -> SweepOutcome:
    """Record (or merge, adopt, resume) the sweep, train every run that has not succeeded, and
    publish its files."""
    factory = open_database(root, setup.database_url)
    store = open_store(root, setup.store_url)
    submitted = engine.submit(
        factory,
        store,
        asset,
        config,
        merge=merge,
        continue_on_error=continue_on_error,
        resume_identical=True,
        max_runs=setup.max_runs,
    )
    sweep_id = submitted.sweep_id
    with session_scope(factory) as session:
        requeue_unfinished(session, sweep_id)
        settle_sweep_status(session, session.get_one(Sweep, sweep_id))
        pending = queued_run_ids(session, sweep_id)
        total = sum(run_counts(session, sweep_id).values())
    owner = engine.local_owner()
    progress = progress or Progress(total)
    progress.start(total - len(pending))
    runner = _Runner(factory, store, sweep_id, owner, trainer, setup.lease_seconds, progress, on_run_finished)
    try:
        threads = threads_per_process(workers, setup.threads)
        if workers <= 1:
            if setup.threads is not None or setup.precision is not None:
                init_worker_process(threads, setup.precision)
            runner.run_inline(pending)
        else:
            runner.run_pool(pending, workers, threads, setup.precision)
    finally:
        with session_scope(factory) as session:
            for run_id in runner.in_flight:
                release_run(session, run_id, owner)
            settle_sweep_status(session, session.get_one(Sweep, sweep_id))
        progress.finish()
    summary = engine.publish_sweep(factory, store, sweep_id, publisher=owner)
    with session_scope(factory) as session:
        status = session.get_one(Sweep, sweep_id).status
        counts = run_counts(session, sweep_id)
    out = sweep_dir(root, asset, config.output_subdir)
    return SweepOutcome(sweep_id, out, counts, len(submitted.new_run_ids), runner.trained, status, summary)


class _Runner:
    """Trains the pending runs through the engine; stops starting runs once the sweep stops
    (the failure rule, or a cancel from the API)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        store: Store,
        sweep_id: int,
        owner: str,
        trainer: Trainer,
        lease_seconds: float,
        progress: Progress,
        on_run_finished: Callable[[RunOutcome], None] | None,
    ) -> None:
        self.factory = factory
        self.store = store
        self.sweep_id = sweep_id
        self.owner = owner
        self.trainer = trainer
        self.lease_seconds = lease_seconds
        self.progress = progress
        self.on_run_finished = on_run_finished
        self.in_flight: set[int] = set()
        self.trained = 0
        self.stopped = False

    def _finished(self, spec: RunSpec, outcome: RunOutcome, recorded: engine.Recorded) -> None:
        self.trained += 1
        self.progress.advance(spec, outcome, recorded.state)
        if self.on_run_finished is not None:
            self.on_run_finished(outcome)
        self.stopped = recorded.sweep_stopped

    def _sweep_stopped(self) -> bool:
        with session_scope(self.factory) as session:
            return is_stopped(session.get_one(Sweep, self.sweep_id))

    def run_inline(self, pending: list[int]) -> None:
        for run_id in pending:
            if self.stopped or self._sweep_stopped():
                return
            self.in_flight.add(run_id)
            done = engine.process_run(
                self.factory, self.store, run_id, self.owner, self.trainer, lease_seconds=self.lease_seconds
            )
            self.in_flight.discard(run_id)
            if done.spec is not None and done.outcome is not None and done.recorded is not None:
                self._finished(done.spec, done.outcome, done.recorded)

    def run_pool(self, pending: list[int], workers: int, threads: int, precision: str | None) -> None:
        todo = list(pending)
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context("spawn"),
            initializer=init_worker_process,
            initargs=(threads, precision),
        ) as pool:
            running: dict[Future[RunOutcome], tuple[RunSpec, engine.LeaseKeeper]] = {}
            try:
                while todo or running:
                    while todo and len(running) < workers and not self.stopped:
                        run_id = todo.pop(0)
                        spec = engine.claim(self.factory, run_id, self.owner, self.lease_seconds, self.store.root)
                        if isinstance(spec, str):
                            continue
                        self.in_flight.add(run_id)
                        keeper = engine.LeaseKeeper(self.factory, run_id, self.owner, self.lease_seconds)
                        keeper.start()
                        problem = engine.fetch_inputs(self.store, spec)
                        future: Future[RunOutcome] = Future()
                        if problem is None:
                            future = pool.submit(self.trainer, spec)
                        else:
                            future.set_result(problem)
                        running[future] = (spec, keeper)
                    if not running:
                        break
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        spec, keeper = running.pop(future)
                        keeper.stop()
                        try:
                            outcome = engine.upload_outputs(self.store, spec, future.result())
                        except Exception as exc:  # the worker process died
                            outcome = RunOutcome(spec.run_id, error=f"worker process failed: {exc!r}")
                        recorded = engine.record(self.factory, outcome, self.owner)
                        self.in_flight.discard(spec.run_id)
                        self._finished(spec, outcome, recorded)
            except BaseException:
                for _spec, keeper in running.values():
                    keeper.stop()
                pool.shutdown(wait=False, cancel_futures=True)
                raise


class Progress:
    """Runs done/total, elapsed, ETA and the best val RMSE so far: a bar on a terminal, a line
    per run otherwise, each naming the run (config, fold, seed) and its result."""

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

    def advance(self, spec: RunSpec, outcome: RunOutcome, state: str) -> None:
        self.done += 1
        self._fresh += 1
        if outcome.error is not None:
            self.failed += 1
            self._line(f"{spec.label} failed: {outcome.error}")
        elif state == "discarded":
            self._line(f"{spec.label} discarded: cancelled while it trained")
        elif outcome.metrics is not None:
            val = float(outcome.metrics["val_rmse"])
            if self.best is None or val < self.best[0]:
                self.best = (val, spec.config_id)
            if not self.tty:
                self._line(
                    f"{spec.label} done: val_rmse={val:.6g} test_rmse={outcome.metrics['test_rmse']:.6g} "
                    f"({outcome.metrics['train_seconds']:.1f}s) | {self._status()}"
                )
                return
        self._draw()

    def _status(self) -> str:
        elapsed = time.monotonic() - self.started
        left = self.total - self.done
        eta = f"{elapsed / self._fresh * left:.0f}s" if self._fresh else "?"
        best = f"{self.best[0]:.6g} ({self.best[1]})" if self.best else "-"
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
