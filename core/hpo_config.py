"""The Optuna HPO config (docs/hpo.md): the sweep's data keys plus a search space.

Free of optuna, so the API validates studies without importing the ML stack.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from core.config import (
    DEFAULT_MAX_RUNS,
    MAX_LIST,
    ExperimentConfig,
    StrictModel,
    TrainingConfig,
    check_training_key,
    check_training_value,
    parse_json_text,
    path_key,
    rankable_metric,
    validate_config,
)
from core.errors import FieldError
from core.names import SafeName

# The most points a grid search may have. Optuna's GridSampler lists the whole product
# up front, and no study runs more than 10,000 trials (`n_trials`), so a grid over the plan
# cap could never be visited anyway.
MAX_GRID_POINTS = DEFAULT_MAX_RUNS
# Slack on a float grid's last step, so 0.3 / 0.1 (2.9999999999999996) still counts 4 points.
_GRID_EPS = Fraction(1, 10**9)


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, not {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number (got {value!r})")
    return value


def count_text(n: int) -> str:
    """`n` with thousands separators; past 15 digits its order of magnitude (Python refuses
    to spell an int of over 4300 digits, and nobody reads one)."""
    if n < 10**15:
        return f"{n:,}"
    return f"about 10^{int(n.bit_length() * math.log10(2))}"


# A bound or step: an int or a float, checked as one (no separate error per kind of number).
Number = Annotated[int | float, BeforeValidator(_number)]


class SearchParam(StrictModel):
    """One dimension: `int`/`float` between `low` and `high` (optional `log`/`step`), or `categorical`."""

    type: Literal["int", "float", "categorical"]
    low: Number | None = None
    high: Number | None = None
    log: bool = False
    step: Number | None = None
    choices: Annotated[list[Any], Field(max_length=MAX_LIST)] | None = None

    @model_validator(mode="after")
    def _shape(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty 'choices' list")
            if any(v is not None for v in (self.low, self.high, self.step)) or self.log:
                raise ValueError("categorical takes only 'choices'")
            if len({repr(c) for c in self.choices}) != len(self.choices):
                raise ValueError("duplicate choices")
            return self
        if self.choices is not None:
            raise ValueError(f"{self.type} takes 'low'/'high', not 'choices'")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs 'low' and 'high'")
        if self.type == "int" and not all(isinstance(v, int) for v in (self.low, self.high, self.step or 1)):
            raise ValueError("int bounds and step must be integers")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined (Optuna does not support it)")
        if self.step is not None and self.step <= 0:
            raise ValueError("step must be positive")
        return self

    def grid_size(self) -> int:
        """How many values a grid search visits, from arithmetic alone (nothing is listed).

        Exact rationals, so no step is too small and no bound too large to count: a float
        dimension has floor((high - low) / step) + 1 points, its last at or below `high`.

        Raises:
            ValueError: a float dimension without a `step`.
        """
        if self.type == "categorical":
            return len(self.choices or [])
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return (int(self.high) - int(self.low)) // int(self.step or 1) + 1
        if self.step is None:
            raise ValueError("a float dimension needs a 'step' for grid search")
        span = Fraction(self.high) - Fraction(self.low)
        return math.floor(span / Fraction(self.step) + _GRID_EPS) + 1

    def grid(self) -> list[Any]:
        """The values a grid search visits; floats need a step.

        Raises:
            ValueError: no step for a float, or more than `MAX_GRID_POINTS` values (counted
                before any is listed).
        """
        count = self.grid_size()
        if count > MAX_GRID_POINTS:
            raise ValueError(grid_over_cap(count))
        if self.type == "categorical":
            return list(self.choices or [])
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        assert self.step is not None
        return [round(self.low + i * self.step, 12) for i in range(count)]

    def bounds(self) -> list[Any]:
        """The values to check against the training config's own limits."""
        return list(self.choices or []) if self.type == "categorical" else [self.low, self.high]

    def holds(self, value: Any) -> bool:
        """Whether a trial may take `value`: one of the choices, or within the bounds (a step
        need not land on it: Optuna trains an enqueued value as given)."""
        if self.type == "categorical":
            # As Optuna finds a choice (by ==), but a bool is never a number here.
            return any(isinstance(c, bool) == isinstance(value, bool) and c == value for c in self.choices or [])
        assert self.low is not None and self.high is not None
        return isinstance(value, int | float) and not isinstance(value, bool) and self.low <= value <= self.high

    def describe(self) -> str:
        if self.type == "categorical":
            return f"choices {self.choices}"
        return f"{self.low}..{self.high}"


class SamplerConfig(StrictModel):
    type: Literal["tpe", "random", "grid"] = "tpe"
    seed: int = Field(42, ge=0, le=2**32 - 1)
    n_startup_trials: int = Field(5, ge=0, description="TPE: random trials before the model kicks in.")


# Optuna's WilcoxonPruner default: the signed-rank test's p-value below which a trial is pruned.
DEFAULT_P_THRESHOLD = 0.1


class PrunerConfig(StrictModel):
    """`median`: fold-aware median pruning on each epoch's val loss; `wilcoxon`: Optuna's
    WilcoxonPruner on one value of `metric` per (fold, seed) run against the best trial's
    (docs/hpo.md)."""

    type: Literal["median", "wilcoxon", "none"] = "median"
    n_startup_trials: int = Field(2, ge=0, description="Trials completed before pruning starts.")
    n_warmup_steps: int | None = Field(
        None,
        ge=0,
        description="Steps of a trial before it can be pruned. Median: a step is one epoch of one run; default: "
        "the first run of every fold is trained to its last epoch first. Wilcoxon: a step is one (fold, seed) "
        "run; default 2, Optuna's n_startup_steps (docs/hpo.md).",
    )
    p_threshold: float | None = Field(
        None,
        gt=0,
        lt=1,
        description=f"Wilcoxon only (default {DEFAULT_P_THRESHOLD}): prune a trial once the one-sided signed-rank "
        "test of its per-run values against the best trial's gives a p-value below this.",
    )

    @model_validator(mode="after")
    def _threshold_for_wilcoxon(self) -> PrunerConfig:
        if self.p_threshold is not None and self.type != "wilcoxon":
            raise ValueError(f"p_threshold applies to the wilcoxon pruner only, not to {self.type!r}")
        return self

    @property
    def threshold(self) -> float:
        """The Wilcoxon pruner's p-value threshold in effect."""
        return DEFAULT_P_THRESHOLD if self.p_threshold is None else self.p_threshold


def grid_over_cap(points: int, factors: list[int] | None = None) -> str:
    """Why a grid of `points` (the product of `factors`, one per dimension) is refused."""
    product = " x ".join(count_text(n) for n in factors) + " = " if factors and len(factors) > 1 else ""
    return (
        f"a grid of {product}{count_text(points)} points is over the cap of {MAX_GRID_POINTS:,} "
        "(no study runs more trials); use a coarser step, fewer choices, or the tpe or random sampler"
    )


class HpoConfig(ExperimentConfig):
    """An Optuna study over folds × seeds; its top-k configs feed a sweep."""

    search_space: dict[str, SearchParam]
    n_trials: int = Field(20, ge=1, le=10_000, description="Total trials wanted (a rerun continues the study).")
    timeout_s: float | None = Field(None, gt=0, description="Stop starting trials after this many seconds.")
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    objective: Literal["mean_val_rmse", "robust_score"] = Field(
        "mean_val_rmse",
        description="What a trial scores: the mean of `metric` over its folds x seeds (`mean_val_rmse`, the name "
        "kept for any metric), or its robust score (mean + std for a lower-better metric, mean - std for a "
        "higher-better one).",
    )
    metric: str = Field(
        "val_rmse",
        description="The validation metric the study optimises (any registered `val_` metric with a direction: "
        "val_rmse, val_dir_acc, val_sharpe, ...); the study minimises or maximises it as its registry entry says.",
    )
    top_k: int = Field(5, ge=1, le=100)
    storage: SafeName | None = Field(
        None,
        description="The name of a study storage the operator configured (TFTSWEEP_HPO_STORAGES), e.g. a "
        "PostgreSQL database for trials on many workers; default an SQLite file in the study's folder. A URL is "
        "never accepted from a config: it would reach a path or a connection of the server's choosing.",
    )

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        return rankable_metric(value)

    @field_validator("search_space")
    @classmethod
    def _not_empty(cls, value: dict[str, SearchParam]) -> dict[str, SearchParam]:
        if not value:
            raise ValueError("search_space must name at least one parameter")
        return value

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space: every dimension's values, the size of the whole
        product checked from arithmetic first (validation refuses a larger one, so this only
        guards a config built in code).

        Raises:
            ValueError: a float dimension without a step, or a grid over `MAX_GRID_POINTS`.
        """
        sizes = [param.grid_size() for param in self.search_space.values()]
        points = math.prod(sizes)
        if points > MAX_GRID_POINTS:
            raise ValueError(grid_over_cap(points, sizes))
        return {name: param.grid() for name, param in self.search_space.items()}


def parallel_trials_ok(storage_url: str | None) -> bool:
    """Trials may run on many workers at once only with a server database (not SQLite)."""
    return storage_url is not None and not storage_url.startswith("sqlite")


def study_shapes(config: HpoConfig) -> set[tuple[int, int]]:
    """Every (encoder, prediction) length a trial may use: the bounds of those dimensions."""

    def values(key: str) -> list[int]:
        space = config.search_space.get(key)
        return [int(v) for v in space.bounds()] if space else [getattr(config.training_config, key)]

    return {(e, p) for e in values("max_encoder_length") for p in values("max_prediction_length")}


def _baseline(data: dict[str, Any]) -> TrainingConfig | None:
    """The study's base training config, or None while it is invalid (the schema reports it)."""
    try:
        return TrainingConfig.model_validate(data.get("training_config", {}))
    except ValidationError:
        return None


def _bound_errors(key: str, param: SearchParam, where: str) -> tuple[list[FieldError], bool]:
    """Each bound or choice that is not a valid value of `key`, and whether all are sound."""
    errors: list[FieldError] = []
    finite = True
    for value in param.bounds():
        if isinstance(value, float) and not math.isfinite(value):
            finite = False
            continue  # reported as not finite, by its path
        _, why = check_training_value(key, value)
        if why is not None:
            errors.append(FieldError(where, f"value {value!r}: {why}"))
    return errors, finite and not errors


def _baseline_outside(key: str, param: SearchParam, baseline: TrainingConfig, where: str) -> list[FieldError]:
    """Trial 0 trains the baseline (enqueued with its values), so the space must hold them."""
    value = getattr(baseline, key)
    if param.holds(value):
        return []
    why = (
        f"the baseline's value {value!r} (training_config.{key}) is outside {param.describe()}: "
        "trial 0 trains the baseline, so the search space must hold its value"
    )
    return [FieldError(where, why)]


def _check_search_space(data: dict[str, Any], baseline_inside: bool = True) -> list[FieldError]:
    space = data.get("search_space")
    if not isinstance(space, dict):
        return []  # the schema reports the wrong type
    baseline = _baseline(data)
    sampler = data.get("sampler")
    grid = isinstance(sampler, dict) and sampler.get("type") == "grid"
    errors: list[FieldError] = []
    sizes: list[int] = []
    for key, raw in space.items():
        where = f"search_space.{path_key(key)}"
        problem = check_training_key(key, where, "searched")
        if problem is not None:
            errors.append(problem)
            continue
        try:
            param = SearchParam.model_validate(raw)
        except ValidationError:
            continue  # the schema reports it
        wrong, sound = _bound_errors(key, param, where)
        errors.extend(wrong)
        if sound and baseline is not None and baseline_inside:
            errors.extend(_baseline_outside(key, param, baseline, where))
        if grid:
            # Counted, never listed: a step of 1e-300 is a count, not 5e299 values in memory.
            try:
                size = param.grid_size()
            except ValueError as exc:
                errors.append(FieldError(where, str(exc)))
                continue
            if size > MAX_GRID_POINTS:
                errors.append(FieldError(where, grid_over_cap(size)))
            sizes.append(size)
    points = math.prod(sizes)
    if grid and len(sizes) > 1 and points > MAX_GRID_POINTS and max(sizes) <= MAX_GRID_POINTS:
        errors.append(FieldError("search_space", grid_over_cap(points, sizes)))
    return errors


def validate_hpo_config(data: Any) -> HpoConfig:
    """Validate parsed JSON as an HPO config (`InvalidSweepConfig` lists every problem)."""
    return validate_config(HpoConfig, data, _check_search_space)


# The pruner a study got by default before the default warm-up followed the folds (2026-12-04).
LEGACY_DEFAULT_PRUNER = {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 1, "p_threshold": None}


def stored_hpo_config(data: Any) -> HpoConfig:
    """A study's config as stored (its `config_json`), read back: the checks of a submission
    except that the search space must hold the baseline's values (a study stored before that
    rule trains on without a baseline trial); keys added since read as their defaults."""
    return validate_config(HpoConfig, data, lambda raw: _check_search_space(raw, baseline_inside=False))


def continued_config(stored: Any, submitted: HpoConfig, continuable: tuple[str, ...]) -> tuple[HpoConfig, list[str]]:
    """The config a stored study continues with when `submitted` again, and the top-level keys
    (other than `continuable`) where the two differ (empty: it may continue).

    A study stored with the old default pruner (`LEGACY_DEFAULT_PRUNER`) and submitted with the
    default again continues with its own pruner: its trials were pruned by it."""
    old = stored_hpo_config(stored).to_json_dict()
    new = submitted.to_json_dict()
    if old.get("pruner") == LEGACY_DEFAULT_PRUNER and new.get("pruner") == PrunerConfig().model_dump():
        new["pruner"] = old["pruner"]
    changed = sorted(k for k in set(old) | set(new) if k not in continuable and old.get(k) != new.get(k))
    return HpoConfig.model_validate(new), changed


def load_hpo_config(text: str | bytes) -> HpoConfig:
    return validate_hpo_config(parse_json_text(text))


__all__ = [
    "MAX_GRID_POINTS",
    "HpoConfig",
    "PrunerConfig",
    "SamplerConfig",
    "SearchParam",
    "continued_config",
    "load_hpo_config",
    "parallel_trials_ok",
    "stored_hpo_config",
    "study_shapes",
    "validate_hpo_config",
]
