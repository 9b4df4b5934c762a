"""Transfer between two sweeps on different assets: does what was learnt on one carry over?

An asset's error level is mostly its volatility, so the two are never compared on it. Each
shared variant is judged against its own sweep's baseline (its paired delta, and its error
relative to its own naive forecast); the report is whether those deltas agree in sign, the
rank correlation of the two rankings, and where the config chosen on the first ranks on the
second. `core.compare` builds the whole comparison; this is its cross-asset statistics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from core.metrics import describe_column
from core.plan import BASELINE_ID
from core.report_files import json_safe

if TYPE_CHECKING:  # core.compare calls this module; its sweep type is only named here
    from core.compare import ComparedSweep

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


# Below this many configs ranked in both sweeps a rank correlation says nothing (and scipy warns).
MIN_CORRELATED = 3


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
