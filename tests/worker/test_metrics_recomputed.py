"""Every metric of a real (tiny) sweep, recomputed here from `predictions.parquet` and the
dataset alone, by formulas written out again in this file (docs/reports.md, "Metrics"): what
an outside check of the files would do. Then the ranking follows `evaluation.rank_by`, and
`regenerate` fills a newly registered metric and new costs into the sweep without training.
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
from scipy import stats

from app.api.main import create_app
from app.service.reports import build_reports
from core.config import validate_sweep_config
from core.datasets import dataset_path
from core.sweep_report import regenerate_sweep
from tests.utils.data import ASSET, TINY_TRAINING, make_data_root, tiny_fold, tiny_sweep
from tests.utils.fakes import RecordingQueue
from tests.utils.metrics import toy_metric_registered
from tests.utils.server import api_client, server_settings
from worker.cli import main
from worker.local_sweep import run_local_sweep

pytestmark = pytest.mark.slow

COSTS_BPS = 5.0
QUANTILES = {"q02": 0.02, "q10": 0.1, "q25": 0.25, "q50": 0.5, "q75": 0.75, "q90": 0.9, "q98": 0.98}
# The tiny fold's validation and test windows (tests.utils.data.tiny_fold("f1", 2012)).
WINDOWS = {"val": ("2012-01-01", "2012-06-30"), "test": ("2012-07-01", "2012-12-31")}
SEED_METRICS = {
    "val_rmse",
    "test_rmse",
    "val_mae",
    "test_mae",
    "val_naive_rmse",
    "test_naive_rmse",
    "test_skill",
    "test_dm_stat",
    "test_dm_pvalue",
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """Baseline, a quantile-loss variant and a wider model, one fold, two seeds, two horizons."""
    root = make_data_root(tmp_path_factory.mktemp("data"))
    data = tiny_sweep(
        replica_seeds=[1, 2],
        walk_forward={"enabled": True, "folds": [tiny_fold("f1", 2012)]},
        training_config={**TINY_TRAINING, "max_prediction_length": 2},
        param_ranges={"loss": ["quantile"], "hidden_size": [6]},
        evaluation={"costs_bps": COSTS_BPS},
    )
    outcome = run_local_sweep(root, ASSET, validate_sweep_config(data))
    assert outcome.status == "succeeded"
    yield root, outcome.sweep_dir


def _dataset(root: Path) -> pd.DataFrame:
    frame = pd.read_parquet(dataset_path(root, ASSET), columns=["date", "target"])
    frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d")
    return frame.sort_values("date").reset_index(drop=True)


def _train(frame: pd.DataFrame) -> np.ndarray:
    fold = tiny_fold("f1", 2012)
    start, end = (f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in (fold["train_start"], fold["train_end"]))
    return frame[(frame["date"] >= start) & (frame["date"] <= end)]["target"].to_numpy(dtype="float64")


def _references(rows: pd.DataFrame, frame: pd.DataFrame, train: np.ndarray) -> dict[str, np.ndarray]:
    """naive 0; mean of the train window; AR(1) by least squares on consecutive train days,
    iterated from the target of the day before each window's first forecast day."""
    position = {d: i for i, d in enumerate(frame["date"])}
    target = frame["target"].to_numpy()
    origin = np.array([target[position[d] - h] for d, h in zip(rows["date"], rows["horizon"], strict=True)])
    x, y = train[:-1], train[1:]
    b = float(np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2))
    a = float(y.mean() - b * x.mean())
    ar1 = origin.copy()
    for h in range(1, int(rows["horizon"].max()) + 1):
        ar1 = np.where(rows["horizon"].to_numpy() >= h, a + b * ar1, ar1)
    return {"naive": np.zeros(len(rows)), "mean": np.full(len(rows), train.mean()), "ar1": ar1}


def _dm(actual: np.ndarray, model: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    d = (actual - model) ** 2 - (actual - ref) ** 2
    n = len(d)
    stat = d.mean() / math.sqrt(d.var(ddof=0) / n) * math.sqrt((n - 1) / n)
    return stat, 2 * stats.t.sf(abs(stat), n - 1)


def _expected(split: str, rows: pd.DataFrame, refs: dict[str, np.ndarray], train: np.ndarray) -> dict[str, Any]:
    actual, predicted = rows["actual"].to_numpy(), rows["predicted"].to_numpy()
    rmse = math.sqrt(np.mean((predicted - actual) ** 2))
    mae = np.mean(np.abs(predicted - actual))
    out: dict[str, Any] = {"rmse": rmse, "mae": mae, "mase": mae / np.mean(np.abs(np.diff(train)))}
    moved = actual != 0
    hits = int(np.sum(np.sign(predicted[moved]) == np.sign(actual[moved])))
    out["dir_acc"] = hits / int(moved.sum())
    out["dir_pvalue"] = stats.binomtest(hits, int(moved.sum()), 0.5, alternative="greater").pvalue
    first = rows["horizon"].to_numpy() == 1
    order = np.argsort(rows["date"].to_numpy()[first], kind="stable")
    pos = np.sign(predicted[first][order])
    change = np.abs(pos - np.r_[0.0, pos[:-1]])
    r = pos * actual[first][order] - COSTS_BPS / 10_000 * change
    out["sharpe"] = r.mean() / r.std(ddof=1) * math.sqrt(252)
    out["sharpe_pvalue"] = stats.t.sf(r.mean() / (r.std(ddof=1) / math.sqrt(len(r))), len(r) - 1)
    out["total_return"] = r.sum()
    out["turnover"] = change.mean()
    for name, ref in refs.items():
        ref_rmse = math.sqrt(np.mean((ref - actual) ** 2))
        out[f"{name}_rmse"] = ref_rmse
        out["skill" if name == "naive" else f"skill_{name}"] = 1 - rmse / ref_rmse
        stat, pvalue = _dm(actual[first][order], predicted[first][order], ref[first][order])
        out["dm_stat" if name == "naive" else f"dm_{name}_stat"] = stat
        out["dm_pvalue" if name == "naive" else f"dm_{name}_pvalue"] = pvalue
    if "q50" in rows:
        losses = [np.maximum(q * (actual - rows[c]), (q - 1) * (actual - rows[c])) for c, q in QUANTILES.items()]
        out["pinball"] = float(np.mean(losses))
        out["coverage_80"] = np.mean((rows["q10"] <= actual) & (actual <= rows["q90"]))
        out["coverage_96"] = np.mean((rows["q02"] <= actual) & (actual <= rows["q98"]))
    else:
        out |= {"pinball": None, "coverage_80": None, "coverage_96": None}
    return {f"{split}_{name}": value for name, value in out.items()}


def _runs(folder: Path) -> list[dict[str, Any]]:
    return json.loads((folder / "sweep_runs.json").read_text())


def _close(got: Any, want: Any) -> bool:
    if want is None:
        return got is None
    return got is not None and math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-12)


def test_every_metric_matches_a_recomputation_from_the_files(sweep: tuple[Path, Path]) -> None:
    root, folder = sweep
    frame = _dataset(root)
    train = _train(frame)
    runs = _runs(folder)
    # The registry's columns beyond the seed's (training parameters such as `loss` aside).
    new_columns = {c for c in set(runs[0]) - SEED_METRICS if c.startswith(("val_", "test_"))}
    checked = 0
    for run in runs:
        predictions = pd.read_parquet(folder / "folds" / "f1" / "models" / run["model_version"] / "predictions.parquet")
        assert set(predictions["split"]) == {"val", "test"}
        quantile = run["config_id"] == "loss=quantile"
        assert ("q50" in predictions) is quantile
        expected: dict[str, Any] = {}
        target = dict(zip(frame["date"], frame["target"], strict=True))
        for split, rows in predictions.groupby("split"):
            # Each row's actual is the dataset's target of its date, inside its own window.
            np.testing.assert_allclose(rows["actual"], [target[d] for d in rows["date"]], rtol=1e-6, atol=1e-9)
            start, end = WINDOWS[str(split)]
            assert rows["date"].min() >= start and rows["date"].max() <= end
            refs = _references(rows, frame, train)
            for name, values in refs.items():  # the stored reference forecasts are these
                np.testing.assert_allclose(rows[f"ref_{name}"], values, rtol=1e-12, atol=1e-15)
            expected |= _expected(str(split), rows, refs, train)
        for column, want in expected.items():
            assert column in run, column
            assert _close(run[column], want), (run["config_id"], column, run[column], want)
            checked += column in new_columns
        # Nothing of the registry's is left unchecked.
        assert new_columns <= set(expected)
    assert len(new_columns) >= 39 and checked == len(runs) * len(new_columns)


def test_rank_by_reorders_the_ranking_and_regenerate_rescores(sweep: tuple[Path, Path], tmp_path: Path) -> None:
    root, original = sweep
    folder = tmp_path / "copy"
    shutil.copytree(original, folder)
    default = pd.read_csv(folder / "config_ranking.csv")
    assert np.allclose(default["rank_score"], default["mean_val_rmse"] + default["std_val_rmse"])
    assert default["rank_score"].is_monotonic_increasing

    config_path = folder / "analysis_config.json"
    analysis = json.loads(config_path.read_text())
    analysis["evaluation"] = {"rank_by": "val_dir_acc", "costs_bps": 20.0}
    config_path.write_text(json.dumps(analysis))
    with toy_metric_registered() as toy:
        summary = regenerate_sweep(folder, root, plots=False)
        runs = _runs(folder)
        ranking = pd.read_csv(folder / "config_ranking.csv")
    # The toy metric, registered after the sweep trained, is there for every run and config.
    assert all(run[f"val_{toy}"] is not None and run[f"test_{toy}"] is not None for run in runs)
    assert f"mean_val_{toy}" in ranking
    csv_runs = pd.read_csv(folder / "sweep_runs.csv")
    assert csv_runs[f"test_{toy}"].notna().all()
    assert np.allclose(csv_runs[f"test_{toy}"], [run[f"test_{toy}"] for run in runs], rtol=1e-9)
    # New costs rescored the strategy; the seed's columns stayed what training recorded.
    before = {r["run_id"]: r for r in _runs(original)}
    for run in runs:
        assert run["val_rmse"] == before[run["run_id"]]["val_rmse"]
        assert run["test_turnover"] == before[run["run_id"]]["test_turnover"]
        if run["test_turnover"]:
            assert run["test_total_return"] < before[run["run_id"]]["test_total_return"]
    # Ranked by direction: higher is better, so the score is mean - std, best first.
    score = ranking["mean_val_dir_acc"] - ranking["std_val_dir_acc"]
    assert np.allclose(ranking["rank_score"], score)
    assert ranking["rank_score"].is_monotonic_decreasing
    assert summary["rank_by"] == "val_dir_acc"


def test_regenerate_scores_an_old_run_from_its_test_predictions(sweep: tuple[Path, Path], tmp_path: Path) -> None:
    """A run made before predictions were kept has only `test_predictions.csv`: regenerate gives
    it every test metric and null validation metrics, and the summary counts it."""
    root, original = sweep
    folder = tmp_path / "old"
    shutil.copytree(original, folder)
    runs = _runs(folder)
    old = dict(runs[0])  # as training recorded it
    (folder / "folds" / "f1" / "models" / old["model_version"] / "predictions.parquet").unlink()
    seed_columns = json.loads((original / "sweep_runs.json").read_text())[0].keys() & (
        SEED_METRICS | {"run_id", "config_id", "fold", "seed", "status", "model_version"}
    )
    for run in runs:  # as a sweep written before this round: the seed's columns only
        for key in list(run):
            if key.startswith(("val_", "test_")) and key not in SEED_METRICS:
                del run[key]
    (folder / "sweep_runs.json").write_text(json.dumps(runs))
    summary = regenerate_sweep(folder, root, plots=False)
    rescored = {r["run_id"]: r for r in _runs(folder)}[old["run_id"]]
    assert {k: rescored[k] for k in seed_columns} == {k: old[k] for k in seed_columns}
    assert rescored["val_dir_acc"] is None and rescored["val_sharpe"] is None
    assert rescored["test_dir_acc"] == pytest.approx(old["test_dir_acc"], rel=1e-6)
    assert summary["scored_from"]["test_predictions.csv"] == 1
    assert summary["scored_from"]["predictions.parquet"] == len(runs) - 1


def test_regenerate_takes_rank_by_references_and_costs_from_the_command_line(
    sweep: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, original = sweep
    folder = tmp_path / "cli"
    shutil.copytree(original, folder)
    args = ["regenerate", "--sweep-dir", str(folder), "--data-dir", str(root), "--no-plots"]
    assert main([*args, "--rank-by", "val_sharpe", "--references", "ar1", "--costs-bps", "10"]) == 0
    recorded = json.loads((folder / "analysis_config.json").read_text())["evaluation"]
    assert recorded == {
        "rank_by": "val_sharpe",
        "references": ["naive", "ar1"],
        "costs_bps": 10.0,
        "selection": {"level": 0.9, "reps": 1000, "block_size": None, "seed": 0},
    }
    ranking = pd.read_csv(folder / "config_ranking.csv")
    assert ranking["rank_score"].is_monotonic_decreasing and "mean_val_skill_mean" not in ranking
    assert "rank_score (val_sharpe)" in capsys.readouterr().out
    before = (folder / "config_ranking.csv").read_bytes()
    assert main([*args, "--rank-by", "val_coverage_80"]) == 2
    assert "--rank-by" in capsys.readouterr().err
    assert main([*args, "--rank-by", "val_skill_mean"]) == 2  # its reference is not in the block
    assert (folder / "config_ranking.csv").read_bytes() == before  # nothing written by a refusal


def test_a_report_build_rescores_the_recorded_runs_for_a_new_metric(sweep: tuple[Path, Path]) -> None:
    """On the server's side: a metric registered after the runs trained reaches the database, the
    API's runs and its ranking at the next report build, from the stored predictions (last test of
    the module: it rewrites the sweep's files)."""
    root, folder = sweep
    app = create_app(server_settings(root), queue=RecordingQueue(), reaper=False)
    with toy_metric_registered() as toy, api_client(app) as client:
        (listed,) = client.get("/sweeps").json()["data"]
        sweep_id = listed["id"]
        before = client.get(f"/sweeps/{sweep_id}/runs").json()["data"]
        assert all(run.get(f"val_{toy}") is None for run in before)
        factory = app.state.session_factory
        build_reports(factory, app.state.settings.store(), sweep_id, builder="test")
        runs = client.get(f"/sweeps/{sweep_id}/runs").json()["data"]
        predictions = {
            r["run_id"]: pd.read_parquet(folder / "folds/f1/models" / r["model_version"] / "predictions.parquet")
            for r in runs
        }
        for run in runs:
            val = predictions[run["run_id"]].query("split == 'val'")
            assert run[f"val_{toy}"] == pytest.approx(abs((val["predicted"] - val["actual"]).mean()), rel=1e-12)
            assert run["val_rmse"] == next(b for b in before if b["run_id"] == run["run_id"])["val_rmse"]
        ranked = client.get(f"/sweeps/{sweep_id}/ranking", params={"metric": f"val_{toy}"}).json()
        assert ranked["metric"] == f"val_{toy}"
        scores = [row["rank_score"] for row in ranked["data"]]
        assert scores == sorted(scores)
        assert client.get(f"/sweeps/{sweep_id}/summary").json()["scored_from"]["predictions.parquet"] == len(runs)
        assert f"val_{toy}" in json.loads((folder / "sweep_runs.json").read_text())[0]
