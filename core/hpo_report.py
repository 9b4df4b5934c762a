"""An HPO study's report, from its trials as the storage holds them (docs/hpo.md).

`optuna_trials.csv/json`, `optuna_best_trial.json`, `optuna_top_k_configs.json` (the
candidates a sweep takes) and `optuna_summary.json`, whose `comparison` says whether the best
trial beats the baseline trial and the naive forecast, with the paired signed-rank test on
`metric` where both have the same runs; fANOVA importances and the PNGs at the end of a study.
Written after every trial by the study's run (`core.hpo`), and read by the API as files.
"""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from core.config import training_with
from core.files import write_json_atomic
from core.hpo_config import HpoConfig
from core.hpo_pruning import (
    BASELINE_ATTR,
    warmup_steps,
)
from core.report_files import json_safe, write_csv
from core.reports import rank_direction
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
    "compare_with_baseline",
    "param_importances",
    "study_direction",
    "top_k_configs",
    "write_hpo_artifacts",
]
