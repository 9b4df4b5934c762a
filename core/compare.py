"""Fair comparison between sweeps: only what they have in common counts.

Sweeps on one asset are compared on the intersection of their folds (same name and same
dates), their seeds and their config ids; each sweep's configs are ranked by robust score over
exactly those (fold, seed) pairs, each other sweep is tested against the first on the same
config, fold and seed, and everything left out is listed.

Sweeps on different assets are not compared on their error levels: an asset's RMSE is mostly
its volatility, so "NDX's configs have a higher RMSE than SPX's" says nothing about whether a
config carries over. They are compared by transfer instead: each shared variant's paired delta
against its own sweep's baseline (and its error relative to its own naive forecast), whether
those deltas agree in sign, and the rank correlation of the two rankings (`core.transfer`).

Both report, for the configs the sweeps share, whether each is in its sweep's model confidence
set (`in_mcs`, `mcs_pvalue` of its `config_ranking.csv`, computed by the report build for the
sweep's evaluation.rank_by). Everything here reads run tables and ranking files, never a
prediction: the cost is that of ranking the sweeps' runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
from core.transfer import TRANSFER_COLUMNS, transfer_between

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

MCS_COLUMNS = ("sweep", "config_id", "in_mcs", "mcs_pvalue")


@dataclass(frozen=True)
class Membership:
    """A sweep's model confidence set as its ranking file holds it: per config (mcs_pvalue,
    in_mcs), or None with the reason it is not known (`available` false)."""

    configs: dict[str, tuple[float | None, bool | None]] | None
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.configs is not None


@dataclass(frozen=True)
class ComparedSweep:
    """One sweep as a comparison needs it: read from its folder (the CLI) or the database (the API)."""

    label: str
    asset: str
    config: SweepConfig
    runs: pd.DataFrame
    mcs: Membership = field(default_factory=lambda: Membership(None, "not read"))


def read_mcs_membership(ranking_csv: Path) -> Membership:
    """`mcs_pvalue` and `in_mcs` per config of a `config_ranking.csv` (three columns read, not the
    file's statistics). Not available when the file is missing, has no such columns (written
    before the model confidence set), or every cell is empty (not computed)."""
    if not ranking_csv.is_file():
        return Membership(None, f"no {ranking_csv.name}: the sweep's reports have not been built")
    header = pd.read_csv(ranking_csv, nrows=0).columns
    if "mcs_pvalue" not in header or "in_mcs" not in header:
        return Membership(None, f"{ranking_csv.name} has no mcs_pvalue/in_mcs: rebuild the reports (regenerate)")
    table = pd.read_csv(
        ranking_csv, usecols=["config_id", "mcs_pvalue", "in_mcs"], dtype={"config_id": str, "in_mcs": str}
    )
    table = table.astype(object).where(table.notna(), None)
    configs = {str(row.config_id): (_pvalue(row.mcs_pvalue), _flag(row.in_mcs)) for row in table.itertuples()}
    if all(flag is None for _, flag in configs.values()):
        return Membership(None, "the model confidence set was not computed for this sweep (see its summary.json)")
    return Membership(configs)


def _pvalue(value: Any) -> float | None:
    return None if value is None else float(value)


def _flag(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    return str(value).strip().lower() == "true"


def load_sweep_folder(sweep: Path) -> ComparedSweep:
    """A sweep folder as a comparison reads it: its config, its runs and its ranking's MCS columns."""
    analysis = read_analysis_config(sweep)
    label = f"{analysis.asset}/{analysis.config.output_subdir}"
    runs = runs_table(read_run_records(sweep))
    return ComparedSweep(
        label, analysis.asset, analysis.config, runs, read_mcs_membership(sweep / "config_ranking.csv")
    )


def compare_sweeps(sweeps: list[Path], alpha: float | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """`compare_loaded` over sweep folders (a label seen twice gets its path after it)."""
    loaded: list[ComparedSweep] = []
    for sweep in sweeps:
        found = load_sweep_folder(sweep)
        if any(s.label == found.label for s in loaded):
            found = ComparedSweep(f"{found.label} ({sweep})", found.asset, found.config, found.runs, found.mcs)
        loaded.append(found)
    return compare_loaded(loaded, alpha)


def compare_loaded(sweeps: list[ComparedSweep], alpha: float | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Compare sweeps against the first (the reference), at `alpha` (default: its `stats.alpha`).

    On one asset: every sweep's configs ranked on the common folds, seeds and configs, and for
    each config whether each sweep differs from the first on their common pairs (the same
    config, fold and seed succeeded in both; core.significance, Holm over the table's rows).
    On different assets: each sweep ranked on its own runs of the shared configs, and the
    transfer from the first sweep to each other (`transfer`). Both report the shared
    configs' MCS membership in each sweep (`mcs`) and lead with one plain `sentence`.

    Returns the `compare.csv` table and a report of what was compared and left out.

    Raises:
        NothingToCompare: on one asset, no config has a (fold, seed) that succeeded in the first
            sweep and another; across assets, no shared variant has a succeeded pair with its
            baseline in both.
    """
    labels = [s.label for s in sweeps]
    alpha = alpha if alpha is not None else sweeps[0].config.stats.alpha
    config_sets = [list(pd.unique(s.runs["config_id"])) for s in sweeps]
    common_configs = [c for c in config_sets[0] if all(c in other for other in config_sets[1:])]
    mcs = _mcs_report(sweeps, common_configs)
    if len({s.asset for s in sweeps}) > 1:
        return _compare_across_assets(sweeps, common_configs, alpha, mcs)

    fold_defs = [{f.name: f.model_dump(mode="json") for f in s.config.folds} for s in sweeps]
    common_folds = [name for name, window in fold_defs[0].items() if all(d.get(name) == window for d in fold_defs[1:])]
    seed_sets = [s.config.seeds for s in sweeps]
    common_seeds = [s for s in seed_sets[0] if all(s in other for other in seed_sets[1:])]

    tables = []
    kept: dict[str, pd.DataFrame] = {}
    left_out: dict[str, Any] = {}
    for sweep in sweeps:
        runs = sweep.runs
        keep = (
            runs["fold"].isin(common_folds) & runs["seed"].isin(common_seeds) & runs["config_id"].isin(common_configs)
        )
        kept[sweep.label] = runs[keep]
        ranking = build_config_ranking(runs[keep], alpha=alpha, relative=False)
        ranking.insert(0, "sweep", sweep.label)
        tables.append(ranking)
        left_out[sweep.label] = {
            "folds": [f.name for f in sweep.config.folds if f.name not in common_folds],
            "seeds": [s for s in sweep.config.seeds if s not in common_seeds],
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
            f"{' and '.join(labels)} have no config with a run that succeeded on the same fold (same dates) and seed "
            f"in both (common folds: {common_folds or 'none'}, seeds: {common_seeds or 'none'}, configs: "
            f"{common_configs or 'none'}): there is nothing to compare"
        )
    report = {
        "kind": "same asset",
        "sentence": _same_asset_sentence(labels, significance, mcs),
        "sweeps": labels,
        "assets": [s.asset for s in sweeps],
        "common": {"folds": common_folds, "seeds": common_seeds, "configs": common_configs},
        "left_out": left_out,
        "alpha": alpha,
        "significance": json_safe(significance.to_dict(orient="records")),
        "transfer": [],
        "mcs": mcs,
        "note": "folds must match by name and dates; only succeeded runs on the common folds and seeds count; "
        "mean_delta is the sweep's val RMSE minus the reference's on the same config, fold and seed",
    }
    return table[list(COMPARE_COLUMNS)], report


def _mcs_report(sweeps: list[ComparedSweep], configs: list[str]) -> dict[str, Any]:
    """Per sweep whether its model confidence set is known (and why not), and one row per
    (sweep, shared config): `in_mcs`, `mcs_pvalue` (null where not known)."""
    rows = []
    for sweep in sweeps:
        found = sweep.mcs.configs or {}
        for config_id in configs:
            pvalue, member = found.get(config_id, (None, None))
            rows.append({"sweep": sweep.label, "config_id": config_id, "in_mcs": member, "mcs_pvalue": pvalue})
    return {
        "sweeps": {s.label: {"available": s.mcs.available, "reason": s.mcs.reason} for s in sweeps},
        "rows": json_safe(rows),
        "note": "each sweep's model confidence set, computed by its report build for its evaluation.rank_by "
        "over all its configs; listed here for the configs the sweeps share",
    }


def _same_asset_sentence(labels: list[str], significance: pd.DataFrame, mcs: dict[str, Any]) -> str:
    verdict_counts = significance["verdict"].value_counts()
    judged = ", ".join(f"{int(n)} {verdict}" for verdict, n in verdict_counts.items())
    text = f"On the same asset, against {labels[0]} on the same config, fold and seed: {judged}."
    return f"{text} {_mcs_sentence(mcs)}".strip()


def _mcs_sentence(mcs: dict[str, Any]) -> str:
    parts = []
    for label, known in mcs["sweeps"].items():
        rows = [r for r in mcs["rows"] if r["sweep"] == label]
        if known["available"]:
            members = sum(1 for r in rows if r["in_mcs"])
            parts.append(f"{members} of the {len(rows)} shared configs are in {label}'s model confidence set")
        else:
            parts.append(f"{label}'s model confidence set is not known ({known['reason']})")
    return "; ".join(parts) + "." if parts else ""


def _compare_across_assets(
    sweeps: list[ComparedSweep], common_configs: list[str], alpha: float, mcs: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Each sweep ranked on its own runs of the shared configs (never pooled with the others':
    their error levels are their assets' volatility), and the transfer from the first to each other."""
    reference = sweeps[0]
    metric = _transfer_metric(sweeps)
    tables, rankings, left_out = [], {}, {}
    for sweep in sweeps:
        keep = sweep.runs["config_id"].isin(common_configs)
        ranking = build_config_ranking(sweep.runs[keep], alpha=alpha, relative=False, rank_by=metric)
        rankings[sweep.label] = ranking
        shown = ranking.copy()
        shown.insert(0, "sweep", sweep.label)
        tables.append(shown)
        left_out[sweep.label] = {
            "folds": [],
            "seeds": [],
            "configs": [c for c in pd.unique(sweep.runs["config_id"]) if c not in common_configs],
            "runs_left_out": int((~keep).sum()),
        }
    table = pd.concat(tables, ignore_index=True)
    transfers = [
        transfer_between(reference, other, rankings[reference.label], rankings[other.label], metric, common_configs)
        for other in sweeps[1:]
    ]
    if not any(t["n_variants"] for t in transfers):
        raise NothingToCompare(
            f"{' and '.join(s.label for s in sweeps)} are on different assets and share no variant with a run that "
            f"succeeded beside its own baseline's (same fold and seed) in both (shared configs: "
            f"{common_configs or 'none'}): there is nothing to compare"
        )
    sentence = " ".join(t["sentence"] for t in transfers)
    report = {
        "kind": "transfer",
        "sentence": f"{sentence} {_mcs_sentence(mcs)}".strip(),
        "sweeps": [s.label for s in sweeps],
        "assets": [s.asset for s in sweeps],
        "common": {"folds": [], "seeds": [], "configs": common_configs},
        "left_out": left_out,
        "alpha": alpha,
        "metric": metric,
        "transfer": transfers,
        "significance": [],
        "mcs": mcs,
        "note": "different assets: error levels are not compared (they differ with each asset's volatility); each "
        "sweep is judged against its own baseline on its own folds and seeds, and ranked on its own runs",
    }
    return table[list(COMPARE_COLUMNS)], report


def _transfer_metric(sweeps: list[ComparedSweep]) -> str:
    """The reference sweep's evaluation.rank_by when every sweep's runs carry it, else val RMSE."""
    wanted = sweeps[0].config.evaluation.rank_by
    if all(wanted in s.runs.columns and s.runs[wanted].notna().any() for s in sweeps):
        return wanted
    return "val_rmse"


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
    """`compare.csv`, `compare_significance.csv`, `compare_mcs.csv`, `compare.json` and `compare.png`
    under `out`; across assets `compare_transfer.csv` too (no stale one is left from an earlier run)."""
    from core.plots import plot_compare, save_figure

    table, report = compare_sweeps(sweeps, alpha)
    write_csv(out / "compare.csv", table)
    write_csv(out / "compare_significance.csv", pd.DataFrame(report["significance"], columns=SIGNIFICANCE_COLUMNS))
    write_csv(out / "compare_mcs.csv", pd.DataFrame(report["mcs"]["rows"], columns=MCS_COLUMNS))
    transfer = out / "compare_transfer.csv"
    if report["transfer"]:
        rows = [row for found in report["transfer"] for row in found["rows"]]
        write_csv(transfer, pd.DataFrame(rows, columns=TRANSFER_COLUMNS))
    else:
        transfer.unlink(missing_ok=True)
    write_json_atomic(out / "compare.json", report)
    title = (
        "each sweep on its own runs of the shared configs (different assets: levels differ by volatility)"
        if report["kind"] == "transfer"
        else "sweeps compared on common folds, seeds and configs"
    )
    save_figure(plot_compare(table, title), out / "compare.png")
    return table, report
