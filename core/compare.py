"""Fair comparison between sweeps: only what they have in common counts.

Sweeps on one asset are compared on the intersection of their folds (same name and same
dates), their seeds and their config ids; each sweep's configs are ranked by robust score over
exactly those (fold, seed) pairs, each other sweep is tested against the first on the same
config, fold and seed, and everything left out is listed.

Sweeps on different assets are not compared on their error levels: an asset's RMSE is mostly
its volatility, so "NDX's configs have a higher RMSE than SPX's" says nothing about whether a
config carries over. They are compared by transfer instead: each shared variant's paired delta
against its own sweep's baseline (and its error relative to its own naive forecast), whether
those deltas agree in sign, and the rank correlation of the two rankings.

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
from scipy import stats

from core.config import SweepConfig
from core.errors import NothingToCompare
from core.files import write_json_atomic
from core.metrics import describe_column
from core.plan import BASELINE_ID
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

# One row per config two sweeps share: `a` is the reference (the first sweep), `b` the other.
# delta: mean over the sweep's own (fold, seed) pairs of variant - baseline on the transfer
# metric; rel_delta: that mean over |mean baseline| (scale-free); vs_naive: mean of
# val_rmse / val_naive_rmse - 1 over the config's paired runs (below 0: better than naive).
TRANSFER_COLUMNS = (
    "reference",
    "sweep",
    "config_id",
    "param_name",
    "param_value",
    "rank_a",
    "rank_b",
    "n_pairs_a",
    "n_pairs_b",
    "delta_a",
    "delta_b",
    "rel_delta_a",
    "rel_delta_b",
    "vs_naive_a",
    "vs_naive_b",
    "same_sign",
    "in_mcs_a",
    "in_mcs_b",
    "mcs_pvalue_a",
    "mcs_pvalue_b",
)
MCS_COLUMNS = ("sweep", "config_id", "in_mcs", "mcs_pvalue")
# Below this many configs ranked in both sweeps a rank correlation says nothing (and scipy warns).
MIN_CORRELATED = 3


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


def paired_deltas(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per variant config: the pairs (fold, seed) where it and the baseline both succeeded, as
    `n_pairs`, `delta` (mean of variant - baseline on `metric`), `rel_delta` (that mean over
    |mean baseline|) and `vs_naive` (mean of val_rmse / val_naive_rmse - 1 over the variant's
    paired runs). Indexed by config_id."""
    ok = runs[runs["status"] == "succeeded"]
    columns = ["config_id", "fold", "seed", metric, "val_rmse", "val_naive_rmse"]
    ok = ok.reindex(columns=list(dict.fromkeys(columns)))
    base = ok[ok["config_id"] == BASELINE_ID][["fold", "seed", metric]].rename(columns={metric: "_baseline"})
    variants = ok[ok["config_id"] != BASELINE_ID]
    pairs = variants.merge(base, on=["fold", "seed"], sort=False)
    pairs = pairs[pairs[metric].notna() & pairs["_baseline"].notna()]
    pairs = pairs.assign(
        _delta=pairs[metric].astype("float64") - pairs["_baseline"].astype("float64"),
        _vs_naive=pairs["val_rmse"].astype("float64") / pairs["val_naive_rmse"].astype("float64") - 1.0,
    )
    grouped = pairs.groupby("config_id", sort=False)
    found = pd.DataFrame(
        {
            "n_pairs": grouped.size(),
            "delta": grouped["_delta"].mean(),
            "baseline_mean": grouped["_baseline"].mean(),
            "vs_naive": grouped["_vs_naive"].mean(),
        }
    )
    scale = found["baseline_mean"].abs()
    found["rel_delta"] = found["delta"] / scale.where(scale > 0)
    return found.drop(columns="baseline_mean")


def transfer_between(
    a: ComparedSweep,
    b: ComparedSweep,
    ranking_a: pd.DataFrame,
    ranking_b: pd.DataFrame,
    metric: str,
    configs: list[str],
) -> dict[str, Any]:
    """Does what was learnt on `a` carry over to `b`: per shared variant its paired delta against
    each sweep's own baseline, the share of variants whose deltas agree in sign (with a one-sided
    binomial test against the coin flip of no transfer), the Spearman and Kendall correlation of
    the two rankings' `rank_score` over the shared configs (scipy.stats, with p-values), and
    where `a`'s chosen config (its best shared one) ranks on `b`."""
    better = describe_column(metric)[1].better
    deltas_a, deltas_b = paired_deltas(a.runs, metric), paired_deltas(b.runs, metric)
    by_a, by_b = ranking_a.set_index("config_id"), ranking_b.set_index("config_id")
    rows = []
    for config_id in configs:
        if config_id == BASELINE_ID:
            continue
        row: dict[str, Any] = {"reference": a.label, "sweep": b.label, "config_id": config_id}
        row["param_name"] = by_a.at[config_id, "param_name"] if config_id in by_a.index else None
        row["param_value"] = by_a.at[config_id, "param_value"] if config_id in by_a.index else None
        for side, sweep, deltas, ranked in (("a", a, deltas_a, by_a), ("b", b, deltas_b, by_b)):
            found = deltas.loc[config_id] if config_id in deltas.index else None
            row[f"rank_{side}"] = int(ranked.at[config_id, "rank"]) if config_id in ranked.index else None
            row[f"n_pairs_{side}"] = int(found["n_pairs"]) if found is not None else 0
            for name in ("delta", "rel_delta", "vs_naive"):
                row[f"{name}_{side}"] = float(found[name]) if found is not None else None
            pvalue, member = (sweep.mcs.configs or {}).get(config_id, (None, None))
            row[f"in_mcs_{side}"], row[f"mcs_pvalue_{side}"] = member, pvalue
        both = row["delta_a"] is not None and row["delta_b"] is not None
        row["same_sign"] = bool(np.sign(row["delta_a"]) == np.sign(row["delta_b"])) if both else None
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(TRANSFER_COLUMNS))
    judged = table[table["same_sign"].notna()]
    agree, n_variants = int(judged["same_sign"].astype(bool).sum()), len(judged)
    agreement_p = float(stats.binomtest(agree, n_variants, 0.5, alternative="greater").pvalue) if n_variants else None
    correlation = rank_correlation(ranking_a, ranking_b, configs)
    chosen = _chosen(ranking_a, ranking_b, b)
    result = {
        "reference": a.label,
        "sweep": b.label,
        "assets": [a.asset, b.asset],
        "metric": metric,
        "better": better,
        "n_variants": n_variants,
        "n_same_sign": agree,
        "sign_agreement": agree / n_variants if n_variants else None,
        "sign_agreement_pvalue": agreement_p,
        "correlation": correlation,
        "chosen": chosen,
        "rows": json_safe(table.to_dict(orient="records")),
    }
    result["sentence"] = _transfer_sentence(result)
    return result


def rank_correlation(ranking_a: pd.DataFrame, ranking_b: pd.DataFrame, configs: list[str]) -> dict[str, Any]:
    """Spearman's rho and Kendall's tau (scipy.stats, two-sided p-values) of the two rankings'
    `rank_score` over the shared configs that have one in both; null below `MIN_CORRELATED`."""
    scores = pd.concat(
        [
            ranking_a.set_index("config_id")["rank_score"].rename("a"),
            ranking_b.set_index("config_id")["rank_score"].rename("b"),
        ],
        axis=1,
    )
    scores = scores.loc[[c for c in configs if c in scores.index]].dropna().astype("float64")
    n = len(scores)
    empty = {"n_configs": n, "spearman": None, "spearman_pvalue": None, "kendall": None, "kendall_pvalue": None}
    if n < MIN_CORRELATED or scores["a"].nunique() < 2 or scores["b"].nunique() < 2:
        return {**empty, "reason": f"{n} configs ranked in both (needs {MIN_CORRELATED}, each with distinct scores)"}
    spearman = stats.spearmanr(scores["a"], scores["b"])
    kendall = stats.kendalltau(scores["a"], scores["b"])
    found: dict[str, Any] = json_safe(
        {
            "n_configs": n,
            "spearman": float(spearman.statistic),
            "spearman_pvalue": float(spearman.pvalue),
            "kendall": float(kendall.statistic),
            "kendall_pvalue": float(kendall.pvalue),
            "reason": None,
        }
    )
    return found


def _chosen(ranking_a: pd.DataFrame, ranking_b: pd.DataFrame, b: ComparedSweep) -> dict[str, Any] | None:
    """`a`'s best shared config (first of its ranking with a score) and where it ranks on `b`."""
    scored = ranking_a[ranking_a["rank_score"].notna()]
    if scored.empty:
        return None
    config_id = str(scored.iloc[0]["config_id"])
    on_b = ranking_b[ranking_b["config_id"] == config_id]
    rank_b = int(on_b.iloc[0]["rank"]) if not on_b.empty and pd.notna(on_b.iloc[0]["rank_score"]) else None
    pvalue, member = (b.mcs.configs or {}).get(config_id, (None, None))
    return {
        "config_id": config_id,
        "rank_b": rank_b,
        "of": int(ranking_b["rank_score"].notna().sum()),
        "in_mcs_b": member,
        "mcs_pvalue_b": pvalue,
    }


def _transfer_sentence(found: dict[str, Any]) -> str:
    a, b = found["reference"], found["sweep"]
    text = f"Transfer from {a} to {b} ({found['metric']}, each against its own baseline):"
    chosen = found["chosen"]
    if chosen is not None:
        where = f"ranks {chosen['rank_b']} of {chosen['of']}" if chosen["rank_b"] is not None else "has no score"
        member = {True: ", in its model confidence set", False: ", outside its model confidence set"}
        text += f" the config chosen on {a}, {chosen['config_id']}, {where} on {b}{member.get(chosen['in_mcs_b'], '')};"
    if found["n_variants"]:
        text += (
            f" {found['n_same_sign']} of {found['n_variants']} shared variants move the same way against their own "
            f"baseline (sign agreement {found['sign_agreement']:.0%}, one-sided binomial p = "
            f"{found['sign_agreement_pvalue']:.2g});"
        )
    corr = found["correlation"]
    if corr["spearman"] is not None:
        text += (
            f" rank correlation over {corr['n_configs']} configs: Spearman {corr['spearman']:.2f} "
            f"(p = {corr['spearman_pvalue']:.2g}), Kendall {corr['kendall']:.2f} (p = {corr['kendall_pvalue']:.2g})."
        )
    else:
        text += f" no rank correlation: {corr['reason']}."
    return text + " Error levels are not compared across assets: they follow each asset's volatility."


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
