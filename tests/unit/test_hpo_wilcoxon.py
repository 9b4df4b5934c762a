"""`pruner: {type: "wilcoxon"}`: Optuna's WilcoxonPruner over one value per (fold, seed) run.

No training: trials built with `optuna.trial.create_trial`; the p-values are recomputed here
with scipy (the one-sided signed-rank test of the trial's values minus the best trial's).
"""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.trial import TrialState, create_trial
from scipy import stats

from core.errors import InvalidSweepConfig
from core.hpo_config import validate_hpo_config
from core.hpo_pruning import BASELINE_ATTR, FoldSeedWilcoxonPruner, make_pruner, warmup_steps
from tests.utils.data import tiny_fold, tiny_study

PAIRS = [(f"f{f}", s) for f in (1, 2, 3) for s in (1, 2)]  # 6 runs per trial
BEST = [1.0, 1.1, 0.9, 1.2, 1.0, 1.05]


def study_with_best(n_complete: int = 2) -> optuna.Study:
    """A minimising study whose `n_complete` complete trials have per-run values BEST (+ a little)."""
    study = optuna.create_study(direction="minimize")
    for i in range(n_complete):
        values = [v + 0.01 * i for v in BEST]
        steps = dict(enumerate(values))
        study.add_trial(
            create_trial(params={}, distributions={}, value=sum(values) / len(values), intermediate_values=steps)
        )
    return study


def running(values: list[float], **attrs: Any) -> optuna.trial.FrozenTrial:
    return create_trial(
        state=TrialState.RUNNING,
        params={},
        distributions={},
        intermediate_values=dict(enumerate(values)),
        user_attrs=attrs,
    )


def one_sided_p(values: list[float]) -> float:
    diffs = [v - b for v, b in zip(values, BEST, strict=False)]
    return float(stats.wilcoxon(diffs, alternative="greater", zero_method="zsplit").pvalue)


def test_a_trial_worse_in_every_run_is_pruned_once_the_test_can_say_so() -> None:
    pruner = FoldSeedWilcoxonPruner(0.1, 2, 2, PAIRS)
    study = study_with_best()
    worse = [v + 0.5 for v in BEST]
    # 3 runs: the smallest one-sided p is 1/8 = 0.125, above 0.1: kept. 4 runs: 1/16: pruned.
    assert one_sided_p(worse[:3]) == pytest.approx(0.125)
    assert pruner.prune(study, running(worse[:3])) is False
    assert one_sided_p(worse[:4]) == pytest.approx(0.0625)
    assert pruner.prune(study, running(worse[:4])) is True


def test_a_trial_no_worse_than_the_best_is_kept() -> None:
    pruner = FoldSeedWilcoxonPruner(0.1, 2, 2, PAIRS)
    mixed = [BEST[0] + 0.2, BEST[1] - 0.2, BEST[2] + 0.1, BEST[3] - 0.1, BEST[4] + 0.05]
    assert one_sided_p(mixed) > 0.1
    assert pruner.prune(study_with_best(), running(mixed)) is False


def test_no_decision_for_the_baseline_at_the_last_run_or_before_the_startup_trials() -> None:
    worse = [v + 0.5 for v in BEST]
    pruner = FoldSeedWilcoxonPruner(0.1, 2, 2, PAIRS)
    assert pruner.prune(study_with_best(), running(worse[:5], **{BASELINE_ATTR: True})) is False
    # After the last run nothing is left to save: the trial completes with its full value.
    assert pruner.prune(study_with_best(), running(worse)) is False
    # One complete trial of the two wanted before any pruning.
    assert pruner.prune(study_with_best(n_complete=1), running(worse[:5])) is False


def test_the_config_makes_the_wilcoxon_pruner_with_its_threshold_and_startup_runs() -> None:
    folds = {"enabled": True, "folds": [tiny_fold("f1", 2012), tiny_fold("f2", 2013)]}
    config = validate_hpo_config(
        tiny_study(walk_forward=folds, replica_seeds=[1, 2, 3], pruner={"type": "wilcoxon", "p_threshold": 0.05})
    )
    pruner = make_pruner(config)
    assert isinstance(pruner, FoldSeedWilcoxonPruner)
    assert (pruner.p_threshold, pruner.n_startup_trials) == (0.05, 2)
    assert pruner.pairs == [(f, s) for f in ("f1", "f2") for s in (1, 2, 3)]
    assert warmup_steps(config) == 2  # Optuna's n_startup_steps: runs, not epochs
    default = validate_hpo_config(tiny_study(pruner={"type": "wilcoxon"})).pruner
    assert (default.p_threshold, default.threshold) == (None, 0.1)


def test_a_threshold_for_another_pruner_or_out_of_range_is_refused_by_name() -> None:
    with pytest.raises(InvalidSweepConfig, match=r"pruner: .*p_threshold applies to the wilcoxon pruner only"):
        validate_hpo_config(tiny_study(pruner={"type": "median", "p_threshold": 0.1}))
    with pytest.raises(InvalidSweepConfig, match=r"pruner.p_threshold"):
        validate_hpo_config(tiny_study(pruner={"type": "wilcoxon", "p_threshold": 1.5}))
