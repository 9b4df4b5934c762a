"""The summary names what the configs are ranked by and what the best config's forecasts are
worth: direction hit rate, the sign strategy's Sharpe after costs and the skill against each
reference, each with the share of its runs whose test is significant, in numbers and in words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.config import validate_sweep_config
from core.metrics import metric_columns, metric_names
from core.reports import build_config_ranking, build_param_impact_detail, build_param_impact_summary
from core.summary import SummaryFacts, build_summary
from core.sweep_folder import SweepFolderConfig
from core.sweep_report import write_sweep_reports
from core.sweep_runs import runs_table
from tests.utils.configs import fold, sweep_dict
from tests.utils.runs import record

FOLDS = ("f1", "f2")
SEEDS = (1, 2)
# The best config's four runs (f1 seed 1, f1 seed 2, f2 seed 1, f2 seed 2): three of four
# direction tests below 0.05, one of four Sharpe tests, two of four Diebold-Mariano tests
# against naive that find it better (the fourth run's p is small but its errors are larger),
# all four against mean, none against ar1 (untested).
BEST: dict[str, list[float | None]] = {
    "test_dir_acc": [0.52, 0.54, 0.50, 0.56],
    "test_dir_pvalue": [0.01, 0.02, 0.3, 0.04],
    "test_sharpe": [0.4, 0.6, 0.2, 0.8],
    "test_sharpe_pvalue": [0.2, 0.3, 0.01, 0.5],
    "test_skill": [0.01, -0.01, 0.02, 0.0],
    "test_dm_stat": [-2.0, -1.0, -3.0, 1.0],
    "test_dm_pvalue": [0.01, 0.5, 0.02, 0.01],
    "test_skill_mean": [0.02, 0.02, 0.02, 0.02],
    "test_dm_mean_stat": [-3.0, -3.0, -3.0, -3.0],
    "test_dm_mean_pvalue": [0.001, 0.001, 0.001, 0.001],
    "test_skill_ar1": [None, None, None, None],
    "test_dm_ar1_stat": [None, None, None, None],
    "test_dm_ar1_pvalue": [None, None, None, None],
}
BASELINE: dict[str, float] = {
    "test_dir_acc": 0.49,
    "test_dir_pvalue": 0.6,
    "test_sharpe": -0.1,
    "test_sharpe_pvalue": 0.7,
    "test_skill": -0.02,
    "test_dm_stat": 1.0,
    "test_dm_pvalue": 0.3,
}


def runs(quantiles: bool = False) -> list[dict[str, Any]]:
    """A baseline and hidden_size=8 (lower val RMSE: the best) over 2 folds and 2 seeds, with
    the metric columns above (and, with `quantiles`, coverage and pinball)."""
    rows = []
    for i, (f, s) in enumerate((f, s) for f in FOLDS for s in SEEDS):
        base = record("baseline", f, s, 1.0 + 0.01 * s)
        best = record("hidden_size=8", f, s, 0.9 + 0.01 * s)
        base |= BASELINE
        best |= {column: values[i] for column, values in BEST.items()}
        if quantiles:
            best |= {"test_coverage_80": 0.7 + 0.02 * i, "test_coverage_96": 0.9, "test_pinball": 0.004}
        rows += [base, best]
    for run_id, row in enumerate(rows, start=1):
        row["run_id"] = run_id
    return rows


def summary_of(tmp_path: Path, records: list[dict[str, Any]], **evaluation: Any) -> dict[str, Any]:
    data = sweep_dict(
        replica_seeds=list(SEEDS),
        walk_forward={"enabled": True, "folds": [fold(name, 2015 + i) for i, name in enumerate(FOLDS)]},
        param_ranges={"hidden_size": [8]},
        evaluation={"costs_bps": 5.0, **evaluation},
    )
    config = SweepFolderConfig("SYN", None, validate_sweep_config(data))
    return write_sweep_reports(tmp_path, records, config, None, plots=False)


def test_the_evaluation_block_reports_the_best_configs_metrics_and_their_significance(tmp_path: Path) -> None:
    summary = summary_of(tmp_path, runs())
    assert summary["rank_by"] == "val_rmse"
    block = summary["evaluation"]
    assert {k: block[k] for k in ("rank_by", "better", "costs_bps", "references")} == {
        "rank_by": "val_rmse",
        "better": "lower",
        "costs_bps": 5.0,
        "references": ["naive", "mean", "ar1"],
    }
    assert block["scored_from"] == summary["scored_from"]
    best = block["best_config"]
    assert best["config_id"] == summary["best_config"]["config_id"] == "hidden_size=8"
    assert best["direction"] == {
        "mean_test_dir_acc": pytest.approx(0.53),
        "significant_share": 0.75,
        "n_runs": 4,
        "significant": True,
    }
    assert best["sharpe"] == {
        "mean_test_sharpe": pytest.approx(0.5),
        "costs_bps": 5.0,
        "significant_share": 0.25,
        "n_runs": 4,
        "significant": False,
    }
    skill = best["skill"]
    assert skill["naive"] == {
        "mean_test_skill": pytest.approx(0.005),
        "dm_better_share": 0.5,  # not more than half: not significant
        "n_runs": 4,
        "significant": False,
    }
    # The naive reference's share is the ranking's dm_better_share (the same rule).
    assert skill["naive"]["dm_better_share"] == summary["best_config"]["dm_better_share"]
    assert skill["mean"] == {
        "mean_test_skill_mean": pytest.approx(0.02),
        "dm_better_share": 1.0,
        "n_runs": 4,
        "significant": True,
    }
    assert skill["ar1"] == {"mean_test_skill_ar1": None, "dm_better_share": None, "n_runs": 0, "significant": False}
    assert best["quantiles"] is None  # a point-loss sweep


def test_the_sentence_puts_the_best_configs_metrics_in_words(tmp_path: Path) -> None:
    summary = summary_of(tmp_path, runs())
    sentence = summary["significance"]["sentence"]
    assert sentence.endswith(
        "Ranked by val_rmse (lower is better). The best config, hidden_size=8, gets the direction right on 53% of "
        "test days (significant in 3 of 4 runs), its sign strategy earns a Sharpe of 0.5 after 5 bps costs "
        "(significant in 1 of 4 runs), and its skill is 0.5% against naive, 2% against mean (Diebold-Mariano: "
        "better in 2 of 4 runs against naive, 4 of 4 runs against mean)."
    )
    # Today's sentences come first, unchanged.
    assert sentence.startswith("No variant is distinguishable from the baseline at alpha 0.05")
    assert "val_rmse" in summary["significance"]["test"]


def test_no_significant_skill_and_no_costs_read_plainly(tmp_path: Path) -> None:
    records = runs()
    for row in records:
        row |= {"test_dm_pvalue": 0.5, "test_dm_mean_pvalue": 0.5}
    summary = summary_of(tmp_path, records, costs_bps=0.0)
    sentence = summary["significance"]["sentence"]
    assert "a Sharpe of 0.5 without costs" in sentence
    assert sentence.endswith("its skill is 0.5% against naive, 2% against mean (none significant).")
    assert summary["evaluation"]["best_config"]["skill"]["mean"]["significant"] is False


def test_quantile_runs_report_coverage_and_pinball(tmp_path: Path) -> None:
    best = summary_of(tmp_path, runs(quantiles=True))["evaluation"]["best_config"]
    assert best["quantiles"] == {
        "coverage_80": pytest.approx(0.73),
        "coverage_96": pytest.approx(0.9),
        "pinball": pytest.approx(0.004),
    }


def test_the_sentence_and_the_test_name_another_rank_by(tmp_path: Path) -> None:
    records = runs()
    for row in records:  # the baseline gets the direction right more often on validation
        row["val_dir_acc"] = 0.6 if row["config_id"] == "baseline" else 0.5
    summary = summary_of(tmp_path, records, rank_by="val_dir_acc")
    assert summary["rank_by"] == "val_dir_acc" and summary["evaluation"]["better"] == "higher"
    assert summary["evaluation"]["best_config"]["config_id"] == "baseline"
    assert (
        "Ranked by val_dir_acc (higher is better). The best config, baseline," in (summary["significance"]["sentence"])
    )
    assert "paired val_dir_acc deltas" in summary["significance"]["test"]


def test_a_fold_summary_judges_that_folds_runs() -> None:
    config = validate_sweep_config(
        sweep_dict(
            replica_seeds=list(SEEDS),
            walk_forward={"enabled": True, "folds": [fold(name, 2015 + i) for i, name in enumerate(FOLDS)]},
            param_ranges={"hidden_size": [8]},
        )
    )
    references = config.evaluation.references
    frame = runs_table([r for r in runs() if r["fold"] == "f1"], metric_columns(references))
    ranking = build_config_ranking(frame, relative=False, metrics=metric_names(references))
    impact = build_param_impact_summary(build_param_impact_detail(frame))
    summary = build_summary("SYN", config, frame, ranking, impact, {}, [], SummaryFacts(fold="f1"))
    best = summary["evaluation"]["best_config"]
    assert best["direction"]["n_runs"] == 2 and best["direction"]["significant_share"] == 1.0  # 0.01, 0.02
    assert best["skill"]["naive"]["dm_better_share"] == 0.5  # -2 at 0.01 yes, -1 at 0.5 no
    assert "significant in 2 of 2 runs" in summary["significance"]["sentence"]


def test_the_terminal_table_names_another_rank_by_and_its_score(tmp_path: Path) -> None:
    from core.report_files import table_rows
    from core.summary import ranking_text

    records = runs()
    for row in records:
        row["val_dir_acc"] = 0.6 if row["config_id"] == "baseline" else 0.5
    summary = summary_of(tmp_path, records, rank_by="val_dir_acc")
    rows = table_rows(pd.read_csv(tmp_path / "config_ranking.csv", dtype={"param_value": str}))
    text = ranking_text(rows, summary["significance"]["sentence"], summary["rank_by"])
    head, columns, first = text.splitlines()[:3]
    assert head.startswith("ranking by val_dir_acc (rank_score = mean - std of val_dir_acc; delta and p on it;")
    assert columns.split()[-1] == "rank_score"
    assert first.split()[1] == "baseline" and float(first.split()[-1]) == pytest.approx(0.6)
    # Ranked by val RMSE, the table is as it always was.
    default = ranking_text(rows, None)
    assert default.splitlines()[0].startswith("ranking (robust_score = mean_val_rmse + std_val_rmse;")
    assert default.splitlines()[1].split()[-1] == "naive_rmse"
