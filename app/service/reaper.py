"""The reaper: recovers from dead workers and lost messages, from what the database holds.

`reap_once` requeues runs whose lease expired, fails runs out of attempts (with the failure
rule), resends lost messages and rebuilds reports nobody built; `Reaper` runs it every
`reaper_interval_seconds` in a thread of the API process.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.orm import Session, sessionmaker

from app.db.lifecycle import reap, settle_sweep_status
from app.db.models import Run, Sweep
from app.db.session import session_scope
from app.db.sweeps import sweep_is_done
from app.queue import RunQueue
from app.service.reports import send_reports
from app.service.runs import stop_after_failure
from app.service.submission import send_runs
from app.settings import Settings

log = logging.getLogger("tftsweep.server")


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
            stop_after_failure(session, run.sweep, run)
        for sweep_id in sorted(touched):
            if sweep_is_done(session, sweep_id):
                settle_sweep_status(session, session.get_one(Sweep, sweep_id))
                finished.append(sweep_id)
    send_runs(factory, queue, result.requeued + result.resend)
    for sweep_id in sorted(set(finished) | set(result.unpublished)):
        send_reports(queue, sweep_id)
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
