"""A study's state changes are conditional updates: a cancel is never overwritten by a trial
task that ends after it, and a cancelled study starts no task. The runner is a fake (no Optuna)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Study
from app.db.session import session_scope
from app.service.studies import cancel_study, run_study, submit_study
from app.settings import Settings
from core.errors import Conflict
from core.hpo_config import HpoConfig, validate_hpo_config
from core.store import Store
from tests.utils.data import ASSET, make_data_root, tiny_study
from tests.utils.fakes import RecordingQueue
from tests.utils.server import server_settings
from worker.local_sweep import open_database

COMPLETE = {"complete": True, "best": {"value": 0.01}, "n_trials": {"complete": 2, "pruned": 0, "fail": 0}}


@pytest.fixture
def env(tmp_path: Path) -> tuple[sessionmaker[Session], Settings, int]:
    root = make_data_root(tmp_path / "data")
    settings = server_settings(root)
    factory = open_database(root)
    study, _ = submit_study(factory, RecordingQueue(), settings, ASSET, validate_hpo_config(tiny_study()))
    return factory, settings, study.id


def status(factory: sessionmaker[Session], study_id: int) -> tuple[str, str | None]:
    with session_scope(factory) as session:
        study = session.get_one(Study, study_id)
        return study.status, study.error


def runner(during: Callable[[], object] = lambda: None, fail: bool = False) -> Any:
    def run(
        store: Store,
        asset: str,
        config: HpoConfig,
        out_dir: Path,
        *,
        storage_url: str | None,
        cancelled: Callable[[], bool],
        reuse: Callable[[str], dict[str, Any] | None] | None,
    ) -> dict[str, Any]:
        during()
        if fail:
            raise RuntimeError("boom")
        return COMPLETE

    return run


def test_a_finished_study_succeeds(env: tuple[sessionmaker[Session], Settings, int]) -> None:
    factory, settings, study_id = env
    assert run_study(factory, settings, study_id, runner()).startswith(f"study {study_id}:")
    assert status(factory, study_id) == ("succeeded", None)
    with pytest.raises(Conflict):
        cancel_study(factory, study_id)


def test_a_cancel_while_trials_run_stays_whatever_the_task_reaches(
    env: tuple[sessionmaker[Session], Settings, int],
) -> None:
    factory, settings, study_id = env
    run_study(factory, settings, study_id, runner(during=lambda: cancel_study(factory, study_id)))
    assert status(factory, study_id) == ("cancelled", None)
    assert run_study(factory, settings, study_id, runner(fail=True)) == "cancelled"  # the runner never runs
    assert status(factory, study_id) == ("cancelled", None)


def test_a_runner_that_raises_fails_the_study(env: tuple[sessionmaker[Session], Settings, int]) -> None:
    factory, settings, study_id = env
    with pytest.raises(RuntimeError):
        run_study(factory, settings, study_id, runner(fail=True))
    assert status(factory, study_id) == ("failed", "RuntimeError: boom")
