"""The executive summary of a sweep, or of one fold (`summary.json`, `GET /sweeps/{id}/summary`):
counts, the baseline, the best config, the best value per parameter, the top 5, drift, an
`evaluation` block (what the configs are ranked by, and what the best config's forecasts are
worth to a researcher: direction, a sign strategy after costs, skill against each reference),
and a `significance` block that says, in numbers and in plain sentences, whether the winner is
real: against the baseline (paired Wilcoxon, Holm, on the rank_by metric), against the naive
forecast (Diebold-Mariano), and whether the view that fold volatility cannot drive agrees; and
a `selection` block (`core.selection`): the model confidence set and the SPA test over every
config tried, which the sentence puts in words too.

Past 450 lines because the blocks and the sentences that put them in words are written
together: a number and the sentence that reads it must not drift apart, and every sentence
is tested against its block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from core.config import EvaluationConfig, SweepConfig
from core.metrics import column_name
from core.plan import BASELINE_ID
from core.report_files import json_safe
from core.reports import (
    DEFAULT_RANK_BY,
    RANK_SCORE,
    RANKING_COLUMNS,
    RANKING_FAMILY_COLUMNS,
    RANKING_SIGNIFICANCE_COLUMNS,
    rank_direction,
)
from core.selection import selection_sentence
from core.significance import BETTER, INSUFFICIENT, WORSE, pairs_needed, smallest_adjusted_pvalue

# A config's statistics in the summary: its ranking row's seed columns and `rank_score`, less its
# place (`top5` adds it), the counts and MAE the CSV keeps for its readers, and the relative view
# (summarised in `significance.relative_view`).
LEFT_OUT = ("rank", "n_total", "mean_val_mae", "mean_test_mae")
STATS_KEYS = tuple(
    c
    for c in (*RANKING_COLUMNS, *RANKING_SIGNIFICANCE_COLUMNS, *RANKING_FAMILY_COLUMNS, RANK_SCORE)
    if c not in LEFT_OUT
)
# The best config's keys in the `significance` block: its verdict and the intervals beside it
# (not its standing against the naive forecast, which the block gives on its own).
VERDICT_KEYS = (
    "config_id",
    *(
        c
        for c in (*RANKING_SIGNIFICANCE_COLUMNS, *RANKING_FAMILY_COLUMNS)
        if c not in ("mean_test_skill", "dm_better_share")
    ),
)
BEST_VALUE_CRITERION = (
    "the lowest robust_score (config_ranking.csv) among the baseline and this parameter's variants; "
    "beats_baseline only when its verdict is 'better' (Holm p below alpha)"
)


def is_worse(verdicts: pd.Series) -> pd.Series:
    """Verdicts that are `worse`, a raced-out one (`worse (raced out after n pairs)`) included."""
    return verdicts.astype("string").str.startswith(WORSE).fillna(False).astype(bool)


def _worse_clause(block: dict[str, Any], compared: pd.DataFrame) -> str:
    """`; n are worse`, and how many of them racing stopped early."""
    worse = len(block["worse"])
    text = f"; {worse} {'is' if worse == 1 else 'are'} worse"
    raced = int(compared["verdict"].astype("string").str.contains("raced out", regex=False).fillna(False).sum())
    if raced:
        text += f" ({raced} raced out: {'its' if raced == 1 else 'their'} remaining runs were not trained)"
    return text


def best_value_criterion(rank_by: str) -> str:
    """How `best_value_per_param` picks a value: by the ranking's order, which follows `rank_by`
    (with the default, val_rmse, the rank score is the robust score)."""
    if rank_by == DEFAULT_RANK_BY:
        return BEST_VALUE_CRITERION
    sign = "+" if rank_direction(rank_by) == "lower" else "-"
    return BEST_VALUE_CRITERION.replace(
        "the lowest robust_score", f"the best rank_score (mean {sign} std of {rank_by})", 1
    )


def _stats(row: pd.Series) -> dict[str, Any]:
    return {k: json_safe(row[k]) for k in STATS_KEYS}


def _finite(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _beats_naive(row: pd.Series) -> bool:
    """More than half of the config's runs beat the naive forecast by the Diebold-Mariano test."""
    share = row["dm_better_share"]
    return bool(_finite(share) and share > 0.5)


def best_config(ranking: pd.DataFrame) -> pd.Series | None:
    ok = ranking[ranking["n_runs"] > 0]
    return ok.iloc[0] if len(ok) else None


@dataclass(frozen=True)
class SummaryFacts:
    """What a summary states beside its tables: when it was made, the dataset's fingerprint, the
    fold it is of (None: the sweep), how many succeeded runs were scored from which file
    (`core.rescore.scored_from_counts`), and the selection block (`core.selection.select_configs`
    at sweep level, one of its `folds` for a fold; None: not computed here)."""

    generated_at: str | None = None
    dataset: dict[str, Any] | None = None
    fold: str | None = None
    scored_from: dict[str, int] | None = None
    selection: dict[str, Any] | None = None


def build_summary(
    asset: str,
    config: SweepConfig,
    runs: pd.DataFrame,
    ranking: pd.DataFrame,
    impact: pd.DataFrame,
    drift: dict[str, Any],
    plot_files: list[str],
    facts: SummaryFacts | None = None,
) -> dict[str, Any]:
    """The summary of the sweep (or of `facts.fold`: then `runs`, `ranking` and `impact` are that fold's)."""
    facts = facts or SummaryFacts()
    generated_at, dataset, fold, scored_from = facts.generated_at, facts.dataset, facts.fold, facts.scored_from
    status_counts = runs["status"].value_counts()
    base_rows = ranking[ranking["config_id"] == BASELINE_ID]
    baseline = _stats(base_rows.iloc[0]) if len(base_rows) and base_rows.iloc[0]["n_runs"] > 0 else None
    best_row = best_config(ranking)
    best = _stats(best_row) if best_row is not None else None
    if best is not None and best_row is not None:
        best["beats_naive"] = _beats_naive(best_row)
        best["beats_baseline"] = best["verdict"] == BETTER
        best["delta_vs_baseline"] = (
            None
            if baseline is None
            else {
                "robust_score": best["robust_score"] - baseline["robust_score"],
                "mean_val_rmse": best["mean_val_rmse"] - baseline["mean_val_rmse"],
                "mean_test_rmse": best["mean_test_rmse"] - baseline["mean_test_rmse"],
            }
        )
    alpha = config.stats.alpha
    evaluation = evaluation_block(config.evaluation, runs, best_row, alpha, scored_from)
    selection = facts.selection if facts.selection is not None else NOT_SELECTED
    not_done = runs[runs["status"] != "succeeded"]
    summary: dict[str, Any] = json_safe(
        {
            "asset": asset,
            "output_subdir": config.output_subdir,
            "fold": fold,
            "dataset": dataset,
            "counts": {
                "configs": int(runs["config_id"].nunique()),
                "folds": 1 if fold is not None else len(config.folds),
                "seeds": len(config.seeds),
                "runs": len(runs),
                "runs_by_status": {
                    s: int(status_counts.get(s, 0)) for s in ("succeeded", "failed", "cancelled", "queued", "running")
                },
            },
            "complete": bool(len(not_done) == 0),
            "baseline": baseline,
            "best_config": best,
            "best_value_per_param": _best_values(config, runs, ranking, impact),
            "top5": [_stats(row) | {"rank": int(row["rank"])} for _, row in ranking.head(5).iterrows()],
            "rank_by": config.evaluation.rank_by,
            "evaluation": evaluation,
            "significance": significance(
                ranking, alpha, config.evaluation.rank_by, evaluation["best_config"], selection
            ),
            "selection": selection,
            "drift": drift,
            "scored_from": scored_from,
            "failed_runs": _named(not_done[not_done["status"] == "failed"]),
            "unfinished_runs": _named(not_done[not_done["status"] != "failed"]),
            "plots": plot_files,
            "generated_at": generated_at or datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    return summary


# A summary built without the report build's selection (the API's, computed now from the
# database) says so rather than guess: the block needs every run's stored predictions.
NOT_SELECTED: dict[str, Any] = {
    "available": False,
    "reason": "not computed here: the report build computes it from the stored predictions (summary.json)",
}


def evaluation_block(
    evaluation: EvaluationConfig,
    runs: pd.DataFrame,
    best_row: pd.Series | None,
    alpha: float,
    scored_from: dict[str, int] | None = None,
) -> dict[str, Any]:
    """What the configs are ranked by, and the best config's test forecasts as a researcher
    judges them (`best_config`, None without a config with succeeded runs): `direction` (hit
    rate, share of its runs whose binomial test has p below `alpha`), `sharpe` (of the sign
    strategy after `costs_bps`, share of runs whose one-sided t-test has p below `alpha`), `skill`
    per reference (share of runs the Diebold-Mariano test finds better: p below `alpha` and a
    negative statistic, the rule of `dm_better_share`) and, for quantile runs, `quantiles`. A
    share is over the runs with that test; `significant`: the share is above one half."""
    block: dict[str, Any] = {
        "rank_by": evaluation.rank_by,
        "better": rank_direction(evaluation.rank_by),
        "costs_bps": evaluation.costs_bps,
        "references": list(evaluation.references),
        "scored_from": scored_from,
        "best_config": None,
    }
    if best_row is None:
        return block
    ok = runs[(runs["config_id"] == best_row["config_id"]) & (runs["status"] == "succeeded")]
    direction = _share_below(ok, "test_dir_pvalue", alpha)
    sharpe = _share_below(ok, "test_sharpe_pvalue", alpha)
    skill: dict[str, Any] = {}
    for ref in evaluation.references:
        mean_skill = f"mean_{column_name('test', f'skill_{ref}')}"
        beats = _share_below(ok, column_name("test", f"dm_{ref}_pvalue"), alpha, column_name("test", f"dm_{ref}_stat"))
        skill[ref] = {
            mean_skill: _value(best_row, mean_skill),
            "dm_better_share": beats["significant_share"],
            "n_runs": beats["n_runs"],
            "significant": beats["significant"],
        }
    quantiles = {name: _value(best_row, f"mean_test_{name}") for name in ("coverage_80", "coverage_96", "pinball")}
    block["best_config"] = {
        "config_id": best_row["config_id"],
        "direction": {"mean_test_dir_acc": _value(best_row, "mean_test_dir_acc"), **direction},
        "sharpe": {
            "mean_test_sharpe": _value(best_row, "mean_test_sharpe"),
            "costs_bps": evaluation.costs_bps,
            **sharpe,
        },
        "skill": skill,
        "quantiles": quantiles if any(_finite(v) for v in quantiles.values()) else None,
    }
    return block


def _value(row: pd.Series, column: str) -> Any:
    """A ranking cell, None where the ranking lacks the column (a table written before it)."""
    return json_safe(row[column]) if column in row.index else None


def _share_below(runs: pd.DataFrame, pvalue: str, alpha: float, stat: str | None = None) -> dict[str, Any]:
    """Over the runs with a p-value in column `pvalue`: how many (`n_runs`), the share with one
    below `alpha` (and, given `stat`, a negative statistic), and whether it is above one half."""
    if pvalue not in runs.columns or (stat is not None and stat not in runs.columns):
        return {"significant_share": None, "n_runs": 0, "significant": False}
    p = runs[pvalue].astype("float64")
    tested = p.notna() if stat is None else p.notna() & runs[stat].astype("float64").notna()
    hits = (p < alpha) if stat is None else (p < alpha) & (runs[stat].astype("float64") < 0)
    n = int(tested.sum())
    share = float(hits[tested].mean()) if n else None
    return {"significant_share": share, "n_runs": n, "significant": bool(share is not None and share > 0.5)}


def _best_values(
    config: SweepConfig, runs: pd.DataFrame, ranking: pd.DataFrame, impact: pd.DataFrame
) -> dict[str, Any]:
    """Per swept parameter: the value of its best config by the ranking's own criterion."""
    pairs = impact.set_index("config_id") if len(impact) else impact
    out: dict[str, Any] = {}
    scored = ranking[ranking["n_runs"] > 0]
    for param in config.param_ranges:
        candidates = scored[(scored["param_name"] == param) | (scored["config_id"] == BASELINE_ID)]
        if candidates.empty:
            continue
        row = candidates.iloc[0]  # the ranking is sorted by rank_score
        is_baseline = row["config_id"] == BASELINE_ID
        detail = pairs.loc[row["config_id"]] if not is_baseline and row["config_id"] in pairs.index else None
        out[param] = {
            "criterion": best_value_criterion(config.evaluation.rank_by),
            "value": getattr(config.training_config, param) if is_baseline else _typed_value(runs, row["config_id"]),
            "config_id": row["config_id"],
            "robust_score": json_safe(row["robust_score"]),
            "verdict": row["verdict"],
            "holm_pvalue": json_safe(row["holm_pvalue"]),
            "avg_delta_rmse_vs_baseline": None if detail is None else json_safe(detail["avg_delta_rmse_vs_baseline"]),
            "win_rate": None if detail is None else json_safe(detail["win_rate"]),
            "n_pairs": None if detail is None else json_safe(detail["n_pairs"]),
            "beats_baseline": row["verdict"] == BETTER,
        }
    return out


def _typed_value(runs: pd.DataFrame, config_id: str) -> Any:
    """A variant's value as configured (not as spelled in its id)."""
    return runs["param_raw"].to_numpy()[np.flatnonzero(runs["config_id"].to_numpy() == config_id)[0]]


def significance(
    ranking: pd.DataFrame,
    alpha: float,
    rank_by: str = DEFAULT_RANK_BY,
    measured: dict[str, Any] | None = None,
    selection: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Is the winner real? The best config against the baseline (on `rank_by`, as the ranking
    judged it) and the naive forecast, how many pairs the test needs with this many variants,
    whether the relative view agrees, and plain sentences; `measured`: the best config's block of
    `evaluation_block`, which a sentence puts in words; `selection`: the summary's selection
    block, whose sentence (`core.selection.selection_sentence`) comes last when it was computed."""
    others = ranking[ranking["config_id"] != BASELINE_ID]
    variants = others[others["n_runs"] > 0]
    compared = variants[variants["n_pairs"] > 0]
    best_row = best_config(ranking)
    holm_min = float(compared["holm_pvalue"].min()) if compared["holm_pvalue"].notna().any() else None
    most_pairs = int(compared["n_pairs"].max()) if len(compared) else 0
    # Holm adjusts every config against the baseline together: once all have pairs, this many.
    family = max(len(others), 1)
    block: dict[str, Any] = {
        "alpha": alpha,
        "test": f"Wilcoxon signed-rank on paired {rank_by} deltas (same fold and seed), Holm-adjusted over the "
        "ranking's configs (it decides the verdicts; the simultaneous intervals are Bonferroni over the same "
        "family, the ci95 ones unadjusted); Diebold-Mariano (HLN) of each run's test forecasts against the naive "
        "forecast",
        "variants": family,
        "holm_family": int(ranking["holm_pvalue"].notna().sum()),
        "pairs_needed": pairs_needed(alpha, family),
        "most_pairs": most_pairs,
        "smallest_reachable_holm_pvalue": smallest_adjusted_pvalue(most_pairs, family) if most_pairs else None,
        "smallest_holm_pvalue": holm_min,
        "better": compared.loc[compared["verdict"] == BETTER, "config_id"].tolist(),
        "worse": compared.loc[is_worse(compared["verdict"]), "config_id"].tolist(),
        "best_config": None,
        "best_beats_naive": None,
        "relative_view": _relative_view(ranking, best_row),
    }
    if best_row is not None:
        block["best_config"] = {k: json_safe(best_row[k]) for k in VERDICT_KEYS}
        block["best_beats_naive"] = _beats_naive(best_row)
        block["best_dm_better_share"] = json_safe(best_row["dm_better_share"])
    chosen = selection_sentence(selection, alpha)
    block["sentence"] = " ".join(
        filter(
            None, [_sentence(block, compared, best_row, alpha, rank_by), _measured_sentence(rank_by, measured), chosen]
        )
    )
    return block


def _interval(row: pd.Series, alpha: float) -> str:
    """The simultaneous interval of a row, in words (empty statistics: none)."""
    low, high = row["simultaneous_ci_low"], row["simultaneous_ci_high"]
    if not (_finite(low) and _finite(high)):
        return "no interval with one pair"
    over = f" over {int(row['holm_family'])} variants" if _finite(row["holm_family"]) and row["holm_family"] > 1 else ""
    return f"simultaneous {1 - alpha:.0%} CI{over} [{low:.3g}, {high:.3g}]"


def _unadjusted_only(compared: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Configs whose unadjusted interval excludes 0 while their verdict is no finding: those
    whose simultaneous interval holds 0, and those whose simultaneous interval excludes it too
    (the t-intervals and the rank test that decides disagree, mostly with few pairs)."""

    def excludes_zero(low: pd.Series, high: pd.Series) -> pd.Series:
        return (low > 0) | (high < 0)

    no_finding = ~(compared["verdict"].eq(BETTER) | is_worse(compared["verdict"]))
    unadjusted = excludes_zero(compared["ci95_low"], compared["ci95_high"]) & no_finding
    if "simultaneous_ci_low" in compared:
        both = unadjusted & excludes_zero(compared["simultaneous_ci_low"], compared["simultaneous_ci_high"])
    else:
        both = unadjusted & False
    names = compared["config_id"].astype(str)
    return list(names[unadjusted & ~both]), list(names[both])


def _relative_view(ranking: pd.DataFrame, best_row: pd.Series | None) -> dict[str, Any] | None:
    """The best config by error relative to the naive forecast and by mean rank inside folds
    (sweep level only), and whether both agree with the robust score's winner."""
    if best_row is None or "robust_rel_score" not in ranking.columns:
        return None
    scored = ranking[ranking["n_runs"] > 0]
    by_rel = scored.sort_values("robust_rel_score", kind="stable").iloc[0]["config_id"]
    by_rank = scored.sort_values("mean_fold_rank", kind="stable").iloc[0]["config_id"]
    return {
        "best_by_robust_rel_score": by_rel,
        "best_by_mean_fold_rank": by_rank,
        "agrees": bool(by_rel == best_row["config_id"] and by_rank == best_row["config_id"]),
    }


def _sentence(
    block: dict[str, Any], compared: pd.DataFrame, best_row: pd.Series | None, alpha: float, rank_by: str
) -> str:
    parts: list[str] = []
    if compared.empty:
        parts.append("No variant has succeeded runs paired with the baseline's (same fold and seed) yet.")
    elif block["better"]:
        winner = compared[compared["verdict"] == BETTER].iloc[0]
        parts.append(
            f"{len(block['better'])} of {len(compared)} variants beat the baseline at alpha {alpha:g}; the best of "
            f"them, {winner['config_id']}, by {winner['delta_vs_baseline']:.3g} {_spelled_metric(rank_by)} "
            f"(Holm-adjusted Wilcoxon p {winner['holm_pvalue']:.2g}; {_interval(winner, alpha)})."
        )
    else:
        least = block["smallest_holm_pvalue"]
        smallest = "" if least is None else f" (smallest Holm p {least:.2g})"
        head = "No variant beats the baseline" if block["worse"] else "No variant is distinguishable from the baseline"
        text = f"{head} at alpha {alpha:g}{smallest}"
        if block["worse"]:
            text += _worse_clause(block, compared)
        if (compared["verdict"] == INSUFFICIENT).any():
            n, m = block["most_pairs"], block["variants"]
            pairs = f"{n} pair{'' if n == 1 else 's'}"
            needed = f"{block['pairs_needed']} pairs are needed"
            if m == 1:
                text += f"; with {pairs} the test cannot go below {block['smallest_reachable_holm_pvalue']:.3g}"
            else:
                text += (
                    f"; with {pairs} and {m} variants the Holm-adjusted test cannot go below "
                    f"{block['smallest_reachable_holm_pvalue']:.3g}"
                )
                needed += f" with {m} variants"
            text += f": add seeds or folds ({needed})"
        parts.append(text + ".")
    unadjusted, both = _unadjusted_only(compared)
    if unadjusted:
        parts.append(
            f"The unadjusted 95% interval of {', '.join(unadjusted)} excludes 0, but the verdict (Holm-adjusted "
            f"Wilcoxon) and the simultaneous interval account for the {block['variants']} variants tested: "
            "not a finding."
        )
    if both:
        parts.append(
            f"The t-intervals of {', '.join(both)} exclude 0, the simultaneous one too, but the verdict is "
            "decided by the Holm-adjusted Wilcoxon test, which cannot reach alpha with so few pairs: not a "
            "finding yet; more seeds or folds can tell."
        )
    if best_row is not None:
        share = best_row["dm_better_share"]
        if _finite(share):
            verb = "beats" if block["best_beats_naive"] else "does not beat"
            parts.append(
                f"The best config, {best_row['config_id']}, {verb} the naive forecast: the Diebold-Mariano test "
                f"finds it better in {share:.0%} of its runs."
            )
        view = block["relative_view"]
        if view is not None and not view["agrees"]:
            parts.append(
                f"Relative to the naive forecast the best is {view['best_by_robust_rel_score']}, and by mean rank "
                f"within folds {view['best_by_mean_fold_rank']}: fold volatility may drive the robust score."
            )
    return " ".join(parts)


def _spelled_metric(rank_by: str) -> str:
    """The rank_by metric as a sentence names it (the default as it always has)."""
    return "val RMSE" if rank_by == DEFAULT_RANK_BY else rank_by


def _runs_significant(measure: dict[str, Any]) -> str:
    """ "significant in k of n runs" for a block of `_share_below`."""
    n, share = measure["n_runs"], measure["significant_share"]
    if not n or share is None:
        return "untested"
    return f"significant in {round(share * n)} of {n} run{'' if n == 1 else 's'}"


def _percent(value: Any) -> str:
    return f"{value * 100:.3g}%"


def _measured_sentence(rank_by: str, measured: dict[str, Any] | None) -> str:
    """What the ranking is by, and what the best config's forecasts are worth: direction hit
    rate, the sign strategy's Sharpe after costs, skill against each reference, each with its
    significance (numbers to 3 significant digits)."""
    text = f"Ranked by {rank_by} ({rank_direction(rank_by)} is better)."
    if measured is None:
        return text
    clauses = []
    direction = measured["direction"]
    if _finite(direction["mean_test_dir_acc"]):
        clauses.append(
            f"gets the direction right on {_percent(direction['mean_test_dir_acc'])} of test days "
            f"({_runs_significant(direction)})"
        )
    sharpe = measured["sharpe"]
    if _finite(sharpe["mean_test_sharpe"]):
        costs = f"after {sharpe['costs_bps']:g} bps costs" if sharpe["costs_bps"] else "without costs"
        clauses.append(
            f"its sign strategy earns a Sharpe of {sharpe['mean_test_sharpe']:.3g} {costs} "
            f"({_runs_significant(sharpe)})"
        )
    skills = [(ref, next(iter(v.values())), v) for ref, v in measured["skill"].items()]
    shown = [(ref, value, v) for ref, value, v in skills if _finite(value)]
    if shown:
        against = ", ".join(f"{_percent(value)} against {ref}" for ref, value, _ in shown)
        better = [v for _, _, v in shown if v["dm_better_share"]]
        if not better:
            verdict = "none significant"
        else:
            verdict = "Diebold-Mariano: better in " + ", ".join(
                f"{round(v['dm_better_share'] * v['n_runs'])} of {v['n_runs']} runs against {ref}"
                for ref, _, v in shown
                if v["n_runs"]
            )
        clauses.append(f"its skill is {against} ({verdict})")
    if not clauses:
        return text
    listed = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + ", and " + clauses[-1]
    return f"{text} The best config, {measured['config_id']}, {listed}."


def ranking_text(rows: list[dict[str, Any]], sentence: str | None = None, rank_by: str = DEFAULT_RANK_BY) -> str:
    """The ranking as a terminal table (rows of config_ranking, as the API serves them), then
    the significance sentence: what `make demo` and `tftsweep sweep` print at the end. Ranked by
    another metric than val RMSE, the header says so and the last column is the rank score."""

    def num(value: Any, spec: str = ".6f") -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)

    lines = [
        "ranking (robust_score = mean_val_rmse + std_val_rmse; delta: vs the baseline on the same folds and seeds, "
        "with its simultaneous interval over the variants; p: Holm-adjusted Wilcoxon, which decides the verdict; "
        "naive = zero-return forecast):",
        f"  {'rank':>4}  {'config_id':<24} {'n':>3} {'mean_val_rmse':>13} {'std':>9} {'robust_score':>12} "
        f"{'delta [simultaneous CI]':>30} {'p':>6}  {'verdict':<17} {'naive_rmse':>10}",
    ]
    ranked_otherwise = rank_by != DEFAULT_RANK_BY
    if ranked_otherwise:
        sign = "+" if rank_direction(rank_by) == "lower" else "-"
        lines[0] = lines[0].replace(
            "ranking (", f"ranking by {rank_by} (rank_score = mean {sign} std of {rank_by}; delta and p on it; ", 1
        )
        lines[1] += f" {'rank_score':>12}"
    for row in rows:
        low, high = (num(row.get(f"simultaneous_ci_{end}", row.get(f"ci95_{end}")), ".1e") for end in ("low", "high"))
        delta = row.get("delta_vs_baseline")
        interval = "-" if delta is None else f"{num(delta, '+.2e')} [{low}, {high}]"
        lines.append(
            f"  {row['rank']:>4}  {row['config_id']:<24} {row['n_runs']:>3} {num(row['mean_val_rmse']):>13} "
            f"{num(row['std_val_rmse']):>9} {num(row['robust_score']):>12} {interval:>30} "
            f"{num(row.get('holm_pvalue'), '.2g'):>6}  {row.get('verdict') or '-':<17} "
            f"{num(row['mean_val_naive_rmse']):>10}" + (f" {num(row.get(RANK_SCORE)):>12}" if ranked_otherwise else "")
        )
    if sentence:
        lines += ["", sentence]
    return "\n".join(lines)


def _named(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = frame[["run_id", "config_id", "fold", "seed", "status", "error"]].to_dict(orient="records")
    return [
        {**r, "run_id": json_safe(r["run_id"]), "seed": json_safe(r["seed"]), "error": _text(r["error"])} for r in rows
    ]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
