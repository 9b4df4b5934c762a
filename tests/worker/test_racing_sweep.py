"""Racing through the one pipeline, no training: a fake trainer plants a clearly worse variant;
its remaining runs are skipped with the reason, its verdict says so, a better or equal variant
is never dropped, and a merge with racing off trains the skipped runs."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.db.models import Run, Sweep
from app.db.session import session_scope
from app.db.sweeps import run_counts
from app.service.reports import build_reports
from app.service.submission import submit_sweep
from core.config import validate_sweep_config
from core.paths import sweep_dir
from core.runs import RunOutcome, RunSpec
from tests.utils.data import ASSET, make_data_root, tiny_fold, tiny_sweep
from tests.utils.fakes import RecordingQueue, fake_train
from tests.utils.server import server_settings
from worker.local_sweep import open_database
from worker.tasks import WorkerContext, handle_train_run

WORSE = "hidden_size=8"
FOLDS = [tiny_fold("f1", 2012), tiny_fold("f2", 2013), tiny_fold("f3", 2014)]
SEEDS = [1, 2, 3, 4]  # 3 folds x 4 seeds = 12 blocks: looks at 4 and 8 blocks


def planted(spec: RunSpec, stop_requested: Callable[[], bool] | None = None) -> RunOutcome:
    """`fake_train`, with the variant `WORSE` 20% worse on val RMSE in every block; the other
    variant's val RMSE is the baseline's plus or minus a little, by seed."""
    outcome = fake_train(spec, stop_requested)
    assert outcome.metrics is not None
    base = 0.01 + 0.001 * int(spec.fold.name[1:]) + 0.0001 * spec.seed
    noise = 0.00005 * (1 if spec.seed % 2 else -1)
    outcome.metrics["val_rmse"] = {WORSE: base * 1.2, "baseline": base}.get(spec.config_id, base + noise)
    return outcome


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Any]:
    root = make_data_root(tmp_path / "data", n_days=1350)  # to about 2015-03
    return {"root": root, "settings": server_settings(root), "factory": open_database(root), "queue": RecordingQueue()}


def submit(env: dict[str, Any], racing: dict[str, Any], merge: bool = False, seeds: list[int] = SEEDS) -> list[int]:
    config = validate_sweep_config(
        tiny_sweep(
            replica_seeds=seeds,
            walk_forward={"enabled": True, "folds": FOLDS},
            param_ranges={"hidden_size": [6, 8]},
            racing=racing,
        )
    )
    before = len(env["queue"].runs)
    submit_sweep(env["factory"], env["queue"], env["settings"], ASSET, config, merge=merge, continue_on_error=False)
    return list(env["queue"].runs[before:])


def train(env: dict[str, Any], run_ids: list[int]) -> list[str]:
    ctx = WorkerContext(0, 0, env["factory"], env["queue"], env["settings"], planted)
    return [handle_train_run(ctx, run_id, f"t{run_id}") for run_id in run_ids]


def test_a_clearly_worse_variant_is_raced_out_and_its_remaining_runs_skipped(env: dict[str, Any]) -> None:
    ids = submit(env, {"enabled": True, "alpha": 0.05, "min_pairs": 4})
    assert len(ids) == 36
    done = train(env, ids)  # in plan order: blocks of one (fold, seed) for every config
    # Dropped at the look after 8 blocks (p = 1/256 one-sided, Holm over 2 variants below 0.025):
    # its 4 runs of the last 4 blocks are skipped, never started.
    assert done.count("skipped (skipped)") == 4
    with session_scope(env["factory"]) as session:
        sweep = session.scalars(select(Sweep)).one()
        assert run_counts(session, sweep.id)["skipped"] == 4 and sweep.status == "succeeded"
        skipped = session.scalars(select(Run).where(Run.state == "skipped")).all()
        assert {r.config_id for r in skipped} == {WORSE} and {(r.fold, r.seed) for r in skipped} == {
            ("f3", s) for s in SEEDS
        }
        reason = skipped[0].skip_reason
    assert reason is not None and reason.startswith("raced out after 8 pairs: worse than the baseline")
    assert "p = 0.00391" in reason
    summary = build_reports(env["factory"], env["settings"].store(), sweep.id, builder="test")
    assert summary is not None and WORSE in summary["significance"]["worse"]
    assert "1 is worse (1 raced out: its remaining runs were not trained)" in summary["significance"]["sentence"]
    folder = sweep_dir(env["root"], ASSET, "tiny")
    ranking = {row["config_id"]: row for row in csv.DictReader((folder / "config_ranking.csv").open())}
    assert ranking[WORSE]["verdict"] == "worse (raced out after 8 pairs)"
    assert ranking["hidden_size=6"]["verdict"] != "worse" and "raced" not in ranking["hidden_size=6"]["verdict"]
    runs = list(csv.DictReader((folder / "sweep_runs.csv").open()))
    assert {r["skip_reason"] for r in runs if r["status"] == "skipped"} == {reason}


def test_a_merge_with_racing_off_trains_the_skipped_runs(env: dict[str, Any]) -> None:
    train(env, submit(env, {"enabled": True}))
    resumed = submit(env, {"enabled": False}, merge=True)
    assert len(resumed) == 4
    assert train(env, resumed) == ["succeeded"] * 4
    with session_scope(env["factory"]) as session:
        sweep = session.scalars(select(Sweep)).one()
        assert run_counts(session, sweep.id)["skipped"] == 0 and sweep.racing_json is None


def test_without_racing_every_run_trains(env: dict[str, Any]) -> None:
    assert train(env, submit(env, {"enabled": False})) == ["succeeded"] * 36


def test_a_drop_is_final_when_a_merge_adds_seeds_and_the_design_stays(env: dict[str, Any]) -> None:
    """A merge that adds a seed while the sweep still races: the dropped variant's new runs are
    skipped at once (never queued), the others' are queued; the racing design (its blocks and
    looks) is the one the first decision fixed."""
    train(env, submit(env, {"enabled": True}))
    with session_scope(env["factory"]) as session:
        design = json.loads(session.scalars(select(Sweep)).one().racing_json or "{}")["design"]
    assert design["looks"] == [8] and len(design["blocks"]) == 12
    added = submit(env, {"enabled": True}, merge=True, seeds=[*SEEDS, 5])
    assert len(added) == 6  # 3 folds x the baseline and hidden_size=6; hidden_size=8's 3 are skipped
    with session_scope(env["factory"]) as session:
        runs = session.scalars(select(Run).where(Run.seed == 5)).all()
        assert {r.config_id: r.state for r in runs if r.config_id == WORSE} == {WORSE: "skipped"}
        assert sum(r.state == "queued" for r in runs) == 6
        assert json.loads(session.scalars(select(Sweep)).one().racing_json or "{}")["design"] == design
    assert train(env, added) == ["succeeded"] * 6
