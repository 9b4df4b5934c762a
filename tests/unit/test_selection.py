"""The model confidence set and the SPA test over a sweep's configs (core.selection): the loss
families, the loss table (mean over runs, common days only), and the columns and summary block
the report build writes from predictions stored in a tmp sweep folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from arch.bootstrap import MCS, SPA

from core import selection as sel
from core.config import SelectionConfig, validate_sweep_config
from core.evaluation import write_predictions
from core.metrics import LOSSES, METRICS, Metric, column_loss, register_metric
from core.paths import version_folder
from core.plan import BASELINE_ID
from core.plots import plot_selection_mcs, save_figure
from core.sweep_folder import SweepFolderConfig
from core.sweep_report import PLOT_SELECTION, write_sweep_reports
from tests.utils.configs import fold, sweep_dict
from tests.utils.runs import record

CONFIGS = {BASELINE_ID: 1.0, "hidden_size=8": 0.4, "dropout=0.2": 1.1}  # each config's forecast noise
FOLDS = {"f1": 2015, "f2": 2016}
SEEDS = (1, 2)


def rows(**columns: Any) -> pd.DataFrame:
    frame = pd.DataFrame(columns)
    return frame.assign(horizon=1, date=[f"2015-01-{d + 1:02d}" for d in range(len(frame))])


# --- the loss families ------------------------------------------------------------------------------


def test_each_rankable_metric_names_its_loss_family() -> None:
    families = {column: column_loss(column).name for column in ("val_rmse", "val_mae", "val_mase", "val_dir_acc")}
    assert families == {"val_rmse": "squared", "val_mae": "absolute", "val_mase": "absolute", "val_dir_acc": "miss"}
    assert {column_loss(c).name for c in ("val_sharpe", "val_total_return", "val_sharpe_pvalue")} == {"strategy"}
    assert column_loss("val_turnover").name == "turnover"
    assert column_loss("val_pinball").name == "pinball"
    assert column_loss("val_skill").name == column_loss("val_dm_mean_stat").name == "squared"


def test_a_metric_naming_an_unknown_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="loss 'nope'"):
        register_metric(Metric("toy_loss_metric", "toy", "lower", lambda r, ref: 0.0, loss="nope"))
    assert "toy_loss_metric" not in METRICS


def test_squared_absolute_and_miss_per_day() -> None:
    day = rows(actual=[1.0, -2.0, 0.0, 0.5], predicted=[0.5, 1.0, 0.3, 0.0])
    np.testing.assert_allclose(LOSSES["squared"].per_day(day, 0.0), [0.25, 9.0, 0.09, 0.25])
    np.testing.assert_allclose(LOSSES["absolute"].per_day(day, 0.0), [0.5, 3.0, 0.3, 0.5])
    # A wrong sign misses, a zero forecast misses, a day without a move has no loss (as dir_acc).
    np.testing.assert_array_equal(LOSSES["miss"].per_day(day, 0.0), [0.0, 1.0, np.nan, 1.0])


def test_strategy_and_turnover_per_day() -> None:
    day = rows(actual=[0.01, -0.02, 0.03], predicted=[1.0, 1.0, -1.0])
    # pos 1, 1, -1: changes 1, 0, 2; c = 10 bps.
    want = -(np.array([0.01, -0.02, -0.03]) - 0.001 * np.array([1.0, 0.0, 2.0]))
    np.testing.assert_allclose(LOSSES["strategy"].per_day(day, 10.0), want)
    np.testing.assert_array_equal(LOSSES["turnover"].per_day(day, 10.0), [1.0, 0.0, 2.0])


def test_pinball_per_day_and_without_quantiles() -> None:
    names = ("q02", "q10", "q25", "q50", "q75", "q90", "q98")
    quantiles = {c: [q] for c, q in zip(names, (0, 0, 0, 1, 2, 2, 2), strict=True)}
    day = rows(actual=[1.0], predicted=[1.0], **quantiles)
    levels = np.array([0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98])
    error = 1.0 - np.array([0, 0, 0, 1, 2, 2, 2])
    want = np.mean(np.maximum(levels * error, (levels - 1) * error))
    np.testing.assert_allclose(LOSSES["pinball"].per_day(day, 0.0), [want])
    assert np.isnan(LOSSES["pinball"].per_day(rows(actual=[1.0], predicted=[1.0]), 0.0)).all()


# --- the loss table ----------------------------------------------------------------------------------


def test_day_losses_take_the_validation_horizon_one_rows_in_date_order() -> None:
    stored = pd.DataFrame(
        {
            "split": ["val", "val", "val", "test"],
            "date": ["2015-01-03", "2015-01-02", "2015-01-03", "2015-01-05"],
            "horizon": [1, 1, 2, 1],
            "actual": [1.0, 2.0, 9.0, 9.0],
            "predicted": [0.0, 0.0, 0.0, 0.0],
        }
    )
    got = sel.day_losses(stored, LOSSES["squared"], 0.0)
    assert got["date"].tolist() == ["2015-01-02", "2015-01-03"] and got["loss"].tolist() == [4.0, 1.0]


def test_the_loss_table_means_over_runs_and_keeps_the_common_days() -> None:
    frame = pd.DataFrame(
        [
            ("f1", "a", "d1", 1.0),
            ("f1", "a", "d1", 3.0),  # a second seed of a on d1: the mean, 2
            ("f1", "a", "d2", 4.0),
            ("f1", "b", "d1", 5.0),
            ("f1", "b", "d3", 6.0),  # a has no forecast on d3, b none on d2
            ("f1", "a", "d4", np.nan),  # an undefined loss is no forecast
            ("f1", "b", "d4", 1.0),
        ],
        columns=["fold", "config_id", "date", "loss"],
    )
    table = sel.loss_table(frame, ["b", "a"])
    assert table.losses.index.tolist() == ["d1"] and table.losses.columns.tolist() == ["b", "a"]
    assert table.losses.loc["d1"].tolist() == [5.0, 2.0]
    assert table.days_dropped == 3


def test_default_block_size_is_the_ceiling_of_the_cube_root() -> None:
    assert [sel.default_block_size(t) for t in (1, 8, 9, 27, 28, 250, 1000)] == [1, 2, 3, 3, 4, 7, 10]


# --- the report build ---------------------------------------------------------------------------------


def _predictions(config_id: str, fold_name: str, seed: int, days: int) -> pd.DataFrame:
    """Validation and test rows of one run: the actual series is the fold's own (every run of the
    fold sees the same days), the forecast's noise the config's."""
    year = FOLDS[fold_name]
    actual_rng = np.random.default_rng(year)
    noise_rng = np.random.default_rng([year, seed, list(CONFIGS).index(config_id)])
    parts = []
    for split, start in (("val", f"{year}-01-01"), ("test", f"{year + 1}-01-01")):
        dates = pd.bdate_range(start, periods=days).strftime("%Y-%m-%d")
        actual = actual_rng.normal(0, 1, days)
        for horizon in (1, 2):
            predicted = actual + noise_rng.normal(0, CONFIGS[config_id], days)
            parts.append(
                pd.DataFrame(
                    {"split": split, "date": dates, "horizon": horizon, "actual": actual, "predicted": predicted}
                )
            )
    return pd.concat(parts, ignore_index=True)


def _sweep(tmp_path: Path, days: int = 40, **evaluation: Any) -> tuple[list[dict[str, Any]], SweepFolderConfig]:
    config = validate_sweep_config(
        sweep_dict(
            replica_seeds=list(SEEDS),
            walk_forward={"enabled": True, "folds": [fold(name, year) for name, year in FOLDS.items()]},
            param_ranges={"hidden_size": [8], "dropout": [0.2]},
            evaluation=evaluation,
        )
    )
    records = []
    for fold_name in FOLDS:
        for seed in SEEDS:
            for config_id, noise in CONFIGS.items():
                rec = record(config_id, fold_name, seed, noise)
                records.append(rec)
                folder = version_folder(tmp_path, fold_name, rec["model_version"])
                folder.mkdir(parents=True)
                write_predictions(folder / "predictions.parquet", _predictions(config_id, fold_name, seed, days))
    for i, rec in enumerate(records, start=1):
        rec["run_id"] = i
    return records, SweepFolderConfig("SYN", None, config)


def _daily(folder: Path, fold_name: str | None = None) -> pd.DataFrame:
    """The squared errors per day and config, recomputed here from the files: the mean over runs."""
    found = []
    for path in sorted(folder.glob("folds/*/models/*/predictions.parquet")):
        if fold_name is not None and path.parents[2].name != fold_name:
            continue
        stored = pd.read_parquet(path).query("split == 'val' and horizon == 1")
        config_id = path.parent.name.split("__seed")[0]
        found.append(stored.assign(config_id=config_id, loss=(stored["predicted"] - stored["actual"]) ** 2))
    frame = pd.concat(found)
    return frame.groupby(["date", "config_id"])["loss"].mean().unstack().dropna()


def test_the_ranking_gets_the_mcs_columns_and_the_summary_its_block(tmp_path: Path) -> None:
    records, analysis = _sweep(tmp_path)
    summary = write_sweep_reports(tmp_path, records, analysis, None, plots=False)
    block = summary["selection"]
    ranking = pd.read_csv(tmp_path / "config_ranking.csv", keep_default_na=False, na_values=[""])
    assert list(ranking.columns[-2:]) == ["mcs_pvalue", "in_mcs"]
    order = ranking["config_id"].tolist()
    assert block["available"] is True and block["reason"] is None
    assert block["metric"] == "val_rmse" and block["loss"].startswith("squared error")
    assert block["days_used"] == 80 and block["days_dropped"] == 0  # 40 days in each fold
    assert block["configs_tried"] == 2 and block["block_size"] == 5 and block["level"] == 0.9
    # The same numbers as arch on the losses recomputed here, columns in the ranking's order.
    losses = _daily(tmp_path)[order]
    mcs = MCS(losses, size=1 - 0.9, reps=1000, block_size=5, method="R", bootstrap="stationary", seed=0)
    mcs.compute()
    assert block["mcs"]["members"] == [c for c in order if c in set(mcs.included)]
    np.testing.assert_allclose(ranking["mcs_pvalue"], mcs.pvalues["Pvalue"].loc[order], rtol=1e-12)
    assert ranking["in_mcs"].tolist() == [c in set(mcs.included) for c in order]
    assert ranking.set_index("config_id")["in_mcs"]["hidden_size=8"]  # the clearly better forecast
    spa = SPA(
        losses[BASELINE_ID],
        losses.drop(columns=[BASELINE_ID]),
        reps=1000,
        block_size=5,
        bootstrap="stationary",
        studentize=True,
        nested=False,
        seed=0,
    )
    spa.compute()
    assert block["spa"] == pytest.approx({k: float(spa.pvalues[k]) for k in ("lower", "consistent", "upper")})
    assert block["spa"]["consistent"] < 0.05
    sentence = summary["significance"]["sentence"]
    assert (
        "After accounting for the 2 configs tried, at least one config is better than the baseline (SPA p < 0.001, "
        "below 0.05); on 80 validation days, 1 of 3 configs is in the 90% model confidence set." in sentence
    )


def test_each_fold_is_compared_on_its_own_days(tmp_path: Path) -> None:
    records, analysis = _sweep(tmp_path, days=30)
    summary = write_sweep_reports(tmp_path, records, analysis, None, plots=False)
    for fold_name in FOLDS:
        block = summary["selection"]["folds"][fold_name]
        ranking = pd.read_csv(tmp_path / "folds" / fold_name / "config_ranking.csv")
        assert block["available"] and block["days_used"] == 30 and block["block_size"] == 4
        order = ranking["config_id"].tolist()
        mcs = MCS(_daily(tmp_path, fold_name)[order], size=1 - 0.9, reps=1000, block_size=4, seed=0)
        mcs.compute()
        np.testing.assert_allclose(ranking["mcs_pvalue"], mcs.pvalues["Pvalue"].loc[order], rtol=1e-12)


def test_the_settings_reach_arch_and_a_rebuild_writes_the_same_files(tmp_path: Path) -> None:
    selection = {"level": 0.75, "reps": 200, "block_size": 3, "seed": 9}
    records, analysis = _sweep(tmp_path, selection=selection)
    first = write_sweep_reports(tmp_path, records, analysis, None, plots=False, generated_at="t")
    files = {p: p.read_bytes() for p in tmp_path.rglob("config_ranking.csv")}
    again = write_sweep_reports(tmp_path, records, analysis, None, plots=False, generated_at="t")
    assert {p: p.read_bytes() for p in tmp_path.rglob("config_ranking.csv")} == files
    assert first["selection"] == again["selection"]
    block = first["selection"]
    assert (block["level"], block["reps"], block["block_size"], block["seed"]) == (0.75, 200, 3, 9)
    order = pd.read_csv(tmp_path / "config_ranking.csv")["config_id"].tolist()
    mcs = MCS(_daily(tmp_path)[order], size=1 - 0.75, reps=200, block_size=3, method="R", seed=9)
    mcs.compute()
    assert block["mcs"]["pvalues"] == pytest.approx(mcs.pvalues["Pvalue"].loc[order].to_dict())


def test_ranked_by_direction_the_configs_are_compared_on_misses(tmp_path: Path) -> None:
    records, analysis = _sweep(tmp_path, rank_by="val_dir_acc")
    for rec in records:
        rec["val_dir_acc"] = 0.5
    block = write_sweep_reports(tmp_path, records, analysis, None, plots=False)["selection"]
    assert block["metric"] == "val_dir_acc" and block["loss"].startswith("a miss")
    # A miss per day (the actual never is 0 here), the mean over the config's runs, then over the days.
    misses = []
    for fold_name in FOLDS:
        for seed in SEEDS:
            stored = pd.read_parquet(
                version_folder(tmp_path, fold_name, f"hidden_size=8__seed{seed}") / "predictions.parquet"
            ).query("split == 'val' and horizon == 1")
            misses.append(stored.assign(miss=np.sign(stored["predicted"]) != np.sign(stored["actual"])))
    want = pd.concat(misses).groupby("date")["miss"].mean().mean()
    assert block["mcs"]["mean_loss"]["hidden_size=8"] == pytest.approx(want, rel=1e-12)
    assert want < block["mcs"]["mean_loss"][BASELINE_ID]


def test_too_few_days_leave_the_columns_empty_and_say_why(tmp_path: Path) -> None:
    records, analysis = _sweep(tmp_path, days=4)
    summary = write_sweep_reports(tmp_path, records, analysis, None, plots=False)
    block = summary["selection"]
    assert block["available"] is False and block["mcs"] is None and block["spa"] is None
    assert block["days_used"] == 8 and f"{sel.MIN_DAYS} are needed" in block["reason"]
    ranking = pd.read_csv(tmp_path / "config_ranking.csv")
    assert ranking["mcs_pvalue"].isna().all() and ranking["in_mcs"].isna().all()
    assert "model confidence set" not in summary["significance"]["sentence"]


def test_a_run_without_predictions_leaves_the_columns_empty(tmp_path: Path) -> None:
    records, analysis = _sweep(tmp_path)
    (version_folder(tmp_path, "f2", "dropout=0.2__seed2") / "predictions.parquet").unlink()
    block = write_sweep_reports(tmp_path, records, analysis, None, plots=False)["selection"]
    assert block["available"] is False
    assert block["reason"].startswith("1 succeeded run has no validation predictions (predictions.parquet)")
    assert "f2/dropout=0.2__seed2" in block["reason"]
    # The other fold has every run's predictions: it is still compared.
    assert block["folds"]["f1"]["available"] and not block["folds"]["f2"]["available"]


def test_days_a_config_did_not_forecast_are_dropped(tmp_path: Path) -> None:
    """dropout=0.2 failed on every seed of f2: the sweep compares the configs on f1's days only."""
    records, analysis = _sweep(tmp_path)
    for rec in records:
        if rec["config_id"] == "dropout=0.2" and rec["fold"] == "f2":
            rec.update(status="failed", val_rmse=None, model_version=None, error="RuntimeError: boom")
    block = write_sweep_reports(tmp_path, records, analysis, None, plots=False)["selection"]
    assert block["available"] and block["days_used"] == 40 and block["days_dropped"] == 40
    assert block["folds"]["f2"]["available"] and "dropout=0.2" not in block["folds"]["f2"]["mcs"]["pvalues"]
    fold_ranking = pd.read_csv(tmp_path / "folds" / "f2" / "config_ranking.csv").set_index("config_id")
    assert np.isnan(fold_ranking.loc["dropout=0.2", "mcs_pvalue"])


def test_a_sweep_over_the_work_bound_is_not_computed_nor_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records, analysis = _sweep(tmp_path)
    monkeypatch.setattr(sel, "MCS_WORK_LIMIT", 1000 * 2**3)  # 3 configs x 1000 reps is 27,000
    monkeypatch.setattr(sel, "read_run_losses", lambda *a: pytest.fail("read the predictions"))
    block = write_sweep_reports(tmp_path, records, analysis, None, plots=False)["selection"]
    assert block["available"] is False and "reps x configs^3" in block["reason"]
    assert not any(b["available"] for b in block["folds"].values())


def test_one_config_is_no_comparison(tmp_path: Path) -> None:
    records, analysis = _sweep(tmp_path)
    kept = [r for r in records if r["config_id"] == BASELINE_ID]
    block = write_sweep_reports(tmp_path, kept, analysis, None, plots=False)["selection"]
    assert block["available"] is False and "2 or more are needed" in block["reason"]
    assert block["configs_tried"] == 0


def test_the_summary_json_block_is_plain_json_and_the_plot_is_listed(tmp_path: Path) -> None:
    records, analysis = _sweep(tmp_path, days=20)
    summary = write_sweep_reports(tmp_path, records, analysis, None, plots=True)
    stored = json.loads((tmp_path / "summary.json").read_text())
    assert stored["selection"]["mcs"]["pvalues"] == pytest.approx(summary["selection"]["mcs"]["pvalues"])
    assert f"plots/{PLOT_SELECTION}" in summary["plots"] and f"folds/f1/plots/{PLOT_SELECTION}" in summary["plots"]
    assert (tmp_path / "plots" / PLOT_SELECTION).stat().st_size > 1000


def test_the_plot_draws_with_and_without_a_set(tmp_path: Path) -> None:
    block = {
        "available": True,
        "level": 0.9,
        "loss": "squared error (predicted - actual)^2",
        "metric": "val_rmse",
        "days_used": 30,
        "mcs": {"members": ["a"], "size": 1, "pvalues": {"a": 1.0, "b": 0.01}, "mean_loss": {"a": 1.0, "b": 1.2}},
    }
    for name, value in (("set.png", block), ("none.png", {"available": False, "reason": "why"}), ("nil.png", None)):
        save_figure(plot_selection_mcs(value, "title"), tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_with_selection_fills_columns_from_a_block() -> None:
    ranking = pd.DataFrame({"config_id": ["a", "b", "c"], "n_runs": [1, 1, 0]})
    block = {"available": True, "mcs": {"members": ["a"], "pvalues": {"a": 1.0, "b": 0.02}}}
    table = sel.with_selection(ranking, block)
    assert table["mcs_pvalue"].tolist()[:2] == [1.0, 0.02] and np.isnan(table["mcs_pvalue"].iloc[2])
    assert table["in_mcs"].tolist() == [True, False, None]
    spelled = sel.spelled_for_csv(table)["in_mcs"]
    assert spelled.tolist()[:2] == ["true", "false"] and pd.isna(spelled.iloc[2])
    empty = sel.with_selection(ranking, {"available": False})
    assert empty["mcs_pvalue"].isna().all() and empty["in_mcs"].isna().all()


def test_selection_settings_are_bounded() -> None:
    with pytest.raises(ValueError, match="reps"):
        SelectionConfig(reps=10)


def test_the_sentence_reads_the_block() -> None:
    pvalues = {f"c{i}": 1.0 - i / 20 for i in range(13)}
    mcs: dict[str, Any] = {"members": list(pvalues)[:9], "size": 9, "pvalues": pvalues}
    block: dict[str, Any] = {
        "available": True,
        "level": 0.9,
        "reps": 1000,
        "days_used": 250,
        "configs_tried": 12,
        "mcs": mcs,
        "spa": {"lower": 0.3, "consistent": 0.41, "upper": 0.5},
    }
    assert sel.selection_sentence(block, 0.05) == (
        "After accounting for the 12 configs tried, no config is better than the baseline (SPA p = 0.41); on 250 "
        "validation days, 9 of 13 configs are in the 90% model confidence set."
    )
    everyone = {**block, "mcs": {**mcs, "size": 13}, "spa": None}
    assert sel.selection_sentence(everyone, 0.05) == (
        "On 250 validation days, all 13 configs are in the 90% model confidence set (none can be told apart from "
        "the best); no SPA test without the baseline's runs."
    )
    assert sel.selection_sentence({"available": False, "reason": "why"}, 0.05) == ""


def test_identical_loss_columns_are_one_model_and_never_crash_the_build() -> None:
    """Two configs with the same daily losses (an OFAT value that changed nothing, two configs
    that forecast the same sign every day): arch's MCS cannot studentize their difference, so
    they are compared once and share the result; the SPA test leaves out a config with the
    baseline's own losses (it is not better), and says nothing is better when none is left."""
    rng = np.random.default_rng(3)
    base = rng.normal(1.0, 0.2, 60) ** 2
    other = rng.normal(1.1, 0.2, 60) ** 2
    losses = pd.DataFrame({BASELINE_ID: base, "same_as_base": base, "other": other, "twin": other})
    settings = SelectionConfig(reps=200, seed=1)
    result = sel.model_confidence_set(losses, settings, 4)
    alone = MCS(
        losses[[BASELINE_ID, "other"]], size=0.1, reps=200, block_size=4, method="R", bootstrap="stationary", seed=1
    )
    alone.compute()
    expected = alone.pvalues["Pvalue"]
    assert result.pvalues == {
        BASELINE_ID: float(expected[BASELINE_ID]),
        "same_as_base": float(expected[BASELINE_ID]),
        "other": float(expected["other"]),
        "twin": float(expected["other"]),
    }
    spa = sel.spa_test(losses, settings, 4)
    check = SPA(
        losses[BASELINE_ID],
        losses[["other", "twin"]],
        reps=200,
        block_size=4,
        bootstrap="stationary",
        studentize=True,
        nested=False,
        seed=1,
    )
    check.compute()
    assert spa == {name: float(check.pvalues[name]) for name in sel.SPA_PVALUES}
    assert sel.spa_test(losses[[BASELINE_ID, "same_as_base"]], settings, 4) == dict.fromkeys(sel.SPA_PVALUES, 1.0)
    every = sel.model_confidence_set(losses[[BASELINE_ID, "same_as_base"]], settings, 4)
    assert every.pvalues == {BASELINE_ID: 1.0, "same_as_base": 1.0} and every.members == [BASELINE_ID, "same_as_base"]
