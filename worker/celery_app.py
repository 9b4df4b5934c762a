"""The Celery application of the workers (`celery -A worker.celery_app worker -Q gpu,cpu`)."""

from __future__ import annotations

from app.queue import make_celery
from app.settings import get_settings
from worker.heartbeat import Heartbeat

celery = make_celery(get_settings())
celery.conf.include = ["worker.tasks"]
celery.steps["consumer"].add(Heartbeat)
