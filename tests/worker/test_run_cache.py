"""The run cache through the one pipeline, with a fake trainer that says who it is: a second
sweep that repeats runs of a first trains only the new ones; any change of the key trains again."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.db.models import Run, Sweep
from app.db.session import session_scope
from app.service.submission import submit_sweep
from core.config import validate_sweep_config
from core.paths import sweep_dir, version_folder
from core.run_cache import TRAINER_VERSION, TrainerIdentity, library_versions, trainer_identity
from core.runs import METRIC_COLUMNS, RunOutcome, RunSpec
from tests.utils.data import ASSET, make_data_root, tiny_sweep
from tests.utils.fakes import RecordingQueue, fake_train
from tests.utils.server import server_settings
from worker.local_sweep import open_database
from worker.tasks import WorkerContext, handle_train_run


class KnownTrainer:
    """`fake_train` with an identity (so it takes part in the cache); remembers what it trained."""

    def __init__(self, identity: TrainerIdentity | None = None) -> None:
        self._identity = identity or trainer_identity(None, "cpu")
        self.trained: list[tuple[str, str, int]] = []

    def identity(self) -> TrainerIdentity:
        return self._identity

    def __call__(self, spec: RunSpec, stop_requested: Callable[[], bool] | None = None) -> RunOutcome:
        self.trained.append((spec.config_id, spec.fold.name, spec.seed))
        return fake_train(spec, stop_requested)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Any]:
    root = make_data_root(tmp_path / "data")
    return {"root": root, "settings": server_settings(root), "factory": open_database(root)}


def run_sweep(env: dict[str, Any], trainer: KnownTrainer, **overrides: Any) -> int:
    """Submit a sweep and train every run it queued with `trainer`; its id."""
    queue = RecordingQueue()
    config = validate_sweep_config(tiny_sweep(replica_seeds=[1, 2], **overrides))
    submitted = submit_sweep(
        env["factory"], queue, env["settings"], ASSET, config, merge=False, continue_on_error=False
    )
    ctx = WorkerContext(0, 0, env["factory"], queue, env["settings"], trainer)
    for run_id in queue.runs:
        assert handle_train_run(ctx, run_id, f"t{run_id}") == "succeeded"
    return submitted.sweep_id


def rows(env: dict[str, Any], sweep_id: int) -> dict[tuple[str, str, int], Run]:
    with session_scope(env["factory"]) as session:
        runs = session.scalars(select(Run).where(Run.sweep_id == sweep_id)).all()
        return {(r.config_id, r.fold, r.seed): r for r in runs}


def test_a_second_sweep_trains_only_its_new_runs_and_copies_the_rest(env: dict[str, Any]) -> None:
    trainer = KnownTrainer()
    first = run_sweep(env, trainer, output_subdir="first", param_ranges={"hidden_size": [6]})
    assert len(trainer.trained) == 4  # baseline and hidden_size=6, 2 seeds
    trainer.trained.clear()
    second = run_sweep(env, trainer, output_subdir="second", param_ranges={"hidden_size": [6, 8]})
    assert sorted(trainer.trained) == [("hidden_size=8", "f1", 1), ("hidden_size=8", "f1", 2)]
    old, new = rows(env, first), rows(env, second)
    for key, run in new.items():
        if key[0] == "hidden_size=8":
            assert run.cached_from is None and run.cache_key is not None
            continue
        source = old[key]
        assert run.cached_from == f"{first}/{source.run_key}" and run.cache_key == source.cache_key
        # Bit for bit: every metric column and the extra scores, as the source has them.
        assert [getattr(run, c) for c in METRIC_COLUMNS] == [getattr(source, c) for c in METRIC_COLUMNS]
        assert run.scores_json == source.scores_json
        # The model version is the second sweep's own copy, and says where it came from.
        folder = version_folder(sweep_dir(env["root"], ASSET, "second"), run.fold, str(run.model_version))
        copied = json.loads((folder / "run.json").read_text())
        assert copied["run_id"] == run.id and copied["cached_from"] == run.cached_from
        origin = version_folder(sweep_dir(env["root"], ASSET, "first"), source.fold, str(source.model_version))
        assert (folder / "metrics.json").read_bytes() == (origin / "metrics.json").read_bytes()
    with session_scope(env["factory"]) as session:
        assert session.get_one(Sweep, second).status == "succeeded"


@pytest.mark.parametrize(
    "change",
    ["training", "reuse_runs", "trainer_version", "precision"],
)
def test_any_change_of_the_key_or_reuse_off_trains_again(env: dict[str, Any], change: str) -> None:
    run_sweep(env, KnownTrainer(), output_subdir="first", param_ranges={})
    overrides: dict[str, Any] = {"output_subdir": "again", "param_ranges": {}}
    trainer = KnownTrainer()
    if change == "training":
        overrides["training_config"] = {**tiny_sweep()["training_config"], "dropout": 0.2}
    elif change == "reuse_runs":
        overrides["reuse_runs"] = False
    elif change == "trainer_version":
        trainer = KnownTrainer(TrainerIdentity("32-true", "cpu", TRAINER_VERSION + 1, library_versions()))
    else:
        trainer = KnownTrainer(trainer_identity("bf16-mixed", "cpu"))
    again = run_sweep(env, trainer, **overrides)
    assert len(trainer.trained) == 2
    assert all(r.cached_from is None for r in rows(env, again).values())


def test_another_dataset_trains_again(env: dict[str, Any], tmp_path: Path) -> None:
    run_sweep(env, KnownTrainer(), output_subdir="first", param_ranges={})
    other = make_data_root(tmp_path / "other", seed=5)
    env2 = {"root": other, "settings": server_settings(other), "factory": env["factory"]}
    trainer = KnownTrainer()
    run_sweep(env2, trainer, output_subdir="other", param_ranges={})
    assert len(trainer.trained) == 2


def test_a_trainer_that_does_not_say_who_it_is_is_never_cached(env: dict[str, Any]) -> None:
    queue = RecordingQueue()
    for name in ("one", "two"):
        config = validate_sweep_config(tiny_sweep(output_subdir=name, param_ranges={}))
        submit_sweep(env["factory"], queue, env["settings"], ASSET, config, merge=False, continue_on_error=False)
    ctx = WorkerContext(0, 0, env["factory"], queue, env["settings"], fake_train)
    for run_id in queue.runs:
        assert handle_train_run(ctx, run_id, f"t{run_id}") == "succeeded"
    with session_scope(env["factory"]) as session:
        assert all(r.cache_key is None and r.cached_from is None for r in session.scalars(select(Run)))


def test_the_cache_survives_a_lost_database_through_adoption(env: dict[str, Any], tmp_path: Path) -> None:
    """The folders hold the keys: with a new database, the first sweep's folder is adopted
    (its runs with their cache keys) and a second sweep is recorded from it, not trained."""
    from app.service.reports import build_reports
    from app.service.submission import adopt_folder

    first = run_sweep(env, KnownTrainer(), output_subdir="first", param_ranges={})
    assert build_reports(env["factory"], env["settings"].store(), first, builder="test") is not None
    keys = {r.run_key: r.cache_key for r in rows(env, first).values()}
    records = json.loads((sweep_dir(env["root"], ASSET, "first") / "sweep_runs.json").read_text())
    assert {r["run_key"]: r["cache_key"] for r in records} == keys
    fresh = {**env, "factory": open_database(tmp_path / "fresh-db")}  # the database is gone
    adopted = adopt_folder(fresh["factory"], sweep_dir(env["root"], ASSET, "first"), ASSET)
    assert adopted is not None
    assert {r.run_key: r.cache_key for r in rows(fresh, adopted.sweep_id).values()} == keys
    trainer = KnownTrainer()
    second = run_sweep(fresh, trainer, output_subdir="second", param_ranges={})
    assert trainer.trained == [] and all(r.cached_from for r in rows(fresh, second).values())
