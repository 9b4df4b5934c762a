"""Fair comparison between sweeps (the guide's section 8.3): only what they have in common counts.

Two sweeps are compared on the intersection of their folds (same name and same dates),
their seeds and their config ids; each sweep's configs are ranked by robust score over
exactly those (fold, seed) pairs, and everything left out is listed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import validate_sweep_config
from core.files import write_json_atomic
from core.reports import build_config_ranking, records_from_rows, runs_table, write_csv

COMPARE_COLUMNS = (
    "rank",
    "sweep",
    "config_id",
    "n_runs",
    "n_failed",
    "mean_val_rmse",
    "std_val_rmse",
    "robust_score",
    "mean_test_rmse",
    "std_test_rmse",
)


def _load(sweep: Path) -> tuple[Any, pd.DataFrame]:
    config = validate_sweep_config(json.loads((sweep / "analysis_config.json").read_text()))
    runs = runs_table(records_from_rows(json.loads((sweep / "sweep_runs.json").read_text())))
    return config, runs


def sweep_label(sweep: Path) -> str:
    """`ASSET/output_subdir` for a sweep folder under the standard layout."""
    return f"{sweep.parents[1].name}/{sweep.name}"


def compare_sweeps(sweeps: list[Path]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rank every sweep's configs on the common folds, seeds and configs.

    Returns the `compare.csv` table and a report of what was compared and left out.
    """
    loaded = {sweep_label(s): _load(s) for s in sweeps}
    fold_defs = [{f.name: f.window_dict() for f in cfg.folds} for cfg, _ in loaded.values()]
    common_folds = [name for name, window in fold_defs[0].items() if all(d.get(name) == window for d in fold_defs[1:])]
    seed_sets = [cfg.seeds for cfg, _ in loaded.values()]
    common_seeds = [s for s in seed_sets[0] if all(s in other for other in seed_sets[1:])]
    config_sets = [list(pd.unique(runs["config_id"])) for _, runs in loaded.values()]
    common_configs = [c for c in config_sets[0] if all(c in other for other in config_sets[1:])]

    tables = []
    left_out: dict[str, Any] = {}
    for label, (cfg, runs) in loaded.items():
        keep = (
            runs["fold"].isin(common_folds) & runs["seed"].isin(common_seeds) & runs["config_id"].isin(common_configs)
        )
        ranking = build_config_ranking(runs[keep])
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
    report = {
        "sweeps": list(loaded),
        "common": {"folds": common_folds, "seeds": common_seeds, "configs": common_configs},
        "left_out": left_out,
        "note": "folds must match by name and dates; only succeeded runs on the common folds and seeds count",
    }
    return table[list(COMPARE_COLUMNS)], report


def write_compare(sweeps: list[Path], out: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """`compare.csv`, `compare.json` and `compare.png` under `out`."""
    from core.plots import plot_compare, save_figure

    table, report = compare_sweeps(sweeps)
    write_csv(out / "compare.csv", table)
    write_json_atomic(out / "compare.json", report)
    save_figure(plot_compare(table, "sweeps compared on common folds, seeds and configs"), out / "compare.png")
    return table, report
