"""Helpers for API tests: an app over a temporary data root with a recording queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.db.lifecycle import claim_run, finish_run
from app.db.models import Run
from app.db.session import session_scope
from app.settings import Settings


def server_settings(root: Path, **overrides: Any) -> Settings:
    """Settings of a server on `root` alone: SQLite, the embedded broker, the local disk (whatever
    the environment says), unless `overrides` say otherwise."""
    return Settings(**{"data_dir": root, "database_url": None, "redis_url": None, "store_url": None, **overrides})


def api_client(app: Any, **kwargs: Any) -> TestClient:
    """A test client that talks to the app as a local client would: to 127.0.0.1, with that
    Host (the app refuses other hosts, and non-loopback addresses when it has no keys)."""
    return TestClient(app, base_url="http://127.0.0.1", **kwargs)


def finish_runs(factory: sessionmaker[Session], results: dict[int, float | None]) -> None:
    """Record results as a worker would: claim, then finish (val RMSE, or None for a failure)."""
    with session_scope(factory) as session:
        for run_id, val in results.items():
            assert claim_run(session, run_id, "test-worker", 60)
            if val is None:
                finish_run(session, run_id, "test-worker", error="RuntimeError: boom")
            else:
                metrics = {
                    "val_rmse": val,
                    "test_rmse": val + 0.01,
                    "val_mae": val / 2,
                    "test_mae": val / 2,
                    "val_naive_rmse": 0.02,
                    "test_naive_rmse": 0.02,
                    "best_epoch": 1,
                    "epochs_trained": 2,
                    "train_seconds": 0.5,
                    "test_skill": 1 - (val + 0.01) / 0.02,
                    # Below 0.015 val RMSE the run beats the naive forecast, significantly.
                    "test_dm_stat": (val - 0.015) * 1000,
                    "test_dm_pvalue": 0.01,
                }
                run = session.get_one(Run, run_id)
                finish_run(
                    session, run_id, "test-worker", metrics=metrics, model_version=f"{run.config_id}__seed{run.seed}"
                )
