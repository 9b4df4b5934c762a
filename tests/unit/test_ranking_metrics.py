"""Ranking by any registered metric: the seed's columns unchanged by default, metric columns
added at the end, `rank_by` ordering the table and deciding the verdicts with its direction."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.config import validate_sweep_config
from core.metrics import METRICS
from core.plan import BASELINE_ID
from core.report_files import to_csv_text
from core.reports import (
    COLUMN_DOCS,
    RANK_SCORE,
    baseline_pairs,
    build_config_ranking,
    rank_direction,
    ranking_column_doc,
    ranking_metric_columns,
    robust_score,
)
from core.sweep_folder import SweepFolderConfig
from core.sweep_report import write_sweep_reports
from core.sweep_runs import runs_table
from tests.utils.configs import fold, sweep_dict
from tests.utils.runs import record

# What the ranking of `sweep_records()` was before rank_by and metric columns existed: the
# seed's columns of today's default ranking must read exactly so.
SEED_RANKING = """\
rank,config_id,param_name,param_value,n_runs,n_failed,mean_val_rmse,std_val_rmse,robust_score,mean_test_rmse,std_test_rmse,n_total,mean_val_mae,mean_test_mae,mean_val_naive_rmse,mean_test_naive_rmse,delta_vs_baseline,ci95_low,ci95_high,holm_pvalue,verdict,mean_test_skill,dm_better_share,n_pairs,mean_val_rel_rmse,std_val_rel_rmse,robust_rel_score,mean_fold_rank,holm_family,simultaneous_ci_low,simultaneous_ci_high
1,baseline,,,8,0,1.45,0.5358571238,1.985857124,1.62,0.5887638382,8,0.725,0.81,2.2,2.4,,,,,baseline,0.325,0.75,0,0.6590909091,0.2435714199,0.902662329,1,,,
2,hidden_size=8,hidden_size,8,8,0,1.5425,0.5355571198,2.07805712,1.72175,0.5885669643,8,0.77125,0.860875,2.2,2.4,0.0925,0.07314987567,0.1118501243,0.015625,worse,0.2826041667,0.5,8,0.7011363636,0.2434350545,0.9445714181,2,2,0.06924961279,0.1157503872
3,dropout=0.2,dropout,0.2,7,1,1.578571429,0.5387772753,2.117348704,1.760714286,0.5911634614,8,0.7892857143,0.8803571429,2.2,2.4,0.1957142857,0.1731503599,0.2182782115,0.015625,worse,0.2663690476,0,7,0.7175324675,0.2448987615,0.962431229,3,2,0.1683388712,0.2230897002
"""
SEED_FOLD_RANKING = """\
fold,rank,config_id,param_name,param_value,n_runs,n_failed,mean_val_rmse,std_val_rmse,robust_score,mean_test_rmse,std_test_rmse,n_total,mean_val_mae,mean_test_mae,mean_val_naive_rmse,mean_test_naive_rmse,delta_vs_baseline,ci95_low,ci95_high,holm_pvalue,verdict,mean_test_skill,dm_better_share,n_pairs,holm_family,simultaneous_ci_low,simultaneous_ci_high
f1,1,baseline,,,4,0,0.95,0.04082482905,0.990824829,1.07,0.03291402943,4,0.475,0.535,2.2,2.4,,,,,baseline,0.5541666667,0.75,0,,,
f1,2,hidden_size=8,hidden_size,8,4,0,1.0425,0.03593976442,1.078439764,1.17175,0.02851169351,4,0.52125,0.585875,2.2,2.4,0.0925,0.05271942118,0.1322805788,0.25,insufficient,0.5117708333,0.5,4,2,0.04029331442,0.1447066856
f1,3,dropout=0.2,dropout,0.2,4,0,1.1475,0.03593976442,1.183439764,1.28725,0.02851169351,4,0.57375,0.643625,2.2,2.4,0.1975,0.1577194212,0.2372805788,0.25,insufficient,0.4636458333,0,4,2,0.1452933144,0.2497066856
f2,1,baseline,,,4,0,1.95,0.04082482905,1.990824829,2.17,0.03291402943,4,0.975,1.085,2.2,2.4,,,,,baseline,0.09583333333,0.75,0,,,
f2,2,hidden_size=8,hidden_size,8,4,0,2.0425,0.03593976442,2.078439764,2.27175,0.02851169351,4,1.02125,1.135875,2.2,2.4,0.0925,0.05271942118,0.1322805788,0.25,insufficient,0.0534375,0.5,4,2,0.04029331442,0.1447066856
f2,3,dropout=0.2,dropout,0.2,3,1,2.153333333,0.04163331999,2.194966653,2.392,0.03292415527,4,1.076666667,1.196,2.2,2.4,0.1933333333,0.1216224545,0.2650442122,0.25,insufficient,0.003333333333,0,3,2,0.08991088639,0.2967557803
"""


def sweep_records() -> list[dict[str, Any]]:
    """Three configs over two folds and four seeds, every score a run records, one failed run."""
    records = []
    for f, fold_name in enumerate(("f1", "f2")):
        for seed in range(1, 5):
            for c, config_id in enumerate(("baseline", "hidden_size=8", "dropout=0.2")):
                failed = (fold_name, seed, config_id) == ("f2", 3, "dropout=0.2")
                val = None if failed else 1 + 0.1 * c - 0.03 * seed + f + 0.01 * ((7 * seed + 3 * c) % 5)
                rec = record(config_id, fold_name, seed, val, None if val is None else val * 1.1 + 0.01 * seed)
                if val is not None:
                    rec["test_skill"] = 1 - rec["test_rmse"] / rec["test_naive_rmse"]
                    rec["test_dm_stat"] = -1.5 + c + 0.2 * seed
                    rec["test_dm_pvalue"] = 0.01 * (1 + c + seed)
                records.append(rec)
    for i, rec in enumerate(records, start=1):
        rec["run_id"] = i
    return records


def seed_columns(text: str) -> list[str]:
    return next(csv.reader(io.StringIO(text)))


def test_default_ranking_keeps_the_seed_columns_and_order() -> None:
    runs = runs_table(sweep_records())
    ranking = build_config_ranking(runs)
    folds = build_config_ranking(runs, per_fold=True)
    assert to_csv_text(ranking[seed_columns(SEED_RANKING)]) == SEED_RANKING
    assert to_csv_text(folds[seed_columns(SEED_FOLD_RANKING)]) == SEED_FOLD_RANKING
    # Only the rank score comes after them, and with val_rmse it is the seed's robust score.
    assert list(ranking.columns) == [*seed_columns(SEED_RANKING), RANK_SCORE]
    assert ranking[RANK_SCORE].tolist() == ranking["robust_score"].tolist()
    assert folds[RANK_SCORE].tolist() == folds["robust_score"].tolist()


def test_metric_columns_come_after_the_seed_columns_and_a_missing_score_is_null() -> None:
    records = sweep_records()
    for rec in records:  # only the baseline's and one variant's runs carry a direction score
        if rec["status"] == "succeeded" and rec["config_id"] != "dropout=0.2":
            rec["val_dir_acc"] = 0.5 + 0.01 * rec["seed"]
            rec["test_dir_acc"] = 0.45 + 0.02 * rec["seed"]
    runs = runs_table(records, ["val_dir_acc", "test_dir_acc"])
    ranking = build_config_ranking(runs, metrics=["rmse", "mae", "dir_acc", "skill_naive"])
    added = list(ranking.columns[len(seed_columns(SEED_RANKING)) :])
    # rmse's columns and mean_val_mae, mean_test_mae, mean_test_skill are the seed's already.
    assert added == [
        "std_val_mae",
        "mean_val_dir_acc",
        "std_val_dir_acc",
        "mean_test_dir_acc",
        "mean_val_skill",
        "std_val_skill",
        RANK_SCORE,
    ]
    assert ranking_metric_columns(["rmse", "mae", "dir_acc", "skill_naive"]) == added[:-1]
    row = ranking.set_index("config_id").loc[BASELINE_ID]
    seeds = np.tile(np.arange(1, 5, dtype="float64"), 2)  # both folds
    assert row["mean_val_dir_acc"] == pytest.approx(np.mean(0.5 + 0.01 * seeds))
    assert row["std_val_dir_acc"] == pytest.approx(np.std(0.5 + 0.01 * seeds, ddof=1))
    assert row["mean_test_dir_acc"] == pytest.approx(np.mean(0.45 + 0.02 * seeds))
    vals = runs.loc[(runs["config_id"] == BASELINE_ID), "val_mae"]
    assert row["std_val_mae"] == pytest.approx(vals.std(ddof=1))
    other = ranking.set_index("config_id").loc["dropout=0.2"]
    assert np.isnan(other["mean_val_dir_acc"]) and np.isnan(other["mean_val_skill"])
    assert "mean_val_dir_acc" in to_csv_text(ranking).splitlines()[0]


def _direction_records() -> list[dict[str, Any]]:
    """One fold, eight seeds: hidden_size=8 hits the direction more often than the baseline and
    dropout=0.2 less, while their val RMSE orders them the other way round."""
    records = []
    for seed in range(1, 9):
        noise = 0.001 * ((5 * seed) % 7)
        for config_id, rmse, hits in (
            ("baseline", 1.0, 0.55),
            ("hidden_size=8", 1.2, 0.62),
            ("dropout=0.2", 0.8, 0.47),
        ):
            rec = record(config_id, "f1", seed, rmse + noise)
            rec["val_dir_acc"] = hits + noise * (2 if config_id == "hidden_size=8" else 1)
            records.append(rec)
    return records


def test_rank_by_a_higher_better_metric_orders_best_first_and_flips_better() -> None:
    runs = runs_table(_direction_records(), ["val_dir_acc"])
    by_rmse = build_config_ranking(runs)
    assert by_rmse["config_id"].tolist() == ["dropout=0.2", "baseline", "hidden_size=8"]
    assert by_rmse.set_index("config_id")["verdict"].to_dict() == {
        "dropout=0.2": "better",
        "baseline": "baseline",
        "hidden_size=8": "worse",
    }

    ranking = build_config_ranking(runs, rank_by="val_dir_acc").set_index("config_id")
    assert ranking.index.tolist() == ["hidden_size=8", "baseline", "dropout=0.2"]
    assert ranking["rank"].tolist() == [1, 2, 3]
    acc = runs.groupby("config_id")["val_dir_acc"]
    expected = acc.mean() - acc.std(ddof=1)  # mean - std: higher is better
    for config_id in ranking.index:
        assert ranking.loc[config_id, RANK_SCORE] == pytest.approx(expected[config_id])
    # The seed's robust score keeps its meaning (val RMSE) whatever ranks the table.
    assert ranking.loc["baseline", "robust_score"] == pytest.approx(
        by_rmse.set_index("config_id").loc["baseline", "robust_score"]
    )
    # Verdicts and deltas are on rank_by: a higher direction hit rate is the better one.
    assert ranking["verdict"].to_dict() == {"hidden_size=8": "better", "baseline": "baseline", "dropout=0.2": "worse"}
    base = runs[runs["config_id"] == BASELINE_ID].set_index("seed")["val_dir_acc"]
    mine = runs[runs["config_id"] == "hidden_size=8"].set_index("seed")["val_dir_acc"]
    assert ranking.loc["hidden_size=8", "delta_vs_baseline"] == pytest.approx((mine - base).mean())
    assert ranking.loc["hidden_size=8", "delta_vs_baseline"] > 0
    assert ranking.loc["hidden_size=8", "simultaneous_ci_low"] > 0


def test_per_fold_rankings_follow_rank_by() -> None:
    records = _direction_records() + [
        {**rec, "fold": "f2", "run_key": rec["run_key"] + "-2"} for rec in _direction_records()
    ]
    for rec in records:
        if rec["fold"] == "f2" and rec["config_id"] == "dropout=0.2":
            rec["val_dir_acc"] += 0.5  # the best of f2
    runs = runs_table(records, ["val_dir_acc"])
    folds = build_config_ranking(runs, per_fold=True, rank_by="val_dir_acc", pairs=baseline_pairs(runs, "val_dir_acc"))
    order = {f: part["config_id"].tolist() for f, part in folds.groupby("fold", sort=False)}
    assert order == {
        "f1": ["hidden_size=8", "baseline", "dropout=0.2"],
        "f2": ["dropout=0.2", "hidden_size=8", "baseline"],
    }
    sweep = build_config_ranking(runs, rank_by="val_dir_acc").set_index("config_id")
    assert sweep["mean_fold_rank"].to_dict() == {"hidden_size=8": 1.5, "dropout=0.2": 2.0, "baseline": 2.5}


def test_nulls_rank_last_whatever_the_direction() -> None:
    records = _direction_records()
    for rec in records:
        if rec["config_id"] == "hidden_size=8":
            del rec["val_dir_acc"]
    ranking = build_config_ranking(runs_table(records, ["val_dir_acc"]), rank_by="val_dir_acc")
    assert ranking["config_id"].tolist() == ["baseline", "dropout=0.2", "hidden_size=8"]
    assert np.isnan(ranking[RANK_SCORE].iloc[-1])


@pytest.mark.parametrize("rank_by", ["test_rmse", "val_coverage_80", "val_nope", "rmse"])
def test_rank_by_must_be_a_registered_val_metric_with_a_direction(rank_by: str) -> None:
    with pytest.raises(ValueError, match=rank_by):
        build_config_ranking(runs_table(sweep_records()), rank_by=rank_by)


def test_robust_score_penalises_spread_in_both_directions() -> None:
    assert robust_score(1.0, 0.25, "lower") == 1.25
    assert robust_score(1.0, 0.25, "higher") == 0.75
    scores = robust_score(pd.Series([1.0, 2.0]), pd.Series([0.5, 0.0]), "higher")
    assert scores.tolist() == [0.5, 2.0]
    assert rank_direction("val_rmse") == "lower" and rank_direction("val_sharpe") == "higher"


def test_a_metric_column_is_documented_from_the_registry() -> None:
    kind, text = ranking_column_doc("std_val_dir_acc")
    assert kind is float and METRICS["dir_acc"].description in text and "val_dir_acc" in text
    assert "{ref}" not in ranking_column_doc("mean_test_skill_ar1")[1]
    assert ranking_column_doc(RANK_SCORE) == COLUMN_DOCS[RANK_SCORE]
    with pytest.raises(KeyError):
        ranking_column_doc("mean_val_nope")


def test_the_sweep_ranking_files_follow_the_evaluation_block(tmp_path: Path) -> None:
    config = validate_sweep_config(
        sweep_dict(
            replica_seeds=list(range(1, 9)),
            walk_forward={"enabled": True, "folds": [fold("f1", 2015)]},
            param_ranges={"hidden_size": [8], "dropout": [0.2]},
            evaluation={"rank_by": "val_dir_acc"},
        )
    )
    records = _direction_records()
    for i, rec in enumerate(records, start=1):
        rec["run_id"] = i
    summary = write_sweep_reports(tmp_path, records, SweepFolderConfig("SYN", None, config), None, plots=False)
    assert summary["best_config"]["config_id"] == "hidden_size=8"
    assert summary["best_config"][RANK_SCORE] == pytest.approx(summary["top5"][0][RANK_SCORE])
    assert "mean - std of val_dir_acc" in summary["best_value_per_param"]["hidden_size"]["criterion"]
    for path in (tmp_path / "config_ranking.csv", tmp_path / "folds" / "f1" / "config_ranking.csv"):
        table = pd.read_csv(path)
        assert table["config_id"].tolist() == ["hidden_size=8", "baseline", "dropout=0.2"]
        # The selection's columns come last (empty here: these runs stored no predictions).
        assert list(table.columns[-3:]) == [RANK_SCORE, "mcs_pvalue", "in_mcs"] and "mean_val_dir_acc" in table.columns
        assert table["mcs_pvalue"].isna().all() and table["in_mcs"].isna().all()
    assert summary["selection"]["available"] is False and "no validation predictions" in summary["selection"]["reason"]


def test_runs_recorded_without_test_skill_get_it_from_their_rmses() -> None:
    """Rows from before test_skill was a column (null there) rank with the skill their RMSEs give."""
    records = [record("baseline", "f1", seed, 1.0, 2.0) for seed in (1, 2)]
    for r in records:
        r["test_naive_rmse"] = 2.5
    stored = [{**r, "test_skill": 1 - 2.0 / 2.5} for r in records]
    old = build_config_ranking(runs_table(records), relative=False)
    new = build_config_ranking(runs_table(stored), relative=False)
    assert old["mean_test_skill"].iloc[0] == pytest.approx(0.2) == new["mean_test_skill"].iloc[0]
