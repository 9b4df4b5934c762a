"""Significance in every ranking: each statistic recomputed by hand (numpy and scipy, not the
project's code) on small tables with ties, zeros, a single pair and a failed run in a pair,
and compared with the files the reports write."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from core.config import validate_sweep_config
from core.merge import validate_merge
from core.significance import diebold_mariano, holm, pairs_needed, wilcoxon_pvalues
from core.sweep_folder import SweepFolderConfig
from core.sweep_report import write_sweep_reports
from tests.utils.configs import fold, sweep_dict
from tests.utils.runs import record

ALPHA = 0.05
FOLDS = ("f1", "f2")
SEEDS = (1, 2, 3, 4)
# val RMSE per (fold, seed); the baseline's run of (f2, 4) fails, so no variant pairs there.
BASE = {
    ("f1", 1): 1.00,
    ("f1", 2): 1.10,
    ("f1", 3): 0.90,
    ("f1", 4): 1.05,
    ("f2", 1): 2.0,
    ("f2", 2): 2.2,
    ("f2", 3): 1.8,
}
VARIANTS: dict[str, dict[tuple[str, int], float]] = {
    # distinct deltas, all negative: a clear improvement
    "hidden_size=8": {
        ("f1", 1): 0.91,
        ("f1", 2): 0.98,
        ("f1", 3): 0.83,
        ("f1", 4): 0.96,
        ("f2", 1): 1.85,
        ("f2", 2): 2.01,
        ("f2", 3): 1.69,
        ("f2", 4): 1.7,
    },
    # ties and zeros among the deltas (scipy's permutation test)
    "dropout=0.2": {
        ("f1", 1): 1.00,
        ("f1", 2): 1.20,
        ("f1", 3): 1.00,
        ("f1", 4): 1.05,
        ("f2", 1): 2.1,
        ("f2", 2): 2.3,
        ("f2", 3): 1.9,
        ("f2", 4): 2.0,
    },
    # one pair only: its other runs failed
    "learning_rate=0.01": {("f1", 1): 1.95},
}


def records() -> list[dict[str, Any]]:
    rows = []
    for f in FOLDS:
        for s in SEEDS:
            rows.append(
                record("baseline", f, s, BASE.get((f, s)), test=(BASE[(f, s)] + 0.2) if (f, s) in BASE else None)
            )
            for config_id, vals in VARIANTS.items():
                val = vals.get((f, s))
                rows.append(record(config_id, f, s, val, test=None if val is None else val + 0.15))
    for i, row in enumerate(rows, start=1):
        row["run_id"] = i
        if row["status"] == "succeeded":  # skill and DM per run, as a trainer records them
            row["test_skill"] = 1 - row["test_rmse"] / row["test_naive_rmse"]
            row["test_dm_stat"] = -3.0 if row["seed"] % 2 else 1.0
            row["test_dm_pvalue"] = 0.01 if row["seed"] != 3 else 0.2
    return rows


def config(**overrides: Any) -> Any:
    data = sweep_dict(
        replica_seeds=list(SEEDS),
        walk_forward={"enabled": True, "folds": [fold("f1", 2015), fold("f2", 2016)]},
        param_ranges={"hidden_size": [8], "dropout": [0.2], "learning_rate": [0.01]},
        **overrides,
    )
    return validate_sweep_config(data)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("sig") / "sweep"
    summary = write_sweep_reports(folder, records(), SweepFolderConfig("SYN", None, config()), None, plots=False)
    return folder, summary


def deltas(config_id: str, folds: tuple[str, ...] = FOLDS) -> np.ndarray:
    vals = VARIANTS[config_id]
    return np.array([vals[k] - BASE[k] for k in BASE if k in vals and k[0] in folds])


def by_hand(d: np.ndarray) -> dict[str, float]:
    """The issue's definitions, written out."""
    n = len(d)
    out = {"n": n, "mean": d.mean()}
    half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n) if n >= 2 else math.nan
    out.update(ci95_low=d.mean() - half, ci95_high=d.mean() + half, min_detectable_delta=half)
    out["wilcoxon_pvalue"] = stats.wilcoxon(d).pvalue if n >= 2 and np.any(d != 0) else math.nan
    return out


def holm_by_hand(pvalues: list[float]) -> list[float]:
    valid = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(valid):
        running = max(running, min(1.0, (len(valid) - rank) * p))
        out[i] = running
    return out


def family_by_hand(pvalues: list[float], own: float) -> int:
    """The tests Holm adjusts together, counting a row without a p-value itself."""
    return sum(not math.isnan(p) for p in pvalues) + math.isnan(own)


def verdict_by_hand(n: float, mean: float, holm_p: float, family: int) -> str:
    if holm_p < ALPHA:
        return "better" if mean < 0 else "worse"
    if min(1.0, family * 2 / 2 ** int(n)) >= ALPHA:  # not even every pair on one side reaches alpha after Holm
        return "insufficient"
    return "indistinguishable"


def simultaneous_by_hand(d: np.ndarray, family: int) -> tuple[float, float]:
    n = len(d)
    if n < 2:
        return math.nan, math.nan
    half = stats.t.ppf(1 - ALPHA / (2 * family), n - 1) * d.std(ddof=1) / math.sqrt(n)
    return d.mean() - half, d.mean() + half


def test_impact_summary_statistics_match_a_hand_computation(written: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = written
    table = pd.read_csv(folder / "param_impact_summary.csv").set_index("config_id")
    hand = {c: by_hand(deltas(c)) for c in VARIANTS}
    holms = dict(zip(hand, holm_by_hand([h["wilcoxon_pvalue"] for h in hand.values()]), strict=True))
    assert list(table.columns)[-9:] == [
        "ci95_low",
        "ci95_high",
        "min_detectable_delta",
        "wilcoxon_pvalue",
        "holm_pvalue",
        "verdict",
        "holm_family",
        "simultaneous_ci_low",
        "simultaneous_ci_high",
    ]
    pvalues = [h["wilcoxon_pvalue"] for h in hand.values()]
    for config_id, h in hand.items():
        row = table.loc[config_id]
        assert row["n_pairs"] == h["n"]
        for key in ("ci95_low", "ci95_high", "min_detectable_delta", "wilcoxon_pvalue"):
            assert (math.isnan(h[key]) and math.isnan(row[key])) or row[key] == pytest.approx(h[key], rel=1e-9), key
        assert (math.isnan(holms[config_id]) and math.isnan(row["holm_pvalue"])) or row["holm_pvalue"] == pytest.approx(
            holms[config_id], rel=1e-9
        )
        family = family_by_hand(pvalues, h["wilcoxon_pvalue"])
        assert row["holm_family"] == family
        assert row["verdict"] == verdict_by_hand(h["n"], h["mean"], holms[config_id], family)
        low, high = simultaneous_by_hand(deltas(config_id), family)
        assert row["simultaneous_ci_low"] == pytest.approx(low, rel=1e-9, nan_ok=True)
        assert row["simultaneous_ci_high"] == pytest.approx(high, rel=1e-9, nan_ok=True)
    # The pair whose baseline failed is left out; a single pair has no interval and no test.
    assert table.loc["hidden_size=8", "n_pairs"] == 7
    assert table.loc["learning_rate=0.01", "verdict"] == "insufficient"
    assert math.isnan(table.loc["learning_rate=0.01", "ci95_low"])
    assert table.loc["hidden_size=8", "verdict"] == "better"


def test_per_fold_tables_adjust_within_the_fold(written: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = written
    table = pd.read_csv(folder / "folds/f1/param_impact_summary.csv").set_index("config_id")
    hand = {c: by_hand(deltas(c, ("f1",))) for c in VARIANTS}
    holms = dict(zip(hand, holm_by_hand([h["wilcoxon_pvalue"] for h in hand.values()]), strict=True))
    pvalues = [h["wilcoxon_pvalue"] for h in hand.values()]
    for config_id, h in hand.items():
        row = table.loc[config_id]
        assert (math.isnan(holms[config_id]) and math.isnan(row["holm_pvalue"])) or row["holm_pvalue"] == pytest.approx(
            holms[config_id], rel=1e-9
        )
        family = family_by_hand(pvalues, h["wilcoxon_pvalue"])
        assert row["verdict"] == verdict_by_hand(h["n"], h["mean"], holms[config_id], family)
    assert table.loc["hidden_size=8", "verdict"] == "insufficient"  # 4 pairs: the test cannot reach 0.05


def test_ranking_statistics_match_a_hand_computation(written: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = written
    table = pd.read_csv(folder / "config_ranking.csv").set_index("config_id")
    hand = {c: by_hand(deltas(c)) for c in VARIANTS}
    holms = dict(zip(hand, holm_by_hand([h["wilcoxon_pvalue"] for h in hand.values()]), strict=True))
    runs = pd.DataFrame([r for r in records() if r["status"] == "succeeded"])
    pvalues = [h["wilcoxon_pvalue"] for h in hand.values()]
    for config_id, h in hand.items():
        row = table.loc[config_id]
        assert row["delta_vs_baseline"] == pytest.approx(h["mean"], rel=1e-9)
        assert row["n_pairs"] == h["n"]
        family = family_by_hand(pvalues, h["wilcoxon_pvalue"])
        assert row["verdict"] == verdict_by_hand(h["n"], h["mean"], holms[config_id], family)
        low, high = simultaneous_by_hand(deltas(config_id), family)
        assert row["simultaneous_ci_low"] == pytest.approx(low, rel=1e-9, nan_ok=True)
        assert row["simultaneous_ci_high"] == pytest.approx(high, rel=1e-9, nan_ok=True)
        mine = runs[runs["config_id"] == config_id]
        assert row["mean_test_skill"] == pytest.approx((1 - mine["test_rmse"] / mine["test_naive_rmse"]).mean())
        beats = ((mine["test_dm_stat"] < 0) & (mine["test_dm_pvalue"] < ALPHA)).mean()
        assert row["dm_better_share"] == pytest.approx(beats)
        rel = mine["val_rmse"] / mine["val_naive_rmse"]
        assert row["mean_val_rel_rmse"] == pytest.approx(rel.mean())
        assert row["std_val_rel_rmse"] == pytest.approx(rel.std(ddof=1) if len(rel) > 1 else 0.0)
        assert row["robust_rel_score"] == pytest.approx(row["mean_val_rel_rmse"] + row["std_val_rel_rmse"])
    assert table.loc["baseline", "verdict"] == "baseline" and math.isnan(table.loc["baseline", "holm_family"])
    for config_id in table.index:  # the mean of its rank within each fold it has runs in
        ranks = [
            pd.read_csv(folder / f"folds/{f}/config_ranking.csv").set_index("config_id").loc[config_id, "rank"]
            for f in FOLDS
        ]
        assert table.loc[config_id, "mean_fold_rank"] == pytest.approx(np.mean(ranks))
    # today's columns first, in their order
    assert list(pd.read_csv(folder / "config_ranking.csv").columns)[:11] == [
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


def test_summary_says_whether_the_winner_is_real(written: tuple[Path, dict[str, Any]]) -> None:
    _, summary = written
    sig = summary["significance"]
    # Three variants: Holm multiplies the smallest p by 3, so 3 * 2 / 2**n < 0.05 needs n = 7.
    assert sig["alpha"] == ALPHA and sig["variants"] == 3 and sig["pairs_needed"] == 7
    assert sig["holm_family"] == 2  # learning_rate=0.01 has one pair: no p-value
    assert sig["better"] == ["hidden_size=8"]
    best = summary["best_config"]
    assert best["config_id"] == "hidden_size=8" and best["beats_baseline"] is True
    assert sig["best_config"]["verdict"] == "better"
    assert sig["sentence"].startswith(
        "1 of 3 variants beat the baseline at alpha 0.05; the best of them, hidden_size=8"
    )
    low, high = simultaneous_by_hand(deltas("hidden_size=8"), 2)
    assert sig["best_config"]["simultaneous_ci_low"] == pytest.approx(low)
    assert f"simultaneous 95% CI over 2 variants [{low:.3g}, {high:.3g}]" in sig["sentence"]
    assert "Holm-adjusted Wilcoxon p" in sig["sentence"]
    per_param = summary["best_value_per_param"]
    assert per_param["hidden_size"]["value"] == 8 and "robust_score" in per_param["hidden_size"]["criterion"]
    assert per_param["dropout"]["config_id"] == "baseline" and per_param["dropout"]["value"] == 0.1
    assert per_param["dropout"]["beats_baseline"] is False


def test_noise_alone_is_called_noise(tmp_path: Path) -> None:
    """Tiny differences with a few pairs: no verdict of better, and the sentence says why."""
    rows = [record("baseline", "f1", s, 1.0 + 0.001 * s) for s in (1, 2)]
    rows += [record("hidden_size=8", "f1", s, 1.0 + 0.001 * s - 0.0000015) for s in (1, 2)]
    for i, row in enumerate(rows, start=1):
        row["run_id"] = i
    data = sweep_dict(
        replica_seeds=[1, 2],
        walk_forward={"enabled": True, "folds": [fold("f1", 2015)]},
        param_ranges={"hidden_size": [8]},
    )
    summary = write_sweep_reports(
        tmp_path, rows, SweepFolderConfig("SYN", None, validate_sweep_config(data)), None, plots=False
    )
    assert summary["best_config"]["config_id"] == "hidden_size=8"
    assert summary["best_config"]["beats_baseline"] is False  # a difference of -1.5e-6 on 2 pairs
    assert summary["best_value_per_param"]["hidden_size"]["beats_baseline"] is False
    assert summary["significance"]["sentence"].startswith(
        "No variant is distinguishable from the baseline at alpha 0.05 (smallest Holm p 0.5); with 2 pairs the test "
        "cannot go below 0.5: add seeds or folds (6 pairs are needed)."
    )


def test_alpha_is_a_setting_a_merge_may_change() -> None:
    old = config()
    new = config(stats={"alpha": 0.1})
    assert validate_merge(old, new).new_runs == []  # changes no run
    assert validate_merge(old, new).config.stats.alpha == 0.1


def test_diebold_mariano_matches_the_definition() -> None:
    rng = np.random.default_rng(7)
    actual = rng.normal(0, 0.01, 250)
    predicted = actual * 0.3 + rng.normal(0, 0.005, 250)
    naive = np.zeros(250)
    dl = (actual - predicted) ** 2 - (actual - naive) ** 2
    n = len(dl)
    dm = dl.mean() / math.sqrt(dl.var(ddof=0) / n)
    corrected = dm * math.sqrt((n - 1) / n)
    stat, p = diebold_mariano(actual, predicted, naive)
    assert stat == pytest.approx(corrected) and p == pytest.approx(2 * stats.t.sf(abs(corrected), n - 1))
    assert stat < 0  # the model's errors are smaller
    assert all(math.isnan(v) for v in diebold_mariano(actual[:1], predicted[:1], naive[:1]))


@pytest.mark.parametrize("seed", range(20))
def test_wilcoxon_in_batches_equals_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    groups = [rng.normal(size=n) for n in (2, 5, 12, 20, 50, 51, 80)]
    groups += [np.round(rng.normal(size=n), 1) for n in (6, 14, 40)]  # ties
    groups += [np.r_[np.zeros(3), rng.normal(size=n)] for n in (4, 20)]  # zeros
    groups += [np.zeros(5), np.array([0.3])]  # nothing to test
    ours = wilcoxon_pvalues(groups)
    for d, p in zip(groups, ours, strict=True):
        if len(d) < 2 or not np.any(d != 0):
            assert math.isnan(p)
        else:
            assert p == pytest.approx(stats.wilcoxon(d).pvalue, rel=1e-12, abs=1e-15)


def test_holm_and_pairs_needed() -> None:
    assert holm_by_hand([0.01, math.nan, 0.04, 0.03]) == pytest.approx(
        list(holm(np.array([0.01, math.nan, 0.04, 0.03]))), nan_ok=True
    )
    assert list(holm(np.array([0.5, 0.9]))) == [1.0, 1.0]  # capped at 1
    assert [pairs_needed(a) for a in (0.05, 0.01, 0.5)] == [6, 8, 3]


def test_summary_json_is_plain_json(written: tuple[Path, dict[str, Any]]) -> None:
    folder, summary = written
    assert (
        json.loads((folder / "summary.json").read_text())["significance"]["sentence"]
        == summary["significance"]["sentence"]
    )
