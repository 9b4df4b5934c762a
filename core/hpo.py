"""Optuna HPO over folds × seeds with fold-aware pruning; artifacts and top-k configs for a sweep.

Each trial trains the suggested config on every (fold, seed) of the study, in the same
order for every trial, with the same training code as sweeps. Its objective is the mean
of the study's `metric` (default `val_rmse`) over those runs, or its robust score (mean +
sample std for a lower-better metric, mean - std for a higher-better one), minimised or
maximised as the metric's direction says. Runs are scored with the default evaluation block
(every registered reference, no costs): a study has no `evaluation` of its own.

Fold-aware pruning: within run `i` of a trial (fold-major, seed-minor), the validation
loss of epoch `e` is reported at step `i * E + e`, where `E` is the largest number of
epochs any trial may train. Step `k` therefore means the same (fold, seed, epoch) in
every trial, so the median pruner compares a trial only with other trials at the same
point of the same fold, never a hard fold with an easy one. Reporting goes through
`optuna_integration`'s Lightning pruning callback.

With `pruner: {type: "wilcoxon"}` the step is one (fold, seed) run instead: after run `i` the
trial reports that run's `metric` at step `i`, and Optuna's `WilcoxonPruner` prunes it once the
one-sided signed-rank test of those values against the best trial's at the same steps says it
is worse (never the baseline trial, never at the last run, when nothing is left to save).

Trial 0 of a new study is the baseline (`training_config`, enqueued with its values of the
searched parameters); the summary's `comparison` says whether the best trial beats it and
the naive forecast, with the paired signed-rank test on `metric` where both have the same
runs.

Two jobs share this module: running a study (storage, objective, pruner, trial 0) and its
report (summary, the comparison with the baseline, importances, top-k, plots). The report
reads only finished trials and is the seam to split along (a `core.hpo_report` of its own);
it grew here with the baseline comparison, and moving it is left to a change that only
moves code.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd
from lightning.pytorch import Callback
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from core.config import Fold, TrainingConfig, training_with
from core.datasets import check_dataset_shapes, dataset_path, load_dataset
from core.errors import RunFailed
from core.feature_sets import resolve_features
from core.files import file_sha256, write_json_atomic
from core.hpo_config import HpoConfig, SearchParam, study_shapes
from core.paths import ensure_inside, hpo_dir
from core.report_files import json_safe, write_csv
from core.reports import rank_direction, robust_score
from core.run_cache import cache_key, trainer_identity
from core.significance import (
    BETTER,
    DEFAULT_ALPHA,
    INSUFFICIENT,
    holm,
    pairs_needed,
    smallest_adjusted_pvalue,
    verdicts,
    wilcoxon_pvalues,
)
from core.store import Store
from core.training import DatasetCache, device_kind, quiet_lightning, train_and_evaluate

STUDY_DB = "optuna_study.db"
# Optuna's WilcoxonPruner n_startup_steps default: runs of a trial before it can be pruned.
WILCOXON_STARTUP_STEPS = 2
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120
DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def study_direction(config: HpoConfig) -> Literal["minimize", "maximize"]:
    """Both objectives are made of `config.metric` (its mean over the runs, or its robust score),
    so the study's direction is the metric registry's `better`."""
    return "minimize" if rank_direction(config.metric) == "lower" else "maximize"


PLOT_HISTORY = "optuna_history.png"
PLOT_IMPORTANCES = "optuna_param_importances.png"
PLOT_PARALLEL = "optuna_parallel_coordinates.png"

# fANOVA fits a random forest to the complete trials; below this many its shares are noise.
MIN_TRIALS_FOR_IMPORTANCES = 5
NOT_ENOUGH_TRIALS = "not enough trials"
# The user attribute that marks the baseline trial (trial 0 of a study created since it exists).
BASELINE_ATTR = "baseline"

log = logging.getLogger("tftsweep.hpo")


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
        try:
            super().on_validation_end(trainer, _ShiftedEpoch(pl_module, self.step_offset))
        except optuna.TrialPruned:
            decision = getattr(self._trial.study.pruner, "last_decision", None)
            if decision is None or decision.trial != self._trial.number:
                raise
            self._trial.set_user_attr("pruned_at", decision.as_dict())
            raise optuna.TrialPruned(decision.text()) from None


@dataclass(frozen=True)
class PruneDecision:
    """One comparison the pruner made: the trial's value at a step against the median of the
    complete trials' values at the same step (the same fold, seed and epoch)."""

    trial: int
    step: int
    fold: str
    seed: int
    epoch: int
    value: float
    median: float
    compared: int
    pruned: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        change = f" ({self.value / self.median - 1:+.2%})" if self.median else ""
        return (
            f"trial {self.trial} step {self.step} (fold {self.fold}, seed {self.seed}, epoch {self.epoch}): "
            f"val loss {self.value:.6g} vs median {self.median:.6g} of {self.compared} complete trials{change}: "
            + ("pruned" if self.pruned else "kept")
        )


class FoldAwareMedianPruner(optuna.pruners.BasePruner):
    """Prune a trial whose value at step `k` is above the median of the complete trials'
    values at step `k` (Optuna's median rule, but on the value at the step, not the trial's
    best so far: that best may come from another fold).

    No pruning before `n_startup_trials` trials are complete, before step `n_warmup_steps`,
    at the last step a trial can reach (nothing would be saved), nor of the baseline trial
    (every trial is compared with it). Each comparison is logged, and kept as `last_decision`.
    """

    def __init__(self, n_startup_trials: int, n_warmup_steps: int, stride: int, pairs: list[tuple[str, int]]) -> None:
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps
        self.stride = stride
        self.pairs = pairs
        self.last_decision: PruneDecision | None = None

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps or step >= len(self.pairs) * self.stride - 1:
            return False
        if trial.user_attrs.get(BASELINE_ATTR):
            return False
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) < self.n_startup_trials:
            return False
        others = [v for t in complete if math.isfinite(v := t.intermediate_values.get(step, math.nan))]
        if not others:
            return False
        value = trial.intermediate_values[step]
        median = statistics.median(others)
        fold, seed = self.pairs[min(step // self.stride, len(self.pairs) - 1)]
        decision = PruneDecision(
            trial=trial.number,
            step=step,
            fold=fold,
            seed=seed,
            epoch=step % self.stride,
            value=value,
            median=median,
            compared=len(others),
            pruned=not math.isfinite(value) or value > median,
        )
        self.last_decision = decision
        log.info("pruning check: %s", decision.text())
        return decision.pruned


class CancelCheck(Callback):
    """Ends the trial at the end of a validation epoch once the study was cancelled (what
    `FoldAwarePruning` does besides reporting, for a pruner that is asked once per run)."""

    def __init__(self, cancelled: Callable[[], bool]) -> None:
        self.cancelled = cancelled

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self.cancelled():
            raise StudyCancelled("the study was cancelled")


class FoldSeedWilcoxonPruner(optuna.pruners.WilcoxonPruner):
    """Optuna's WilcoxonPruner over one value per (fold, seed) run (step = the run's index in
    `pairs`), with the rules the median pruner keeps: no decision before `n_startup_trials`
    trials are complete, at the last run (nothing would be saved), nor for the baseline trial."""

    def __init__(self, p_threshold: float, n_startup_steps: int, n_startup_trials: int, pairs: list[tuple[str, int]]):
        with warnings.catch_warnings():  # experimental in Optuna 5; the pinned version is the one tested
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(p_threshold=p_threshold, n_startup_steps=n_startup_steps)
        self.p_threshold = p_threshold
        self.n_startup_trials = n_startup_trials
        self.pairs = pairs

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step >= len(self.pairs) - 1 or trial.user_attrs.get(BASELINE_ATTR):
            return False
        if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < self.n_startup_trials:
            return False
        pruned = super().prune(study, trial)
        fold, seed = self.pairs[step]
        log.info(
            "pruning check: trial %d after run %d (fold %s, seed %d): %s by the signed-rank test against the best "
            "trial at p < %g",
            trial.number,
            step,
            fold,
            seed,
            "pruned" if pruned else "kept",
            self.p_threshold,
        )
        return pruned


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


def make_pruner(config: HpoConfig) -> optuna.pruners.BasePruner:
    p = config.pruner
    if p.type == "none":
        return optuna.pruners.NopPruner()
    pairs = [(fold.name, seed) for fold, seed in run_pairs(config)]
    if p.type == "wilcoxon":
        return FoldSeedWilcoxonPruner(p.threshold, warmup_steps(config), p.n_startup_trials, pairs)
    return FoldAwareMedianPruner(p.n_startup_trials, warmup_steps(config), epoch_stride(config), pairs)


def run_pairs(config: HpoConfig) -> list[tuple[Fold, int]]:
    """The (fold, seed) of each run of a trial, in training order: fold by fold, seed by seed."""
    return [(f, s) for f in config.folds for s in config.seeds]


def warmup_steps(config: HpoConfig) -> int:
    """The first step at which a trial may be pruned: `pruner.n_warmup_steps` when set; for the
    Wilcoxon pruner Optuna's 2 runs; for the median pruner the last epoch of the first run of
    the last fold, so the first run of every fold has been trained to its end:
    `((folds - 1) * seeds + 1) * E - 1`."""
    if config.pruner.n_warmup_steps is not None:
        return config.pruner.n_warmup_steps
    if config.pruner.type == "wilcoxon":
        return WILCOXON_STARTUP_STEPS
    return ((len(config.folds) - 1) * len(config.seeds) + 1) * epoch_stride(config) - 1


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
            "baseline": bool(t.user_attrs.get(BASELINE_ATTR, False)),
            "last_step": steps[-1] if steps else None,
            "last_intermediate_value": t.intermediate_values[steps[-1]] if steps else None,
            "pruned_median": (t.user_attrs.get("pruned_at") or {}).get("median"),
            "datetime_start": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
            "duration_s": round(t.duration.total_seconds(), 3) if t.duration else None,
        }
        for name, value in t.params.items():
            row[f"params_{name}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def best_first(config: HpoConfig, trial: optuna.trial.FrozenTrial) -> tuple[float, int]:
    """A sort key: the trial with the best objective first (in the study's direction), the
    earlier trial of equal ones."""
    value = float(trial.value if trial.value is not None else math.nan)
    return (value if study_direction(config) == "minimize" else -value, trial.number)


def top_k_configs(study: optuna.Study, config: HpoConfig) -> list[dict[str, Any]]:
    """The best `top_k` complete trials as sweep candidates (`{name, params, source}`). A trial
    that trains the baseline (trial 0, or one the sampler led back to its values) is left
    out: the sweep trains the baseline anyway, and a candidate equal to it is refused there.
    So is a trial that trains the same config as a better (or earlier, equal) one: a sampler
    may suggest a config again, and reusing its runs makes it complete with the same value."""
    base = config.training_config
    ranked = sorted(
        (
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if not t.user_attrs.get(BASELINE_ATTR) and training_with(base, t.params) != base
        ),
        key=partial(best_first, config),
    )
    seen: set[str] = set()
    complete = []
    for t in ranked:
        trained = json.dumps(training_with(base, t.params).model_dump(mode="json"), sort_keys=True)
        if trained not in seen:
            seen.add(trained)
            complete.append(t)
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
    best = min(complete, key=partial(best_first, config)) if complete else None
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
    importances = param_importances(study, config, fit=plots)  # a forest per trial is not worth it
    plot_files = _write_plots(trials, importances, config, out_dir) if plots else _existing_plots(out_dir)
    counts = {
        s: int((trials["state"] == s).sum()) if len(trials) else 0 for s in ("complete", "pruned", "fail", "running")
    }
    summary = {
        "asset": asset,
        "output_subdir": config.output_subdir,
        "study_name": study.study_name,
        "storage": "sqlite (optuna_study.db)" if config.storage is None else config.storage,
        "objective": config.objective,
        "metric": config.metric,
        "direction": study_direction(config),
        "n_trials_wanted": config.n_trials,
        "n_trials": counts,
        "complete": counts["complete"] + counts["pruned"] >= config.n_trials,
        "best": best_json
        and {k: best_json[k] for k in ("number", "value", "params", "mean_val_rmse", "mean_val_naive_rmse")},
        "top_k": [c["name"] for c in top],
        "search_space": {k: v.model_dump(exclude_none=True) for k, v in config.search_space.items()},
        "sampler": config.sampler.model_dump(),
        "pruner": {**config.pruner.model_dump(), "warmup_steps_in_effect": warmup_steps(config)},
        "comparison": compare_with_baseline(study.get_trials(deepcopy=False), best, metric=config.metric),
        "importances": importances,
        "folds": [f.name for f in config.folds],
        "seeds": config.seeds,
        "plots": plot_files,
        "generated_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
    }
    write_json_atomic(out_dir / "optuna_summary.json", json_safe(summary))
    return summary


def _existing_plots(out_dir: Path) -> list[str]:
    return [n for n in (PLOT_HISTORY, PLOT_IMPORTANCES, PLOT_PARALLEL) if (out_dir / n).is_file()]


def _write_plots(trials: pd.DataFrame, importances: dict[str, Any], config: HpoConfig, out_dir: Path) -> list[str]:
    from core import plots

    figures = {
        PLOT_HISTORY: plots.plot_optuna_history(trials, f"{config.output_subdir}: objective per trial"),
        PLOT_IMPORTANCES: importances_figure(importances, config.output_subdir),
        PLOT_PARALLEL: plots.plot_parallel_coordinates(
            trials, list(config.search_space), f"{config.output_subdir}: trials in parameter space"
        ),
    }
    for name, fig in figures.items():
        plots.save_figure(fig, out_dir / name)
    return list(figures)


def importances_figure(importances: dict[str, Any], title: str) -> Any:
    """The importances plot; below the minimum it says how many trials are complete and needed."""
    from core import plots

    if importances["status"] == "ok":
        return plots.plot_param_importances(importances["values"], f"{title}: parameter importances")
    note = importances["status"]
    if note == NOT_ENOUGH_TRIALS:
        note = f"{NOT_ENOUGH_TRIALS} ({importances['complete']} of {importances['needed']} complete)"
    return plots.plot_param_importances({}, f"{title}: parameter importances", note)


def param_importances(study: optuna.Study, config: HpoConfig, fit: bool = True) -> dict[str, Any]:
    """fANOVA importances (seeded with the sampler's seed) once `MIN_TRIALS_FOR_IMPORTANCES`
    trials are complete: `{"status": "ok", "complete", "needed", "values"}`; below that,
    `{"status": "not enough trials", "complete", "needed"}`; `"no variation"` when every
    complete trial has the same objective or parameters. Without `fit` (the summary written
    after each trial) the forest is not fitted: `"at the end of the study"`."""
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    out: dict[str, Any] = {"status": NOT_ENOUGH_TRIALS, "complete": complete, "needed": MIN_TRIALS_FOR_IMPORTANCES}
    if complete < MIN_TRIALS_FOR_IMPORTANCES:
        return out
    if not fit:
        return {**out, "status": "at the end of the study"}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=config.sampler.seed)
    try:
        values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError):  # no variation to explain
        return {**out, "status": "no variation"}
    return {**out, "status": "ok", "values": {k: float(v) for k, v in values.items()}}


def compare_with_baseline(
    trials: list[optuna.trial.FrozenTrial],
    best: optuna.trial.FrozenTrial | None,
    alpha: float = DEFAULT_ALPHA,
    metric: str = "val_rmse",
) -> dict[str, Any]:
    """Whether the best trial beats the baseline trial and the naive forecast (docs/hpo.md).

    `below_baseline`: the best trial's objective is below the baseline's (False when the
    baseline is the best); `beats_baseline`: the paired test says `better` (as
    `best_config.beats_baseline` of a sweep's summary; None when not testable);
    `below_naive` / `beats_naive`: its mean val RMSE is below the naive forecast's on the same
    runs / the paired test against it says `better`. `test`: the paired signed-rank test of
    their per-run val-RMSE deltas (best minus baseline, matched by fold and seed),
    Holm-adjusted over every complete trial with the same runs (the best was picked from
    them), or None when not testable.
    """
    baseline = next((t for t in trials if t.user_attrs.get(BASELINE_ATTR)), None)
    done = baseline is not None and baseline.state == TrialState.COMPLETE
    out: dict[str, Any] = {
        "baseline_trial": baseline.number if baseline is not None else None,
        "baseline_value": baseline.value if done and baseline is not None else None,
        "best_trial": best.number if best is not None else None,
        "best_value": best.value if best is not None else None,
        "below_baseline": None,
        "beats_baseline": None,
        "below_naive": None,
        "beats_naive": None,
        "test": None,
        "naive_test": None,
        "alpha": alpha,
    }
    if best is None:
        return {**out, "sentence": "No trial is complete yet: nothing to compare."}
    naive = _naive_comparison(best, alpha)
    if naive is not None:
        out |= {"below_naive": naive["mean_delta"] < 0, "beats_naive": naive["verdict"] == BETTER}
    out["naive_test"] = naive
    naive_text = _naive_sentence(naive)
    if baseline is None:
        why = "this study has no baseline trial (it began before the baseline was enqueued as trial 0)"
        return {**out, "sentence": f"Best trial {best.number} ({best.value:.6g}): {why}. {naive_text}"}
    if not done or baseline.value is None:
        state = baseline.state.name.lower()
        return {**out, "sentence": f"The baseline (trial {baseline.number}) is {state}: not compared. {naive_text}"}
    if best.number == baseline.number:
        text = (
            f"No trial beat the baseline: the best trial is the baseline itself "
            f"(trial {baseline.number}, {best.value:.6g})."
        )
        return {**out, "below_baseline": False, "beats_baseline": False, "sentence": f"{text} {naive_text}"}
    lower = rank_direction(metric) == "lower"
    out["below_baseline"] = bool(
        best.value is not None and (best.value < baseline.value if lower else best.value > baseline.value)
    )
    out["test"] = _baseline_test(trials, best, baseline, alpha, metric)
    if out["test"] is not None:
        out["beats_baseline"] = out["test"]["verdict"] == BETTER
    return {**out, "sentence": _baseline_sentence(out, best, baseline, metric) + " " + naive_text}


def _runs_by_pair(trial: optuna.trial.FrozenTrial) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["fold"], r["seed"]): r for r in trial.user_attrs.get("runs", [])}


def _verdict(n: int, mean: float, adjusted: float, family: int, alpha: float) -> str:
    """As the sweep reports judge a variant with `n` pairs in a Holm family of `family`."""
    return verdicts(np.array([n]), np.array([mean]), np.array([adjusted]), alpha, np.array([family]))[0]


def _baseline_test(
    trials: list[optuna.trial.FrozenTrial],
    best: optuna.trial.FrozenTrial,
    baseline: optuna.trial.FrozenTrial,
    alpha: float,
    metric: str = "val_rmse",
) -> dict[str, Any] | None:
    """The paired test of `best` against `baseline` on `metric` (deltas best minus baseline; a
    higher-better metric's are judged with their sign flipped), or None when their runs differ."""
    base_runs = _runs_by_pair(baseline)
    pairs = sorted(base_runs)
    if not pairs or sorted(_runs_by_pair(best)) != pairs:
        return None
    runs = {
        t.number: _runs_by_pair(t) for t in trials if t.state == TrialState.COMPLETE and t.number != baseline.number
    }
    family = [t for t in trials if t.number in runs and sorted(runs[t.number]) == pairs]
    deltas = [
        np.array([_value(runs[t.number][k], metric) - _value(base_runs[k], metric) for k in pairs], dtype="float64")
        for t in family
    ]
    pvalues = wilcoxon_pvalues(deltas)
    adjusted = holm(pvalues)
    i = next(i for i, t in enumerate(family) if t.number == best.number)
    n, mean = len(pairs), float(np.mean(deltas[i]))
    return {
        "pairs": n,
        "family": len(family),
        "mean_delta": mean,
        "wilcoxon_pvalue": float(pvalues[i]),
        "holm_pvalue": float(adjusted[i]),
        "smallest_reachable_pvalue": smallest_adjusted_pvalue(n, len(family)),
        "pairs_needed": pairs_needed(alpha, len(family)),
        "verdict": _verdict(
            n, mean if rank_direction(metric) == "lower" else -mean, float(adjusted[i]), len(family), alpha
        ),
    }


def _value(run: dict[str, Any], metric: str) -> float:
    value = run.get(metric)
    return math.nan if value is None else float(value)


def _naive_comparison(trial: optuna.trial.FrozenTrial, alpha: float) -> dict[str, Any] | None:
    """The trial's val RMSE against the naive forecast's on each of its runs (one test)."""
    runs = [r for r in trial.user_attrs.get("runs", []) if r.get("val_naive_rmse") is not None]
    if not runs:
        return None
    deltas = np.array([r["val_rmse"] - r["val_naive_rmse"] for r in runs], dtype="float64")
    pvalue = float(wilcoxon_pvalues([deltas])[0])
    n, mean = len(runs), float(np.mean(deltas))
    return {
        "pairs": n,
        "mean_delta": mean,
        "mean_val_rmse": float(np.mean([r["val_rmse"] for r in runs])),
        "mean_val_naive_rmse": float(np.mean([r["val_naive_rmse"] for r in runs])),
        "wilcoxon_pvalue": pvalue,
        "verdict": _verdict(n, mean, pvalue, 1, alpha),
    }


def _naive_sentence(naive: dict[str, Any] | None) -> str:
    if naive is None:
        return "No naive forecast was recorded for its runs."
    side = "below" if naive["mean_delta"] < 0 else "not below"
    return (
        f"Against the naive forecast on the same {naive['pairs']} runs, its mean val RMSE "
        f"{naive['mean_val_rmse']:.6g} is {side} the naive {naive['mean_val_naive_rmse']:.6g} "
        f"({_verdict_text(naive['verdict'], naive['wilcoxon_pvalue'])})."
    )


def _verdict_text(verdict: str, pvalue: float) -> str:
    p = "n/a" if math.isnan(pvalue) else f"{pvalue:.3g}"
    return f"paired test: {verdict}, p = {p}"


def _baseline_sentence(
    out: dict[str, Any], best: optuna.trial.FrozenTrial, baseline: optuna.trial.FrozenTrial, metric: str
) -> str:
    """The comparison in words. The change is `(best - baseline) / |baseline|` and is named in
    `metric`'s direction ("better" / "worse" than the baseline): a ratio `best / baseline - 1`
    flips its sign when the baseline's value is negative, as a Sharpe ratio can be."""
    best_value = math.nan if best.value is None else best.value
    base_value = math.nan if baseline.value is None else baseline.value
    lower = rank_direction(metric) == "lower"
    gain = (base_value - best_value) if lower else (best_value - base_value)
    if gain > 0:
        side = "better than"
    elif gain < 0:
        side = "worse than"
    else:  # equal, or a value missing (NaN): no direction to name
        side = "level with" if gain == 0 else "not comparable with"
    # Relative to the baseline's magnitude; a baseline of 0 has none, and the raw values say it all.
    size = f"{abs(gain) / abs(base_value):.2%} " if gain and math.isfinite(gain) and base_value else ""
    head = (
        f"The best trial ({best.number}, {best_value:.6g}) is {size}{side} the baseline "
        f"(trial {baseline.number}, {base_value:.6g}; {metric}, {'lower' if lower else 'higher'} is better)"
    )
    test = out["test"]
    if test is None:
        return f"{head}; not testable: the two trials do not have the same fold x seed runs."
    judged = (
        f"over {test['pairs']} fold x seed pairs, Holm-adjusted over the {test['family']} complete trials "
        f"it was picked from (p = {test['holm_pvalue']:.3g}; Wilcoxon {test['wilcoxon_pvalue']:.3g})"
    )
    if test["verdict"] == INSUFFICIENT:
        return (
            f"{head}; {judged}: insufficient: with {test['family']} trials compared, the smallest reachable "
            f"p-value is {test['smallest_reachable_pvalue']:.3g}, and 'better' needs at least "
            f"{test['pairs_needed']} pairs. A top-k sweep on more seeds or folds can tell."
        )
    return (
        f"{head}; {judged}: {test['verdict']}. It was picked on these same runs: a top-k sweep on new "
        "seeds or folds is the fair check."
    )


__all__ = [
    "MIN_TRIALS_FOR_IMPORTANCES",
    "FoldAwareMedianPruner",
    "FoldAwarePruning",
    "FoldSeedWilcoxonPruner",
    "compare_with_baseline",
    "open_study",
    "param_importances",
    "run_stored_study",
    "run_study",
    "top_k_configs",
    "write_hpo_artifacts",
]
