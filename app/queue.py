"""The API's side of the queue: a Celery client that sends tasks by name, never importing worker code.

The broker is the embedded filesystem transport (`app.broker`) under the data root by default, Redis
when `REDIS_URL` is set. Messages are hints; the database decides what runs.
"""

from __future__ import annotations

from typing import Any, Protocol

from celery import Celery

from app import broker
from app.settings import Settings

TRAIN_RUN = "tftsweep.train_run"
WRITE_REPORTS = "tftsweep.write_reports"
RUN_STUDY = "tftsweep.run_study"
GPU_QUEUE = "gpu"
CPU_QUEUE = "cpu"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings shared by the API client and the workers."""
    config: dict[str, Any] = {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "task_default_queue": CPU_QUEUE,
        "task_routes": {
            TRAIN_RUN: {"queue": GPU_QUEUE},
            RUN_STUDY: {"queue": GPU_QUEUE},
            WRITE_REPORTS: {"queue": CPU_QUEUE},
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
    }
    if settings.redis_url:
        config["broker_url"] = settings.redis_url
        config["broker_transport_options"] = {"visibility_timeout": settings.redis_visibility_timeout}
    else:
        folder = settings.broker_dir
        for sub in ("queue", "processed", "control", "bad"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        config["broker_url"] = f"{broker.SCHEME}://localhost/"
        config["broker_transport_options"] = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "bad_folder": str(folder / "bad"),
            "store_processed": False,
            "polling_interval": settings.broker_poll_seconds,
        }
    return config


def make_celery(settings: Settings) -> Celery:
    app = Celery("tftsweep")
    app.conf.update(celery_config(settings))
    return app


class RunQueue(Protocol):
    """What the services need from a queue: send work by id."""

    def enqueue_runs(self, run_ids: list[int]) -> None: ...

    def enqueue_reports(self, sweep_id: int) -> None: ...

    def enqueue_study(self, study_id: int, tasks: int) -> None: ...

    def ping(self) -> None: ...


class CeleryQueue:
    """Sends tasks by name through the configured broker."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def enqueue_runs(self, run_ids: list[int]) -> None:
        if not run_ids:
            return
        with self.celery.connection_for_write() as conn, self.celery.producer_pool.acquire(block=True) as producer:
            for run_id in run_ids:
                self.celery.send_task(TRAIN_RUN, args=[run_id], queue=GPU_QUEUE, connection=conn, producer=producer)

    def enqueue_reports(self, sweep_id: int) -> None:
        self.celery.send_task(WRITE_REPORTS, args=[sweep_id], queue=CPU_QUEUE)

    def enqueue_study(self, study_id: int, tasks: int) -> None:
        for _ in range(tasks):
            self.celery.send_task(RUN_STUDY, args=[study_id], queue=GPU_QUEUE)

    def ping(self) -> None:
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
