"""A Celery worker's heartbeat: a consumer step that writes the worker's row every few seconds.

It beats while the worker's consumer runs: when the consumer stops (lost broker, crash)
the beats stop, the row goes stale, `/healthz` says so and `tftsweep serve` restarts its
embedded worker. It runs in the Celery main process, in a thread with its own database
connections (opened per beat: nothing crosses a fork), and never imports torch.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery import bootsteps
from sqlalchemy import Engine

from app.db.session import make_engine, make_session_factory, session_scope
from app.db.workers import WorkerIdentity, heartbeat, mark_stopped, register_worker
from app.settings import get_settings

log = logging.getLogger("tftsweep.worker")


class HeartbeatThread(threading.Thread):
    """Registers the worker, then beats every `interval` seconds until stopped."""

    def __init__(self, identity: WorkerIdentity, url: str, interval: float) -> None:
        super().__init__(name="tftsweep-heartbeat", daemon=True)
        self.identity = identity
        self.interval = interval
        self._engine: Engine = make_engine(url, pooled=False)
        self._factory = make_session_factory(self._engine)
        self._stop_event = threading.Event()

    def run(self) -> None:
        registered = False
        while True:
            try:
                with session_scope(self._factory) as session:
                    if not registered:
                        register_worker(session, self.identity)
                        registered = True
                    heartbeat(session, self.identity)
            except Exception:  # the database is away for a moment: try again at the next beat
                log.exception("heartbeat of worker %s failed", self.identity.id)
            if self._stop_event.wait(self.interval):
                return

    def stop(self) -> None:
        """Stop beating (the row goes stale unless `mark_stopped` follows)."""
        self._stop_event.set()
        self.join(timeout=10)

    def mark_stopped(self) -> None:
        """Say the worker is gone (a clean shutdown), not just silent."""
        try:
            with session_scope(self._factory) as session:
                mark_stopped(session, self.identity.id)
        except Exception:
            log.exception("could not mark worker %s stopped", self.identity.id)
        self._engine.dispose()


class Heartbeat(bootsteps.StartStopStep):
    """Consumer step: beats from when the consumer starts until it stops."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.thread: HeartbeatThread | None = None

    def start(self, consumer: Any) -> None:
        settings = get_settings()
        identity = WorkerIdentity(
            host=socket.gethostname(),
            pid=os.getpid(),
            name=str(consumer.hostname),
            queues=tuple(sorted(q.name for q in consumer.task_consumer.queues)),
            concurrency=int(consumer.pool.num_processes),
            gpu=settings.gpu or None,
        )
        self.thread = HeartbeatThread(identity, settings.db_url, settings.heartbeat_seconds)
        self.thread.start()

    def stop(self, consumer: Any) -> None:
        if self.thread is not None:
            self.thread.stop()

    def shutdown(self, consumer: Any) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread.mark_stopped()
            self.thread = None
