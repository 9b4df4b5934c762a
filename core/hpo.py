"""Optuna HPO over folds × seeds with fold-aware pruning; artifacts and top-k configs for a sweep.

Each trial trains the suggested config on every (fold, seed) of the study, in the same
order for every trial, with the same training code as sweeps. Its objective is the
mean val RMSE over those runs (or the robust score, mean + sample std).

Fold-aware pruning: within run `i` of a trial (fold-major, seed-minor), the validation
loss of epoch `e` is reported at step `i * E + e`, where `E` is the largest number of
epochs any trial may train. Step `k` therefore means the same (fold, seed, epoch) in
every trial, so the median pruner compares a trial only with other trials at the same
point of the same fold, never a hard fold with an easy one. Reporting goes through
`optuna_integration`'s Lightning pruning callback.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from core.config import Fold, TrainingConfig, training_with
from core.datasets import check_dataset_shapes, dataset_dir, load_dataset
from core.feature_sets import resolve_features
from core.files import write_json_atomic
from core.hpo_config import HpoConfig, SearchParam, study_shapes
from core.paths import ensure_inside
from core.reports import json_safe, write_csv
from core.store import Store
from core.training import DatasetCache, quiet_lightning, train_and_evaluate

STUDY_DB = "optuna_study.db"
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120
DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)

PLOT_HISTORY = "optuna_history.png"
PLOT_IMPORTANCES = "optuna_param_importances.png"
PLOT_PARALLEL = "optuna_parallel_coordinates.png"


class _ShiftedEpoch:
    """`pl_module` as the pruning callback sees it: `current_epoch` offset to the run's step range."""

    def __init__(self, module: Any, offset: int) -> None:
        self._module = module
        self._offset = offset

    @property
    def current_epoch(self) -> int:
        return int(self._module.current_epoch) + self._offset


class StudyCancelled(optuna.TrialPruned):
    """The study was cancelled: the trial ends now (as pruned) and no other starts."""


class FoldAwarePruning(PyTorchLightningPruningCallback):
    """Optuna's Lightning pruning callback, reporting at `step_offset + epoch`; at each such
    check it also ends the trial when the study was cancelled."""

    def __init__(
        self, trial: optuna.trial.Trial, monitor: str, step_offset: int, cancelled: Callable[[], bool]
    ) -> None:
        super().__init__(trial, monitor)
        self.step_offset = step_offset
        self.cancelled = cancelled

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self.cancelled():
            raise StudyCancelled("the study was cancelled")
        super().on_validation_end(trainer, _ShiftedEpoch(pl_module, self.step_offset))


def study_storage(out_dir: Path, url: str | None) -> str:
    """The study's storage URL: `url` (a server storage the operator configured), else an
    SQLite file in the study's folder."""
    return url or f"sqlite:///{out_dir / STUDY_DB}"


def open_study(config: HpoConfig, out_dir: Path, storage_url: str | None = None) -> optuna.Study:
    """Create or continue (`load_if_exists`) the study named after `output_subdir`.

    Heartbeats mark a trial whose process died as failed after `GRACE_SECONDS`, so it is
    never left running forever; failed trials do not count toward `n_trials`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = RDBStorage(
        study_storage(out_dir, storage_url), heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS
    )
    return optuna.create_study(
        study_name=config.output_subdir,
        storage=storage,
        direction="minimize",
        sampler=make_sampler(config),
        pruner=make_pruner(config),
        load_if_exists=True,
    )


def make_sampler(config: HpoConfig) -> optuna.samplers.BaseSampler:
    s = config.sampler
    if s.type == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.type == "grid":
        grid = config.grid()  # its size checked before any value is listed
        return optuna.samplers.GridSampler(grid, seed=s.seed)
    return optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.n_startup_trials)


def make_pruner(config: HpoConfig) -> optuna.pruners.BasePruner:
    p = config.pruner
    if p.type == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)


def suggest(trial: optuna.trial.Trial, name: str, param: SearchParam) -> Any:
    if param.type == "categorical":
        return trial.suggest_categorical(name, param.choices or [])
    assert param.low is not None and param.high is not None
    if param.type == "int":
        return trial.suggest_int(name, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
    return trial.suggest_float(name, float(param.low), float(param.high), step=param.step, log=param.log)


def epoch_stride(config: HpoConfig) -> int:
    """The largest number of epochs any trial may train (the step range of one run)."""
    space = config.search_space.get("max_epochs")
    if space is not None and space.type != "categorical":
        return int(space.high or config.training_config.max_epochs)
    if space is not None:
        return max(int(c) for c in space.choices or [config.training_config.max_epochs])
    return config.training_config.max_epochs


class Objective:
    """The study's objective: train the suggested config on every (fold, seed)."""

    def __init__(self, config: HpoConfig, frame: pd.DataFrame, frame_id: str, cancelled: Callable[[], bool]) -> None:
        self.config = config
        self.cancelled = cancelled
        self.frame = frame
        self.frame_id = frame_id
        self.features = resolve_features(config.features)
        self.cache = DatasetCache()
        self.stride = epoch_stride(config)
        self.pairs: list[tuple[Fold, int]] = [(f, s) for f in config.folds for s in config.seeds]

    def __call__(self, trial: optuna.trial.Trial) -> float:
        params = {name: suggest(trial, name, p) for name, p in self.config.search_space.items()}
        training = training_with(self.config.training_config, params)
        runs: list[dict[str, Any]] = []
        for index, (fold, seed) in enumerate(self.pairs):
            if self.cancelled():
                raise StudyCancelled("the study was cancelled")
            run_training: TrainingConfig = training_with(training, {"seed": seed})
            data = self.cache.get(self.frame_id, self.frame, fold, run_training, self.features)
            pruning = FoldAwarePruning(trial, "val_loss", step_offset=index * self.stride, cancelled=self.cancelled)
            result = train_and_evaluate(data, run_training, callbacks=[pruning])
            runs.append({"fold": fold.name, "seed": seed, **result.metrics()})
            trial.set_user_attr("runs", runs)
        vals = [r["val_rmse"] for r in runs]
        mean = statistics.fmean(vals)
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        trial.set_user_attr("mean_val_rmse", mean)
        trial.set_user_attr("std_val_rmse", std)
        trial.set_user_attr("robust_score", mean + std)
        trial.set_user_attr("mean_test_rmse", statistics.fmean(r["test_rmse"] for r in runs))
        trial.set_user_attr("mean_val_naive_rmse", statistics.fmean(r["val_naive_rmse"] for r in runs))
        trial.set_user_attr("training_config", training.model_dump(mode="json"))
        return mean + std if self.config.objective == "robust_score" else mean


def count_done(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=DONE_STATES))


def run_study(
    root: Path,
    asset: str,
    config: HpoConfig,
    out_dir: Path,
    *,
    storage_url: str | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Run trials until the study holds `n_trials` finished (complete or pruned) ones, or
    `cancelled()` turns true (the running trial ends at its next pruning check); write artifacts.

    `storage_url` is a server storage the operator configured (default: SQLite in `out_dir`).
    Safe to run in several processes at once on a server database: each stops when the
    total is reached.

    Raises:
        DatasetError: before any trial, when the dataset cannot serve the study.
    """
    quiet_lightning()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ensure_inside(root, out_dir)
    check_dataset_shapes(root, asset, config, study_shapes(config))
    frame = load_dataset(root, asset, config.features)
    study = open_study(config, out_dir, storage_url)
    write_json_atomic(out_dir / "hpo_config.json", config.to_json_dict())
    objective = Objective(config, frame, f"{asset}", cancelled)
    started = time.monotonic()

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        write_hpo_artifacts(study, config, out_dir, asset=asset, plots=False)
        if on_trial is not None:
            on_trial(study, trial)
        if cancelled():
            study.stop()

    remaining = config.n_trials - count_done(study)
    failures_allowed = config.n_trials
    while remaining > 0 and failures_allowed > 0 and not cancelled():
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=None if config.timeout_s is None else max(0.0, config.timeout_s - (time.monotonic() - started)),
            callbacks=[optuna.study.MaxTrialsCallback(config.n_trials, states=DONE_STATES), after_trial],
            catch=(Exception,),
            gc_after_trial=False,
        )
        failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        failures_allowed = config.n_trials - failed
        remaining = config.n_trials - count_done(study)
        if config.timeout_s is not None and time.monotonic() - started >= config.timeout_s:
            break
        if remaining > 0 and failed and failures_allowed <= 0:
            break
    return write_hpo_artifacts(study, config, out_dir, asset=asset, plots=plots)


def run_stored_study(
    store: Store,
    asset: str,
    config: HpoConfig,
    out_dir: Path,
    *,
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """`run_study` on the data root of `store`: the dataset and the study's folder (a study
    continued elsewhere) fetched first, the folder published after every trial and at the end.

    Raises:
        DatasetError: as `run_study`.
        StoreError: the object store failed.
    """
    store.fetch(dataset_dir(store.root, asset))
    store.fetch(out_dir)

    def published(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        store.publish(out_dir)
        if on_trial is not None:
            on_trial(study, trial)

    summary = run_study(store.root, asset, config, out_dir, on_trial=published, **options)
    store.publish(out_dir)
    return summary


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        steps = sorted(t.intermediate_values)
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.value,
            "mean_val_rmse": t.user_attrs.get("mean_val_rmse"),
            "std_val_rmse": t.user_attrs.get("std_val_rmse"),
            "robust_score": t.user_attrs.get("robust_score"),
            "mean_test_rmse": t.user_attrs.get("mean_test_rmse"),
            "mean_val_naive_rmse": t.user_attrs.get("mean_val_naive_rmse"),
            "n_runs": len(t.user_attrs.get("runs", [])),
            "last_step": steps[-1] if steps else None,
            "datetime_start": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
            "duration_s": round(t.duration.total_seconds(), 3) if t.duration else None,
        }
        for name, value in t.params.items():
            row[f"params_{name}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def top_k_configs(study: optuna.Study, config: HpoConfig) -> list[dict[str, Any]]:
    """The best `top_k` complete trials as sweep candidates (`{name, params, source}`)."""
    complete = sorted(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: (t.value, t.number)
    )
    return [
        {
            "name": f"optuna_t{t.number:03d}",
            "params": dict(t.params),
            "source": {
                "study": study.study_name,
                "trial": t.number,
                "objective": config.objective,
                "value": t.value,
                "rank": rank,
            },
        }
        for rank, t in enumerate(complete[: config.top_k], start=1)
    ]


def write_hpo_artifacts(
    study: optuna.Study, config: HpoConfig, out_dir: Path, *, asset: str, plots: bool = True
) -> dict[str, Any]:
    """`optuna_trials.csv/json`, `optuna_best_trial.json`, `optuna_top_k_configs.json`,
    `optuna_summary.json` and, with `plots`, the PNGs."""
    trials = trials_frame(study)
    write_csv(out_dir / "optuna_trials.csv", trials)
    write_json_atomic(out_dir / "optuna_trials.json", json_safe(trials.to_dict(orient="records")))
    top = top_k_configs(study, config)
    write_json_atomic(out_dir / "optuna_top_k_configs.json", json_safe(top))
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: (t.value, t.number)) if complete else None
    best_json = None
    if best is not None:
        best_json = {
            "number": best.number,
            "value": best.value,
            "objective": config.objective,
            "params": best.params,
            "training_config": best.user_attrs.get("training_config"),
            "mean_val_rmse": best.user_attrs.get("mean_val_rmse"),
            "std_val_rmse": best.user_attrs.get("std_val_rmse"),
            "mean_test_rmse": best.user_attrs.get("mean_test_rmse"),
            "mean_val_naive_rmse": best.user_attrs.get("mean_val_naive_rmse"),
            "runs": best.user_attrs.get("runs"),
        }
    write_json_atomic(out_dir / "optuna_best_trial.json", json_safe(best_json or {}))
    plot_files = _write_plots(study, trials, config, out_dir) if plots else _existing_plots(out_dir)
    counts = {
        s: int((trials["state"] == s).sum()) if len(trials) else 0 for s in ("complete", "pruned", "fail", "running")
    }
    summary = {
        "asset": asset,
        "output_subdir": config.output_subdir,
        "study_name": study.study_name,
        "storage": "sqlite (optuna_study.db)" if config.storage is None else config.storage,
        "objective": config.objective,
        "direction": "minimize",
        "n_trials_wanted": config.n_trials,
        "n_trials": counts,
        "complete": counts["complete"] + counts["pruned"] >= config.n_trials,
        "best": best_json
        and {k: best_json[k] for k in ("number", "value", "params", "mean_val_rmse", "mean_val_naive_rmse")},
        "top_k": [c["name"] for c in top],
        "search_space": {k: v.model_dump(exclude_none=True) for k, v in config.search_space.items()},
        "sampler": config.sampler.model_dump(),
        "pruner": config.pruner.model_dump(),
        "folds": [f.name for f in config.folds],
        "seeds": config.seeds,
        "plots": plot_files,
        "generated_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
    }
    write_json_atomic(out_dir / "optuna_summary.json", json_safe(summary))
    return summary


def _existing_plots(out_dir: Path) -> list[str]:
    return [n for n in (PLOT_HISTORY, PLOT_IMPORTANCES, PLOT_PARALLEL) if (out_dir / n).is_file()]


def _write_plots(study: optuna.Study, trials: pd.DataFrame, config: HpoConfig, out_dir: Path) -> list[str]:
    from core import plots

    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):  # too few complete trials, or no variation
        importances = {}
    figures = {
        PLOT_HISTORY: plots.plot_optuna_history(trials, f"{config.output_subdir}: objective per trial"),
        PLOT_IMPORTANCES: plots.plot_param_importances(importances, f"{config.output_subdir}: parameter importances"),
        PLOT_PARALLEL: plots.plot_parallel_coordinates(
            trials, list(config.search_space), f"{config.output_subdir}: trials in parameter space"
        ),
    }
    for name, fig in figures.items():
        plots.save_figure(fig, out_dir / name)
    return list(figures)


__all__ = ["FoldAwarePruning", "open_study", "run_stored_study", "run_study", "top_k_configs", "write_hpo_artifacts"]
