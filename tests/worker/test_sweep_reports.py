"""After a real (tiny) sweep: every documented file with its columns, byte-identical regenerate, plots, compare."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import validate_sweep_config
from core.runs import RunOutcome, RunSpec
from tests.utils.data import ASSET, make_data_root, tiny_fold, tiny_sweep
from worker.cli import main
from worker.local_sweep import run_local_sweep
from worker.trainer import train_tft

pytestmark = pytest.mark.slow

SPEC_COLUMNS = {
    "sweep_runs.csv": [
        "run_id",
        "run_key",
        "config_id",
        "param_name",
        "param_value",
        "fold",
        "seed",
        "status",
        "val_rmse",
        "test_rmse",
        "val_mae",
        "test_mae",
        "best_epoch",
        "epochs_trained",
        "train_seconds",
        "model_version",
        "error",
        "hidden_size",
        "dropout",
        "learning_rate",
    ],
    "config_ranking.csv": [
        "rank",
        "config_id",
        "param_name",
        "param_value",
        "n_runs",
        "n_failed",
        "mean_val_rmse",
        "std_val_rmse",
        "robust_score",
        "mean_test_rmse",
        "std_test_rmse",
    ],
    "param_impact_detail.csv": [
        "config_id",
        "param_name",
        "param_value",
        "fold",
        "seed",
        "val_rmse",
        "baseline_val_rmse",
        "delta_rmse_vs_baseline",
        "test_rmse",
        "baseline_test_rmse",
        "delta_test_rmse_vs_baseline",
    ],
    "param_impact_summary.csv": [
        "param_name",
        "param_value",
        "n_pairs",
        "avg_delta_rmse_vs_baseline",
        "std_delta_rmse_vs_baseline",
        "win_rate",
        "avg_delta_test_rmse_vs_baseline",
    ],
    "drift_ks_psi_by_fold.csv": ["fold", "feature", "reference", "compared", "ks_stat", "ks_pvalue", "psi", "psi_band"],
    "all_models_ranked.csv": ["rank", "fold", "model_version", "config_id", "seed", "val_rmse", "path"],
}


def fail_dropout(spec: RunSpec, stop_requested: object = None) -> RunOutcome:
    if spec.config_id == "dropout=0.3" and spec.fold.name == "f2" and spec.seed == 2:
        return RunOutcome(spec.run_id, error="RuntimeError: injected failure")
    return train_tft(spec)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-fold, 2-seed sweep with one failed run (continue-on-error)."""
    root = make_data_root(tmp_path_factory.mktemp("data"))
    data = tiny_sweep(
        replica_seeds=[1, 2],
        walk_forward={"enabled": True, "folds": [tiny_fold("f1", 2012), tiny_fold("f2", 2013)]},
        param_ranges={"hidden_size": [4, 6], "dropout": [0.3]},
    )
    outcome = run_local_sweep(root, ASSET, validate_sweep_config(data), continue_on_error=True, trainer=fail_dropout)
    assert outcome.status == "partial"
    return outcome.sweep_dir


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_every_spec_file_exists_with_its_columns(finished: Path) -> None:
    for name, columns in SPEC_COLUMNS.items():
        frame = pd.read_csv(finished / name)
        assert set(columns) <= set(frame.columns), name
    for fold in ("f1", "f2"):
        for name in ("sweep_runs.csv", "config_ranking.csv", "param_impact_detail.csv", "param_impact_summary.csv"):
            assert (finished / "folds" / fold / name).is_file()
    for name in ("analysis_config.json", "sweep_runs.json", "summary.json", "drift_ks_psi_overall_summary.json"):
        json.loads((finished / name).read_text())
    assert len(pd.read_csv(finished / "sweep_runs.csv")) == 3 * 2 * 2
    assert len(pd.read_csv(finished / "all_models_ranked.csv")) == 11
    ranking = pd.read_csv(finished / "config_ranking.csv")
    assert ranking.set_index("config_id").loc["dropout=0.3", ["n_runs", "n_failed"]].tolist() == [3, 1]
    assert ranking["robust_score"].is_monotonic_increasing
    fold_runs = pd.read_csv(finished / "folds/f1/sweep_runs.csv")
    assert set(fold_runs["fold"]) == {"f1"} and len(fold_runs) == 6


def test_summary_names_failures_and_compares_to_naive(finished: Path) -> None:
    summary = json.loads((finished / "summary.json").read_text())
    assert summary["asset"] == "SYN" and summary["output_subdir"] == "tiny"
    assert summary["counts"] == {
        "configs": 3,
        "folds": 2,
        "seeds": 2,
        "runs": 12,
        "runs_by_status": {"succeeded": 11, "failed": 1, "cancelled": 0, "queued": 0, "running": 0},
    }
    assert summary["complete"] is False
    assert [(r["config_id"], r["fold"], r["seed"]) for r in summary["failed_runs"]] == [("dropout=0.3", "f2", 2)]
    assert summary["failed_runs"][0]["error"] == "RuntimeError: injected failure"
    best = summary["best_config"]
    ranking = pd.read_csv(finished / "config_ranking.csv")
    assert best["config_id"] == ranking.iloc[0]["config_id"]
    assert best["beats_naive"] == (best["mean_val_rmse"] < best["mean_val_naive_rmse"])
    assert set(summary["best_value_per_param"]) == {"hidden_size", "dropout"}
    assert len(summary["top5"]) == 3
    assert summary["drift"]["available"] is True
    assert all((finished / p).is_file() for p in summary["plots"])


def test_plots_are_real_pngs(finished: Path) -> None:
    summary = json.loads((finished / "summary.json").read_text())
    names = {Path(p).name for p in summary["plots"]}
    assert names == {
        "config_ranking.png",
        "param_impact.png",
        "response_hidden_size.png",
        "response_dropout.png",
        "drift_psi_heatmap.png",
        "best_config_test_predictions.png",
        "best_config_loss_curves.png",
        "strategy_returns.png",
        "direction_accuracy.png",
        "selection_mcs.png",
    }
    assert len(summary["plots"]) == 10 * 3  # sweep level and two folds
    for rel in summary["plots"]:
        width, height = png_size(finished / rel)
        assert 400 <= width <= 3000 and 250 <= height <= 3000, rel
        assert (finished / rel).stat().st_size > 8_000, rel  # not an empty canvas


def test_regenerate_is_byte_identical(finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(p for p in finished.rglob("*") if p.suffix in (".csv", ".json") and "models" not in p.parts)
    before = {p: p.read_bytes() for p in files}
    assert main(["regenerate", "--sweep-dir", str(finished), "--data-dir", str(finished.parents[3])]) == 0
    assert "reports rebuilt" in capsys.readouterr().out
    for path, data in before.items():
        if path.name == "summary.json":
            old, new = json.loads(data), json.loads(path.read_bytes())
            old.pop("generated_at"), new.pop("generated_at")
            assert old == new
        else:
            assert path.read_bytes() == data, path


def test_regenerate_refuses_a_folder_that_is_not_a_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["regenerate", "--sweep-dir", str(tmp_path)]) == 2
    assert "is not a sweep folder" in capsys.readouterr().err


def test_compare_uses_only_the_common_folds_seeds_and_configs(finished: Path, tmp_path: Path) -> None:
    other = finished.parent / "other"
    other.mkdir()
    config = json.loads((finished / "analysis_config.json").read_text())
    config["output_subdir"] = "other"
    config["replica_seeds"] = [1]
    (other / "analysis_config.json").write_text(json.dumps(config))
    rows = [r for r in json.loads((finished / "sweep_runs.json").read_text()) if r["seed"] == 1]
    (other / "sweep_runs.json").write_text(json.dumps(rows))
    out = tmp_path / "cmp"
    assert main(["compare", "--sweep-dir", str(finished), "--sweep-dir", str(other), "--out", str(out)]) == 0
    table = pd.read_csv(out / "compare.csv")
    report = json.loads((out / "compare.json").read_text())
    assert report["common"]["seeds"] == [1]
    assert report["left_out"]["SYN/tiny"]["seeds"] == [2]
    assert report["left_out"]["SYN/tiny"]["runs_left_out"] == 6
    assert set(table["sweep"]) == {"SYN/tiny", "SYN/other"}
    # Same runs on the common part: both sweeps get identical statistics per config.
    by = table.pivot_table(index="config_id", columns="sweep", values="robust_score")
    assert (by["SYN/tiny"] == by["SYN/other"]).all()
    png_size(out / "compare.png")
    # And the difference on the common pairs is zero: indistinguishable, with its pair count.
    significance = pd.read_csv(out / "compare_significance.csv")
    assert set(significance["sweep"]) == {"SYN/other"} and set(significance["reference"]) == {"SYN/tiny"}
    assert (significance["mean_delta"] == 0).all() and significance["wilcoxon_pvalue"].isna().all()
    assert set(significance["verdict"]) == {"insufficient"}  # 2 folds x 1 seed: 2 pairs per config
    assert report["significance"][0]["n_pairs"] in (1, 2)


def test_runs_record_their_skill_and_diebold_mariano_against_the_naive_forecast(finished: Path) -> None:
    """Recomputed from each model version's test_predictions.csv (first-horizon rows)."""
    from scipy import stats

    runs = pd.read_csv(finished / "sweep_runs.csv")
    ok = runs[runs["status"] == "succeeded"]
    assert len(ok) == 11
    for _, run in ok.iterrows():
        predictions = pd.read_csv(
            finished / "folds" / run["fold"] / "models" / run["model_version"] / "test_predictions.csv"
        )
        assert list(predictions.columns) == ["date", "horizon", "actual", "predicted", "naive"]
        assert (predictions["naive"] == 0).all()
        first = predictions[predictions["horizon"] == 1]
        dl = (first["actual"] - first["predicted"]) ** 2 - (first["actual"] - first["naive"]) ** 2
        n = len(dl)
        dm = dl.mean() / np.sqrt(dl.var(ddof=0) / n) * np.sqrt((n - 1) / n)
        # The CSV keeps 8 significant digits of each forecast; the statistic comes from full precision.
        assert run["test_dm_stat"] == pytest.approx(dm, rel=1e-3, abs=1e-3)
        assert run["test_dm_pvalue"] == pytest.approx(2 * stats.t.sf(abs(dm), n - 1), rel=1e-2, abs=1e-3)
        assert run["test_skill"] == pytest.approx(1 - run["test_rmse"] / run["test_naive_rmse"], rel=1e-6, abs=1e-9)


def test_compare_with_nothing_in_common_says_so_and_exits_2(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "disjoint"
    other.mkdir()
    config = json.loads((finished / "analysis_config.json").read_text())
    config["output_subdir"] = "disjoint"
    config["replica_seeds"] = [99]
    (other / "analysis_config.json").write_text(json.dumps(config))
    (other / "sweep_runs.json").write_text("[]")
    assert main(["compare", "--sweep-dir", str(finished), "--sweep-dir", str(other), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "there is nothing to compare" in err and "seeds: none" in err
