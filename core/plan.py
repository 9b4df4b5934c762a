"""One-factor-at-a-time expansion of a sweep config into configs and runs (docs/config.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from core.config import DEFAULT_MAX_RUNS, Fold, SweepConfig, TrainingConfig, training_with
from core.errors import FieldError, InvalidSweepConfig
from core.feature_sets import resolve_features

BASELINE_ID = "baseline"


@dataclass(frozen=True)
class PlannedConfig:
    """One config of the plan: the baseline, an OFAT variant or an explicit candidate."""

    config_id: str
    param_name: str | None
    param_value: Any
    training: TrainingConfig
    kind: str  # "baseline" | "variant" | "candidate"


@dataclass(frozen=True)
class PlannedRun:
    """One (config, fold, seed) of the plan, with its deterministic key."""

    run_key: str
    config_id: str
    param_name: str | None
    param_value: Any
    fold: str
    seed: int
    training: TrainingConfig = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_key": self.run_key,
            "config_id": self.config_id,
            "param_name": self.param_name,
            "param_value": self.param_value,
            "fold": self.fold,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class SweepPlan:
    configs: list[PlannedConfig]
    folds: list[Fold]
    seeds: list[int]
    runs: list[PlannedRun]
    # The dataset columns every run trains on, resolved from the config's feature set here,
    # once: they are stored with the sweep and handed to its runs' trainers.
    features: list[str] = field(default_factory=list)


def format_value(value: Any) -> str:
    """How a parameter value is spelled in a config id: `max_encoder_length=150`, `loss=mae`."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def canonical_json(data: Any) -> str:
    """A spelling of `data` that depends only on its meaning.

    Keys are sorted and floats are written by Python's shortest round-trip repr, so
    `0.1` and `1e-1` (equal floats once parsed) serialise identically.
    """
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def run_key_for(training: TrainingConfig, fold: Fold, seed: int, features: list[str]) -> str:
    """The deterministic identity of a run: hash of its full training params, fold and seed.

    A fold's embargo is part of its definition when it has one (other rows train); without one
    the payload is the one keys were computed from before embargoes existed, so no key moved."""
    params = training.model_dump()
    params["seed"] = seed
    fold_definition: dict[str, Any] = {"name": fold.name, **fold.window_dict()}
    if fold.embargo_days:
        fold_definition["embargo_days"] = fold.embargo_days
    payload = {
        "training": params,
        "fold": fold_definition,
        "seed": seed,
        "features": features,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PlanSize:
    """How many configs, folds, seeds and runs a plan has, counted without building it."""

    configs: int
    folds: int
    seeds: int

    @property
    def runs(self) -> int:
        return self.configs * self.folds * self.seeds

    def __str__(self) -> str:
        return f"{self.configs:,} configs x {self.folds:,} folds x {self.seeds:,} seeds = {self.runs:,} runs"


def plan_size(config: SweepConfig) -> PlanSize:
    """The size of `expand_sweep(config)`'s plan, from arithmetic: one pass over the values.

    A swept value equal to the baseline's is the baseline itself (as `plan_configs` has it).
    The raw value is compared: strict validation makes it the normalised one's equal (an int
    for a float key is that float; nothing else converts), and the schema refused duplicates.
    """
    base = config.training_config
    variants = sum(1 for name, values in config.param_ranges.items() for v in values if v != getattr(base, name))
    folds = len(config.walk_forward.folds) if config.walk_forward.enabled else 1
    return PlanSize(1 + variants + len(config.configs), folds, len(config.replica_seeds) or 1)


def check_plan_size(config: SweepConfig, max_runs: int | None = None) -> PlanSize:
    """The plan's size, checked against the cap before anything is built or read.

    Raises:
        InvalidSweepConfig: the plan exceeds `max_runs` (default `DEFAULT_MAX_RUNS`); the
            message states its size.
    """
    cap = DEFAULT_MAX_RUNS if max_runs is None else max_runs
    size = plan_size(config)
    if size.runs > cap:
        raise InvalidSweepConfig([FieldError("(plan)", f"{size}, over the cap of {cap:,}")])
    return size


def plan_configs(config: SweepConfig) -> list[PlannedConfig]:
    """Baseline first, then each OFAT variant in `param_ranges` order, then explicit candidates."""
    base = config.training_config
    planned = [PlannedConfig(BASELINE_ID, None, None, base, "baseline")]
    for name, values in config.param_ranges.items():
        for value in values:
            training = training_with(base, {name: value})
            normalised = getattr(training, name)
            if normalised == getattr(base, name):
                continue  # the baseline value: the baseline itself, not a duplicate run
            planned.append(PlannedConfig(f"{name}={format_value(normalised)}", name, normalised, training, "variant"))
    for cand in config.configs:
        planned.append(PlannedConfig(cand.name, None, None, training_with(base, cand.params), "candidate"))
    _reject_identical(planned)
    return planned


def _reject_identical(planned: list[PlannedConfig]) -> None:
    by_params: dict[str, str] = {}
    errors = []
    for cfg in planned:
        key = canonical_json(cfg.training.model_dump())
        if key in by_params:
            errors.append(
                FieldError("configs", f"{cfg.config_id!r} trains exactly the same parameters as {by_params[key]!r}")
            )
        else:
            by_params[key] = cfg.config_id
    if errors:
        raise InvalidSweepConfig(errors)


def expand_sweep(config: SweepConfig, max_runs: int | None = None) -> SweepPlan:
    """Expand a sweep into runs: configs × folds × seeds, fold-major.

    Runs are ordered fold by fold, seed by seed, config by config, so the baseline
    and its variants for one fold finish close together and share cached datasets.

    Raises:
        InvalidSweepConfig: the plan exceeds `max_runs` (default `DEFAULT_MAX_RUNS`),
            or two configs train identical parameters.
    """
    check_plan_size(config, max_runs)  # before a single config is built
    configs = plan_configs(config)
    folds = config.folds
    seeds = config.seeds
    features = resolve_features(config.features)
    runs = [
        PlannedRun(
            run_key=run_key_for(cfg.training, fold, seed, features),
            config_id=cfg.config_id,
            param_name=cfg.param_name,
            param_value=cfg.param_value,
            fold=fold.name,
            seed=seed,
            training=training_with(cfg.training, {"seed": seed}),
        )
        for fold in folds
        for seed in seeds
        for cfg in configs
    ]
    return SweepPlan(configs=configs, folds=folds, seeds=seeds, runs=runs, features=features)
