"""The model confidence set and the SPA test of a real (tiny) sweep, recomputed here from the
stored `predictions.parquet` with pandas and `arch` directly (not through core.selection), as an
outside check of the files would do it (docs/reports.md, "Selection"): the same inputs and seed
give the same p-values as `config_ranking.csv` and `summary.json`. Then `regenerate` writes the
same files again.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from arch.bootstrap import MCS, SPA

from core.config import validate_sweep_config
from core.sweep_report import regenerate_sweep
from tests.utils.data import ASSET, TINY_TRAINING, make_data_root, tiny_fold, tiny_sweep
from worker.local_sweep import run_local_sweep

pytestmark = pytest.mark.slow

LEVEL, REPS, SEED = 0.8, 300, 7
SELECTION = {"level": LEVEL, "reps": REPS, "seed": SEED}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """Baseline and two variants, one fold, two seeds, two horizons (only horizon 1 counts)."""
    root = make_data_root(tmp_path_factory.mktemp("data"))
    data = tiny_sweep(
        replica_seeds=[1, 2],
        walk_forward={"enabled": True, "folds": [tiny_fold("f1", 2012)]},
        training_config={**TINY_TRAINING, "max_prediction_length": 2},
        param_ranges={"hidden_size": [6], "dropout": [0.3]},
        evaluation={"selection": SELECTION},
    )
    outcome = run_local_sweep(root, ASSET, validate_sweep_config(data))
    assert outcome.status == "succeeded"
    yield root, outcome.sweep_dir


def _losses(folder: Path, loss: str, order: list[str]) -> pd.DataFrame:
    """Days x configs: per validation day, the mean over each config's runs of the day's loss
    (horizon-1 rows of split val), only the days every config forecast, columns in `order`."""
    runs = json.loads((folder / "sweep_runs.json").read_text())
    parts = []
    for run in runs:
        if run["status"] != "succeeded":
            continue
        path = folder / "folds" / run["fold"] / "models" / run["model_version"] / "predictions.parquet"
        rows = pd.read_parquet(path)
        rows = rows[(rows["split"] == "val") & (rows["horizon"] == 1)]
        error = rows["predicted"].to_numpy("float64") - rows["actual"].to_numpy("float64")
        value = error**2 if loss == "squared" else np.abs(error)
        parts.append(pd.DataFrame({"config_id": run["config_id"], "date": rows["date"], "loss": value}))
    frame = pd.concat(parts)
    table = frame.pivot_table(index="date", columns="config_id", values="loss", aggfunc="mean").dropna()
    return table.sort_index()[order]


def _cube_root_ceiling(n: int) -> int:
    b = 1
    while b**3 < n:
        b += 1
    return b


def _recomputed(losses: pd.DataFrame) -> tuple[dict[str, float], list[str], dict[str, float], int]:
    block = _cube_root_ceiling(len(losses))
    mcs = MCS(
        losses,
        size=1 - LEVEL,
        reps=REPS,
        block_size=block,
        method="R",
        bootstrap="stationary",
        seed=SEED,
    )
    mcs.compute()
    spa = SPA(
        losses["baseline"],
        losses.drop(columns=["baseline"]),
        reps=REPS,
        block_size=block,
        bootstrap="stationary",
        studentize=True,
        nested=False,
        seed=SEED,
    )
    spa.compute()
    pvalues = {str(k): float(v) for k, v in mcs.pvalues["Pvalue"].items()}
    return pvalues, [str(c) for c in mcs.included], {k: float(spa.pvalues[k]) for k in spa.pvalues.index}, block


def _check(folder: Path, summary: dict[str, Any], loss: str) -> None:
    for csv in (folder / "config_ranking.csv", folder / "folds" / "f1" / "config_ranking.csv"):
        ranking = pd.read_csv(csv, keep_default_na=False, na_values=[""])
        assert list(ranking.columns[-2:]) == ["mcs_pvalue", "in_mcs"]
        order = ranking["config_id"].tolist()
        losses = _losses(folder, loss, order)
        assert len(losses) > 100  # the fold's validation half year, every day forecast by all
        pvalues, included, spa, block = _recomputed(losses)
        for _, row in ranking.iterrows():
            assert math.isclose(row["mcs_pvalue"], pvalues[row["config_id"]], rel_tol=1e-9, abs_tol=1e-9), row
            assert row["in_mcs"] == (row["config_id"] in included)
        selection = summary["selection"] if csv.parent == folder else summary["selection"]["folds"]["f1"]
        assert selection["available"] is True and selection["days_used"] == len(losses)
        assert selection["block_size"] == block and selection["configs_tried"] == 2
        assert sorted(selection["mcs"]["members"]) == sorted(included)
        for name, p in spa.items():
            assert math.isclose(selection["spa"][name], p, rel_tol=1e-9, abs_tol=1e-9), name


def test_the_selection_matches_arch_on_the_stored_predictions(sweep: tuple[Path, Path]) -> None:
    _root, folder = sweep
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["selection"]["metric"] == "val_rmse" and summary["selection"]["level"] == 0.8
    _check(folder, summary, "squared")
    assert "model confidence set" in summary["significance"]["sentence"]


def test_regenerate_writes_the_same_files_and_follows_rank_by(sweep: tuple[Path, Path], tmp_path: Path) -> None:
    root, original = sweep
    folder = tmp_path / "copy"
    shutil.copytree(original, folder)
    regenerate_sweep(folder, root, plots=False)
    for name in ("config_ranking.csv", "folds/f1/config_ranking.csv"):
        assert (folder / name).read_bytes() == (original / name).read_bytes(), name
    # Ranked by MAE, the configs are compared on absolute errors.
    summary = regenerate_sweep(folder, root, plots=False, evaluation={"rank_by": "val_mae"})
    assert summary["selection"]["loss"].startswith("absolute error")
    _check(folder, summary, "absolute")
