"""Fold-aware pruning of HPO trials: which step a trial reports, and when a pruner may end it.

Within run `i` of a trial (fold-major, seed-minor), the validation loss of epoch `e` is
reported at step `i * E + e`, where `E` is the largest number of epochs any trial may train.
Step `k` therefore means the same (fold, seed, epoch) in every trial, so the median pruner
compares a trial only with other trials at the same point of the same fold, never a hard fold
with an easy one. Reporting goes through `optuna_integration`'s Lightning pruning callback.

With `pruner: {type: "wilcoxon"}` the step is one (fold, seed) run instead: after run `i` the
trial reports that run's `metric` at step `i`, and Optuna's `WilcoxonPruner` prunes it once the
one-sided signed-rank test of those values against the best trial's at the same steps says it
is worse (never the baseline trial, never at the last run, when nothing is left to save).
"""

from __future__ import annotations

import logging
import math
import statistics
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import optuna
from lightning.pytorch import Callback
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from core.config import Fold
from core.hpo_config import HpoConfig

log = logging.getLogger("tftsweep.hpo")


# Optuna's WilcoxonPruner n_startup_steps default: runs of a trial before it can be pruned.
WILCOXON_STARTUP_STEPS = 2


# The user attribute that marks the baseline trial (trial 0 of a study created since it exists).
BASELINE_ATTR = "baseline"


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


def epoch_stride(config: HpoConfig) -> int:
    """The largest number of epochs any trial may train (the step range of one run)."""
    space = config.search_space.get("max_epochs")
    if space is not None and space.type != "categorical":
        return int(space.high or config.training_config.max_epochs)
    if space is not None:
        return max(int(c) for c in space.choices or [config.training_config.max_epochs])
    return config.training_config.max_epochs


__all__ = [
    "BASELINE_ATTR",
    "CancelCheck",
    "FoldAwareMedianPruner",
    "FoldAwarePruning",
    "FoldSeedWilcoxonPruner",
    "StudyCancelled",
    "make_pruner",
    "run_pairs",
    "warmup_steps",
]
