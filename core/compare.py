"""Fair comparison between sweeps: only what they have in common counts.

Two sweeps are compared on the intersection of their folds (same name and same dates),
their seeds and their config ids; each sweep's configs are ranked by robust score over
exactly those (fold, seed) pairs, and everything left out is listed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import SweepConfig
from core.errors import NothingToCompare
from core.files import write_json_atomic
from core.report_files import json_safe, write_csv
from core.reports import RANKING_COLUMNS, build_config_ranking
from core.significance import (
    grouped_values,
    holm,
    holm_families,
    pair_statistics,
    simultaneous_intervals,
    verdicts,
)
from core.sweep_folder import read_analysis_config, read_run_records
from core.sweep_runs import runs_table

# Per sweep and config: its counts, then the ranking's statistics of val and test RMSE and the
# robust score made of them, in the ranking's order (`mean_val_rmse`, `std_val_rmse`, ...).
COMPARED_METRICS = ("val_rmse", "test_rmse")
COMPARE_COLUMNS = (
    "rank",
    "sweep",
    "config_id",
    "n_runs",
    "n_failed",
    *(c for c in RANKING_COLUMNS if c == "robust_score" or c.partition("_")[2] in COMPARED_METRICS),
)


def _load(sweep: Path) -> tuple[str, SweepConfig, pd.DataFrame]:
    analysis = read_analysis_config(sweep)
    label = f"{analysis.asset}/{analysis.config.output_subdir}"
    return label, analysis.config, runs_table(read_run_records(sweep))


SIGNIFICANCE_COLUMNS = (
    "sweep",
    "reference",
    "config_id",
    "n_pairs",
    "mean_delta",
    "ci95_low",
    "ci95_high",
    "wilcoxon_pvalue",
    "holm_pvalue",
    "verdict",
    "holm_family",
    "simultaneous_ci_low",
    "simultaneous_ci_high",
)


def compare_sweeps(sweeps: list[Path], alpha: float | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rank every sweep's configs on the common folds, seeds and configs, and say for each config
    whether each sweep differs from the first (the reference) on their common pairs: the same
    config, fold and seed succeeded in both (core.significance; Holm over the table's rows),
    at `alpha` (default: the first sweep's `stats.alpha`).

    Returns the `compare.csv` table and a report of what was compared and left out.

    Raises:
        NothingToCompare: no config has a (fold, seed) that succeeded in the first sweep and another.
    """
    loaded: dict[str, tuple[SweepConfig, pd.DataFrame]] = {}
    for sweep in sweeps:
        label, config, runs = _load(sweep)
        if label in loaded:
            label = f"{label} ({sweep})"
        loaded[label] = (config, runs)
    alpha = alpha if alpha is not None else next(iter(loaded.values()))[0].stats.alpha
    fold_defs = [{f.name: f.window_dict() for f in cfg.folds} for cfg, _ in loaded.values()]
    common_folds = [name for name, window in fold_defs[0].items() if all(d.get(name) == window for d in fold_defs[1:])]
    seed_sets = [cfg.seeds for cfg, _ in loaded.values()]
    common_seeds = [s for s in seed_sets[0] if all(s in other for other in seed_sets[1:])]
    config_sets = [list(pd.unique(runs["config_id"])) for _, runs in loaded.values()]
    common_configs = [c for c in config_sets[0] if all(c in other for other in config_sets[1:])]

    tables = []
    kept: dict[str, pd.DataFrame] = {}
    left_out: dict[str, Any] = {}
    for label, (cfg, runs) in loaded.items():
        keep = (
            runs["fold"].isin(common_folds) & runs["seed"].isin(common_seeds) & runs["config_id"].isin(common_configs)
        )
        kept[label] = runs[keep]
        ranking = build_config_ranking(runs[keep], alpha=alpha, relative=False)
        ranking.insert(0, "sweep", label)
        tables.append(ranking)
        left_out[label] = {
            "folds": [f.name for f in cfg.folds if f.name not in common_folds],
            "seeds": [s for s in cfg.seeds if s not in common_seeds],
            "configs": [c for c in pd.unique(runs["config_id"]) if c not in common_configs],
            "runs_left_out": int((~keep).sum()),
        }
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    table = table.sort_values(["robust_score", "sweep", "config_id"], na_position="last", kind="stable")
    table = table.drop(columns="rank").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    significance = _significance(kept, alpha)
    if significance.empty:
        raise NothingToCompare(
            f"{' and '.join(loaded)} have no config with a run that succeeded on the same fold (same dates) and seed "
            f"in both (common folds: {common_folds or 'none'}, seeds: {common_seeds or 'none'}, configs: "
            f"{common_configs or 'none'}): there is nothing to compare"
        )
    report = {
        "sweeps": list(loaded),
        "common": {"folds": common_folds, "seeds": common_seeds, "configs": common_configs},
        "left_out": left_out,
        "alpha": alpha,
        "significance": json_safe(significance.to_dict(orient="records")),
        "note": "folds must match by name and dates; only succeeded runs on the common folds and seeds count; "
        "mean_delta is the sweep's val RMSE minus the reference's on the same config, fold and seed",
    }
    return table[list(COMPARE_COLUMNS)], report


def _significance(kept: dict[str, pd.DataFrame], alpha: float) -> pd.DataFrame:
    """Each other sweep against the first, per common config, on pairs that succeeded in both."""
    labels = list(kept)
    reference = kept[labels[0]]
    reference = reference[reference["status"] == "succeeded"][["config_id", "fold", "seed", "val_rmse"]]
    frames = []
    for label in labels[1:]:
        other = kept[label]
        other = other[other["status"] == "succeeded"][["config_id", "fold", "seed", "val_rmse"]]
        if other.empty or reference.empty:
            continue
        pairs = other.merge(reference, on=["config_id", "fold", "seed"], suffixes=("", "_reference"), sort=False)
        pairs["delta"] = pairs["val_rmse"] - pairs["val_rmse_reference"]
        names, groups = grouped_values(pairs, ["config_id"], "delta")
        found = pair_statistics(groups)
        frames.append(
            names.assign(
                sweep=label,
                reference=labels[0],
                n_pairs=found["n"],
                mean_delta=found["mean"],
                ci95_low=found["ci95_low"],
                ci95_high=found["ci95_high"],
                wilcoxon_pvalue=found["wilcoxon_pvalue"],
                _std=found["std"],
            )
        )
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(SIGNIFICANCE_COLUMNS))
    table["holm_pvalue"] = holm(table["wilcoxon_pvalue"].to_numpy(dtype="float64"))
    counts, means = table["n_pairs"].to_numpy(dtype="int64"), table["mean_delta"].to_numpy(dtype="float64")
    families = holm_families(table["holm_pvalue"].to_numpy())
    table["holm_family"] = families
    table["verdict"] = verdicts(counts, means, table["holm_pvalue"].to_numpy(), alpha, families)
    stds = table["_std"].to_numpy(dtype="float64") if "_std" in table else np.full(len(table), np.nan)
    table["simultaneous_ci_low"], table["simultaneous_ci_high"] = simultaneous_intervals(
        means, stds, counts, families, alpha
    )
    return table[list(SIGNIFICANCE_COLUMNS)]


def write_compare(sweeps: list[Path], out: Path, alpha: float | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """`compare.csv`, `compare_significance.csv`, `compare.json` and `compare.png` under `out`."""
    from core.plots import plot_compare, save_figure

    table, report = compare_sweeps(sweeps, alpha)
    write_csv(out / "compare.csv", table)
    write_csv(out / "compare_significance.csv", pd.DataFrame(report["significance"], columns=SIGNIFICANCE_COLUMNS))
    write_json_atomic(out / "compare.json", report)
    save_figure(plot_compare(table, "sweeps compared on common folds, seeds and configs"), out / "compare.png")
    return table, report
