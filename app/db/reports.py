"""The report build's lock and its pending requests, as conditional updates on `sweeps`.

`Sweep.reports_wanted_at` is the dirty flag of the sweep's reports: set by a request for a
build (POST /regenerate), cleared by the build that takes it, in the statement that takes the
build's lock and before the build reads the sweep. So any number of requests while no build
has taken the flag are one build, and requests during a build cost at most one more. Callers
commit; `app.service.reports` is the entry point over these functions.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from app.db.models import Run, RunState, Sweep
from app.db.sweeps import utcnow


def request_reports(session: Session, sweep_id: int, stale_after: float) -> bool:
    """Ask for a build of the sweep's reports. True when this request set the flag (the
    caller sends the build's message after its commit); False when an earlier request's
    build has not started yet, and this one joins it. A flag older than `stale_after`
    seconds (its message lost) is set again, and the caller sends a new message."""
    now = utcnow()
    result = session.execute(
        update(Sweep)
        .where(
            Sweep.id == sweep_id,
            or_(Sweep.reports_wanted_at.is_(None), Sweep.reports_wanted_at < now - timedelta(seconds=stale_after)),
        )
        .values(reports_wanted_at=now),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def forget_report_request(session: Session, sweep_id: int) -> None:
    """Clear the flag a request set when its message could not be sent: the next request sends again."""
    session.execute(
        update(Sweep).where(Sweep.id == sweep_id).values(reports_wanted_at=None),
        execution_options={"synchronize_session": False},
    )


def reports_wanted(session: Session, sweep_id: int) -> bool:
    """Whether a build of the sweep's reports has anything to do: a request is pending, or the
    sweep is finished and its reports do not describe its last change. False for a
    message whose build already ran (it was coalesced into a build that started after it)."""
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        return False
    if sweep.reports_wanted_at is not None:
        return True
    active = session.scalar(
        select(func.count()).where(Run.sweep_id == sweep_id, Run.state.in_((RunState.QUEUED, RunState.RUNNING)))
    )
    return sweep.reports_at is None and not active


def take_report_lock(session: Session, sweep_id: int, builder: str, seconds: float) -> bool:
    """Take the sweep's report lock for `builder`, and with it the pending request (the
    build about to read the sweep serves it); False while another live build holds it."""
    now = utcnow()
    result = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, or_(Sweep.publisher.is_(None), Sweep.publisher_until < now))
        .values(publisher=builder, publisher_until=now + timedelta(seconds=seconds), reports_wanted_at=None),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release_report_lock(session: Session, sweep_id: int, builder: str) -> None:
    """Let go of the lock, if `builder` still holds it (a build past its time may have lost it)."""
    session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.publisher == builder)
        .values(publisher=None, publisher_until=None),
        execution_options={"synchronize_session": False},
    )


def mark_reports_built(session: Session, sweep_id: int, revision: int) -> bool:
    """Record that the reports written describe the sweep's final state at `revision`; False
    (nothing written) when the sweep changed since that revision was read."""
    result = session.execute(
        update(Sweep).where(Sweep.id == sweep_id, Sweep.revision == revision).values(reports_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
