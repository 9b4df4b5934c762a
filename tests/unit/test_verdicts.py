"""Verdicts that never overclaim: the power check counts the Holm family, and the interval beside
a verdict is simultaneous over the same family (issue 22, item 1)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from core.config import validate_sweep_config
from core.reports import build_config_ranking, build_param_impact_detail, build_param_impact_summary
from core.significance import holm, holm_families, verdicts, wilcoxon_pvalues
from core.summary import significance
from core.sweep_folder import SweepFolderConfig
from core.sweep_report import write_sweep_reports
from core.sweep_runs import runs_table
from tests.utils.configs import fold, sweep_dict
from tests.utils.runs import record

FOLDS = ("f1", "f2")
SEEDS = (1, 2, 3)


def runs_with(effects: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Baseline runs on 2 folds x 3 seeds and, per config, the run of each (fold, seed) at the
    baseline's val RMSE plus the given delta."""
    rows = []
    for i, (f, s) in enumerate((f, s) for f in FOLDS for s in SEEDS):
        base = 1.0 + 0.05 * i
        rows.append(record("baseline", f, s, base))
        for config_id, deltas in effects.items():
            rows.append(record(config_id, f, s, base + deltas[i]))
    for i, row in enumerate(rows, start=1):
        row["run_id"] = i
    return rows


# Three variants, each better than the baseline in all 6 pairs, by different amounts.
THREE_VARIANTS = {
    "hidden_size=8": [-0.010, -0.011, -0.012, -0.013, -0.014, -0.015],
    "dropout=0.2": [-0.020, -0.021, -0.022, -0.023, -0.024, -0.026],
    "learning_rate=0.01": [-0.030, -0.031, -0.032, -0.033, -0.035, -0.036],
}


def test_three_variants_with_six_pairs_are_insufficient_not_indistinguishable(tmp_path: Path) -> None:
    data = sweep_dict(
        replica_seeds=list(SEEDS),
        walk_forward={"enabled": True, "folds": [fold("f1", 2015), fold("f2", 2016)]},
        param_ranges={"hidden_size": [8], "dropout": [0.2], "learning_rate": [0.01]},
    )
    config = SweepFolderConfig("SYN", None, validate_sweep_config(data))
    summary = write_sweep_reports(tmp_path, runs_with(THREE_VARIANTS), config, None, plots=False)
    runs = runs_table(runs_with(THREE_VARIANTS))
    ranking = build_config_ranking(runs).set_index("config_id")
    impact = build_param_impact_summary(build_param_impact_detail(runs)).set_index("config_id")
    for table in (ranking, impact):
        for config_id in THREE_VARIANTS:
            row = table.loc[config_id]
            # Every pair on one side: the smallest exact p with 6 pairs, 2/64; Holm over 3 makes it 0.094.
            assert row["holm_pvalue"] == pytest.approx(3 * 2 / 64)
            assert row["holm_family"] == 3
            assert row["verdict"] == "insufficient"  # no outcome of 6 pairs could give "better"
    sig = summary["significance"]
    assert sig["variants"] == 3 and sig["most_pairs"] == 6
    assert sig["pairs_needed"] == 7  # 3 * 2 / 2**7 = 0.047 < 0.05
    assert sig["smallest_reachable_holm_pvalue"] == pytest.approx(0.09375)
    assert (
        "with 6 pairs and 3 variants the Holm-adjusted test cannot go below 0.0938: add seeds or folds "
        "(7 pairs are needed with 3 variants)." in sig["sentence"]
    )
    # Their simultaneous intervals exclude 0 (steady deltas), and the sentence says the rank test decides.
    assert all(ranking.loc[c, "simultaneous_ci_high"] < 0 for c in THREE_VARIANTS)
    assert "the simultaneous one too, but the verdict is decided by the Holm-adjusted Wilcoxon test" in sig["sentence"]
    assert "the simultaneous interval account for" not in sig["sentence"]  # that would be false here


def test_a_candidate_worse_in_every_pair_among_two_is_insufficient() -> None:
    """The top-k case: two explicit candidates, one worse than the baseline in 6 of 6 pairs
    (Wilcoxon 0.031, Holm x 2 = 0.0625): it could not have been called worse at 0.05."""
    effects = {
        "trial_3": [0.010, 0.012, 0.011, 0.013, 0.015, 0.014],
        "trial_7": [0.004, -0.006, 0.001, -0.003, 0.002, -0.005],
    }
    ranking = build_config_ranking(runs_table(runs_with(effects))).set_index("config_id")
    worse = ranking.loc["trial_3"]
    assert worse["holm_pvalue"] == pytest.approx(2 * 2 / 64)
    assert worse["verdict"] == "insufficient"
    assert ranking.loc["trial_7", "verdict"] == "insufficient"
    assert pd.isna(ranking.loc["baseline", "holm_family"]) and ranking.loc["baseline", "verdict"] == "baseline"


def test_a_reachable_verdict_is_still_given() -> None:
    """With one variant 6 pairs can reach alpha: the family rule does not hide a finding."""
    ranking = build_config_ranking(runs_table(runs_with({"hidden_size=8": THREE_VARIANTS["hidden_size=8"]})))
    row = ranking.set_index("config_id").loc["hidden_size=8"]
    assert (row["holm_family"], row["verdict"]) == (1, "better")
    assert row["holm_pvalue"] == pytest.approx(2 / 64)


def test_the_simultaneous_interval_is_bonferroni_over_the_family() -> None:
    runs = runs_table(runs_with(THREE_VARIANTS))
    ranking = build_config_ranking(runs).set_index("config_id")
    for config_id, values in THREE_VARIANTS.items():
        d = np.array(values)
        row = ranking.loc[config_id]
        half = stats.t.ppf(1 - 0.05 / (2 * 3), len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
        assert row["simultaneous_ci_low"] == pytest.approx(d.mean() - half, rel=1e-9)
        assert row["simultaneous_ci_high"] == pytest.approx(d.mean() + half, rel=1e-9)
        unadjusted = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
        assert row["ci95_high"] == pytest.approx(d.mean() + unadjusted, rel=1e-9)  # the documented column stays
        assert row["simultaneous_ci_high"] - row["simultaneous_ci_low"] > row["ci95_high"] - row["ci95_low"]


def test_the_sentence_says_when_only_the_unadjusted_interval_excludes_zero() -> None:
    """The NASDAQ case: a 95% t-interval that excludes 0 beside a verdict that is no finding."""
    rng = np.random.default_rng(3)
    effects: dict[str, list[float]] = {f"dropout=0.{i}": list(rng.normal(0, 0.01, 6)) for i in range(1, 10)}
    effects["hidden_size=8"] = [0.004, 0.010, -0.001, 0.012, 0.008, 0.009]  # one pair below 0
    ranking = build_config_ranking(runs_table(runs_with(effects)))
    row = ranking.set_index("config_id").loc["hidden_size=8"]
    assert row["ci95_low"] > 0  # unadjusted: excludes 0
    assert row["simultaneous_ci_low"] < 0 < row["simultaneous_ci_high"]  # over 10 variants: does not
    assert row["verdict"] in ("indistinguishable", "insufficient")
    sentence = significance(ranking, 0.05)["sentence"]
    assert "The unadjusted 95% interval of hidden_size=8 excludes 0, but the verdict (Holm-adjusted Wilcoxon)" in (
        sentence
    )


def test_verdicts_take_each_rows_family() -> None:
    counts = np.array([6, 6, 6, 1])
    means = np.array([-1.0, -1.0, 1.0, -1.0])
    pvalues = wilcoxon_pvalues(
        [np.full(6, -1.0) - np.arange(6), -np.arange(1, 7.0), np.arange(1, 7.0), np.array([-1.0])]
    )
    adjusted = holm(pvalues)
    assert list(holm_families(adjusted)) == [3, 3, 3, 4]  # the untested row counts itself
    assert verdicts(counts, means, adjusted, 0.05) == ["insufficient"] * 4
    # Told its family is 1 (e.g. a single comparison), the same row is better.
    assert verdicts(counts[:1], means[:1], pvalues[:1], 0.05) == ["better"]


def test_unequal_pair_counts_use_the_familys_largest_count() -> None:
    """A row with 6 pairs beside two with 12 (failed runs, say): Holm multiplies the family's
    smallest p-value, which a 12-pair row can bring down to 2/2**12, so the 6-pair row can still
    reach 2/2**6 = 0.031 < 0.05: `insufficient` would overclaim."""
    rng = np.random.default_rng(0)
    twelve = -np.arange(1, 13) / 1000  # every pair on one side: p = 2/2**12
    five_of_six = np.array([-0.001, -0.002, -0.003, -0.004, -0.005, 0.0005])
    all_six = -np.arange(1, 7) / 1000
    for six, expected in ((five_of_six, "indistinguishable"), (all_six, "better")):
        groups = [six, twelve, twelve + rng.normal(0, 1e-6, 12)]
        pvalues = wilcoxon_pvalues(groups)
        adjusted = holm(pvalues)
        means = np.array([g.mean() for g in groups])
        counts = np.array([6, 12, 12])
        assert verdicts(counts, means, adjusted, 0.05)[0] == expected, adjusted
    # With equal counts the bound is m * 2 / 2**n: 3 rows of 6 pairs can never reach 0.05.
    equal = [all_six, all_six * 2, all_six * 3]
    adjusted = holm(wilcoxon_pvalues(equal))
    assert verdicts(np.array([6, 6, 6]), np.full(3, -1.0), adjusted, 0.05) == ["insufficient"] * 3
