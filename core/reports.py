"""Report tables computed from the runs (docs/reports.md): the config ranking, the paired
parameter impact, and their per-fold views.

Every table is a pure function of the analysis frame (`core.sweep_runs.runs_table`); how
tables are spelled on disk lives in `core.report_files`, the statistics in
`core.significance`. It passes 450 lines because the ranking and the impact tables share
their grouped passes over the baseline pairs (`baseline_pairs`, built once for both): split
them apart and each would rebuild the pairs, the cost the 100,000-run benchmark measures.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from core.config import rankable_metric
from core.metrics import column_name, describe_column
from core.plan import BASELINE_ID
from core.report_files import PARAM_VALUE, column_cells, formatted_lines
from core.runs import RUN_COLUMNS
from core.significance import BASELINE as VERDICT_BASELINE
from core.significance import (
    DEFAULT_ALPHA,
    WORSE,
    family_most_pairs,
    grouped_values,
    holm,
    holm_families,
    pair_statistics,
    simultaneous_intervals,
    skill,
    verdicts,
)
from core.sweep_runs import positions

DEFAULT_RANK_BY = "val_rmse"
RANK_SCORE = "rank_score"

RANKING_COLUMNS = (
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
    "n_total",
    "mean_val_mae",
    "mean_test_mae",
    "mean_val_naive_rmse",
    "mean_test_naive_rmse",
)
# Whether each config's difference from the baseline is real (core.significance), its skill
# against the naive forecast; then, at sweep level only, the view fold volatility cannot drive.
RANKING_SIGNIFICANCE_COLUMNS = (
    "delta_vs_baseline",
    "ci95_low",
    "ci95_high",
    "holm_pvalue",
    "verdict",
    "mean_test_skill",
    "dm_better_share",
    "n_pairs",
)
RANKING_RELATIVE_COLUMNS = ("mean_val_rel_rmse", "std_val_rel_rmse", "robust_rel_score", "mean_fold_rank")
# The interval that agrees with the verdict: simultaneous over the row's Holm family (last, so
# that the columns before keep their places).
RANKING_FAMILY_COLUMNS = ("holm_family", "simultaneous_ci_low", "simultaneous_ci_high")
IMPACT_DETAIL_COLUMNS = (
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
)
IMPACT_SUMMARY_COLUMNS = (
    "param_name",
    "param_value",
    "config_id",
    "n_pairs",
    "avg_delta_rmse_vs_baseline",
    "std_delta_rmse_vs_baseline",
    "win_rate",
    "avg_delta_test_rmse_vs_baseline",
    "std_delta_test_rmse_vs_baseline",
)
IMPACT_SIGNIFICANCE_COLUMNS = (
    "ci95_low",
    "ci95_high",
    "min_detectable_delta",
    "wilcoxon_pvalue",
    "holm_pvalue",
    "verdict",
    "holm_family",
    "simultaneous_ci_low",
    "simultaneous_ci_high",
)


_CI = (
    "95% paired t-interval of the mean delta, unadjusted for the other rows: the verdict is decided by the "
    "Holm-adjusted Wilcoxon test, and the simultaneous interval is the one that agrees with it (NaN with fewer "
    "than 2 pairs)"
)
_SIMULTANEOUS = (
    "Bonferroni simultaneous interval of the mean delta over the row's Holm family (t.ppf(1 - alpha / (2 * "
    "holm_family), n - 1)): it excludes 0 only for a difference that survives testing every row"
)
# Each ranking and impact-summary column: its JSON type and what it means (the API documents
# them from here; docs/reports.md explains them at length).
COLUMN_DOCS: dict[str, tuple[type, str]] = {
    "rank": (int, "Position by rank_score, best first."),
    "config_id": (str, "`baseline`, `{param}={value}` or a candidate's name."),
    "param_name": (str, "The training_config key the variant changes (null for the baseline and candidates)."),
    "param_value": (object, "Its value, with its type (a number stays a number; CSV files spell it as the config id)."),
    "n_runs": (int, "Succeeded runs (the statistics use only these)."),
    "n_failed": (int, "Failed runs."),
    "n_total": (int, "Every run of the config."),
    "mean_val_rmse": (float, "Mean validation RMSE."),
    "std_val_rmse": (float, "Its sample standard deviation (0 with one run)."),
    "robust_score": (float, "mean_val_rmse + std_val_rmse (the sort key with the default rank_by, val_rmse)."),
    "mean_test_rmse": (float, "Mean test RMSE."),
    "std_test_rmse": (float, "Its sample standard deviation."),
    "mean_val_mae": (float, "Mean validation MAE."),
    "mean_test_mae": (float, "Mean test MAE."),
    "mean_val_naive_rmse": (float, "Mean validation RMSE of the naive (zero-return) forecast."),
    "mean_test_naive_rmse": (float, "Mean test RMSE of the naive forecast."),
    "delta_vs_baseline": (
        float,
        "Mean delta of the rank_by metric (val RMSE by default) to the baseline over pairs (same fold and seed).",
    ),
    "ci95_low": (float, f"Low end of the {_CI}."),
    "ci95_high": (float, f"High end of the {_CI}."),
    "holm_pvalue": (float, "Wilcoxon signed-rank p-value of the deltas, Holm-adjusted over the table's rows."),
    "verdict": (
        str,
        "baseline, better or worse (Holm p below alpha: it decides), indistinguishable, or insufficient "
        "(with n_pairs pairs and holm_family tests even a one-sided outcome could not reach alpha after Holm).",
    ),
    "holm_family": (
        int,
        "Tests Holm adjusts together in this table (rows with a p-value; a row without counts itself).",
    ),
    "simultaneous_ci_low": (float, f"Low end of the {_SIMULTANEOUS}."),
    "simultaneous_ci_high": (float, f"High end of the {_SIMULTANEOUS}."),
    "mean_test_skill": (float, "Mean of its runs' test_skill (1 - test_rmse / test_naive_rmse)."),
    "dm_better_share": (float, "Share of its runs that beat the naive forecast by the Diebold-Mariano test."),
    "n_pairs": (int, "Its runs paired with a baseline run of the same fold and seed."),
    "mean_val_rel_rmse": (float, "Mean of val_rmse / val_naive_rmse (sweep level): fold volatility divides out."),
    "std_val_rel_rmse": (float, "Its sample standard deviation."),
    "robust_rel_score": (float, "mean_val_rel_rmse + std_val_rel_rmse."),
    "mean_fold_rank": (float, "The config's rank by rank_score inside each fold, averaged over folds."),
    RANK_SCORE: (
        float,
        "Robust score of the rank_by metric over its runs: mean + std where lower is better, mean - std where "
        "higher is better (the sort key).",
    ),
    # Written by the report build from the stored predictions (core.selection), not by this module.
    "mcs_pvalue": (
        float,
        "The config's p-value in the model confidence set (arch, method R) on the daily validation losses of the "
        "rank_by metric's family; empty when not computed (summary.json selection.reason says why).",
    ),
    "in_mcs": (
        bool,
        "Whether the config is in the model confidence set at evaluation.selection.level (mcs_pvalue above "
        "1 - level); empty when not computed.",
    ),
    "avg_delta_rmse_vs_baseline": (float, "Mean val-RMSE delta to the baseline over pairs (the sort key)."),
    "std_delta_rmse_vs_baseline": (float, "Its sample standard deviation (0 with one pair)."),
    "win_rate": (float, "Share of pairs where the variant's val RMSE is below the baseline's."),
    "avg_delta_test_rmse_vs_baseline": (float, "Mean test-RMSE delta to the baseline over pairs."),
    "std_delta_test_rmse_vs_baseline": (float, "Its sample standard deviation."),
    "min_detectable_delta": (float, "Half-width of the interval: the smallest delta these pairs can show."),
    "wilcoxon_pvalue": (float, "scipy.stats.wilcoxon of the deltas, two-sided (NaN: fewer than 2 pairs or all 0)."),
}


def _keys(per_fold: bool) -> list[str]:
    return ["fold", "config_id"] if per_fold else ["config_id"]


def build_config_ranking(
    runs: pd.DataFrame,
    per_fold: bool = False,
    *,
    alpha: float = DEFAULT_ALPHA,
    fold_ranking: pd.DataFrame | None = None,
    pairs: pd.DataFrame | None = None,
    relative: bool = True,
    rank_by: str = DEFAULT_RANK_BY,
    metrics: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per config, best first by `rank_score`: the robust score of the `rank_by` column
    (`robust_score`: mean + std over runs when lower is better, mean - std when higher is better).

    The seed's columns keep their meaning whatever `rank_by` is (`robust_score` is that of
    val RMSE); then, per metric name of `metrics` (`core.metrics.metric_names`), its
    `ranking_metric_columns` and last `rank_score`. A metric column the runs lack is null.
    Statistics use succeeded runs only (`n_runs` of them); `n_failed` counts failed runs,
    `n_total` every run of the config. Configs without a succeeded run rank last.
    Ties keep plan order. `per_fold`: one ranking per fold in one pass, each fold's rows
    together (in the order folds first appear) under a leading `fold` column; split them
    with `split_by_fold`.

    Then each config against the baseline on their common (fold, seed) pairs, on `rank_by`
    (`RANKING_SIGNIFICANCE_COLUMNS`, Holm over the table's rows, per fold with `per_fold`)
    and, at sweep level, the relative view (`RANKING_RELATIVE_COLUMNS`): error relative to
    the naive forecast, and the config's mean rank inside each fold (from `fold_ranking`,
    this function's `per_fold` table with the same `rank_by`, computed when not given; left
    out when not `relative`). `pairs`: `baseline_pairs(runs, rank_by)`, when the caller has it.

    Raises:
        ValueError: `rank_by` is not a registered val_ metric column with a direction.
    """
    better = rank_direction(rank_by)
    added = ranking_metric_columns(metrics)
    stats_of = {
        name: found for name in (*RANKING_COLUMNS, *RANKING_SIGNIFICANCE_COLUMNS, *added) if (found := _stat(name))
    }
    runs = _with_columns(runs, [rank_by, *(column for column, _ in stats_of.values())])
    # Runs recorded before test_skill was kept have it null: it is what their RMSEs give.
    runs = runs.assign(test_skill=runs["test_skill"].fillna(skill(runs["test_rmse"], runs["test_naive_rmse"])))
    keys = _keys(per_fold)
    configs = runs.groupby(keys, sort=False)
    table = configs.agg(
        param_name=("param_name", "first"), param_value=("param_raw", "first"), n_total=("status", "size")
    )
    table["n_failed"] = (runs["status"] == "failed").groupby([runs[k] for k in keys], sort=False).sum()
    ok = runs[runs["status"] == "succeeded"]
    stats_of |= {"_rank_mean": (rank_by, "mean"), "_rank_std": (rank_by, "std")}
    grouped = ok.groupby(keys, sort=False)
    # One pass per statistic over all its columns: named aggregations take one pass per column.
    parts = [grouped["val_rmse"].size().rename("n_runs")]
    for kind in ("mean", "std"):
        names = [name for name, (_, of) in stats_of.items() if of == kind]
        values = grouped[list(dict.fromkeys(stats_of[name][0] for name in names))].agg(kind)
        parts.append(pd.DataFrame({name: values[stats_of[name][0]] for name in names}, index=values.index))
    stats = pd.concat(parts, axis=1)
    table = table.join(stats, how="left")
    table["n_runs"] = table["n_runs"].fillna(0).astype(int)
    one_run = table["n_runs"] == 1
    for col in [name for name, (_, of) in stats_of.items() if of == "std"]:
        table.loc[one_run, col] = 0.0  # the sample std of one value is 0, not undefined
    table["robust_score"] = robust_score(table["mean_val_rmse"], table["std_val_rmse"], "lower")
    table[RANK_SCORE] = robust_score(table["_rank_mean"], table["_rank_std"], better)
    table["_rank_key"] = table[RANK_SCORE] if better == "lower" else -table[RANK_SCORE]
    pairs = pairs if pairs is not None else baseline_pairs(runs, rank_by)
    table = table.join(_against_baseline(pairs, keys, rank_by), how="left")
    table = table.join(_against_naive(ok, keys, alpha), how="left")
    columns = [*RANKING_COLUMNS, *RANKING_SIGNIFICANCE_COLUMNS]
    relative = relative and not per_fold
    if relative:
        table = table.join(_relative_view(ok), how="left")
        columns += RANKING_RELATIVE_COLUMNS
    columns += [*RANKING_FAMILY_COLUMNS, *added, RANK_SCORE]
    table = _sorted(table, "_rank_key", per_fold)
    rank = table.groupby("fold", sort=False).cumcount() + 1 if per_fold else range(1, len(table) + 1)
    table.insert(0, "rank", rank)
    table["holm_pvalue"] = _holm_per_table(table, "_pvalue", per_fold)
    table["n_pairs"] = table["_pairs"].fillna(0).astype(int)
    _judge(table, "delta_vs_baseline", "_std", per_fold, alpha, better)
    is_baseline = table["config_id"] == BASELINE_ID
    table.loc[is_baseline, "verdict"] = VERDICT_BASELINE
    if not per_fold:
        for config_id, pairs_seen in raced_out(runs).items():
            table.loc[table["config_id"] == config_id, "verdict"] = f"{WORSE} (raced out after {pairs_seen} pairs)"
    table["holm_family"] = table["holm_family"].astype("Int64").mask(is_baseline)  # the baseline is not tested
    if relative:
        folds = (
            fold_ranking
            if fold_ranking is not None
            else build_config_ranking(runs, per_fold=True, alpha=alpha, pairs=pairs, rank_by=rank_by)
        )
        # Averaged over every fold (a fold where none of its runs succeeded ranks it last there).
        ranked = folds.groupby("config_id", sort=False)["rank"].mean()
        table["mean_fold_rank"] = table["config_id"].map(ranked)
    return table[[*keys[:-1], *columns]].reset_index(drop=True)


def robust_score(mean: Any, std: Any, better: str) -> Any:
    """The robust score of a metric over runs (numbers or columns): `mean + std` where lower is
    better, `mean - std` where higher is better, so that a config whose runs spread widely
    never wins on one lucky seed."""
    return mean + std if better == "lower" else mean - std


def rank_direction(rank_by: str) -> str:
    """Whether lower or higher values of the column `rank_by` are better.

    Raises:
        ValueError: `rank_by` is not the val_ column of a registered metric with a direction.
    """
    better = describe_column(rankable_metric(rank_by))[1].better
    assert better is not None  # rankable_metric refuses a metric without a direction
    return better


def ranking_metric_columns(metrics: Sequence[str]) -> list[str]:
    """What the ranking adds per metric name, in order: `mean_val_{m}`, `std_val_{m}` and
    `mean_test_{m}`, named after the run columns (`core.metrics.column_name`), leaving out
    those the seed's columns hold already (`mean_val_rmse`, `mean_test_skill`, ...)."""
    seed = {*RANKING_COLUMNS, *RANKING_SIGNIFICANCE_COLUMNS, *RANKING_RELATIVE_COLUMNS, *RANKING_FAMILY_COLUMNS}
    added: dict[str, None] = {}
    for name in metrics:
        val, test = column_name("val", name), column_name("test", name)
        added.update(dict.fromkeys(c for c in (f"mean_{val}", f"std_{val}", f"mean_{test}") if c not in seed))
    return list(added)


def ranking_column_doc(column: str) -> tuple[type, str]:
    """A ranking column's JSON type and meaning: from `COLUMN_DOCS`, or for a metric's columns
    (`ranking_metric_columns`) from the metric registry's description.

    Raises:
        KeyError: not a ranking column.
    """
    if column in COLUMN_DOCS:
        return COLUMN_DOCS[column]
    found = _stat(column)
    if found is None:
        raise KeyError(f"{column!r} is not a ranking column")
    run_column, stat = found
    _split, metric, ref = describe_column(run_column)
    description = metric.description.replace("{ref}", ref) if ref is not None else metric.description
    what = "Mean" if stat == "mean" else "Sample standard deviation (0 with one run)"
    return float, f"{what} of {run_column} over its runs: {description}"


def _stat(name: str) -> tuple[str, str] | None:
    """(run column, "mean" or "std") of a ranking column named `mean_{column}` or `std_{column}`
    after a run column or a metric column; None for any other."""
    stat, _, column = name.partition("_")
    if stat not in ("mean", "std"):
        return None
    if column in RUN_COLUMNS:
        return column, stat
    try:
        describe_column(column)
    except KeyError:
        return None
    return column, stat


def _with_columns(runs: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """`runs` with every one of `columns`, null (NaN) where the runs do not carry it."""
    missing = [c for c in dict.fromkeys(columns) if c not in runs.columns]
    return runs.assign(**dict.fromkeys(missing, np.nan)) if missing else runs


def _against_baseline(pairs: pd.DataFrame, keys: list[str], rank_by: str) -> pd.DataFrame:
    """Per config (and fold): the mean paired delta of `rank_by` vs the baseline, its interval,
    the Wilcoxon p-value (`_pvalue`, Holm-adjusted later over the whole table) and the pair count."""
    deltas = pairs.assign(_delta=pairs[rank_by] - pairs[f"baseline_{rank_by}"])
    names, groups = grouped_values(deltas, keys, "_delta")
    found = pair_statistics(groups)
    table = names.assign(
        delta_vs_baseline=found["mean"],
        ci95_low=found["ci95_low"],
        ci95_high=found["ci95_high"],
        _pvalue=found["wilcoxon_pvalue"],
        _pairs=found["n"],
        _std=found["std"],
    )
    return table.set_index(keys)


def _against_naive(ok: pd.DataFrame, keys: list[str], alpha: float) -> pd.DataFrame:
    """Per config (and fold): the share of runs whose Diebold-Mariano test says they beat the
    naive forecast (runs without the test left out)."""
    tested = ok["test_dm_stat"].notna() & ok["test_dm_pvalue"].notna()
    better = ((ok["test_dm_stat"] < 0) & (ok["test_dm_pvalue"] < alpha)).astype("float64").where(tested)
    frame = ok[keys].assign(_better=better)
    return frame.groupby(keys, sort=False).agg(dm_better_share=("_better", "mean"))


def _relative_view(ok: pd.DataFrame) -> pd.DataFrame:
    """Per config: mean and sample std (0 for one run) of val RMSE relative to the naive forecast's."""
    frame = ok[["config_id"]].assign(_rel=ok["val_rmse"] / ok["val_naive_rmse"])
    table = frame.groupby("config_id", sort=False)["_rel"].agg(["mean", "std", "count"])
    std = table["std"].where(table["count"] != 1, 0.0)
    return pd.DataFrame(
        {
            "mean_val_rel_rmse": table["mean"],
            "std_val_rel_rmse": std,
            "robust_rel_score": robust_score(table["mean"], std, "lower"),
        }
    )


_RACED = re.compile(r"raced out after (\d+) pairs")


def raced_out(runs: pd.DataFrame) -> dict[str, int]:
    """The configs racing dropped (runs `skipped` with a racing reason, `core.racing`), with
    the pairs it had seen when it did: their sweep-level verdict says so."""
    if "skip_reason" not in runs:
        return {}
    skipped = runs[(runs["status"] == "skipped") & runs["skip_reason"].notna()]
    out: dict[str, int] = {}
    for config_id, reason in zip(skipped["config_id"], skipped["skip_reason"], strict=True):
        match = _RACED.search(str(reason))
        if match and config_id not in out:
            out[str(config_id)] = int(match.group(1))
    return out


def _holm_per_table(table: pd.DataFrame, column: str, per_fold: bool) -> np.ndarray:
    """Holm over `column` of each table: the whole frame, or each fold's rows."""
    if not per_fold:
        return holm(table[column].to_numpy())
    out = np.full(len(table), np.nan)
    for rows in table.groupby("fold", sort=False).indices.values():
        out[rows] = holm(table[column].to_numpy()[rows])
    return out


def _judge(
    table: pd.DataFrame, mean_column: str, std_column: str, per_fold: bool, alpha: float, better: str = "lower"
) -> None:
    """Add each row's `holm_family`, `verdict` and simultaneous interval (after `holm_pvalue`),
    the family being the rows of its table (each fold's with `per_fold`). `better`: whether a
    lower or a higher mean delta is the better one."""
    pvalues = table["holm_pvalue"].to_numpy()
    counts = table["n_pairs"].to_numpy()
    families = np.zeros(len(table), dtype="int64")
    most = np.zeros(len(table), dtype="int64")
    if per_fold:
        for rows in table.groupby("fold", sort=False).indices.values():
            families[rows] = holm_families(pvalues[rows])
            most[rows] = family_most_pairs(counts[rows], pvalues[rows])
    else:
        families = holm_families(pvalues)
        most = family_most_pairs(counts, pvalues)
    means = table[mean_column].to_numpy(dtype="float64")
    table["holm_family"] = families
    table["verdict"] = verdicts(counts, means if better == "lower" else -means, pvalues, alpha, families, most)
    low, high = simultaneous_intervals(means, table[std_column].to_numpy(dtype="float64"), counts, families, alpha)
    table["simultaneous_ci_low"] = low
    table["simultaneous_ci_high"] = high


def baseline_pairs(runs: pd.DataFrame, rank_by: str = DEFAULT_RANK_BY) -> pd.DataFrame:
    """Every succeeded run of a config other than the baseline beside the succeeded baseline run
    of the same fold and seed (`baseline_{column}` for val and test RMSE and `rank_by`), with
    `delta_rmse_vs_baseline` (val) and its test counterpart."""
    ok = _with_columns(runs, [rank_by])
    ok = ok[ok["status"] == "succeeded"]
    ok = ok.assign(_run=ok.index.to_numpy())  # each run's label in `runs`
    compared = list(dict.fromkeys(["val_rmse", "test_rmse", rank_by]))
    base = ok[ok["config_id"] == BASELINE_ID][["fold", "seed", *compared, "_run"]]
    base = base.rename(columns={**{c: f"baseline_{c}" for c in compared}, "_run": "_base"})
    pairs = ok[ok["config_id"] != BASELINE_ID].merge(base, on=["fold", "seed"], how="inner", sort=False)
    pairs["delta_rmse_vs_baseline"] = pairs["val_rmse"] - pairs["baseline_val_rmse"]
    pairs["delta_test_rmse_vs_baseline"] = pairs["test_rmse"] - pairs["baseline_test_rmse"]
    return pairs


def build_param_impact_detail(runs: pd.DataFrame, per_fold: bool = False) -> pd.DataFrame:
    """Each succeeded variant run beside the succeeded baseline run of the same fold and seed.

    Rows follow plan order: config, then fold, then seed (`per_fold`: fold first, then the
    order configs and seeds first appear within the fold).
    """
    pairs = _impact_pairs(runs, baseline_pairs(runs))
    return _detail(pairs, per_fold).reset_index(drop=True)


def _impact_pairs(runs: pd.DataFrame, every: pd.DataFrame) -> pd.DataFrame:
    """The detail rows, unsorted, with the plan-order keys of both orders (`_c`, `_f`, `_s`
    overall; `_fc`, `_fs` within the fold)."""
    pairs = every[every["param_name"].notna()].reset_index(drop=True)  # the OFAT variants
    pairs[PARAM_VALUE] = pairs["param_raw"]  # typed (CSV files spell it)
    for name, keys in (
        ("_c", ["config_id"]),
        ("_f", ["fold"]),
        ("_s", ["seed"]),
        ("_fc", ["fold", "config_id"]),
        ("_fs", ["fold", "seed"]),
    ):
        pairs = pairs.merge(_first_seen(runs, keys, name), on=keys, how="left", sort=False)
    return pairs


def _detail(pairs: pd.DataFrame, per_fold: bool, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    order = ["_f", "_fc", "_fs"] if per_fold else ["_c", "_f", "_s"]
    return pairs.sort_values(order, kind="stable")[[*IMPACT_DETAIL_COLUMNS, *extra]]


class ImpactDetail:
    """`param_impact_detail` of the sweep and of each fold, paired once and formatted once.

    The sweep's table and the folds' tables hold the same rows in two orders, so the CSV
    lines are formatted for the per-fold order and reordered for the sweep's.
    """

    def __init__(
        self, runs: pd.DataFrame, pairs: pd.DataFrame | None = None, cells: dict[str, list[str]] | None = None
    ) -> None:
        """`cells`: `SweepRunsFiles.cells` of `runs` (whose index is then each run's position), so
        that the runs' metrics are not formatted again."""
        pairs = _impact_pairs(runs, pairs if pairs is not None else baseline_pairs(runs))
        by_fold = _detail(pairs, per_fold=True, extra=("_run", "_base"))
        overall = _detail(pairs, per_fold=False)
        position = pd.Series(range(len(by_fold)), index=by_fold.index)
        self._overall_order = position[overall.index].tolist()
        self.overall = overall.reset_index(drop=True)
        self.per_fold = by_fold[list(IMPACT_DETAIL_COLUMNS)].reset_index(drop=True)
        self._header, *self._lines = formatted_lines(list(IMPACT_DETAIL_COLUMNS), self._cells(by_fold, cells))
        self._by_fold = positions(self.per_fold["fold"].tolist())

    @staticmethod
    def _cells(by_fold: pd.DataFrame, cells: dict[str, list[str]] | None) -> list[list[str]]:
        """Each column's CSV cells: the runs' metrics taken from `cells`, the rest formatted."""
        known: dict[str, list[str]] = {}
        if cells is not None:
            runs, bases = by_fold["_run"].tolist(), by_fold["_base"].tolist()
            for metric in ("val_rmse", "test_rmse"):
                known[metric] = [cells[metric][i] for i in runs]
                known[f"baseline_{metric}"] = [cells[metric][i] for i in bases]
        return [
            known[name] if name in known else column_cells(name, by_fold[name].tolist())
            for name in IMPACT_DETAIL_COLUMNS
        ]

    def overall_csv(self) -> str:
        return "\n".join([self._header, *(self._lines[i] for i in self._overall_order)]) + "\n"

    def fold_csv(self, fold: str) -> str:
        return "\n".join([self._header, *(self._lines[i] for i in self._by_fold.get(fold, []))]) + "\n"


def _first_seen(runs: pd.DataFrame, keys: list[str], name: str) -> pd.DataFrame:
    """Each distinct value of `keys` with its rank (as `name`) in the order it first appears in `runs`."""
    seen = runs[keys].drop_duplicates()
    return seen.assign(**{name: range(len(seen))})


def build_param_impact_summary(
    detail: pd.DataFrame, per_fold: bool = False, *, alpha: float = DEFAULT_ALPHA
) -> pd.DataFrame:
    """Per (param, value): pairs, mean and sample std of the delta, win rate, test delta, then
    whether the delta is real (`IMPACT_SIGNIFICANCE_COLUMNS`, Holm over the table's rows,
    per fold with `per_fold`).

    A pair wins when the variant's val RMSE is strictly below its baseline's.
    Sorted by the average delta ascending (most helpful first); ties keep plan order.
    `per_fold` takes `build_param_impact_detail(runs, per_fold=True)`.
    """
    keys = _keys(per_fold)
    wins = detail.assign(_win=(detail["delta_rmse_vs_baseline"] < 0).astype(float))
    table = wins.groupby(keys, sort=False).agg(
        param_name=("param_name", "first"),
        param_value=("param_value", "first"),
        n_pairs=("delta_rmse_vs_baseline", "size"),
        avg_delta_rmse_vs_baseline=("delta_rmse_vs_baseline", "mean"),
        std_delta_rmse_vs_baseline=("delta_rmse_vs_baseline", "std"),
        win_rate=("_win", "mean"),
        avg_delta_test_rmse_vs_baseline=("delta_test_rmse_vs_baseline", "mean"),
        std_delta_test_rmse_vs_baseline=("delta_test_rmse_vs_baseline", "std"),
    )
    for col in ("std_delta_rmse_vs_baseline", "std_delta_test_rmse_vs_baseline"):
        table.loc[table["n_pairs"] == 1, col] = 0.0
    names, groups = grouped_values(detail, keys, "delta_rmse_vs_baseline")
    found = pair_statistics(groups)
    table = table.join(
        names.assign(
            ci95_low=found["ci95_low"],
            ci95_high=found["ci95_high"],
            min_detectable_delta=found["min_detectable_delta"],
            wilcoxon_pvalue=found["wilcoxon_pvalue"],
        ).set_index(keys),
        how="left",
    )
    table = _sorted(table, "avg_delta_rmse_vs_baseline", per_fold)
    table["holm_pvalue"] = _holm_per_table(table, "wilcoxon_pvalue", per_fold)
    _judge(table, "avg_delta_rmse_vs_baseline", "std_delta_rmse_vs_baseline", per_fold, alpha)
    return table[[*keys[:-1], *IMPACT_SUMMARY_COLUMNS, *IMPACT_SIGNIFICANCE_COLUMNS]].reset_index(drop=True)


def _sorted(table: pd.DataFrame, by: str, per_fold: bool) -> pd.DataFrame:
    """A grouped table (index: the group keys, in plan order) sorted by `by`, missing values
    last, ties in plan order; `per_fold` keeps each fold's rows together."""
    table = table.assign(_order=range(len(table))).reset_index()
    order = [by, "_order"]
    if per_fold:
        table["_fold"] = pd.factorize(table["fold"])[0]
        order.insert(0, "_fold")
    return table.sort_values(order, na_position="last", kind="stable")


def split_by_fold(table: pd.DataFrame, folds: list[str]) -> dict[str, pd.DataFrame]:
    """A `per_fold` table as one table per fold (without the leading `fold` column the ranking and
    impact summary add); empty for a fold without rows."""
    columns = list(table.columns[1:] if table.columns[0] == "fold" else table.columns)
    parts = {str(f): part for f, part in table.groupby("fold", sort=False)}
    empty = table[columns].iloc[0:0]
    return {f: parts[f][columns].reset_index(drop=True) if f in parts else empty for f in folds}
