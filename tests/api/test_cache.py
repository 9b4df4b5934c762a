"""Cached answers: built once per sweep revision, rebuilt on every change to a sweep's runs, ETags."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.api.cache import BuildOnce
from app.api.main import create_app
from app.db.lifecycle import (
    cancel_sweep,
    claim_run,
    fail_sweep,
    finish_run,
    mark_enqueued,
    reap,
    release_run,
    renew_lease,
    requeue_unfinished,
    retry_sweep,
)
from app.db.models import Run, Sweep
from app.db.session import session_scope
from app.db.sweeps import utcnow
from app.service.submission import record_submission
from core.config import validate_sweep_config
from tests.utils.data import ASSET, make_data_root, tiny_sweep
from tests.utils.fakes import RecordingQueue
from tests.utils.server import api_client, finish_runs, server_settings
from worker.local_sweep import open_database


def test_build_once_builds_each_key_once_under_concurrent_requests() -> None:
    cache = BuildOnce()
    builds: list[int] = []
    results: list[str] = []

    def build() -> str:
        builds.append(1)
        time.sleep(0.2)
        return "table"

    threads = [threading.Thread(target=lambda: results.append(cache.get(("k",), build))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["table"] * 8 and len(builds) == 1
    assert cache.get(("k",), lambda: "other") == "table"


def test_build_once_does_not_keep_a_failure() -> None:
    cache = BuildOnce()

    def fail() -> str:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        cache.get(("k",), fail)
    assert cache.get(("k",), lambda: "ok") == "ok"


def test_build_once_evicts_the_least_recently_used() -> None:
    cache = BuildOnce(size=2)
    cache.get("a", lambda: 1)
    cache.get("b", lambda: 2)
    cache.get("a", lambda: 0)  # a is now the most recent
    cache.get("c", lambda: 3)
    assert cache.get("a", lambda: 10) == 1 and cache.get("b", lambda: 20) == 20


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> sessionmaker[Session]:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return open_database(make_data_root(tmp_path / "data"))


def revision(factory: sessionmaker[Session], sweep_id: int) -> int:
    with session_scope(factory) as session:
        return session.get_one(Sweep, sweep_id).revision


def test_every_change_to_a_sweeps_runs_bumps_its_revision(factory: sessionmaker[Session]) -> None:
    config = validate_sweep_config(tiny_sweep(replica_seeds=[1, 2]))
    with session_scope(factory) as session:
        result = record_submission(session, ASSET, config)
        sweep_id, ids = result.sweep_id, result.new_run_ids
    seen = [revision(factory, sweep_id)]

    def step(change: Any, bumps: bool = True) -> None:
        with session_scope(factory) as session:
            change(session)
        seen.append(revision(factory, sweep_id))
        assert (seen[-1] > seen[-2]) is bumps, change

    step(lambda s: claim_run(s, ids[0], "w", 60))
    step(lambda s: renew_lease(s, ids[0], "w", 60), bumps=False)  # the lease is not reported
    step(lambda s: mark_enqueued(s, ids), bumps=False)
    step(lambda s: finish_run(s, ids[0], "w", metrics={"val_rmse": 0.1}))
    step(lambda s: claim_run(s, ids[1], "w", 60))
    step(lambda s: release_run(s, ids[1], "w"))
    step(lambda s: finish_run(s, ids[1], "w", metrics={"val_rmse": 0.1}), bumps=False)  # not ours: no change
    step(lambda s: claim_run(s, ids[1], "w", 60))
    with session_scope(factory) as session:  # the worker died: its lease ran out
        session.execute(update(Run).where(Run.id == ids[1]).values(lease_expires_at=utcnow() - timedelta(1)))
    step(lambda s: reap(s, max_attempts=3, requeue_after_seconds=600))
    step(lambda s: cancel_sweep(s, s.get_one(Sweep, sweep_id)))
    step(lambda s: retry_sweep(s, s.get_one(Sweep, sweep_id)))
    step(lambda s: fail_sweep(s, s.get_one(Sweep, sweep_id), "stop"))
    step(lambda s: requeue_unfinished(s, sweep_id))
    merged = validate_sweep_config(tiny_sweep(replica_seeds=[1, 2, 3]))
    step(lambda s: record_submission(s, ASSET, merged, merge=True))

    session = factory()  # a change rolled back is no change
    assert claim_run(session, ids[1], "w", 60)
    session.rollback()
    session.commit()
    session.close()
    assert revision(factory, sweep_id) == seen[-1]


def submit(client: TestClient, **overrides: Any) -> int:
    response = client.post("/sweeps", json={"asset": ASSET, "config": tiny_sweep(**overrides)})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_cached_answers_follow_run_changes_and_honour_etags(client: TestClient) -> None:
    sweep_id = submit(client, replica_seeds=[1, 2])
    first = client.get(f"/sweeps/{sweep_id}/ranking")
    etag = first.headers["etag"]
    assert first.json()["data"][0]["n_runs"] == 0 and first.headers["cache-control"] == "no-cache"
    unchanged = client.get(f"/sweeps/{sweep_id}/ranking", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""

    runs = client.get(f"/sweeps/{sweep_id}/runs").json()["data"]
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    finish_runs(factory, {runs[0]["run_id"]: 0.01})
    changed = client.get(f"/sweeps/{sweep_id}/ranking", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["data"][0]["n_runs"] == 1
    sweep = client.get(f"/sweeps/{sweep_id}").json()
    assert sweep["runs"]["succeeded"] == 1 and sweep["best_config"] == runs[0]["config_id"]

    assert client.post(f"/sweeps/{sweep_id}/cancel").status_code == 200
    after = client.get(f"/sweeps/{sweep_id}").json()
    assert after["status"] == "cancelled" and after["runs"]["queued"] == 0
    assert client.get(f"/sweeps/{sweep_id}/ranking", params={"fold": "nope"}).status_code == 404


def test_each_app_has_its_own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two servers over different databases hold sweeps with the same id and revision.
    monkeypatch.delenv("DATABASE_URL", raising=False)
    answers = []
    for name, seeds in (("a", [1]), ("b", [1, 2, 3])):
        app = create_app(server_settings(make_data_root(tmp_path / name)), queue=RecordingQueue(), reaper=False)
        with api_client(app) as client:
            sweep_id = submit(client, replica_seeds=seeds)
            answers.append(client.get(f"/sweeps/{sweep_id}").json()["total_runs"])
    assert answers[0] * 3 == answers[1]
