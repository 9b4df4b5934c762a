"""Optuna HPO over folds × seeds: a study's storage, its trial 0, its objective and its run.

Each trial trains the suggested config on every (fold, seed) of the study, in the same
order for every trial, with the same training code as sweeps. Its objective is the mean
of the study's `metric` (default `val_rmse`) over those runs, or its robust score (mean +
sample std for a lower-better metric, mean - std for a higher-better one), minimised or
maximised as the metric's direction says. Runs are scored with the default evaluation block
(every registered reference, no costs): a study has no `evaluation` of its own.

Trial 0 of a new study is the baseline (`training_config`, enqueued with its values of the
searched parameters). How a trial reports its steps and when it is pruned is
`core.hpo_pruning`; the study's report (trials, best, top-k, the comparison with the
baseline, importances, plots), written after every trial, is `core.hpo_report`.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from lightning.pytorch import Callback
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from core.config import Fold, TrainingConfig, training_with
from core.dataset_folds import check_dataset_shapes
from core.datasets import dataset_path, load_dataset
from core.errors import RunFailed
from core.feature_sets import resolve_features
from core.files import file_sha256, write_json_atomic
from core.hpo_config import HpoConfig, SearchParam, study_shapes
from core.hpo_pruning import (
    BASELINE_ATTR,
    CancelCheck,
    FoldAwarePruning,
    StudyCancelled,
    epoch_stride,
    make_pruner,
    run_pairs,
)
from core.hpo_report import study_direction, write_hpo_artifacts
from core.paths import ensure_inside, hpo_dir
from core.reports import rank_direction, robust_score
from core.run_cache import cache_key, trainer_identity
from core.store import Store
from core.training import DatasetCache, device_kind, quiet_lightning, train_and_evaluate

STUDY_DB = "optuna_study.db"
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120
DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


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
    sampler, pruner = make_sampler(config), make_pruner(config)
    try:
        study = optuna.create_study(
            study_name=config.output_subdir,
            storage=storage,
            direction=study_direction(config),
            sampler=sampler,
            pruner=pruner,
        )
    except optuna.exceptions.DuplicatedStudyError:
        # A continued study (or another worker created it first): its baseline is already in it.
        return optuna.load_study(study_name=config.output_subdir, storage=storage, sampler=sampler, pruner=pruner)
    # Only the process that created the study gets here (the name is unique in the storage),
    # so the baseline is enqueued once however many workers start together.
    study.enqueue_trial(baseline_params(config), user_attrs={BASELINE_ATTR: True})
    return study


def baseline_params(config: HpoConfig) -> dict[str, Any]:
    """The baseline's values of the searched parameters (validation checked the space holds them)."""
    return {name: getattr(config.training_config, name) for name in config.search_space}


def make_sampler(config: HpoConfig) -> optuna.samplers.BaseSampler:
    s = config.sampler
    if s.type == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.type == "grid":
        grid = config.grid()  # its size checked before any value is listed
        return optuna.samplers.GridSampler(grid, seed=s.seed)
    return optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.n_startup_trials)


def suggest(trial: optuna.trial.Trial, name: str, param: SearchParam) -> Any:
    if param.type == "categorical":
        return trial.suggest_categorical(name, param.choices or [])
    assert param.low is not None and param.high is not None
    if param.type == "int":
        return trial.suggest_int(name, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
    return trial.suggest_float(name, float(param.low), float(param.high), step=param.step, log=param.log)


# Finds a run already trained with a cache key (core.run_cache) and returns its metrics as a
# run's record (`RunResult.metrics()`) with `cached_from` naming it, or None: how a study
# reuses sweeps' runs.
RunLookup = Callable[[str], dict[str, Any] | None]


class Objective:
    """The study's objective: train the suggested config on every (fold, seed), or reuse a run
    already trained with the same cache key: an earlier trial's (a sampler that suggests a
    config again) or, through `reuse`, a sweep's."""

    def __init__(
        self,
        config: HpoConfig,
        frame: pd.DataFrame,
        frame_id: str,
        cancelled: Callable[[], bool],
        *,
        dataset_sha256: str | None = None,
        reuse: RunLookup | None = None,
    ) -> None:
        self.config = config
        self.cancelled = cancelled
        self.frame = frame
        self.frame_id = frame_id
        self.features = resolve_features(config.features)
        self.cache = DatasetCache()
        self.stride = epoch_stride(config)
        self.pairs = run_pairs(config)
        self.per_run = config.pruner.type == "wilcoxon"
        self.dataset_sha256 = dataset_sha256
        self.reuse = reuse
        self.identity = trainer_identity(None, device_kind())

    def _key(self, fold: Fold, training: TrainingConfig) -> str | None:
        if self.dataset_sha256 is None:
            return None
        return cache_key(
            dataset_sha256=self.dataset_sha256,
            fold=fold,
            features=self.features,
            training=training,
            seed=training.seed,
            trainer=self.identity,
        )

    def _reused(self, study: optuna.Study, key: str | None) -> dict[str, Any] | None:
        """The metrics of a run trained before with `key`, with `cached_from` naming it: in a
        finished trial of this study (any process; `trial {number}`), else through `reuse`
        (a sweep's run, `{sweep id}/{run_key}`); None when there is none."""
        if key is None:
            return None
        for t in study.get_trials(deepcopy=False, states=DONE_STATES):
            for run in t.user_attrs.get("runs", []):
                if run.get("cache_key") == key:
                    kept = {k: v for k, v in run.items() if k not in ("fold", "seed", "cache_key", "cached_from")}
                    return {**kept, "cached_from": run.get("cached_from") or f"trial {t.number}"}
        return self.reuse(key) if self.reuse is not None else None

    def _callback(self, trial: optuna.trial.Trial, index: int) -> Callback:
        """Run `index`'s Lightning callback: the epoch reports of the median pruner, or (a pruner
        that is asked once per run) only the cancel check."""
        if self.per_run:
            return CancelCheck(self.cancelled)
        return FoldAwarePruning(trial, "val_loss", step_offset=index * self.stride, cancelled=self.cancelled)

    def _report_run(self, trial: optuna.trial.Trial, index: int, run: dict[str, Any]) -> None:
        """Report run `index`'s `metric` at step `index` and end the trial if the pruner says so
        (an undefined value is reported as NaN: the Wilcoxon pruner then keeps the trial)."""
        value = run.get(self.config.metric)
        trial.report(math.nan if value is None else float(value), step=index)
        if trial.should_prune():
            fold, seed = self.pairs[index]
            trial.set_user_attr(
                "pruned_at",
                {
                    "step": index,
                    "fold": fold.name,
                    "seed": seed,
                    "value": value,
                    "rule": "wilcoxon",
                    "p_threshold": self.config.pruner.threshold,
                    "pruned": True,
                },
            )
            raise optuna.TrialPruned(
                f"trial {trial.number} after run {index} (fold {fold.name}, seed {seed}): worse than the best trial "
                f"by the signed-rank test at p < {self.config.pruner.threshold:g}: pruned"
            )

    def __call__(self, trial: optuna.trial.Trial) -> float:
        params = {name: suggest(trial, name, p) for name, p in self.config.search_space.items()}
        training = training_with(self.config.training_config, params)
        runs: list[dict[str, Any]] = []
        for index, (fold, seed) in enumerate(self.pairs):
            if self.cancelled():
                raise StudyCancelled("the study was cancelled")
            run_training: TrainingConfig = training_with(training, {"seed": seed})
            key = self._key(fold, run_training)
            reused = self._reused(trial.study, key)
            if reused is not None:
                # Trained before: nothing to train, nothing to report per epoch (nothing to prune).
                runs.append({"fold": fold.name, "seed": seed, **reused, "cache_key": key})
            else:
                data = self.cache.get(self.frame_id, self.frame, fold, run_training, self.features)
                result = train_and_evaluate(data, run_training, callbacks=[self._callback(trial, index)])
                runs.append({"fold": fold.name, "seed": seed, **result.metrics(), "cache_key": key})
            trial.set_user_attr("runs", runs)
            if self.per_run:
                self._report_run(trial, index, runs[-1])
        metric = self.config.metric
        for name in dict.fromkeys(("val_rmse", metric)):  # the table's RMSE columns, and the objective's
            values = [math.nan if r.get(name) is None else float(r[name]) for r in runs]
            trial.set_user_attr(f"mean_{name}", statistics.fmean(values))
            trial.set_user_attr(f"std_{name}", statistics.stdev(values) if len(values) > 1 else 0.0)
        mean, std = float(trial.user_attrs[f"mean_{metric}"]), float(trial.user_attrs[f"std_{metric}"])
        if not math.isfinite(mean):
            raise RunFailed(f"{metric} is undefined on a run of this trial")
        score = robust_score(mean, std, rank_direction(metric))
        trial.set_user_attr("robust_score", score)
        trial.set_user_attr("mean_test_rmse", statistics.fmean(r["test_rmse"] for r in runs))
        trial.set_user_attr("mean_val_naive_rmse", statistics.fmean(r["val_naive_rmse"] for r in runs))
        trial.set_user_attr("training_config", training.model_dump(mode="json"))
        return score if self.config.objective == "robust_score" else mean


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
    reuse: RunLookup | None = None,
) -> dict[str, Any]:
    """Run trials until the study holds `n_trials` finished (complete or pruned) ones, or
    `cancelled()` turns true (the running trial ends at its next pruning check); write artifacts.

    `storage_url` is a server storage the operator configured (default: SQLite in `out_dir`).
    Safe to run in several processes at once on a server database: each stops when the
    total is reached. `reuse`: how runs trained elsewhere are found by cache key (a sweep's,
    through the database); a trial's run with the key of one trained before is not trained.

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
    objective = Objective(
        config, frame, f"{asset}", cancelled, dataset_sha256=file_sha256(dataset_path(root, asset)), reuse=reuse
    )
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
    `out_dir` is the study's folder in the data root (`hpo_dir(store.root, asset, config.output_subdir)`).

    Raises:
        DatasetError: as `run_study`.
        StoreError: the object store failed.
        ValueError: `out_dir` is another folder (the store would not publish what it holds).
    """
    if out_dir != hpo_dir(store.root, asset, config.output_subdir):
        raise ValueError(f"{out_dir} is not the folder of study {asset}/{config.output_subdir} in {store.root}")
    store.fetch_dataset(asset)
    store.fetch_study(asset, config.output_subdir)

    def published(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        store.publish_study(asset, config.output_subdir)
        if on_trial is not None:
            on_trial(study, trial)

    summary = run_study(store.root, asset, config, out_dir, on_trial=published, **options)
    store.publish_study(asset, config.output_subdir)
    return summary


__all__ = ["open_study", "run_stored_study", "run_study"]
