"""HPO meets the baseline: trial 0, the comparison, the pruner's warm-up and log, importances.

No training: fake objectives and trials built with `optuna.trial.create_trial`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from core.hpo import baseline_params, open_study, suggest
from core.hpo_config import HpoConfig, validate_hpo_config
from core.hpo_pruning import BASELINE_ATTR, FoldAwareMedianPruner, warmup_steps
from core.hpo_report import (
    MIN_TRIALS_FOR_IMPORTANCES,
    compare_with_baseline,
    importances_figure,
    param_importances,
    top_k_configs,
    write_hpo_artifacts,
)
from tests.utils.data import tiny_fold, tiny_study

DISTRIBUTIONS: dict[str, BaseDistribution] = {
    "learning_rate": FloatDistribution(0.0001, 0.5, log=True),
    "hidden_size": IntDistribution(4, 8, step=2),
}
PAIRS = [(f"f{f}", s) for f in (1, 2, 3) for s in (1, 2)]  # 3 folds x 2 seeds = 6 pairs


def study_config(**overrides: Any) -> HpoConfig:
    return validate_hpo_config(tiny_study(**overrides))


def runs(rmses: list[float], naive: float = 1.0, pairs: list[tuple[str, int]] = PAIRS) -> list[dict[str, Any]]:
    return [
        {"fold": fold, "seed": seed, "val_rmse": v, "val_naive_rmse": naive, "test_rmse": v}
        for (fold, seed), v in zip(pairs, rmses, strict=True)
    ]


def trial(value: float, rmses: list[float], *, baseline: bool = False, lr: float = 0.02, **kw: Any) -> Any:
    attrs: dict[str, Any] = {"runs": runs(rmses, **kw)}
    if baseline:
        attrs[BASELINE_ATTR] = True
    params = {"learning_rate": 0.01 if baseline else lr, "hidden_size": 4 if baseline else 6}
    return create_trial(params=params, distributions=DISTRIBUTIONS, value=value, user_attrs=attrs)


def study_of(*trials: Any) -> optuna.Study:
    study = optuna.create_study(direction="minimize")
    for t in trials:
        study.add_trial(t)
    return study


def best_of(study: optuna.Study) -> Any:
    return min(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: (t.value, t.number))


def comparison_of(study: optuna.Study) -> dict[str, Any]:
    return compare_with_baseline(study.get_trials(deepcopy=False), best_of(study))


def test_a_new_study_enqueues_the_baseline_as_trial_0_and_a_continued_one_does_not(tmp_path: Path) -> None:
    config = study_config(n_trials=3, pruner={"type": "none"})
    seen: list[dict[str, Any]] = []

    def objective(t: optuna.trial.Trial) -> float:
        seen.append({name: suggest(t, name, p) for name, p in config.search_space.items()})
        return 1.0 + len(seen)

    study = open_study(config, tmp_path)
    study.optimize(objective, n_trials=2)
    assert seen[0] == baseline_params(config) == {"learning_rate": 0.01, "hidden_size": 4}
    assert study.trials[0].user_attrs == {BASELINE_ATTR: True}
    assert BASELINE_ATTR not in study.trials[1].user_attrs
    continued = open_study(config, tmp_path)  # a rerun: nothing enqueued again
    assert continued.get_trials(states=(TrialState.WAITING,)) == []
    continued.optimize(objective, n_trials=1)
    assert [t.user_attrs.get(BASELINE_ATTR, False) for t in continued.trials] == [True, False, False]


def test_a_best_trial_lower_in_every_pair_is_better_than_the_baseline() -> None:
    study = study_of(trial(1.0, [1.0] * 6, baseline=True), trial(0.9, [0.9, 0.91, 0.92, 0.93, 0.94, 0.95]))
    comparison = comparison_of(study)
    assert (comparison["baseline_trial"], comparison["best_trial"]) == (0, 1)
    assert (comparison["baseline_value"], comparison["best_value"]) == (1.0, 0.9)
    assert comparison["beats_baseline"] is True and comparison["below_baseline"] is True
    assert comparison["below_naive"] is True and comparison["beats_naive"] == (
        comparison["naive_test"]["verdict"] == "better"
    )
    test = comparison["test"]
    assert (test["pairs"], test["family"]) == (6, 1)
    assert test["wilcoxon_pvalue"] == pytest.approx(2 / 64)  # all six deltas negative, exact test
    assert test["holm_pvalue"] == pytest.approx(2 / 64) and test["verdict"] == "better"
    assert "10.00% better than the baseline (trial 0, 1; val_rmse, lower is better)" in comparison["sentence"]
    assert ": better." in comparison["sentence"]


def test_a_higher_sharpe_is_better_than_a_negative_baseline_by_its_distance_over_its_size() -> None:
    """(best - baseline) / |baseline| = (0.25 - -0.5) / 0.5: the ratio best / baseline - 1 would
    give -150%, "below", for the better trial."""
    baseline, best = trial(-0.5, [1.0] * 6, baseline=True), trial(0.25, [1.0] * 6)
    for made, sharpes in ((baseline, [-0.5] * 6), (best, [0.2, 0.22, 0.24, 0.26, 0.28, 0.3])):
        for run, sharpe in zip(made.user_attrs["runs"], sharpes, strict=True):
            run["val_sharpe"] = sharpe
    trials = study_of(baseline, best).get_trials(deepcopy=False)
    comparison = compare_with_baseline(trials, trials[1], metric="val_sharpe")
    assert comparison["below_baseline"] is True and comparison["test"]["verdict"] == "better"  # higher in every pair
    assert "is 150.00% better than the baseline (trial 0, -0.5; val_sharpe, higher is better)" in comparison["sentence"]


def test_with_three_candidates_six_pairs_cannot_reach_better() -> None:
    """Holm over the 3 complete trials the best was picked from: 3 x 2/64 = 0.094 > 0.05."""
    study = study_of(
        trial(1.0, [1.0] * 6, baseline=True),
        trial(0.9, [0.9] * 5 + [0.85], lr=0.02),
        trial(0.95, [0.95] * 5 + [0.96], lr=0.03),
        trial(1.1, [1.1] * 5 + [1.05], lr=0.04),
    )
    comparison = comparison_of(study)
    test = comparison["test"]
    assert (test["pairs"], test["family"], test["verdict"]) == (6, 3, "insufficient")
    assert test["smallest_reachable_pvalue"] == pytest.approx(3 * 2 / 64)
    assert test["pairs_needed"] == 7  # 3 x 2/2**7 = 0.047 < 0.05
    assert comparison["below_baseline"] is True and comparison["beats_baseline"] is False  # lower, not shown to be
    assert "insufficient" in comparison["sentence"] and "needs at least 7 pairs" in comparison["sentence"]


def test_trials_with_other_runs_are_not_testable() -> None:
    fewer = PAIRS[:4]
    study = study_of(trial(1.0, [1.0] * 6, baseline=True), trial(0.9, [0.9] * 4, pairs=fewer))
    comparison = comparison_of(study)
    assert comparison["test"] is None and comparison["below_baseline"] is True
    assert comparison["beats_baseline"] is None  # lower, but no test could say whether it beats it
    assert "not testable" in comparison["sentence"]


def test_the_baseline_as_best_and_the_naive_forecast() -> None:
    study = study_of(trial(0.9, [0.9] * 6, baseline=True, naive=0.8), trial(1.0, [1.0] * 6, naive=0.8))
    comparison = comparison_of(study)
    assert comparison["beats_baseline"] is False and comparison["test"] is None
    assert comparison["below_naive"] is False and comparison["beats_naive"] is False  # 0.9 against 0.8
    assert comparison["naive_test"]["verdict"] == "worse"  # six of six pairs above, one test
    assert comparison["sentence"].startswith("No trial beat the baseline")


def test_a_study_without_a_baseline_trial_says_so() -> None:
    study = study_of(trial(0.9, [0.9] * 6))
    comparison = comparison_of(study)
    assert comparison["baseline_trial"] is None and comparison["beats_baseline"] is None
    assert "no baseline trial" in comparison["sentence"]
    assert compare_with_baseline([], None)["sentence"].startswith("No trial is complete yet")


def test_top_k_leaves_the_baseline_out() -> None:
    config = study_config()
    study = study_of(trial(0.5, [0.5] * 6, baseline=True), trial(0.9, [0.9] * 6), trial(1.0, [1.0] * 6, lr=0.03))
    top = top_k_configs(study, config)
    assert [c["source"]["trial"] for c in top] == [1, 2]


def test_top_k_lists_a_config_the_sampler_suggested_twice_once() -> None:
    """A config suggested again (its runs reused, so it completes with the same value) is one
    candidate, the earlier trial's: the sweep refuses two candidates with the same params."""
    config = study_config()
    study = study_of(
        trial(0.5, [0.5] * 6, baseline=True),
        trial(0.9, [0.9] * 6),
        trial(1.0, [1.0] * 6, lr=0.03),
        trial(0.9, [0.9] * 6),
    )
    top = top_k_configs(study, config)
    assert [c["source"]["trial"] for c in top] == [1, 2]


def test_the_default_warm_up_sees_every_fold_once() -> None:
    # 2 folds x 1 seed, 3 epochs: steps 0-2 are fold f1, 3-5 fold f2; first prunable: 5.
    assert warmup_steps(study_config(pruner={"type": "median"})) == 5
    three = study_config(
        pruner={"type": "median"},
        replica_seeds=[1, 2],
        walk_forward={"enabled": True, "folds": [tiny_fold("f1", 2011), tiny_fold("f2", 2012), tiny_fold("f3", 2013)]},
    )
    assert warmup_steps(three) == ((3 - 1) * 2 + 1) * 3 - 1  # 14: the last epoch of f3's first run
    assert warmup_steps(study_config(pruner={"type": "median", "n_warmup_steps": 0})) == 0


def pruned_study(pruner: FoldAwareMedianPruner) -> optuna.Study:
    """Three complete trials with values 1, 2, 3 at every one of their 6 steps."""
    study = optuna.create_study(direction="minimize", pruner=pruner)
    for value in (1.0, 2.0, 3.0):
        steps = dict.fromkeys(range(6), value)
        study.add_trial(create_trial(params={}, distributions={}, value=value, intermediate_values=steps))
    return study


def test_pruning_compares_the_value_at_the_step_with_the_median_and_logs_both(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pruner = FoldAwareMedianPruner(n_startup_trials=2, n_warmup_steps=3, stride=3, pairs=[("f1", 1), ("f2", 1)])
    study = pruned_study(pruner)
    running = study.ask()
    running.report(9.0, 2)
    assert not running.should_prune()  # in the warm-up: fold f2 not seen yet
    caplog.set_level(logging.INFO, logger="tftsweep.hpo")
    running.report(2.5, 3)
    assert running.should_prune()  # 2.5 > median 2.0 of the complete trials at step 3
    decision = pruner.last_decision
    assert decision is not None
    assert (decision.step, decision.fold, decision.seed, decision.epoch) == (3, "f2", 1, 0)
    assert (decision.value, decision.median, decision.compared, decision.pruned) == (2.5, 2.0, 3, True)
    assert "val loss 2.5 vs median 2 of 3 complete trials (+25.00%): pruned" in caplog.text
    kept = study.ask()
    kept.report(1.5, 4)
    assert not kept.should_prune() and "val loss 1.5 vs median 2" in caplog.text and "kept" in caplog.text
    last = study.ask()
    last.report(99.0, 5)  # the last step a trial can reach: pruning saves nothing
    assert not last.should_prune()


def test_the_baseline_trial_is_never_pruned() -> None:
    pruner = FoldAwareMedianPruner(n_startup_trials=0, n_warmup_steps=0, stride=3, pairs=[("f1", 1), ("f2", 1)])
    study = pruned_study(pruner)
    study.enqueue_trial({}, user_attrs={BASELINE_ATTR: True})
    baseline = study.ask()
    baseline.report(99.0, 1)
    assert not baseline.should_prune()


def test_importances_need_a_minimum_of_complete_trials() -> None:
    config = study_config()
    few = study_of(trial(1.0, [1.0] * 6, baseline=True), trial(0.9, [0.9] * 6))
    status = param_importances(few, config)
    assert status == {"status": "not enough trials", "complete": 2, "needed": MIN_TRIALS_FOR_IMPORTANCES}
    figure = importances_figure(status, "study")
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert figure.axes[0].get_title() == "study: parameter importances"
    assert texts == ["not enough trials (2 of 5 complete)"]  # not the generic note
    many = study_of(
        trial(1.0, [1.0] * 6, baseline=True),
        *(trial(0.5 + lr * 10, [0.9] * 6, lr=lr) for lr in (0.001, 0.003, 0.01, 0.03, 0.1)),
    )
    status = param_importances(many, config)
    assert status["status"] == "ok" and status["complete"] == 6
    assert set(status["values"]) == {"learning_rate", "hidden_size"}


def test_the_summary_carries_the_comparison_and_the_importances_status(tmp_path: Path) -> None:
    config = study_config()
    study = study_of(trial(1.0, [1.0] * 6, baseline=True), trial(0.9, [0.9] * 6))
    summary = write_hpo_artifacts(study, config, tmp_path, asset="SYN", plots=False)
    assert summary["comparison"]["beats_baseline"] is True and summary["comparison"]["sentence"]
    assert summary["importances"]["status"] == "not enough trials"
    assert summary["pruner"]["warmup_steps_in_effect"] == 0  # tiny_study sets n_warmup_steps 0
