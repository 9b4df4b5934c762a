"""The study state machine in the database, as conditional updates on `studies`.

A study is `queued -> running -> succeeded | failed | cancelled`; a submission that continues
it queues it again. Every change after the submission is `UPDATE studies ... WHERE status =
...`, so a cancel is never overwritten by a task that finishes, and a cancelled study is never
started again. Callers commit; `app.service.studies` is the entry point over these functions.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db.models import Study, StudyStatus
from app.db.recording import lock_name
from app.db.sweeps import utcnow

ACTIVE = (StudyStatus.QUEUED, StudyStatus.RUNNING)


def lock_study_name(session: Session, asset: str, output_subdir: str) -> None:
    """Serialise submissions of one HPO study for the rest of the transaction: of concurrent
    identical submissions one creates the study and the others continue it (never a
    unique-key violation, never a 500)."""
    lock_name(session, f"tftsweep.study:{asset}/{output_subdir}")


def find_study(session: Session, asset: str, output_subdir: str) -> Study | None:
    return session.scalars(select(Study).where(Study.asset == asset, Study.output_subdir == output_subdir)).first()


def queue_study(session: Session, study: Study | None, asset: str, output_subdir: str, config: str, tasks: int) -> int:
    """Create the study (queued) or queue the stored one again with `config` (JSON text) and
    `tasks` trial tasks; its id. Called under `lock_study_name`."""
    now = utcnow()
    if study is None:
        study = Study(asset=asset, output_subdir=output_subdir, created_at=now)
        session.add(study)
    study.config_json = config
    study.status = StudyStatus.QUEUED
    study.tasks = tasks
    study.error = None
    study.updated_at = now
    session.flush()
    return study.id


def start_study(session: Session, study_id: int) -> bool:
    """Mark the study running for a trial task; False when it was cancelled (start nothing)."""
    result = session.execute(
        update(Study)
        .where(Study.id == study_id, Study.status != StudyStatus.CANCELLED)
        .values(status=StudyStatus.RUNNING, updated_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def end_study(session: Session, study_id: int, status: str | None, error: str | None = None) -> bool:
    """A trial task's end: the study becomes `status` (None: it stays running, e.g. another
    task still has trials to run) only while it is running; False when it is not (cancelled
    meanwhile: it stays cancelled, whatever its trials reached)."""
    values: dict[str, object] = {"updated_at": utcnow()}
    if status is not None:
        values |= {"status": status, "error": error}
    result = session.execute(
        update(Study).where(Study.id == study_id, Study.status == StudyStatus.RUNNING).values(**values),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def cancel_study(session: Session, study_id: int) -> bool:
    """Cancel a queued or running study; False when it already finished."""
    result = session.execute(
        update(Study)
        .where(Study.id == study_id, Study.status.in_(ACTIVE))
        .values(status=StudyStatus.CANCELLED, updated_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def is_cancelled(session: Session, study_id: int) -> bool:
    return session.scalar(select(Study.status).where(Study.id == study_id)) == StudyStatus.CANCELLED
