"""Write every report, drift file and plot of a sweep (docs/reports.md), or rebuild them from disk.

`write_sweep_reports` is called when a sweep's runs are done (by the run engine);
`regenerate_sweep` reads only what the folder stores (`analysis_config.json`,
`sweep_runs.json`, `models/`) and the dataset it names, and writes byte-identical CSV/JSON
(`generated_at` aside).

One job, a sweep's report set written together, just past 500 lines: the files, the drift and
the plots are made from the same tables (`ReportTables`) and run records, so the plots' inputs
read from the version folders (best predictions, loss curves, strategy returns) stay beside them.
Each table is computed elsewhere (`core.reports`, `core.summary`, `core.selection`, `core.drift`)
and each figure drawn in `core.plots`.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from core.config import EvaluationConfig, StatsConfig, SweepConfig
from core.datasets import check_fingerprint, dataset_path, load_dataset
from core.drift import drift_by_fold, drift_overall_summary
from core.errors import DatasetError
from core.evaluation import read_predictions
from core.feature_sets import resolve_features
from core.files import write_json_atomic, write_text_atomic
from core.metrics import metric_columns, metric_names, strategy_returns
from core.paths import LEGACY_PREDICTIONS_FILE, ensure_inside
from core.plan import BASELINE_ID
from core.report_files import json_safe, write_csv
from core.reports import (
    DEFAULT_RANK_BY,
    ImpactDetail,
    baseline_pairs,
    build_config_ranking,
    build_param_impact_summary,
    split_by_fold,
)
from core.rescore import rescore_records, scored_from_counts
from core.runs import METRIC_COLUMNS, SCORED_FROM
from core.selection import select_configs, spelled_for_csv, with_selection
from core.summary import SummaryFacts, best_config, build_summary
from core.sweep_folder import SweepFolderConfig, read_analysis_config, read_run_records, write_analysis_config
from core.sweep_runs import SweepRunsFiles, runs_table

PLOT_CONFIG_RANKING = "config_ranking.png"
PLOT_PARAM_IMPACT = "param_impact.png"
PLOT_DRIFT = "drift_psi_heatmap.png"
PLOT_PREDICTIONS = "best_config_test_predictions.png"
PLOT_LOSS = "best_config_loss_curves.png"
PLOT_STRATEGY = "strategy_returns.png"
PLOT_DIRECTION = "direction_accuracy.png"
PLOT_COVERAGE = "coverage.png"
PLOT_SELECTION = "selection_mcs.png"
MAX_LOSS_CURVES = 10


def response_plot_name(param: str) -> str:
    return f"response_{param}.png"


def regenerate_sweep(
    sweep: Path,
    root: Path,
    *,
    drift: bool = True,
    plots: bool = True,
    alpha: float | None = None,
    evaluation: dict[str, Any] | None = None,
    generated_at: str | None = None,
) -> dict[str, Any]:
    """Rebuild every report and plot of the folder `sweep`, wherever it lies, from what it
    stores: the asset, config and dataset fingerprint of `analysis_config.json`, the runs of
    `sweep_runs.json`, `models/`, and the dataset found under the data root `root`.

    With `drift=False` a missing or different dataset is no error: the drift files are
    removed and the summary says why. `alpha` judges the differences at another level (it
    changes no run) and is recorded in the folder's `analysis_config.json`; so are `evaluation`'s
    keys (`rank_by`, `references`, `costs_bps`: the runs are scored again from their stored
    predictions).

    Raises:
        ValidationError: `evaluation` holds a value its block refuses (nothing written).
        SweepFolderError: the folder lacks or cannot read its files.
        DatasetError: (with `drift`) the dataset is missing or is not the one the sweep recorded.
    """
    analysis = read_analysis_config(sweep)
    if alpha is not None:
        stats = StatsConfig.model_validate({"alpha": alpha})
        analysis = replace(analysis, config=analysis.config.model_copy(update={"stats": stats}))
    if evaluation:
        block = EvaluationConfig.model_validate({**analysis.config.evaluation.model_dump(), **evaluation})
        analysis = replace(analysis, config=analysis.config.model_copy(update={"evaluation": block}))
    records = read_run_records(sweep)
    if drift:
        frame, reason = load_drift_dataset(root, analysis), None
    else:  # not loaded: only whether it would have served
        problem = _dataset_problem(root, analysis)
        frame, reason = None, "skipped (--no-drift)" + (f": {problem}" if problem else "")
    # Every metric again from the stored predictions (the folder keeps no scoring marks): a new
    # evaluation block, costs or registered metric reach every run without training.
    # Without the dataset the runs keep the scores their files hold; the summary's scored_from
    # is then null (not known here), not a count of runs "scored by training".
    scoring = frame if frame is not None else drift_dataset(root, analysis)[0]
    if scoring is not None:
        folds = {fold.name: fold for fold in analysis.config.folds}
        records, _ = rescore_records(records, sweep, scoring, folds, analysis.config.evaluation)
    return write_sweep_reports(
        sweep, records, analysis, frame, drift_reason=reason, plots=plots, generated_at=generated_at
    )


def sweep_ranking(
    records: list[dict[str, Any]], config: SweepConfig, selection: dict[str, Any] | None = None
) -> pd.DataFrame:
    """The sweep-level table `config_ranking.csv` holds, built from run records by the same
    functions (ordered by `config.evaluation.rank_by`, with its metric columns): what a caller
    that has the records shows without reading the file back. `selection`: the summary's
    `selection` block (what `write_sweep_reports` returned), which fills `mcs_pvalue` and
    `in_mcs`; without it they are empty."""
    evaluation = config.evaluation
    runs = runs_table(records, metric_columns(evaluation.references))
    ranking = build_config_ranking(
        runs, alpha=config.stats.alpha, rank_by=evaluation.rank_by, metrics=metric_names(evaluation.references)
    )
    return with_selection(ranking, selection)


def load_drift_dataset(root: Path, analysis: SweepFolderConfig) -> pd.DataFrame:
    """The sweep's dataset for drift, checked against the fingerprint the sweep recorded.

    Raises:
        DatasetError: missing, unreadable, or not the recorded one.
    """
    if analysis.dataset is not None:
        check_fingerprint(root, analysis.asset, analysis.dataset)
    return load_dataset(root, analysis.asset, analysis.config.features)


def _dataset_problem(root: Path, analysis: SweepFolderConfig) -> str | None:
    """Why the sweep's dataset under `root` could not serve drift (missing, or another one)."""
    try:
        if analysis.dataset is not None:
            check_fingerprint(root, analysis.asset, analysis.dataset)
        elif not dataset_path(root, analysis.asset).is_file():
            raise DatasetError(f"dataset of {analysis.asset} is missing")
    except DatasetError as exc:
        return str(exc)
    return None


def check_report_folders(sweep: Path, config: SweepConfig) -> None:
    """Every folder the reports are written into lies inside the sweep folder (no link out).

    Raises:
        UnsafePath: naming the folder.
    """
    folds = sweep / "folds"
    per_fold = [path for fold in config.folds for path in (folds / fold.name, folds / fold.name / "plots")]
    ensure_inside(sweep, sweep / "plots", folds, *per_fold)


def drift_dataset(root: Path, analysis: SweepFolderConfig) -> tuple[pd.DataFrame | None, str | None]:
    """`load_drift_dataset`, or None and why not (the dataset is missing or is another one)."""
    try:
        return load_drift_dataset(root, analysis), None
    except DatasetError as exc:
        return None, str(exc)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while reports are built: they make millions of acyclic
    objects (rows, cells), and with 100,000 runs its passes over them took a seventh of the
    time. Left as it was found (another thread may have paused it too)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@_collector_paused()
def write_sweep_reports(
    sweep: Path,
    records: list[dict[str, Any]],
    analysis: SweepFolderConfig,
    dataset: pd.DataFrame | None,
    *,
    drift_reason: str | None = None,
    plots: bool = True,
    generated_at: str | None = None,
) -> dict[str, Any]:
    """Write the sweep's files: `analysis_config.json`, `sweep_runs`, reports, per-fold reports,
    drift (from `dataset`; without it the drift files are removed and the summary gives
    `drift_reason`) and plots. Returns the summary.

    Raises:
        UnsafePath: a folder it writes into leads outside the sweep folder (nothing written).
    """
    config = analysis.config
    check_report_folders(sweep, config)
    write_analysis_config(sweep, analysis)
    evaluation = config.evaluation
    sweep_runs = SweepRunsFiles(records, metric_columns(evaluation.references))
    runs = sweep_runs.runs
    sweep_runs.write(sweep)
    alpha = config.stats.alpha
    # Every fold's tables in one pass each (25 folds: a tenth of the time of 25 passes).
    names = [fold.name for fold in config.folds]
    pairs = baseline_pairs(runs, evaluation.rank_by)
    rank_by, metrics = evaluation.rank_by, metric_names(evaluation.references)
    per_fold_ranking = build_config_ranking(
        runs, per_fold=True, alpha=alpha, pairs=pairs, rank_by=rank_by, metrics=metrics
    )
    ranking = build_config_ranking(
        runs, alpha=alpha, fold_ranking=per_fold_ranking, pairs=pairs, rank_by=rank_by, metrics=metrics
    )
    fold_rankings = split_by_fold(per_fold_ranking, names)
    # The model confidence set and the SPA test on the configs' daily validation losses (the
    # stored predictions): columns at the end of every ranking, a block in the summary.
    selection = select_configs(sweep, runs, ranking, fold_rankings, evaluation)
    ranking = with_selection(ranking, selection)
    fold_rankings = {name: with_selection(table, selection["folds"][name]) for name, table in fold_rankings.items()}
    detail = ImpactDetail(runs, pairs, sweep_runs.cells)
    impact = build_param_impact_summary(detail.overall, alpha=alpha)
    write_csv(sweep / "config_ranking.csv", spelled_for_csv(ranking))
    write_text_atomic(sweep / "param_impact_detail.csv", detail.overall_csv(), durable=False)
    write_csv(sweep / "param_impact_summary.csv", impact)
    fold_impacts = split_by_fold(build_param_impact_summary(detail.per_fold, per_fold=True, alpha=alpha), names)
    for name in names:
        directory = sweep / "folds" / name
        sweep_runs.write_fold(directory, name)
        write_csv(directory / "config_ranking.csv", spelled_for_csv(fold_rankings[name]))
        write_text_atomic(directory / "param_impact_detail.csv", detail.fold_csv(name), durable=False)
        write_csv(directory / "param_impact_summary.csv", fold_impacts[name])

    drift, drift_summary = _write_drift(sweep, dataset, config, drift_reason)
    models = build_all_models_ranked(sweep)
    write_csv(sweep / "all_models_ranked.csv", models)

    plot_files: list[str] = []
    if plots:
        plot_files += _draw_plots(
            sweep,
            sweep / "plots",
            "",
            runs,
            ranking,
            ReportTables(detail.overall, impact, selection),
            drift,
            config,
        )
        for name in names:
            plot_files += _draw_plots(
                sweep,
                sweep / "folds" / name / "plots",
                f"fold {name}: ",
                runs[runs["fold"] == name],
                fold_rankings[name],
                ReportTables(
                    detail.per_fold[detail.per_fold["fold"] == name], fold_impacts[name], selection["folds"][name]
                ),
                drift[drift["fold"] == name] if drift is not None else None,
                config,
            )
    summary = build_summary(
        analysis.asset,
        config,
        runs,
        ranking,
        impact,
        drift_summary,
        plot_files,
        SummaryFacts(generated_at, analysis.dataset, scored_from=_scored_from(records), selection=selection),
    )
    write_json_atomic(sweep / "summary.json", summary)
    return summary


def _scored_from(records: list[dict[str, Any]]) -> dict[str, int] | None:
    """`core.rescore.scored_from_counts`, or None where no run says how it was scored (a folder
    regenerated without its dataset: its runs were not rescored here)."""
    return scored_from_counts(records) if any(SCORED_FROM in r for r in records) else None


DRIFT_FILES = ("drift_ks_psi_by_fold.csv", "drift_ks_psi_overall_summary.json")


def _write_drift(
    sweep: Path, dataset: pd.DataFrame | None, config: SweepConfig, reason: str | None
) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    if dataset is None:
        for name in DRIFT_FILES:  # stale drift never stays beside fresh reports
            (sweep / name).unlink(missing_ok=True)
        (sweep / "plots" / PLOT_DRIFT).unlink(missing_ok=True)
        for fold in config.folds:
            (sweep / "folds" / fold.name / "plots" / PLOT_DRIFT).unlink(missing_ok=True)
        return None, {"available": False, "reason": reason or "the dataset is not available"}
    by_fold = drift_by_fold(dataset, config.folds, resolve_features(config.features))
    write_csv(sweep / "drift_ks_psi_by_fold.csv", by_fold)
    overall = drift_overall_summary(by_fold)
    write_json_atomic(sweep / "drift_ks_psi_overall_summary.json", json_safe(overall))
    return by_fold, {
        "available": True,
        **{k: overall[k] for k in ("n_comparisons", "n_by_band", "most_drifting_features")},
    }


# A model version's scores as its `metrics.json` records them: the run fields training measures
# (core.runs), but its wall time and its tests against the naive forecast, which the ranking
# reports per config.
MODEL_SCORES: tuple[str, ...] = tuple(
    c for c in METRIC_COLUMNS if c not in ("train_seconds", "test_skill", "test_dm_stat", "test_dm_pvalue")
)
MODEL_KEYS = ("fold", "model_version", "config_id", "seed", "run_key")
ALL_MODELS_COLUMNS = ("rank", *MODEL_KEYS, *MODEL_SCORES, "path")


def build_all_models_ranked(sweep: Path) -> pd.DataFrame:
    """Every model version stored under `folds/*/models/`, ranked by val RMSE (path breaks ties)."""
    rows = []
    for metrics_file in sorted(sweep.glob("folds/*/models/*/metrics.json")):
        version = metrics_file.parent
        metrics = json.loads(metrics_file.read_text())
        run_file = version / "run.json"
        run = json.loads(run_file.read_text()) if run_file.is_file() else {}
        rows.append(
            {
                "fold": version.parents[1].name,
                "model_version": version.name,
                "config_id": run.get("config_id"),
                "seed": run.get("seed"),
                "run_key": run.get("run_key"),
                **{k: metrics.get(k) for k in MODEL_SCORES},
                "path": str(version.relative_to(sweep)),
            }
        )
    table = pd.DataFrame(rows, columns=[*MODEL_KEYS, *MODEL_SCORES, "path"])
    table = table.sort_values(["val_rmse", "path"], na_position="last", kind="stable").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


@dataclass(frozen=True)
class ReportTables:
    """The tables one set of plots draws: `param_impact_detail`, `param_impact_summary` and the
    selection block (`core.selection`) of the same table."""

    detail: pd.DataFrame
    impact: pd.DataFrame
    selection: dict[str, Any] | None = None


def _draw_plots(
    sweep: Path,
    out: Path,
    prefix: str,
    runs: pd.DataFrame,
    ranking: pd.DataFrame,
    paired: ReportTables,
    drift: pd.DataFrame | None,
    config: SweepConfig,
) -> list[str]:
    from core import plots

    alpha = config.stats.alpha
    rank_by = config.evaluation.rank_by
    drawn: dict[str, Any] = {
        PLOT_CONFIG_RANKING: plots.plot_config_ranking(
            ranking,
            f"{prefix}configs ranked by robust score" + ("" if rank_by == DEFAULT_RANK_BY else f" of {rank_by}"),
            rank_by=rank_by,
        ),
        PLOT_PARAM_IMPACT: plots.plot_param_impact(paired.impact, f"{prefix}parameter impact vs baseline", alpha),
    }
    for param in config.param_ranges:
        baseline_value = getattr(config.training_config, param)
        drawn[response_plot_name(param)] = plots.plot_response_curve(
            paired.detail,
            paired.impact,
            param,
            baseline_value,
            f"{prefix}paired effect of {param} on val RMSE vs the baseline",
            alpha,
        )
    if drift is not None:
        drawn[PLOT_DRIFT] = plots.plot_drift_heatmap(drift, f"{prefix}feature drift (PSI) vs train window")
    best = best_config(ranking)
    label = best["config_id"] if best is not None else "-"
    best_runs = runs[(runs["config_id"] == label) & (runs["status"] == "succeeded")] if best is not None else runs[:0]
    drawn[PLOT_PREDICTIONS] = plots.plot_predictions(
        _best_predictions(sweep, best_runs), f"{prefix}best config {label}: test predictions vs actual"
    )
    drawn[PLOT_LOSS] = plots.plot_loss_curves(_histories(sweep, best_runs), f"{prefix}best config {label}: loss curves")
    costs = config.evaluation.costs_bps
    drawn[PLOT_STRATEGY] = plots.plot_strategy_returns(
        *_strategy_curves(sweep, runs, best, config.evaluation.references, costs),
        f"{prefix}sign strategy on the test windows: best config {label}, the baseline and the references",
        costs,
    )
    drawn[PLOT_DIRECTION] = plots.plot_direction_accuracy(ranking, f"{prefix}test directional accuracy per config")
    drawn[PLOT_SELECTION] = plots.plot_selection_mcs(
        paired.selection,
        f"{prefix}mean daily validation loss per config, the model confidence set marked",
    )
    coverage = _coverage(ranking)
    if coverage:  # quantile runs only
        drawn[PLOT_COVERAGE] = plots.plot_coverage(coverage, f"{prefix}quantile intervals: nominal vs observed")
    names = []
    for name, fig in drawn.items():
        plots.save_figure(fig, out / name)
        names.append(str((out / name).relative_to(sweep)))
    return names


def _version_dir(sweep: Path, run: pd.Series) -> Path | None:
    if not isinstance(run["model_version"], str):
        return None
    return sweep / "folds" / str(run["fold"]) / "models" / run["model_version"]


def _best_predictions(sweep: Path, best_runs: pd.DataFrame) -> pd.DataFrame:
    """The best config's first-seed test predictions, one block per fold."""
    frames = []
    for _, group in best_runs.groupby("fold", sort=False):
        version = _version_dir(sweep, group.iloc[0])
        path = version / LEGACY_PREDICTIONS_FILE if version else None
        if path is not None and path.is_file():
            frames.append(pd.read_csv(path).query("horizon == 1"))
    if not frames:
        return pd.DataFrame(columns=["date", "actual", "predicted"])
    return pd.concat(frames).drop_duplicates("date", keep="last").sort_values("date")


def _histories(sweep: Path, best_runs: pd.DataFrame) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {}
    for _, run in best_runs.head(MAX_LOSS_CURVES).iterrows():
        version = _version_dir(sweep, run)
        path = version / "metrics.json" if version else None
        if path is not None and path.is_file():
            history = json.loads(path.read_text()).get("history") or []
            if history:
                out[f"{run['fold']} seed {run['seed']}"] = history
    return out


def _strategy_curves(
    sweep: Path, runs: pd.DataFrame, best: pd.Series | None, references: list[str], costs_bps: float
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """(configs, references) of the strategy plot: the daily sign-strategy return
    (`core.metrics.strategy_returns`) on the test windows of the best config and of the
    baseline, each the mean over its runs (seeds) per date, folds in date order; and each
    reference's own sign strategy, on the forecasts stored beside the best config's (the
    baseline's where it has none). Only these two configs' predictions are read, so the plot
    costs the same at any sweep size."""
    ids = list(dict.fromkeys([*([best["config_id"]] if best is not None else []), BASELINE_ID]))
    curves: dict[str, pd.DataFrame] = {}
    reference_curves: dict[str, pd.DataFrame] = {}
    reference_rows: list[pd.DataFrame] = []
    for config_id in ids:
        chosen = runs[(runs["config_id"] == config_id) & (runs["status"] == "succeeded")]
        rows = [found for _, run in chosen.iterrows() if (found := _test_rows(sweep, run)) is not None]
        if not rows:
            continue
        returns = [strategy_returns(r, costs_bps) for r in rows]
        label = f"best config {config_id}" if best is not None and config_id == best["config_id"] else "baseline"
        curves[label] = _mean_per_date(returns)
        if not reference_rows:
            reference_rows = rows
    for ref in references:
        column = f"ref_{ref}"
        returns = [strategy_returns(r, costs_bps, column) for r in reference_rows if column in r.columns]
        if returns:
            reference_curves[ref] = _mean_per_date(returns)
    return curves, reference_curves


def _test_rows(sweep: Path, run: pd.Series) -> pd.DataFrame | None:
    """A run's stored test prediction rows, None when it stored none or they cannot be read (the
    plot leaves the run out; the run's scores say so: `scored_from`)."""
    version = _version_dir(sweep, run)
    try:
        rows = read_predictions(version) if version is not None and version.is_dir() else None
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return None
    return None if rows is None else rows[rows["split"] == "test"]


def _mean_per_date(returns: list[pd.DataFrame]) -> pd.DataFrame:
    """Strategy returns of several runs as one: the mean per date, in date order."""
    frame = pd.concat(returns, ignore_index=True)
    return frame.groupby("date", sort=True, as_index=False)["r"].mean()


def _coverage(ranking: pd.DataFrame, top: int = 10) -> dict[str, dict[float, float]]:
    """Observed test coverage of the 80% and 96% intervals per config (the ranking's means over
    its runs), for the first `top` configs that have them; empty for a point-loss sweep."""
    columns = {0.8: "mean_test_coverage_80", 0.96: "mean_test_coverage_96"}
    if not set(columns.values()) <= set(ranking.columns):
        return {}
    out: dict[str, dict[float, float]] = {}
    for _, row in ranking[ranking["n_runs"] > 0].iterrows():
        points = {nominal: float(row[c]) for nominal, c in columns.items() if pd.notna(row[c])}
        if points:
            out[str(row["config_id"])] = points
        if len(out) == top:
            break
    return out
