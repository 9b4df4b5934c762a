"""Merge rules (docs/config.md, "Merging"): what a new config may add to a stored sweep."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from core.config import SweepConfig, training_with
from core.errors import MergeRejected, MergeViolation
from core.plan import PlannedRun, SweepPlan, expand_sweep

# Only these may differ between the stored config and the new one (`stats` and `evaluation`
# change no run: only how the reports judge the runs; `reuse_runs` and `racing` only which runs
# are trained; `configs` only by additions, see `_configs`).
MERGEABLE = (
    "param_ranges",
    "walk_forward",
    "replica_seeds",
    "stats",
    "evaluation",
    "configs",
    "reuse_runs",
    "racing",
)
OTHERS_RULE = (
    "may not change (only param_ranges, walk_forward.folds, replica_seeds, configs, stats, evaluation, reuse_runs "
    "and racing may)"
)


@dataclass(frozen=True)
class MergeResult:
    """An accepted merge: the effective config and exactly the runs it adds."""

    config: SweepConfig
    plan: SweepPlan
    new_runs: list[PlannedRun]


def validate_merge(old: SweepConfig, new: SweepConfig, max_runs: int | None = None) -> MergeResult:
    """Check `new` against the stored `old` config.

    Allowed: new values in `param_ranges` (and new params), new folds, new seeds, new
    explicit `configs` (an Optuna top-k joining the sweep that holds the baseline).
    Everything else that differs is a violation.

    Raises:
        MergeRejected: listing every violation (field path, old value, new value, rule).
    """
    violations = (
        _other_fields(old, new) + _param_ranges(old, new) + _configs(old, new) + _folds(old, new) + _seeds(old, new)
    )
    if violations:
        raise MergeRejected(violations)
    plan = expand_sweep(new, max_runs=max_runs)
    # The stored plan was accepted under the cap in force then; it is not re-checked.
    old_keys = {run.run_key for run in expand_sweep(old, max_runs=sys.maxsize).runs}
    return MergeResult(config=new, plan=plan, new_runs=[r for r in plan.runs if r.run_key not in old_keys])


def _other_fields(old: SweepConfig, new: SweepConfig) -> list[MergeViolation]:
    old_d, new_d = old.to_json_dict(), new.to_json_dict()
    out: list[MergeViolation] = []
    for key in sorted(set(old_d) | set(new_d)):
        if key in MERGEABLE:
            continue
        out.extend(_diff(key, old_d.get(key), new_d.get(key)))
    if old.walk_forward.enabled != new.walk_forward.enabled:
        out.append(
            MergeViolation("walk_forward.enabled", old.walk_forward.enabled, new.walk_forward.enabled, "may not change")
        )
    return out


def _diff(path: str, old: Any, new: Any, rule: str = OTHERS_RULE) -> list[MergeViolation]:
    """Leaf-level differences, so a violation names `training_config.hidden_size`, not the whole block."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[MergeViolation] = []
        for key in sorted(set(old) | set(new)):
            out.extend(_diff(f"{path}.{key}", old.get(key), new.get(key), rule))
        return out
    if old != new or type(old) is not type(new):
        return [MergeViolation(path, old, new, rule)]
    return []


def _param_ranges(old: SweepConfig, new: SweepConfig) -> list[MergeViolation]:
    out: list[MergeViolation] = []
    for name, old_values in old.param_ranges.items():
        path = f"param_ranges.{name}"
        if name not in new.param_ranges:
            out.append(MergeViolation(path, old_values, None, "a swept parameter may not be removed"))
            continue
        # A set: one key's normalised values share a type, so equality is sameness (linear, not n x m).
        new_norm = set(_normalised(new, name, new.param_ranges[name]))
        removed = [v for v, n in zip(old_values, _normalised(old, name, old_values), strict=True) if n not in new_norm]
        if removed:
            out.append(
                MergeViolation(path, old_values, new.param_ranges[name], f"values may not be removed: {removed}")
            )
    return out


def _normalised(config: SweepConfig, name: str, values: list[Any]) -> list[Any]:
    # Compare values as the schema reads them, so 0.1 and 1e-1 are the same value.
    return [getattr(training_with(config.training_config, {name: v}), name) for v in values]


def _configs(old: SweepConfig, new: SweepConfig) -> list[MergeViolation]:
    """Old explicit configs stay, by name, with the same params (compared as the schema reads
    them, so 0.01 and 1e-2 are one value); new ones may be added. `source` is provenance (a
    continued study re-ranks its trials), trains nothing, and takes the new config's value."""
    out: list[MergeViolation] = []
    new_by_name = {c.name: c for c in new.configs}
    for i, cand in enumerate(old.configs):
        path = f"configs[{i}]"
        match = new_by_name.get(cand.name)
        if match is None:
            out.append(MergeViolation(path, cand.model_dump(), None, f"config {cand.name!r} may not be removed"))
            continue
        old_params = _normalised_params(old, cand.params)
        new_params = _normalised_params(new, match.params)
        out.extend(_diff(f"{path}.params", old_params, new_params, f"config {cand.name!r} may not be changed"))
    return out


def _normalised_params(config: SweepConfig, params: dict[str, Any]) -> dict[str, Any]:
    training = training_with(config.training_config, params)
    return {key: getattr(training, key) for key in params}


def _folds(old: SweepConfig, new: SweepConfig) -> list[MergeViolation]:
    """Old folds stay, by name, with the same windows; new ones may be added. Folds generated
    from `walk_forward.generate` are compared as the explicit folds they expand into, so a later
    `end` adds folds and any other change to the pattern changes (or removes) old ones. The
    embargo is one value for every fold and is compared once: changing it changes every fold's
    rows."""
    out: list[MergeViolation] = []
    old_wf, new_wf = old.walk_forward, new.walk_forward
    if old_wf.embargo_days != new_wf.embargo_days:
        out.append(
            MergeViolation(
                "walk_forward.embargo_days",
                old_wf.embargo_days,
                new_wf.embargo_days,
                "may not change (it changes the rows of every fold)",
            )
        )
    new_by_name = {f.name: f for f in new_wf.folds}
    for i, fold in enumerate(old_wf.folds):
        path = f"walk_forward.folds[{i}]"
        match = new_by_name.get(fold.name)
        if match is None:
            out.append(MergeViolation(path, fold.model_dump(), None, f"fold {fold.name!r} may not be removed"))
        elif match.model_dump(exclude={"embargo_days"}) != fold.model_dump(exclude={"embargo_days"}):
            out.append(
                MergeViolation(path, fold.model_dump(), match.model_dump(), f"fold {fold.name!r} may not be changed")
            )
    return out


def _seeds(old: SweepConfig, new: SweepConfig) -> list[MergeViolation]:
    new_seeds = set(new.seeds)
    removed = [s for s in old.seeds if s not in new_seeds]
    if removed:
        return [MergeViolation("replica_seeds", old.seeds, new.seeds, f"seeds may not be removed: {removed}")]
    return []
