"""Ranking, impact pairing and win rates, checked against values computed by hand."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.report_files import to_csv_text
from core.reports import (
    RANKING_RELATIVE_COLUMNS,
    ImpactDetail,
    build_config_ranking,
    build_param_impact_detail,
    build_param_impact_summary,
    split_by_fold,
)
from core.sweep_runs import SweepRunsFiles, records_from_rows, runs_table, sweep_runs_frame, sweep_runs_rows
from tests.utils.runs import hand_computed_records, record

SPEC_RANKING = [
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
]


@pytest.fixture
def runs() -> pd.DataFrame:
    return runs_table(hand_computed_records())


def test_ranking_by_hand(runs: pd.DataFrame) -> None:
    ranking = build_config_ranking(runs).set_index("config_id")
    assert list(build_config_ranking(runs).columns[: len(SPEC_RANKING)]) == SPEC_RANKING
    # hidden_size=8: one succeeded run (0.5) -> std 0, robust 0.5
    assert ranking.loc["hidden_size=8", ["n_runs", "n_failed", "n_total"]].tolist() == [1, 2, 4]
    assert ranking.loc["hidden_size=8", "std_val_rmse"] == 0.0
    assert ranking.loc["hidden_size=8", "robust_score"] == 0.5
    # learning_rate=0.01: 1.5, 1.5, 2.5, 2.5 -> mean 2, sample std sqrt(1/3)
    assert ranking.loc["learning_rate=0.01", "mean_val_rmse"] == pytest.approx(2.0)
    assert ranking.loc["learning_rate=0.01", "std_val_rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert ranking.loc["learning_rate=0.01", "robust_score"] == pytest.approx(2 + math.sqrt(1 / 3))
    # baseline: 1, 2, 3 succeeded, one failed -> mean 2, std 1, robust 3
    assert ranking.loc["baseline", ["n_runs", "n_failed"]].tolist() == [3, 1]
    assert ranking.loc["baseline", "robust_score"] == pytest.approx(3.0)
    assert ranking.loc["baseline", "mean_test_rmse"] == pytest.approx(2.1)
    # cand: nothing succeeded -> ranked last, no statistics
    assert ranking.loc["cand", "n_runs"] == 0 and math.isnan(ranking.loc["cand", "robust_score"])
    assert build_config_ranking(runs)["config_id"].tolist() == [
        "hidden_size=8",
        "learning_rate=0.01",
        "baseline",
        "cand",
    ]
    assert build_config_ranking(runs)["rank"].tolist() == [1, 2, 3, 4]


def test_ties_keep_plan_order() -> None:
    runs = runs_table(
        [record("baseline", "f", 1, 1.0), record("dropout=0.2", "f", 1, 1.0), record("dropout=0.3", "f", 1, 1.0)]
    )
    assert build_config_ranking(runs)["config_id"].tolist() == ["baseline", "dropout=0.2", "dropout=0.3"]


def test_impact_pairs_only_succeeded_runs_of_the_same_fold_and_seed(runs: pd.DataFrame) -> None:
    detail = build_param_impact_detail(runs)
    got = {(r.config_id, r.fold, r.seed): r.delta_rmse_vs_baseline for r in detail.itertuples()}
    assert got == pytest.approx(
        {
            ("learning_rate=0.01", "f1", 1): 0.5,
            ("learning_rate=0.01", "f1", 2): -0.5,
            ("learning_rate=0.01", "f2", 1): -0.5,
            # (f2, 2): the baseline failed -> no pair
            ("hidden_size=8", "f1", 1): -0.5,
        }
    )
    assert "cand" not in set(detail["config_id"])  # explicit candidates have no single param
    row = detail[(detail["config_id"] == "hidden_size=8")].iloc[0]
    assert (row["test_rmse"], row["baseline_test_rmse"]) == pytest.approx((0.7, 1.1))
    assert row["delta_test_rmse_vs_baseline"] == pytest.approx(-0.4)
    assert list(detail.columns) == [
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
    ]


def test_impact_summary_by_hand(runs: pd.DataFrame) -> None:
    summary = build_param_impact_summary(build_param_impact_detail(runs))
    assert summary["config_id"].tolist() == ["hidden_size=8", "learning_rate=0.01"]  # sorted by average delta
    lr = summary.set_index("config_id").loc["learning_rate=0.01"]
    assert lr["n_pairs"] == 3
    assert lr["avg_delta_rmse_vs_baseline"] == pytest.approx(-1 / 6)
    assert lr["std_delta_rmse_vs_baseline"] == pytest.approx(math.sqrt(1 / 3))
    assert lr["win_rate"] == pytest.approx(2 / 3)
    assert lr["param_name"] == "learning_rate" and lr["param_value"] == 0.01  # typed; CSV files spell it
    assert "learning_rate,0.01,learning_rate=0.01" in to_csv_text(summary)
    hs = summary.set_index("config_id").loc["hidden_size=8"]
    assert (hs["n_pairs"], hs["std_delta_rmse_vs_baseline"], hs["win_rate"]) == (1, 0.0, 1.0)


def test_a_tie_with_the_baseline_is_not_a_win() -> None:
    runs = runs_table([record("baseline", "f", 1, 1.0), record("dropout=0.2", "f", 1, 1.0)])
    assert build_param_impact_summary(build_param_impact_detail(runs))["win_rate"].tolist() == [0.0]


def test_reports_over_no_succeeded_runs_are_empty_not_errors() -> None:
    runs = runs_table([record("baseline", "f", 1, None), record("dropout=0.2", "f", 1, None)])
    assert build_config_ranking(runs)["n_runs"].tolist() == [0, 0]
    assert build_param_impact_detail(runs).empty
    assert build_param_impact_summary(build_param_impact_detail(runs)).empty


def test_sweep_runs_rows_round_trip_through_json_rows() -> None:
    records = hand_computed_records()
    again = records_from_rows(sweep_runs_rows(records))
    assert to_csv_text(sweep_runs_frame(again)) == to_csv_text(sweep_runs_frame(records))
    frame = sweep_runs_frame(records)
    assert frame.columns.tolist().count("seed") == 1
    assert pd.isna(frame.loc[0, "param_value"]) and frame.loc[1, "param_value"] == "0.01"
    assert frame.loc[1, "learning_rate"] == 0.01


def shuffled_records(seed: int) -> list[dict[str, Any]]:
    """Runs over 3 folds where configs and seeds first appear in a different order per fold
    (as after merges), with failures, ties, single runs and a fold without a baseline."""
    rng = random.Random(seed)
    configs = ["baseline", "dropout=0.2", "dropout=0.3", "hidden_size=8", "learning_rate=0.01"]
    rows = []
    for fold in ("f1", "f2", "f3"):
        order = [(c, s) for c in rng.sample(configs, len(configs)) for s in rng.sample([1, 2, 3], 3)]
        for config_id, seed_ in order:
            if fold == "f3" and config_id == "baseline":
                continue
            roll = rng.random()
            val = None if roll < 0.15 else rng.choice([1.0, 1.5, round(rng.uniform(0.5, 2.5), 3)])
            rows.append(record(config_id, fold, seed_, val))
    rng.shuffle(rows)
    for i, row in enumerate(rows, start=1):
        row["run_id"] = i
    return rows


@pytest.mark.parametrize("seed", range(6))
def test_per_fold_tables_equal_one_pass_per_fold(seed: int) -> None:
    runs = runs_table(shuffled_records(seed))
    folds = ["f1", "f2", "f3", "f4"]  # f4 has no runs
    rankings = split_by_fold(build_config_ranking(runs, per_fold=True), folds)
    detail = build_param_impact_detail(runs, per_fold=True)
    details = split_by_fold(detail, folds)
    impacts = split_by_fold(build_param_impact_summary(detail, per_fold=True), folds)
    for fold in folds:
        fold_runs = runs[runs["fold"] == fold]
        one_detail = build_param_impact_detail(fold_runs)
        one_ranking = build_config_ranking(fold_runs).drop(columns=list(RANKING_RELATIVE_COLUMNS))
        for got, want in (
            (rankings[fold], one_ranking),  # the relative view is the sweep level's alone
            (details[fold], one_detail),
            (impacts[fold], build_param_impact_summary(one_detail)),
        ):
            assert to_csv_text(got) == to_csv_text(want), fold
            assert list(got.columns) == list(want.columns)
    assert len(rankings["f4"]) == 0 and len(rankings["f1"]) == 5
    formatted_once = ImpactDetail(runs)
    assert formatted_once.overall_csv() == to_csv_text(build_param_impact_detail(runs))
    for fold in folds:
        assert formatted_once.fold_csv(fold) == to_csv_text(build_param_impact_detail(runs[runs["fold"] == fold]))


def test_csv_text_matches_pandas_to_csv() -> None:
    frame = pd.DataFrame(
        {
            "i": [1, 2, 3],
            "f": [0.1, math.nan, 1 / 3],
            "big": [1e20, -0.0, 12345678901.0],
            "s": ["plain", 'with "quotes"', "a,b"],
            "missing": [None, "x", None],
            "b": [True, False, True],
            "mixed": [1, "two", 3.5],
            "multi\nline": ["x\ny", "", "z\r"],
        }
    )
    assert to_csv_text(frame) == frame.to_csv(index=False, lineterminator="\n", float_format="%.10g")
    repeated = pd.DataFrame(  # few distinct values: each is spelled once
        {
            "f": [0.25, math.nan, 0.25, 1e-7] * 5,
            "zeros": [0.0, -0.0, 0.5, 0.5] * 5,
            "i": [3, 3, 4, 3] * 5,
            "b": [True, False, True, True] * 5,
            "s": ["a,b", "c", "c", "c"] * 5,
        }
    )
    assert to_csv_text(repeated) == repeated.to_csv(index=False, lineterminator="\n", float_format="%.10g")
    single = pd.DataFrame({"only": ["", "a"]})
    assert to_csv_text(single) == single.to_csv(index=False, lineterminator="\n")


def test_sweep_runs_json_is_one_row_per_line_and_reads_back(tmp_path: Path) -> None:
    records = hand_computed_records()
    records[0]["error"] = 'tricky },{"run_id": 1 text'
    records[1]["val_rmse"] = math.inf
    SweepRunsFiles(records).write(tmp_path)
    text = (tmp_path / "sweep_runs.json").read_text()
    lines = text.splitlines()
    assert lines[0] == "[" and lines[-1] == "]" and len(lines) == len(records) + 2
    rows = json.loads(text)
    assert rows == json.loads(json.dumps(sweep_runs_rows(records)))
    assert rows[0]["error"] == 'tricky },{"run_id": 1 text' and rows[1]["val_rmse"] is None
    (tmp_path / "f2").mkdir()
    (tmp_path / "f2" / "sweep_runs.json").write_text("[]\n")  # as earlier versions wrote per fold
    SweepRunsFiles(records).write_fold(tmp_path / "f2", "f2")
    assert pd.read_csv(tmp_path / "f2" / "sweep_runs.csv")["run_id"].tolist() == list(range(9, 17))
    assert not (tmp_path / "f2" / "sweep_runs.json").exists()


def test_sweep_runs_json_has_one_run_per_line_whatever_its_error_says(tmp_path: Path) -> None:
    # The file is encoded in one call and broken at row boundaries: text that looks like one stays inside its row.
    tricky = 'RuntimeError: {"a": 1},{"run_id": 2}\n},{"run_id":3,'
    records = [record("baseline", "f", 1, None, run_id=1), record("baseline", "f", 2, 0.5, run_id=2)]
    records[0]["error"] = tricky
    records[1]["val_mae"] = math.nan
    SweepRunsFiles(records).write(tmp_path)
    text = (tmp_path / "sweep_runs.json").read_text()
    lines = text.splitlines()
    assert lines[0] == "[" and lines[-1] == "]" and len(lines) == 4
    rows = json.loads(text)
    assert rows == sweep_runs_rows(records)
    assert [json.loads(line.rstrip(",")) for line in lines[1:-1]] == rows
    assert rows[0]["error"] == " ".join(tricky.split()) and rows[1]["val_mae"] is None
    SweepRunsFiles([]).write(tmp_path)
    assert json.loads((tmp_path / "sweep_runs.json").read_text()) == []
