"""A recorded sweep's controls: cancel its queued and running runs, retry its failed ones.
Each commits, then sends (the reports of a cancelled sweep, the retried runs)."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from app.db.lifecycle import cancel_sweep, retry_sweep
from app.db.models import Sweep
from app.db.session import session_scope
from app.db.sweeps import sweep_is_done
from app.queue import RunQueue
from app.service.reports import send_reports
from app.service.submission import send_runs
from core.errors import Conflict


def cancel_runs(factory: sessionmaker[Session], queue: RunQueue, sweep_id: int) -> dict[str, int]:
    """Cancel the sweep's queued and running runs.

    Raises:
        Conflict: nothing is queued or running (a finished sweep stays as it is).
    """
    with session_scope(factory) as session:
        if sweep_is_done(session, sweep_id):
            raise Conflict(f"sweep {sweep_id} has no queued or running run: there is nothing to cancel")
        counts = cancel_sweep(session, session.get_one(Sweep, sweep_id))
    send_reports(queue, sweep_id)
    return counts


def retry_runs(factory: sessionmaker[Session], queue: RunQueue, sweep_id: int) -> list[int]:
    """Queue the sweep's failed and cancelled runs again, with fresh attempts; their ids."""
    with session_scope(factory) as session:
        ids = retry_sweep(session, session.get_one(Sweep, sweep_id))
    send_runs(factory, queue, ids)
    return ids
