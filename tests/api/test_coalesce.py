"""Repeated `POST /sweeps/{id}/regenerate` requests coalesce: one build for the requests made
before a build takes them, at most one more for those made during it, and no request lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.db.lifecycle import reap
from app.db.models import Sweep
from app.db.session import session_scope
from app.db.sweeps import utcnow
from app.service import reports
from app.service.reports import request_reports
from core.sweep_report import write_sweep_reports
from tests.utils.data import ASSET, tiny_sweep
from tests.utils.fakes import RecordingQueue, fake_train
from tests.utils.server import finish_runs
from worker.tasks import WorkerContext, handle_write_reports

QUEUED = "reports queued on the cpu queue"
JOINED = "already building"


class CountingBuilder:
    """Wraps the report build's writer: counts builds, records when each started, and can hold
    the first one until the test lets it go (a build that is running while requests arrive)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, hold_first: bool = False) -> None:
        self.started: list[float] = []
        self.entered = threading.Event()
        self.go_on = threading.Event()
        if not hold_first:
            self.go_on.set()
        real: Callable[..., Any] = write_sweep_reports

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.started.append(time.monotonic())
            self.entered.set()
            assert self.go_on.wait(timeout=60), "the test never let the held build go on"
            return real(*args, **kwargs)

        monkeypatch.setattr(reports, "write_sweep_reports", counted)


def finished_sweep(client: TestClient) -> int:
    """A sweep whose runs have all been recorded (no report built yet)."""
    created = client.post("/sweeps", json={"asset": ASSET, "config": tiny_sweep()})
    assert created.status_code == 201, created.text
    sweep_id = int(created.json()["id"])
    ids = [r["run_id"] for r in client.get(f"/sweeps/{sweep_id}/runs").json()["data"]]
    finish_runs(client.app.state.session_factory, {run_id: 0.01 + i / 1000 for i, run_id in enumerate(ids)})  # type: ignore[attr-defined]
    return sweep_id


def worker(client: TestClient, queue: RecordingQueue) -> WorkerContext:
    """A cpu worker's context over the API's database and data root."""
    state = client.app.state  # type: ignore[attr-defined]
    return WorkerContext(0, 0, state.session_factory, queue, state.settings, fake_train)


def regenerate_at_once(client: TestClient, sweep_id: int, n: int) -> list[tuple[int, str]]:
    """`n` regenerate requests released together (a thread each); their statuses and details."""
    start = threading.Barrier(n)
    answers: list[tuple[int, str]] = []

    def send() -> None:
        start.wait(timeout=30)
        response = client.post(f"/sweeps/{sweep_id}/regenerate")
        answers.append((response.status_code, response.json()["detail"]))

    threads = [threading.Thread(target=send) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == n
    return answers


def kinds(answers: list[tuple[int, str]]) -> list[str]:
    """Each answer (every one a 202) as `queued` (it sent a build's message) or `joined`."""
    out = []
    for status, detail in answers:
        assert status == 202, detail
        assert detail == QUEUED or detail.startswith(JOINED), detail
        out.append("queued" if detail == QUEUED else "joined")
    return sorted(out)


def test_requests_made_before_a_build_starts_are_one_build(
    client: TestClient, queue: RecordingQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_id = finished_sweep(client)
    builds = CountingBuilder(monkeypatch)
    started = time.perf_counter()
    answers = regenerate_at_once(client, sweep_id, 10)
    answered = time.perf_counter() - started
    assert kinds(answers) == ["joined"] * 9 + ["queued"]
    assert queue.reports == [sweep_id]  # one message for ten requests
    ctx = worker(client, queue)
    assert handle_write_reports(ctx, sweep_id).startswith("reports written")
    assert len(builds.started) == 1
    with session_scope(ctx.factory) as session:
        sweep = session.get_one(Sweep, sweep_id)
        assert sweep.reports_at is not None and sweep.reports_wanted_at is None
    assert answered < 10, f"10 requests took {answered:.1f}s"
    # The next request, after the build, queues a build of its own.
    assert client.post(f"/sweeps/{sweep_id}/regenerate").json()["detail"] == QUEUED


def test_requests_made_during_a_build_cost_one_more_build_and_none_is_lost(
    client: TestClient, queue: RecordingQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_id = finished_sweep(client)
    ctx = worker(client, queue)
    folder = ctx.settings.data_root / "models" / ASSET / "sweeps" / "tiny"
    builds = CountingBuilder(monkeypatch, hold_first=True)
    assert client.post(f"/sweeps/{sweep_id}/regenerate").json()["detail"] == QUEUED
    first = threading.Thread(target=handle_write_reports, args=(ctx, queue.reports.pop()))
    first.start()
    assert builds.entered.wait(timeout=30), "the first build never started"

    # Ten requests while the first build runs (it took the request before it read the sweep).
    answers = regenerate_at_once(client, sweep_id, 10)
    requested_at, requested_wall = time.monotonic(), time.time()
    assert kinds(answers) == ["joined"] * 9 + ["queued"]
    assert queue.reports == [sweep_id]
    builds.go_on.set()
    first.join(timeout=120)
    assert not first.is_alive()

    # The running build served them with one more pass; their message then finds nothing to do.
    assert handle_write_reports(ctx, queue.reports.pop()).startswith("nothing built")
    assert len(builds.started) == 2
    assert builds.started[1] > requested_at  # the second build read the sweep after every request
    assert (folder / "summary.json").stat().st_mtime >= requested_wall - 1
    with session_scope(ctx.factory) as session:
        sweep = session.get_one(Sweep, sweep_id)
        assert sweep.reports_at is not None and sweep.reports_wanted_at is None


def test_a_request_whose_message_was_lost_is_sent_again(client: TestClient, queue: RecordingQueue) -> None:
    sweep_id = finished_sweep(client)
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    settings = client.app.state.settings  # type: ignore[attr-defined]
    assert request_reports(factory, queue, settings, sweep_id)
    assert not request_reports(factory, queue, settings, sweep_id)  # joins the pending one
    hour_ago = utcnow() - timedelta(hours=1)
    with session_scope(factory) as session:  # its message never reached a worker
        session.execute(update(Sweep).where(Sweep.id == sweep_id).values(reports_wanted_at=hour_ago))
    with session_scope(factory) as session:
        assert sweep_id in reap(session, settings.max_attempts, settings.requeue_after_seconds).unpublished
    with session_scope(factory) as session:
        session.execute(update(Sweep).where(Sweep.id == sweep_id).values(reports_wanted_at=hour_ago))
    assert request_reports(factory, queue, settings, sweep_id)  # a stale request is sent again

    class Down(RecordingQueue):
        def enqueue_reports(self, sweep_id: int) -> None:
            raise ConnectionError("broker down")

    with session_scope(factory) as session:
        session.execute(update(Sweep).where(Sweep.id == sweep_id).values(reports_wanted_at=None))
    with pytest.raises(ConnectionError):
        request_reports(factory, Down(), settings, sweep_id)
    assert request_reports(factory, queue, settings, sweep_id)  # the failed send left no request behind
