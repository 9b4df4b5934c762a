"""Sweep revisions: every transaction that changes a sweep's runs bumps `Sweep.revision`.

The revision keys the API's cached answers and tells a report build whether what it read
is still the sweep's state; a bump also clears `reports_at`, since the reports on disk no
longer describe the runs. The listeners are installed on the app's own session factories
(`app.db.session.make_session_factory`), never on SQLAlchemy's global `Session` class, so
other sessions in the process (Optuna's) are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Run, Sweep

_TOUCHED = "tftsweep.touched_sweeps"


def touch_sweeps(session: Session, sweep_ids: Iterable[int]) -> None:
    """Record that runs of these sweeps changed (state, results, new runs): their revision is
    bumped when the session commits, in the same transaction. Every write to runs calls this
    (or `touch_run`).

    The bump is the transaction's last statement so the sweep row is locked last and
    briefly: a transaction that locked the sweep and then waited for a run row (a failure
    cancelling the queued runs) would deadlock with a worker that claimed one of them.
    """
    session.info.setdefault(_TOUCHED, set()).update(sweep_ids)


def touch_run(session: Session, run_id: int) -> None:
    touch_sweeps(session, [session.execute(select(Run.sweep_id).where(Run.id == run_id)).scalar_one()])


def _bump_revisions(session: Session) -> None:
    touched = session.info.pop(_TOUCHED, None)
    if touched:
        session.execute(
            update(Sweep).where(Sweep.id.in_(sorted(touched))).values(revision=Sweep.revision + 1, reports_at=None),
            execution_options={"synchronize_session": False},
        )


def _forget_touches(session: Session) -> None:
    session.info.pop(_TOUCHED, None)


def install_revision_listeners(factory: sessionmaker[Session]) -> None:
    """Bump the revisions of touched sweeps at commit in sessions made by `factory`."""
    event.listen(factory, "before_commit", _bump_revisions)
    event.listen(factory, "after_rollback", _forget_touches)
