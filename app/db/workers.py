"""Worker heartbeats: each worker process says who it is and what it holds, every few seconds.

A worker is live when its last heartbeat is younger than two heartbeat intervals; the API
lists every worker (`GET /workers`), counts the live ones (`/healthz`), and `tftsweep
serve` restarts an embedded worker whose heartbeat went stale.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.db.models import Run, RunState, Worker
from app.db.sweeps import as_utc, utcnow

# Rows of workers not seen for this long are removed when a worker starts.
FORGET_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class WorkerIdentity:
    """Who a worker process is: `{host}:{pid}` of its main process, and what it runs."""

    host: str
    pid: int
    name: str
    queues: tuple[str, ...]
    concurrency: int
    gpu: str | None = None

    @property
    def id(self) -> str:
        return worker_id(self.host, self.pid)


def worker_id(host: str, pid: int) -> str:
    """A worker's id: `{host}:{pid}` of its main process."""
    return f"{host}:{pid}"


def lease_owner(worker_pid: int, task: str) -> str:
    """The lease owner of a run trained by this process for the worker whose main process is
    `worker_pid`: `{host}:{this pid}:{worker pid}:{task}` (the pid that trains comes second)."""
    return f"{socket.gethostname()}:{os.getpid()}:{worker_pid}:{task}"


def register_worker(session: Session, worker: WorkerIdentity) -> None:
    """Start (or restart) the worker's row; forget workers gone for a day."""
    now = utcnow()
    session.execute(delete(Worker).where(Worker.last_seen < now - FORGET_AFTER))
    row = session.get(Worker, worker.id)
    if row is None:
        row = Worker(id=worker.id)
        session.add(row)
    row.host, row.pid, row.name = worker.host, worker.pid, worker.name
    row.queues, row.concurrency, row.gpu = ",".join(worker.queues), worker.concurrency, worker.gpu
    row.runs_in_hand, row.started_at, row.last_seen, row.stopped_at = 0, now, now, None


def heartbeat(session: Session, worker: WorkerIdentity) -> int:
    """Say the worker is alive and how many runs it holds; returns that number."""
    held = _runs_in_hand(session, worker)
    session.execute(update(Worker).where(Worker.id == worker.id).values(last_seen=utcnow(), runs_in_hand=held))
    return held


def _runs_in_hand(session: Session, worker: WorkerIdentity) -> int:
    pattern = f"{worker.host}:%:{worker.pid}:%"
    query = select(func.count()).where(Run.state == RunState.RUNNING, Run.lease_owner.like(pattern))
    return int(session.scalar(query) or 0)


def mark_stopped(session: Session, worker_id: str) -> None:
    now = utcnow()
    session.execute(update(Worker).where(Worker.id == worker_id).values(stopped_at=now, last_seen=now, runs_in_hand=0))


def list_workers(session: Session) -> list[Worker]:
    return list(session.scalars(select(Worker).order_by(Worker.last_seen.desc(), Worker.id)))


def is_live(worker: Worker, now: datetime, interval_seconds: float) -> bool:
    """Seen within two heartbeat intervals and not stopped."""
    seen = as_utc(worker.last_seen)
    return worker.stopped_at is None and seen is not None and now - seen <= timedelta(seconds=2 * interval_seconds)


def live_worker_count(session: Session, interval_seconds: float) -> int:
    cutoff = utcnow() - timedelta(seconds=2 * interval_seconds)
    query = select(func.count()).where(Worker.stopped_at.is_(None), Worker.last_seen >= cutoff)
    return int(session.scalar(query) or 0)
