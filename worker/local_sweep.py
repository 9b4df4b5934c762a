"""`tftsweep sweep`: a whole sweep in this process (no server), recorded in the server's database.

Runs train here (`--workers 1`) or in N spawned worker processes, each run through the
pipeline the server's workers use (`app.service.runs.train_run`, called in the process
that trains): same submission and adoption, same claims and leases, same stop at the next batch
(a cancel, a lost lease, Ctrl-C), same failure rule, same files. The database holds every run's state,
so running the same command again resumes: succeeded runs are skipped, the rest trained.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO

from sqlalchemy.orm import Session, sessionmaker

from app.db.lifecycle import release_run, requeue_unfinished, settle_sweep_status
from app.db.migrate import upgrade_database
from app.db.models import RunState, Sweep
from app.db.racing import skip_dropped
from app.db.run_cache import cached_count
from app.db.session import make_engine, make_session_factory, session_scope
from app.db.sweeps import is_stopped, queued_run_ids, run_counts, run_records, stored_config
from app.service.reports import build_reports
from app.service.runs import Trained, local_owner, record_lost_process, train_run
from app.service.submission import record_sweep
from app.settings import Settings, database_url, threads_per_process
from core.config import SweepConfig
from core.paths import sweep_dir
from core.racing import RaceDecision
from core.report_files import table_rows
from core.runs import RunOutcome, RunSpec, Trainer
from core.store import Store, open_store
from core.sweep_report import sweep_ranking
from worker.trainer import init_worker_process, train_tft

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
    # The sweep's ranking rows (as `config_ranking.csv`), built from the recorded runs.
    ranking: list[dict[str, Any]] | None = None
    # Runs of the sweep recorded from the run cache (any run, in this call or before).
    cached: int = 0


def open_database(root: Path, url: str | None = None) -> sessionmaker[Session]:
    """The server's database (`url`, default SQLite under `root`), migrated to the newest schema."""
    url = database_url(root, url)
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
    trainer: Trainer = train_tft,
    setup: LocalSetup = LocalSetup(),
    progress: Progress | None = None,
    on_run_finished: Callable[[RunOutcome], None] | None = None,
) -> SweepOutcome:
    """Record (or merge, adopt, resume) the sweep, train every run that has not succeeded, and
    build its files.

    Ctrl-C (SIGINT) stops the runs in training at their next batch and gives them back to
    the queue (a rerun resumes them), then raises KeyboardInterrupt; a second one raises at once.
    """
    factory = open_database(root, setup.database_url)
    store = open_store(root, setup.store_url)
    submitted = record_sweep(
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
        racing = stored_config(session.get_one(Sweep, sweep_id)).racing.enabled
        requeue_unfinished(session, sweep_id, keep_skipped=racing)
        skip_dropped(session, session.get_one(Sweep, sweep_id))  # a dropped variant stays dropped
        settle_sweep_status(session, session.get_one(Sweep, sweep_id))
        pending = queued_run_ids(session, sweep_id)
        total = sum(run_counts(session, sweep_id).values())
    owner = local_owner()
    progress = progress or Progress(total)
    progress.start(total - len(pending))
    # Pool processes see the stop through a semaphore of their own start method's kind.
    stop: StopEvent = get_context("spawn").Event() if workers > 1 else threading.Event()
    runner = _Runner(factory, store, sweep_id, owner, trainer, setup.lease_seconds, progress, on_run_finished, stop)
    try:
        threads = threads_per_process(workers, setup.threads)
        with _StopOnCtrlC(stop, progress):
            if workers <= 1:
                if setup.threads is not None or setup.precision is not None:
                    init_worker_process(threads, setup.precision)
                runner.run_inline(pending)
            else:
                pool = _PoolSetup(
                    root, database_url(root, setup.database_url), setup.store_url, threads, setup.precision
                )
                runner.run_pool(pending, workers, pool)
        if stop.is_set():
            raise KeyboardInterrupt
    finally:
        with session_scope(factory) as session:
            for run_id in runner.in_flight:
                release_run(session, run_id, owner)
            settle_sweep_status(session, session.get_one(Sweep, sweep_id))
        progress.finish()
    summary = build_reports(factory, store, sweep_id, builder=owner)
    with session_scope(factory) as session:
        sweep = session.get_one(Sweep, sweep_id)
        status = sweep.status
        counts = run_counts(session, sweep_id)
        cached = cached_count(session, sweep_id)
        records = run_records(session, sweep_id)
        ranking = (
            table_rows(sweep_ranking(records, stored_config(sweep), summary.get("selection"))) if summary else None
        )
    out = sweep_dir(root, asset, config.output_subdir)
    return SweepOutcome(
        sweep_id, out, counts, len(submitted.new_run_ids), runner.trained, status, summary, ranking, cached
    )


class StopEvent(Protocol):
    """A `threading.Event` or a `multiprocessing.Event`: the stop a Ctrl-C sets."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...


class _StopOnCtrlC:
    """While training: the first SIGINT sets `stop` (the trainings stop at their next batch and
    their runs go back to the queue); a second raises KeyboardInterrupt at once. Only the main
    thread can take signals: elsewhere (a test's thread) SIGINT keeps its handler."""

    def __init__(self, stop: StopEvent, progress: Progress) -> None:
        self.stop = stop
        self.progress = progress
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        self.progress.note(
            "interrupted: stopping the runs in training (they go back to the queue); Ctrl-C again to quit now"
        )

    def __enter__(self) -> _StopOnCtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)


@dataclass(frozen=True)
class _PoolSetup:
    """What a pool process needs to train runs through the pipeline on its own."""

    root: Path
    database_url: str
    store_url: str | None
    threads: int
    precision: str | None


@dataclass(frozen=True)
class _PoolProcess:
    factory: sessionmaker[Session]
    store: Store
    stop: StopEvent


_pool_process: _PoolProcess | None = None


def _init_pool_process(setup: _PoolSetup, stop: StopEvent) -> None:
    """Set up a pool process: its torch threads, its own database engine and store (neither
    crosses a process boundary), and the parent's stop."""
    global _pool_process
    # Ctrl-C at a terminal reaches the whole process group: the parent alone decides, and
    # tells every pool process through `stop`.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    init_worker_process(setup.threads, setup.precision)
    factory = make_session_factory(make_engine(setup.database_url))
    _pool_process = _PoolProcess(factory, open_store(setup.root, setup.store_url), stop)


def _train_in_pool(run_id: int, owner: str, trainer: Trainer, lease_seconds: float) -> Trained:
    """`train_run` in a pool process, as a Celery task calls it in a Celery pool process."""
    ctx = _pool_process
    assert ctx is not None, "the pool's initializer sets up every process"
    return train_run(
        ctx.factory, ctx.store, run_id, owner, trainer, lease_seconds=lease_seconds, interrupted=ctx.stop.is_set
    )


class _Runner:
    """Trains the pending runs through the one pipeline (`train_run`), here or in a pool of
    processes; stops starting runs once the sweep stops (the failure rule, or a cancel from
    the API) or `stop` is set (Ctrl-C)."""

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
        stop: StopEvent,
    ) -> None:
        self.factory = factory
        self.store = store
        self.sweep_id = sweep_id
        self.owner = owner
        self.trainer = trainer
        self.lease_seconds = lease_seconds
        self.progress = progress
        self.on_run_finished = on_run_finished
        self.stop = stop
        self.in_flight: set[int] = set()
        self.trained = 0
        self.stopped = False

    def _took(self, done: Trained) -> None:
        if done.text == f"skipped ({RunState.SKIPPED})":
            self.progress.skip()  # racing skipped it after it was listed here
            return
        if done.spec is None or done.outcome is None or done.recorded is None:
            return  # not taken, or given back to the queue
        self.trained += done.outcome.cached_from is None
        self.progress.advance(done.spec, done.outcome, done.recorded.state)
        for decision in done.recorded.raced_out:
            self.progress.raced_out(decision)
        if self.on_run_finished is not None:
            self.on_run_finished(done.outcome)
        self.stopped = done.recorded.sweep_stopped

    def _should_stop(self) -> bool:
        if self.stopped or self.stop.is_set():
            return True
        with session_scope(self.factory) as session:
            return is_stopped(session.get_one(Sweep, self.sweep_id))

    def run_inline(self, pending: list[int]) -> None:
        for run_id in pending:
            if self._should_stop():
                return
            self.in_flight.add(run_id)
            done = train_run(
                self.factory,
                self.store,
                run_id,
                self.owner,
                self.trainer,
                lease_seconds=self.lease_seconds,
                interrupted=self.stop.is_set,
            )
            self.in_flight.discard(run_id)
            self._took(done)

    def run_pool(self, pending: list[int], workers: int, setup: _PoolSetup) -> None:
        """Each pool process runs `train_run` itself (claim, lease, train, record) and
        sees `stop`; this process only hands out run ids and reports what came back."""
        todo = list(pending)
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context("spawn"),
            initializer=_init_pool_process,
            initargs=(setup, self.stop),
        ) as pool:
            running: dict[Future[Trained], int] = {}
            try:
                while todo or running:
                    while todo and len(running) < workers and not self._should_stop():
                        run_id = todo.pop(0)
                        self.in_flight.add(run_id)
                        running[pool.submit(_train_in_pool, run_id, self.owner, self.trainer, self.lease_seconds)] = (
                            run_id
                        )
                    if not running:
                        break
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        run_id = running.pop(future)
                        try:
                            done = future.result()
                        except Exception as exc:  # the pool process died under the run
                            done = record_lost_process(self.factory, run_id, self.owner, self.store.root, repr(exc))
                        self.in_flight.discard(run_id)
                        self._took(done)
            except BaseException:
                self.stop.set()  # the pool processes give their runs back at the next batch
                pool.shutdown(wait=True, cancel_futures=True)
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
        self.cached = 0
        self.skipped = 0
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
            how = (
                f"cached from {outcome.cached_from}"
                if outcome.cached_from
                else f"{outcome.metrics['train_seconds']:.1f}s"
            )
            if outcome.cached_from:
                self.cached += 1
            if not self.tty:
                self._line(
                    f"{spec.label} done: val_rmse={val:.6g} test_rmse={outcome.metrics['test_rmse']:.6g} "
                    f"({how}) | {self._status()}"
                )
                return
        self._draw()

    def raced_out(self, decision: RaceDecision) -> None:
        """A variant racing dropped: its remaining runs will be skipped."""
        self._line(f"{decision.config_id} {decision.reason()}; its remaining runs are skipped")

    def skip(self) -> None:
        """A run racing skipped: it counts as done."""
        self.done += 1
        self.skipped += 1
        self._draw()

    def _status(self) -> str:
        elapsed = time.monotonic() - self.started
        left = self.total - self.done
        eta = f"{elapsed / self._fresh * left:.0f}s" if self._fresh else "?"
        best = f"{self.best[0]:.6g} ({self.best[1]})" if self.best else "-"
        extra = "".join(f"  {name} {n}" for name, n in (("cached", self.cached), ("raced out", self.skipped)) if n)
        return (
            f"runs {self.done}/{self.total}  failed {self.failed}{extra}  "
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

    def note(self, text: str) -> None:
        """A line of its own (the bar, on a terminal, is drawn again after the next run)."""
        self._line(text)

    def _line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
