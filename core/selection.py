"""Which configs cannot be told apart from the best, and is the best better than the baseline
once everything tried is accounted for: the model confidence set (Hansen, Lunde and Nason,
2011) and the test for superior predictive ability (Hansen, 2005) over a sweep's configs, both
from `arch.bootstrap`, on the configs' daily validation losses (docs/reports.md, "Selection").

The input is a loss table: one row per validation day, one column per config, each cell the
mean over the config's succeeded runs that forecast that day of the per-day loss of the
`evaluation.rank_by` metric's family (`core.metrics.Loss`), read from the runs'
`predictions.parquet`. Days on which any config has no loss are dropped, so every config is
judged on the same days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from core.config import EvaluationConfig, SelectionConfig
from core.errors import UnsafePath
from core.evaluation import read_predictions
from core.metrics import Loss, column_loss
from core.paths import version_folder
from core.plan import BASELINE_ID

MIN_DAYS = 10  # below this a block bootstrap of the daily losses has too little to resample
# Bounds checked before any file is read. The model confidence set eliminates configs one at a
# time over every pair, so its cost grows with reps x configs^3: measured 0.27 s at 50 configs,
# 9.9 s at 200 (1000 reps, 250 days, one core; the number of days barely matters).
MCS_WORK_LIMIT = 8e9  # reps x configs^3 of the sweep's table, and of all fold tables together
# It also holds three reps x configs x configs arrays of float64 at once: about 1 GB at this bound.
MCS_MEMORY_LIMIT = 4e7  # reps x configs^2 of any one table
# Predictions files read for one report build: ~4 ms a run (read and per-day loss), so ~40 s at
# the bound, the default plan cap (TFTSWEEP_MAX_RUNS).
MAX_RUNS_READ = 10_000
MCS_PVALUE = "mcs_pvalue"
IN_MCS = "in_mcs"
SELECTION_COLUMNS = (MCS_PVALUE, IN_MCS)
SPA_PVALUES = ("lower", "consistent", "upper")


def day_losses(rows: pd.DataFrame, loss: Loss, costs_bps: float) -> pd.DataFrame:
    """One run's per-day validation losses (`date`, `loss`) in date order: `loss` on the
    horizon-1 rows of split `val` (one forecast per day, the series a strategy trades)."""
    first = rows[(rows["split"] == "val") & (rows["horizon"] == 1)].sort_values("date", kind="stable")
    values = np.asarray(loss.per_day(first.reset_index(drop=True), costs_bps), dtype="float64")
    return pd.DataFrame({"date": first["date"].to_numpy(dtype=str), "loss": values})


@dataclass(frozen=True)
class RunLosses:
    """Every read run's daily losses (`fold`, `config_id`, `date`, `loss`: one row per run and
    day), and the succeeded runs that have no validation predictions (`fold/model_version`)."""

    frame: pd.DataFrame
    missing: list[tuple[str, str]]


def read_run_losses(sweep: Path, runs: pd.DataFrame, loss: Loss, costs_bps: float) -> RunLosses:
    """The daily losses of `runs` (succeeded runs of the analysis frame), from each one's stored
    predictions (`core.evaluation.read_predictions`); a run without `predictions.parquet` (an
    older run keeps only test rows), or whose file cannot be read, is listed as missing."""
    parts: list[pd.DataFrame] = []
    missing: list[tuple[str, str]] = []
    for fold, config_id, version in zip(runs["fold"], runs["config_id"], runs["model_version"], strict=True):
        rows = _val_rows(sweep, str(fold), version)
        if rows is None:
            missing.append((str(fold), version if isinstance(version, str) else f"{config_id} (no model version)"))
            continue
        part = day_losses(rows, loss, costs_bps)
        part.insert(0, "config_id", str(config_id))
        part.insert(0, "fold", str(fold))
        parts.append(part)
    columns = ["fold", "config_id", "date", "loss"]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return RunLosses(frame[columns], missing)


def _val_rows(sweep: Path, fold: str, version: Any) -> pd.DataFrame | None:
    if not isinstance(version, str):
        return None
    try:
        rows = read_predictions(version_folder(sweep, fold, version))
    except (OSError, ValueError, KeyError, UnsafePath, pa.ArrowException):
        return None
    if rows is None or not (rows["split"] == "val").any():
        return None
    return rows


@dataclass(frozen=True)
class LossTable:
    """The configs' daily losses on their common days: index `date` (ascending), one column per
    config in the given order; `days_dropped`: days some config has no loss on."""

    losses: pd.DataFrame
    days_dropped: int


def loss_table(run_losses: pd.DataFrame, configs: Sequence[str]) -> LossTable:
    """`run_losses` (rows of `RunLosses.frame`) as a table: per config and day, the mean over the
    config's runs that have a loss that day (folds and seeds alike); then only the days every
    one of `configs` has a loss on."""
    frame = run_losses[run_losses["config_id"].isin(list(configs))].dropna(subset=["loss"])
    means = frame.groupby(["date", "config_id"], sort=True)["loss"].mean().unstack("config_id")
    means = means.reindex(columns=list(configs))
    all_days = run_losses["date"].nunique()
    kept = means.dropna(how="any").astype("float64")
    kept.columns.name = None
    return LossTable(kept, int(all_days - len(kept)))


def default_block_size(days: int) -> int:
    """ceil(days ** (1/3)), computed in integers (27 ** (1/3) is 3.0000000000000004 in floats)."""
    size: int = max(1, round(float(days) ** (1 / 3)))
    while size**3 < days:
        size += 1
    while size > 1 and (size - 1) ** 3 >= days:
        size -= 1
    return size


def mcs_work(configs: int, reps: int) -> float:
    """The model confidence set's time in the units of `MCS_WORK_LIMIT`."""
    return float(reps) * float(configs) ** 3


def mcs_memory(configs: int, reps: int) -> float:
    """The model confidence set's memory in the units of `MCS_MEMORY_LIMIT`."""
    return float(reps) * float(configs) ** 2


@dataclass(frozen=True)
class MCSResult:
    pvalues: dict[str, float]
    members: list[str]


def distinct_columns(losses: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """The table with each set of identical columns kept once (the first of them), and each
    column's kept twin. Two configs with the same daily losses (an OFAT value that changed
    nothing, two configs that forecast the same sign every day) have a loss difference of
    variance 0, which arch's MCS cannot studentize: they are one model to it, and share its
    result."""
    kept: list[str] = []
    seen: dict[bytes, str] = {}
    twin: dict[str, str] = {}
    for name in (str(c) for c in losses.columns):
        key = np.ascontiguousarray(losses[name].to_numpy(dtype="float64")).tobytes()
        if key not in seen:
            seen[key] = name
            kept.append(name)
        twin[name] = seen[key]
    return losses[kept], twin


def model_confidence_set(losses: pd.DataFrame, selection: SelectionConfig, block_size: int) -> MCSResult:
    """arch's MCS (method R, stationary bootstrap) at `selection.level` over the table's
    columns, identical columns taken once (`distinct_columns`); p-values and members in the
    table's column order."""
    from arch.bootstrap import MCS

    distinct, twin = distinct_columns(losses)
    names = [str(c) for c in losses.columns]
    if distinct.shape[1] == 1:  # every config has the same losses: none can be told apart
        return MCSResult(dict.fromkeys(names, 1.0), names)
    mcs = MCS(
        distinct,
        size=1 - selection.level,
        reps=selection.reps,
        block_size=block_size,
        method="R",
        bootstrap="stationary",
        seed=selection.seed,
    )
    mcs.compute()
    pvalues = mcs.pvalues["Pvalue"]
    included = set(mcs.included)
    return MCSResult({n: float(pvalues.loc[twin[n]]) for n in names}, [n for n in names if twin[n] in included])


def spa_test(losses: pd.DataFrame, selection: SelectionConfig, block_size: int) -> dict[str, float] | None:
    """arch's SPA test of the baseline's column against every other column (studentized,
    stationary bootstrap): p-values `lower`, `consistent`, `upper`; None without a baseline
    column or another config."""
    from arch.bootstrap import SPA

    if BASELINE_ID not in losses.columns or losses.shape[1] < 2:
        return None
    # A config with the baseline's very losses is not better than it, and a loss difference of
    # variance 0 cannot be studentized: it is left out; with none left, nothing is better.
    base = losses[BASELINE_ID].to_numpy(dtype="float64")
    others = [c for c in losses.columns if c != BASELINE_ID and not np.array_equal(losses[c].to_numpy(), base)]
    if not others:
        return dict.fromkeys(SPA_PVALUES, 1.0)
    spa = SPA(
        losses[BASELINE_ID],
        losses[others],
        reps=selection.reps,
        block_size=block_size,
        bootstrap="stationary",
        studentize=True,
        nested=False,
        seed=selection.seed,
    )
    spa.compute()
    return {name: float(spa.pvalues[name]) for name in SPA_PVALUES}


def _head(evaluation: EvaluationConfig, configs: Sequence[str]) -> dict[str, Any]:
    """The block's settings: what was compared on what, before anything is computed."""
    selection = evaluation.selection
    return {
        "available": False,
        "reason": None,
        "metric": evaluation.rank_by,
        "loss": column_loss(evaluation.rank_by).description,
        "level": selection.level,
        "reps": selection.reps,
        "block_size": selection.block_size,
        "seed": selection.seed,
        "days_used": 0,
        "days_dropped": 0,
        "configs_tried": len([c for c in configs if c != BASELINE_ID]),
        "mcs": None,
        "spa": None,
    }


def _unavailable(head: dict[str, Any], reason: str) -> dict[str, Any]:
    return {**head, "reason": reason}


def compute_block(head: dict[str, Any], table: LossTable, selection: SelectionConfig) -> dict[str, Any]:
    """A table's block: the model confidence set and the SPA test on `table`, or why not."""
    days = len(table.losses)
    head = {**head, "days_used": days, "days_dropped": table.days_dropped}
    if days < MIN_DAYS:
        return _unavailable(
            head,
            f"only {days} validation day{' has' if days == 1 else 's have'} a forecast of every config "
            f"({MIN_DAYS} are needed; {table.days_dropped} dropped)",
        )
    block_size = selection.block_size or default_block_size(days)
    try:
        mcs = model_confidence_set(table.losses, selection, block_size)
        spa = spa_test(table.losses, selection, block_size)
    except (ValueError, IndexError, ZeroDivisionError, FloatingPointError, np.linalg.LinAlgError) as exc:
        # Losses arch cannot resample into a test (e.g. differences of variance 0 that are not
        # identical columns) cost the block, never the sweep its reports.
        return _unavailable(head, f"arch could not compute the tests on these losses ({type(exc).__name__}: {exc})")
    means = table.losses.mean()
    return {
        **head,
        "available": True,
        "block_size": block_size,
        "mcs": {
            "members": mcs.members,
            "size": len(mcs.members),
            "pvalues": mcs.pvalues,
            "mean_loss": {str(c): float(means[c]) for c in table.losses.columns},
        },
        "spa": spa,
    }


def _compared(ranking: pd.DataFrame) -> list[str]:
    """The configs a table compares: those with a succeeded run, in the ranking's order."""
    return [str(c) for c in ranking.loc[ranking["n_runs"] > 0, "config_id"]]


def select_configs(
    sweep: Path,
    runs: pd.DataFrame,
    ranking: pd.DataFrame,
    fold_rankings: dict[str, pd.DataFrame],
    evaluation: EvaluationConfig,
) -> dict[str, Any]:
    """The sweep's selection block (summary.json `selection`) with one block per fold under
    `folds`: each table's configs (those with a succeeded run, columns in its ranking's order)
    compared on their common validation days. Every bound is checked before a file is read."""
    selection = evaluation.selection
    configs = _compared(ranking)
    head = _head(evaluation, configs)
    fold_configs = {name: _compared(table) for name, table in fold_rankings.items()}
    fold_heads = {name: _head(evaluation, found) for name, found in fold_configs.items()}
    ok = runs[(runs["status"] == "succeeded") & runs["config_id"].isin(configs)]
    reason = _sweep_bound(configs, len(ok), selection.reps)
    if reason is not None:
        return {**_unavailable(head, reason), "folds": {n: _unavailable(h, reason) for n, h in fold_heads.items()}}
    read = read_run_losses(sweep, ok, column_loss(evaluation.rank_by), evaluation.costs_bps)
    fold_reason = _folds_bound(fold_configs, selection.reps)
    blocks: dict[str, Any] = {}
    for name, found in fold_configs.items():
        if fold_reason is not None:
            blocks[name] = _unavailable(fold_heads[name], fold_reason)
            continue
        losses = read.frame[read.frame["fold"] == name]
        blocks[name] = _table_block(fold_heads[name], found, losses, _of_fold(read.missing, name), selection)
    return {**_table_block(head, configs, read.frame, read.missing, selection), "folds": blocks}


def _of_fold(missing: list[tuple[str, str]], fold: str) -> list[tuple[str, str]]:
    return [m for m in missing if m[0] == fold]


def _table_block(
    head: dict[str, Any],
    configs: list[str],
    run_losses: pd.DataFrame,
    missing: list[tuple[str, str]],
    selection: SelectionConfig,
) -> dict[str, Any]:
    if len(configs) < 2:
        return _unavailable(
            head, f"{len(configs)} config{'' if len(configs) == 1 else 's'} with succeeded runs: 2 or more are needed"
        )
    if missing:
        fold, version = missing[0]
        return _unavailable(
            head,
            f"{len(missing)} succeeded run{' has' if len(missing) == 1 else 's have'} no validation predictions "
            f"(predictions.parquet), e.g. {fold}/{version}: train them again to compare the configs day by day",
        )
    return compute_block(head, loss_table(run_losses, configs), selection)


def _sweep_bound(configs: list[str], runs: int, reps: int) -> str | None:
    """Why the sweep's table is not computed at all (before any file is read), or None."""
    if runs > MAX_RUNS_READ:
        return f"{runs} runs: reading more than {MAX_RUNS_READ} runs' predictions is beyond one report build"
    work, memory = mcs_work(len(configs), reps), mcs_memory(len(configs), reps)
    if work > MCS_WORK_LIMIT:
        return (
            f"{len(configs)} configs with {reps} reps: the model confidence set's cost (reps x configs^3 = "
            f"{work:.3g}) is over the bound of {MCS_WORK_LIMIT:.3g} (about 10 s); lower evaluation.selection.reps"
        )
    if memory > MCS_MEMORY_LIMIT:
        return (
            f"{len(configs)} configs with {reps} reps: the model confidence set's memory (reps x configs^2 = "
            f"{memory:.3g}) is over the bound of {MCS_MEMORY_LIMIT:.3g} (about 1 GB); lower evaluation.selection.reps"
        )
    return None


def _folds_bound(fold_configs: dict[str, list[str]], reps: int) -> str | None:
    work = sum(mcs_work(len(found), reps) for found in fold_configs.values())
    memory = max((mcs_memory(len(found), reps) for found in fold_configs.values()), default=0.0)
    if memory > MCS_MEMORY_LIMIT:
        return (
            f"a fold's model confidence set needs reps x configs^2 = {memory:.3g}, over the bound of "
            f"{MCS_MEMORY_LIMIT:.3g} (about 1 GB); lower evaluation.selection.reps"
        )
    if work > MCS_WORK_LIMIT:
        return (
            f"the folds' model confidence sets together cost reps x configs^3 = {work:.3g}, over the bound of "
            f"{MCS_WORK_LIMIT:.3g} (about 10 s); lower evaluation.selection.reps"
        )
    return None


def with_selection(ranking: pd.DataFrame, block: dict[str, Any] | None) -> pd.DataFrame:
    """`ranking` with `mcs_pvalue` and `in_mcs` at the end, from a selection block (summary.json's
    `selection`, or one of its `folds`); null where the block was not computed or a config was
    not compared (no succeeded run)."""
    table = ranking.copy()
    ids = table["config_id"].astype(str)
    if block is None or not block.get("available"):
        table[MCS_PVALUE] = np.nan
        table[IN_MCS] = None
        return table
    pvalues, members = block["mcs"]["pvalues"], set(block["mcs"]["members"])
    table[MCS_PVALUE] = ids.map(pvalues).astype("float64")
    table[IN_MCS] = [(c in members) if c in pvalues else None for c in ids]
    return table


def spelled_for_csv(ranking: pd.DataFrame) -> pd.DataFrame:
    """The ranking as config_ranking.csv spells it: `in_mcs` as `true`/`false` (empty: not computed)."""
    if IN_MCS not in ranking.columns:
        return ranking
    spelled = [None if v is None or v is pd.NA else ("true" if v else "false") for v in ranking[IN_MCS]]
    return ranking.assign(**{IN_MCS: spelled})


def selection_sentence(block: dict[str, Any] | None, alpha: float) -> str:
    """The selection block in words: how many configs were tried, whether any beats the baseline
    by the SPA test (its consistent p-value against `alpha`), and the confidence set's size;
    empty where the block was not computed."""
    if block is None or not block.get("available"):
        return ""  # the block's `reason` says why: a sweep without stored predictions is no news
    tried, mcs, spa = block["configs_tried"], block["mcs"], block["spa"]
    days = f"{block['days_used']} validation days"
    level = f"{block['level']:.0%} model confidence set"
    compared = len(mcs["pvalues"])
    in_set = f"{mcs['size']} of {compared} configs {'is' if mcs['size'] == 1 else 'are'} in the {level}"
    if compared == mcs["size"]:
        in_set = f"all {compared} configs are in the {level} (none can be told apart from the best)"
    if spa is None:
        return f"On {days}, {in_set}; no SPA test without the baseline's runs."
    p = spa["consistent"]
    # A bootstrap p-value of 0 only says below one in reps.
    spelled = f"< {1 / block['reps']:.2g}" if p == 0 else f"= {p:.2g}"
    tried_text = f"{tried} config{'' if tried == 1 else 's'} tried"
    if p < alpha:
        verdict = f"at least one config is better than the baseline (SPA p {spelled}, below {alpha:g})"
    else:
        verdict = f"no config is better than the baseline (SPA p {spelled})"
    return f"After accounting for the {tried_text}, {verdict}; on {days}, {in_set}."
