"""Celery worker processes: `tftsweep worker` (one per GPU) and the embedded worker that
`tftsweep serve` keeps alive (`WorkerSupervisor`, handed to `app.serve.serve`).

Whoever starts a worker ends it: each Celery worker runs in its own process group, stopped
with SIGTERM (its run in hand goes back to the queue at the next batch) and then SIGKILL
after a grace period, the whole group at once. A worker dies with the process that started
it (PR_SET_PDEATHSIG), and its pool processes die with it, so none outlives `serve`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.queue import CPU_QUEUE, GPU_QUEUE
from app.settings import Settings, get_settings
from worker.lifetime import die_with_parent

log = logging.getLogger("tftsweep.serve")

WORKER_STOP_SECONDS = 20.0


def celery_worker_argv(concurrency: int, queues: Sequence[str], name: str, loglevel: str) -> list[str]:
    """The Celery worker command line: prefork, one task at a time per process (prefetch 1)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "--quiet",
        "-A",
        "worker.celery_app",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "--queues",
        ",".join(queues),
        "--hostname",
        name,
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
        "--prefetch-multiplier",
        "1",
    ]


def start_worker(
    concurrency: int, queues: Sequence[str], gpu: str | None, loglevel: str, processes: int = 1
) -> subprocess.Popen[bytes]:
    """One Celery worker process (on GPU `gpu` via `CUDA_VISIBLE_DEVICES`, or the CPU) in a
    process group of its own, killed if the thread that started it ends; one of `processes`
    started side by side, which share the machine's cores."""
    host = socket.gethostname()
    env = dict(os.environ)
    env["TFTSWEEP_WORKER_CONCURRENCY"] = str(concurrency)
    env["TFTSWEEP_WORKER_PROCESSES"] = str(processes)
    # Unique per launcher: two `tftsweep worker` on one host are two Celery nodes.
    name = f"tftsweep-cpu.{os.getpid()}@{host}"
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
        name = f"tftsweep-gpu{gpu}.{os.getpid()}@{host}"
    return subprocess.Popen(
        celery_worker_argv(concurrency, queues, name, loglevel),
        env=env,
        preexec_fn=die_with_parent,
        start_new_session=True,
    )


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = WORKER_STOP_SECONDS) -> None:
    """SIGTERM to the worker's main process: a warm shutdown, in which its pool processes give
    their runs in training back to the queue at the next batch (worker.tasks); then SIGKILL to
    the whole group after `timeout`. The reaper re-queues whatever a kill cut."""
    stop_workers([proc], timeout)


def stop_workers(procs: list[subprocess.Popen[bytes]], timeout: float = WORKER_STOP_SECONDS) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        _signal_group(proc, signal.SIGCONT)  # a stopped (hung) worker handles SIGTERM only once resumed
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker %s did not stop within %.0f s: killing it", proc.pid, timeout)
        _signal_group(proc, signal.SIGKILL)  # pool processes left behind, if any
        proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class WorkerSupervisor(threading.Thread):
    """Keeps `serve`'s embedded worker alive: a worker that exits, or whose heartbeat goes
    stale, is stopped and started again with a growing delay; after `worker_max_restarts`
    restarts within `worker_restart_window_seconds` it gives up and calls `on_give_up` (serve
    exits non-zero rather than serve a queue that nobody drains).

    Every worker is started from this thread, which lives until `stop()`: the workers'
    PR_SET_PDEATHSIG is tied to it.
    """

    def __init__(
        self,
        settings: Settings,
        concurrency: int,
        loglevel: str,
        on_give_up: Callable[[str], None],
    ) -> None:
        super().__init__(name="tftsweep-supervisor", daemon=True)
        self.settings = settings
        self.concurrency = concurrency
        self.loglevel = loglevel
        self.on_give_up = on_give_up
        self.max_restarts = settings.worker_max_restarts
        self.window = settings.worker_restart_window_seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restarts: deque[float] = deque()
        self._stop_event = threading.Event()
        self._ready = threading.Event()
        self._factory: sessionmaker[Session] | None = None

    def _spawn(self) -> None:
        self.proc = start_worker(self.concurrency, [GPU_QUEUE, CPU_QUEUE], None, self.loglevel)
        self.started_at = time.monotonic()
        log.info("embedded worker started (pid %s)", self.proc.pid)

    def run(self) -> None:
        from app.db.session import make_engine, make_session_factory

        engine = make_engine(self.settings.db_url, pooled=False)
        self._factory = make_session_factory(engine)
        self._spawn()
        self._ready.set()
        delay = 1.0
        try:
            while not self._stop_event.wait(1.0):
                reason = self._problem()
                if reason is None:
                    if time.monotonic() - self.started_at > self.window:
                        delay = 1.0
                    continue
                now = time.monotonic()
                while self.restarts and now - self.restarts[0] > self.window:
                    self.restarts.popleft()
                assert self.proc is not None
                if len(self.restarts) >= self.max_restarts:
                    why = (
                        f"embedded worker {reason}; it was restarted {len(self.restarts)} times in "
                        f"{self.window:.0f} s: giving up"
                    )
                    log.error(why)
                    stop_worker(self.proc)
                    self.on_give_up(why)
                    return
                log.warning("embedded worker (pid %s) %s: restarting it in %.0f s", self.proc.pid, reason, delay)
                stop_worker(self.proc)
                if self._stop_event.wait(delay):
                    return
                self.restarts.append(time.monotonic())
                delay = min(delay * 2, 30.0)
                self._spawn()
        finally:
            if self.proc is not None and self.proc.poll() is None:
                stop_worker(self.proc)
            engine.dispose()

    def _problem(self) -> str | None:
        """Why the worker needs a restart, or None while it is fine."""
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            return f"exited with code {code}" if code >= 0 else f"was killed by signal {-code}"
        age = time.monotonic() - self.started_at
        seen = self._last_seen()
        stale = self.settings.worker_stale_seconds
        if seen is None:
            return None if age < self.settings.worker_start_seconds else f"sent no heartbeat in {age:.0f} s"
        if seen > stale:
            return f"sent no heartbeat for {seen:.0f} s"
        return None

    def _last_seen(self) -> float | None:
        """Seconds since the worker's last heartbeat, None before its first."""
        from app.db.models import Worker
        from app.db.session import session_scope
        from app.db.sweeps import as_utc, utcnow
        from app.db.workers import worker_id

        assert self.proc is not None and self._factory is not None
        try:
            with session_scope(self._factory) as session:
                row = session.get(Worker, worker_id(socket.gethostname(), self.proc.pid))
                seen = as_utc(row.last_seen) if row is not None and row.stopped_at is None else None
        except Exception:  # the database is away: no verdict on the worker
            log.exception("could not read the embedded worker's heartbeat")
            return None
        return None if seen is None else (utcnow() - seen) / timedelta(seconds=1)

    def wait_started(self) -> None:
        self._ready.wait()

    def stop(self) -> None:
        """Stop the worker (bounded: SIGTERM, then SIGKILL) and the supervision."""
        self._stop_event.set()
        self.join(timeout=WORKER_STOP_SECONDS + 15)


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_workers(concurrency: int, queues: Sequence[str], gpus: Sequence[str], loglevel: str) -> int:
    """Run Celery workers (one per GPU, or one for the CPU) in the foreground until one exits
    or this process is interrupted; then stop them all."""
    from app.db.migrate import upgrade_database

    upgrade_database(get_settings().db_url)
    devices: list[str | None] = list(gpus) or [None]
    procs = [start_worker(concurrency, queues, gpu, loglevel.upper(), len(devices)) for gpu in devices]
    signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM here means: stop the workers gracefully
    interrupted = False
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        stop_workers(procs)
    if interrupted:
        return 0
    died = next(p for p in procs if p.returncode is not None)
    print(f"error: worker {died.pid} exited with code {died.returncode}; stopped the others", file=sys.stderr)
    return 1
