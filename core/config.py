"""The sweep config schema (docs/config.md): one pydantic model for the API, the CLI and workers.

One job, validation of a config, in three parts kept together because they read the same raw
data: the models, the cross-field checks, and the error shaping (field paths, the non-finite
walk, the cap on listed problems).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.errors import FieldError, InvalidSweepConfig
from core.feature_sets import FEATURE_SETS
from core.folds import FoldPattern, first_test_end, fold_count, generate_windows
from core.names import SafeName

M = TypeVar("M", bound=BaseModel)
H = TypeVar("H", bound=Hashable)

DEFAULT_MAX_RUNS = 10_000  # the plan size cap (a server setting: TFTSWEEP_MAX_RUNS)
MAX_LIST = 1000  # any list in a config: folds, seeds, values, candidates, features
# The most problems one refusal lists: a 1 MiB body of unknown keys would otherwise answer
# tens of megabytes of errors (each names every known key).
MAX_ERRORS = 100


def _check_yyyymmdd(value: str) -> str:
    if len(value) != 8 or not value.isdigit():
        raise ValueError(f"{value!r} is not a YYYYMMDD date")
    try:
        datetime.strptime(value, "%Y%m%d")
    except ValueError:
        raise ValueError(f"{value!r} is not a real calendar date") from None
    return value


DateStr = Annotated[str, AfterValidator(_check_yyyymmdd)]


def parse_date(value: str) -> date:
    return datetime.strptime(value, "%Y%m%d").date()


class StrictModel(BaseModel):
    # strict: no "3" for 3, no 1.5 for an int, no true for an int; extra: no silent typos;
    # no NaN or infinity in a float (a model built in code; raw JSON is walked by `non_finite`).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


SPLIT_REQUIRED = "split_config is required when walk_forward is not enabled"


def duplicates(values: Iterable[H]) -> list[H]:
    """The values that occur more than once, in first-seen order (one pass, a Counter)."""
    return [v for v, n in Counter(values).items() if n > 1]


class TrainingConfig(StrictModel):
    """Hyperparameters of one run. Every key may be swept through `param_ranges`."""

    max_encoder_length: int = Field(120, ge=2, le=2000, description="Days of history the encoder sees.")
    max_prediction_length: int = Field(1, ge=1, le=60, description="Days ahead forecast per sample.")
    batch_size: int = Field(64, ge=1, le=65536, description="Samples per training batch.")
    max_epochs: int = Field(20, ge=1, le=10_000, description="Upper bound on training epochs.")
    learning_rate: float = Field(5e-4, gt=0, le=10, description="Adam learning rate.")
    hidden_size: int = Field(32, ge=1, le=4096, description="TFT hidden state size.")
    attention_head_size: int = Field(2, ge=1, le=64, description="Attention heads.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout rate.")
    hidden_continuous_size: int = Field(8, ge=1, le=4096, description="Hidden size for continuous variables.")
    lstm_layers: int = Field(1, ge=1, le=8, description="LSTM layers in encoder and decoder.")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Seed used when `replica_seeds` is empty.")
    early_stopping_patience: int = Field(5, ge=0, le=10_000, description="Epochs without improvement before stopping.")
    early_stopping_min_delta: float = Field(0.0, ge=0, description="Smallest val-loss drop that counts as improvement.")
    gradient_clip_val: float = Field(0.1, ge=0, description="Gradient norm clip (0 disables clipping).")
    loss: Literal["rmse", "mae", "quantile"] = Field(
        "rmse", description="Training loss; metrics are RMSE/MAE either way."
    )
    limit_train_batches: int | None = Field(None, ge=1, description="Batches per epoch (null: the whole train window).")
    reduce_on_plateau_patience: int = Field(4, ge=1, le=10_000, description="Epochs before the LR is reduced.")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay.")


TRAINING_KEYS: tuple[str, ...] = tuple(TrainingConfig.model_fields)


class Window(StrictModel):
    """Inclusive train/val/test date windows; train < val < test, no overlap."""

    train_start: DateStr
    train_end: DateStr
    val_start: DateStr
    val_end: DateStr
    test_start: DateStr
    test_end: DateStr

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        d = {k: parse_date(getattr(self, k)) for k in _WINDOW_KEYS}
        problems = []
        for part in ("train", "val", "test"):
            if d[f"{part}_start"] > d[f"{part}_end"]:
                problems.append(
                    f"{part}_start {getattr(self, part + '_start')} is after {part}_end {getattr(self, part + '_end')}"
                )
        if d["train_end"] >= d["val_start"]:
            problems.append(f"train window (to {self.train_end}) must end before val_start {self.val_start}")
        if d["val_end"] >= d["test_start"]:
            problems.append(f"val window (to {self.val_end}) must end before test_start {self.test_start}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def window_dict(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in _WINDOW_KEYS}


_WINDOW_KEYS = ("train_start", "train_end", "val_start", "val_end", "test_start", "test_end")
WINDOW_KEYS = _WINDOW_KEYS


def clipped_window(fold: Window, name: str, first: date, last: date) -> dict[str, Any]:
    """`fold`'s windows cut to the dataset's dates `first..last`: every start is at least
    `first`, every end at most `last` (YYYYMMDD); `clipped` lists the keys that changed."""
    out: dict[str, Any] = {"name": name}
    clipped = []
    for key in _WINDOW_KEYS:
        day = parse_date(getattr(fold, key))
        cut = max(day, first) if key.endswith("_start") else min(day, last)
        out[key] = cut.strftime("%Y%m%d")
        if cut != day:
            clipped.append(key)
    out["clipped"] = clipped
    return out


class SplitConfig(Window):
    """The single split used when walk-forward is off."""


# Generous bounds that keep date arithmetic inside the calendar checks: a window of a thousand
# years, an embargo of forty years of trading days.
MAX_WINDOW_YEARS = 1000
MAX_EMBARGO_DAYS = 10_000


def _is_zero(value: int) -> bool:
    return value == 0


class Fold(Window):
    """One walk-forward fold.

    Its embargo is one value for every fold of a config (`walk_forward.embargo_days`), copied
    onto each fold when the block is validated, so that everything that reads or serialises a
    fold (`core.dataset_folds.fold_rows`, run keys, a stored config) carries it. Written only when set:
    a fold without one dumps the keys it always did."""

    name: SafeName
    embargo_days: int = Field(
        0,
        ge=0,
        le=MAX_EMBARGO_DAYS,
        exclude_if=_is_zero,
        description="The fold's embargo, as walk_forward.embargo_days sets it (given here, it must equal that).",
    )

    def with_embargo(self, rows: int) -> Fold:
        """A copy of this fold with an embargo of `rows` rows."""
        return self.model_copy(update={"embargo_days": rows})


class FoldGenerator(StrictModel):
    """`walk_forward.generate`: walk-forward folds from a pattern (docs/config.md, "Generated
    folds"). Expanded once, on validation, into the explicit `walk_forward.folds` that a stored
    config (`analysis_config.json`) holds.

    `end` is declared last so that its check, which counts the folds, sees every other key."""

    start: DateStr = Field(description="First day of the first fold's train window (YYYYMMDD).")
    train_days: int | None = Field(
        None, ge=1, le=MAX_WINDOW_YEARS * 366, description="Train window in calendar days (instead of train_years)."
    )
    train_years: int | None = Field(
        None,
        ge=1,
        le=MAX_WINDOW_YEARS,
        validate_default=True,
        description="Train window in calendar years (or give train_days).",
    )
    val_years: int = Field(ge=1, le=MAX_WINDOW_YEARS, description="Validation window in calendar years.")
    test_years: int = Field(ge=1, le=MAX_WINDOW_YEARS, description="Test window in calendar years.")
    step_years: int | None = Field(
        None, ge=1, le=MAX_WINDOW_YEARS, description="Years every window moves from one fold to the next (test_years)."
    )
    expanding: bool = Field(False, description="Keep every fold's train_start at `start` (the train window grows).")
    embargo_days: int = Field(
        0, ge=0, le=MAX_EMBARGO_DAYS, description="Copied into walk_forward.embargo_days (dataset rows)."
    )
    end: DateStr = Field(description="Last day a test window may reach: the last fold's test window ends by it.")

    @field_validator("train_years")
    @classmethod
    def _one_train_size(cls, value: int | None, info: ValidationInfo) -> int | None:
        if "train_days" not in info.data:
            return value  # train_days is invalid and reported on its own
        days = info.data["train_days"]
        if value is None and days is None:
            raise ValueError("required key is missing (give train_years, or train_days for a train window in days)")
        if value is not None and days is not None:
            raise ValueError(f"give train_years or train_days, not both (got {value} years and {days} days)")
        return value

    @field_validator("end")
    @classmethod
    def _folds_fit(cls, value: str, info: ValidationInfo) -> str:
        if "start" in info.data and parse_date(info.data["start"]) >= parse_date(value):
            raise ValueError(f"end {value} must be after start {info.data['start']}")
        needed = ("start", "train_days", "train_years", "val_years", "test_years", "step_years", "expanding")
        if any(key not in info.data for key in needed) or (
            info.data["train_years"] is None and info.data["train_days"] is None
        ):
            return value  # a size is invalid or missing, and reported on its own
        pattern = _pattern({**info.data, "end": value})
        count = fold_count(pattern)  # arithmetic: no fold is built before the limit is checked
        if count > MAX_LIST:
            raise ValueError(
                f"generates {count:,} folds, over the limit of {MAX_LIST:,} (a larger step_years or a later start "
                "gives fewer)"
            )
        if count == 0:
            reach = first_test_end(pattern)
            when = "past the calendar" if reach is None else f"on {reach:%Y%m%d}"
            raise ValueError(f"generates no fold: the first fold's test window ends {when}, after end {value}")
        return value

    def pattern(self) -> FoldPattern:
        return _pattern(self.model_dump())

    def folds(self) -> list[Fold]:
        """The explicit folds this pattern stands for, first to last."""
        return [Fold.model_validate({"name": w.name, **w.window_dict()}) for w in generate_windows(self.pattern())]


def _pattern(data: dict[str, Any]) -> FoldPattern:
    return FoldPattern(
        start=parse_date(data["start"]),
        end=parse_date(data["end"]),
        train_years=data["train_years"],
        train_days=data["train_days"],
        val_years=data["val_years"],
        test_years=data["test_years"],
        step_years=data["step_years"] or data["test_years"],
        expanding=data["expanding"],
    )


class WalkForward(StrictModel):
    enabled: bool = False
    # Declared before `folds` so the folds' check sees it; written only when set, so a config
    # without an embargo stores the same bytes as before the key existed.
    embargo_days: int = Field(
        0,
        ge=0,
        le=MAX_EMBARGO_DAYS,
        exclude_if=_is_zero,
        description="Dataset rows left out of every fold at the end of its train window and at the end of its "
        "val window, so no training or validation target reaches into the next window; the test window stays whole.",
    )
    folds: list[Fold] = Field(default_factory=list, max_length=MAX_LIST)
    # Off by default: a window outside the dataset's dates is refused, never cut silently. A
    # config stored before this key existed reads as false.
    clip_to_data: bool = Field(
        False,
        description="Allow windows that start before the dataset's first date or end after its last; they are cut "
        "to the data and the cut windows are reported (`effective_folds`).",
    )
    # Never written back (`exclude`): once validated, the block holds the folds it generated, and a
    # stored config lists them explicitly, so reading it again gives the same folds.
    generate: FoldGenerator | None = Field(
        None,
        exclude=True,
        description="Generate the folds from a pattern instead of listing them (docs/config.md, 'Generated folds'); "
        "not together with `folds`.",
    )

    @field_validator("embargo_days")
    @classmethod
    def _walk_forward_only(cls, value: int, info: ValidationInfo) -> int:
        if value and info.data.get("enabled") is False:
            raise ValueError("walk_forward.enabled is false: an embargo applies to walk-forward folds only")
        return value

    @field_validator("folds")
    @classmethod
    def _folds_consistent(cls, folds: list[Fold], info: ValidationInfo) -> list[Fold]:
        dupes = sorted(duplicates(f.name for f in folds))
        if dupes:
            raise ValueError(f"duplicate fold names: {dupes}")
        embargo = info.data.get("embargo_days")
        if embargo is None:
            return folds  # embargo_days is invalid and reported on its own
        for i, fold in enumerate(folds):
            if "embargo_days" in fold.model_fields_set and fold.embargo_days != embargo:
                raise ValueError(
                    f"folds[{i}] ({fold.name}) has embargo_days {fold.embargo_days} but walk_forward.embargo_days is "
                    f"{embargo}: one embargo serves every fold, set walk_forward.embargo_days"
                )
        return folds

    @field_validator("generate")
    @classmethod
    def _generate_alone(cls, value: FoldGenerator | None, info: ValidationInfo) -> FoldGenerator | None:
        if value is None:
            return value
        if info.data.get("folds"):
            raise ValueError(
                "give walk_forward.folds or walk_forward.generate, not both (a stored config lists the generated "
                "folds: drop them to generate again)"
            )
        if info.data.get("enabled") is False:
            raise ValueError("walk_forward.enabled is false: set it to true to use generated folds")
        outer = info.data.get("embargo_days")
        if outer and value.embargo_days and outer != value.embargo_days:
            raise ValueError(
                f"embargo_days {value.embargo_days} differs from walk_forward.embargo_days ({outer}): give it once"
            )
        return value

    @model_validator(mode="after")
    def _expand(self) -> WalkForward:
        # The block is frozen; its folds are settled here, once, before anyone reads them.
        if self.generate is not None:
            object.__setattr__(self, "folds", self.generate.folds())
            object.__setattr__(self, "embargo_days", self.generate.embargo_days or self.embargo_days)
        if self.enabled and not self.folds:
            raise ValueError("walk_forward.enabled is true but no folds are given")
        if any(fold.embargo_days != self.embargo_days for fold in self.folds):
            object.__setattr__(self, "folds", [fold.with_embargo(self.embargo_days) for fold in self.folds])
        return self


class CandidateConfig(StrictModel):
    """An explicit candidate: overrides of `training_config` under a name (e.g. an Optuna top-k entry)."""

    name: SafeName
    params: dict[str, Any]
    # Where the candidate came from (e.g. an Optuna trial); kept, never used for training.
    source: dict[str, Any] | None = None


def _feature_spec(value: Any) -> Any:
    """`features` is a feature set's name or a list of column names; checked here as a whole,
    so a wrong type is one problem on `features`, not one per shape pydantic could try."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise ValueError(f"must be a feature set name or a list of column names, not {type(value).__name__}")
    if len(value) > MAX_LIST:
        raise ValueError(f"lists at most {MAX_LIST} columns, got {len(value)}")
    bad = [i for i, item in enumerate(value) if not isinstance(item, str)]
    if bad:
        raise ValueError(f"column names are strings; item {bad[0]} is {value[bad[0]]!r}")
    return value


FeatureSpec = Annotated[str | list[str], BeforeValidator(_feature_spec)]


class ExperimentConfig(StrictModel):
    """What a sweep and an HPO study share: where to write, which data, folds, seeds, base config."""

    output_subdir: SafeName
    features: FeatureSpec = "BASELINE_FEATURES"
    replica_seeds: list[int] = Field(default_factory=list, max_length=MAX_LIST)
    walk_forward: WalkForward = Field(default_factory=WalkForward)
    training_config: TrainingConfig = Field(default_factory=TrainingConfig)
    split_config: SplitConfig | None = None

    @field_validator("features")
    @classmethod
    def _features(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            if value not in FEATURE_SETS:
                raise ValueError(f"unknown feature set {value!r}; registered sets: {sorted(FEATURE_SETS)}")
            return value
        if not value:
            raise ValueError("an explicit feature list must not be empty")
        dupes = sorted(duplicates(value))
        if dupes:
            raise ValueError(f"duplicate feature columns: {dupes}")
        reserved = {"date", "asset", "target", "time_idx"} & set(value)
        if reserved:
            raise ValueError(f"{sorted(reserved)} are not features (they are dataset keys)")
        return value

    @field_validator("replica_seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        # Strict ints only (no bools, no floats), so equal values are equal seeds.
        dupes = sorted(duplicates(value))
        if dupes:
            raise ValueError(f"duplicate seeds: {dupes}")
        bad = [s for s in value if s < 0 or s > 2**32 - 1]
        if bad:
            raise ValueError(f"seeds must be between 0 and 2**32-1, got {bad}")
        return value

    @model_validator(mode="after")
    def _split_present(self) -> ExperimentConfig:
        if not self.walk_forward.enabled and self.split_config is None:
            raise ValueError(SPLIT_REQUIRED)
        return self

    @property
    def seeds(self) -> list[int]:
        """The effective replica seeds: `replica_seeds`, or `[training_config.seed]`."""
        return list(self.replica_seeds) or [self.training_config.seed]

    @property
    def folds(self) -> list[Fold]:
        """The effective folds: walk-forward folds, or one `default` fold from `split_config`."""
        if self.walk_forward.enabled:
            return list(self.walk_forward.folds)
        assert self.split_config is not None
        return [Fold.model_validate({"name": "default", **self.split_config.window_dict()})]

    def to_json_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data, defaults filled in (the effective config)."""
        return self.model_dump(mode="json")


class StatsConfig(StrictModel):
    """How the reports judge differences (docs/reports.md). It changes no run, so a merge and
    `tftsweep regenerate --alpha` may change it."""

    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of every verdict.")


def rankable_metric(column: str) -> str:
    """`column` if configs can be ranked (or a study steered) by it: a validation column of a
    registered metric with a direction (`val_rmse`, `val_dir_acc`, ...).

    Raises:
        ValueError: naming the column and what would do.
    """
    from core.metrics import describe_column

    try:
        split, metric, _ref = describe_column(column)
    except KeyError:
        raise ValueError(f"{column!r} is not a registered metric column (val_rmse, val_dir_acc, ...)") from None
    if split != "val" or metric.better is None:
        raise ValueError(f"{column!r} cannot rank configs: choose a val_ metric with a direction")
    return column


def _builtin_references() -> list[str]:
    from core.references import REFERENCES

    return list(REFERENCES)


# Work of one model-confidence-set or SPA computation grows with reps x configs^2 x days;
# these bound it (rule: no request costs unbounded time).
MAX_SELECTION_REPS = 10_000


class SelectionConfig(StrictModel):
    """How the whole sweep's configs are compared on their daily validation losses
    (docs/reports.md, "Selection"): the model confidence set and the SPA test, both from
    `arch.bootstrap` with the stationary bootstrap. It changes no run, so it merges freely."""

    level: float = Field(
        0.90, gt=0, lt=1, description="Confidence of the model confidence set (arch's `size` is 1 - level)."
    )
    reps: int = Field(
        1000, ge=100, le=MAX_SELECTION_REPS, description="Bootstrap replications of the MCS and the SPA test."
    )
    block_size: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="Mean block length of the stationary bootstrap, in days; null: ceil(T ** (1/3)) for T days.",
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of the bootstrap (same inputs, same p-values).")


class EvaluationConfig(StrictModel):
    """What the reports measure and rank by (docs/reports.md, "Metrics"). It changes no run:
    every metric is computed from the stored predictions, so a merge and `tftsweep regenerate`
    may change it."""

    rank_by: str = Field(
        "val_rmse",
        description="The validation metric configs are ranked by (`val_{metric}`, a registered metric with a "
        "direction): robust score mean + std when lower is better, mean - std when higher is better.",
    )
    references: list[str] = Field(
        default_factory=_builtin_references,
        max_length=100,
        description="Reference forecasts every run is compared with (default: every registered one; `naive` "
        "is always included, first).",
    )
    costs_bps: float = Field(
        0.0, ge=0, le=10_000, description="Cost of one unit of position change in the sign strategy, in basis points."
    )
    selection: SelectionConfig = Field(
        default_factory=SelectionConfig,
        description="The model confidence set and the SPA test over the sweep's configs (docs/reports.md).",
    )

    @field_validator("rank_by")
    @classmethod
    def _rank_by(cls, value: str) -> str:
        return rankable_metric(value)

    @field_validator("references")
    @classmethod
    def _references(cls, value: list[str]) -> list[str]:
        from core.references import REFERENCES

        unknown = [name for name in value if name not in REFERENCES]
        if unknown:
            raise ValueError(f"unknown reference(s) {', '.join(unknown)}; registered: {', '.join(REFERENCES)}")
        if twice := duplicates(value):
            raise ValueError(f"listed twice: {', '.join(twice)}")
        # `naive` always: the seed's columns (`*_naive_rmse`, `test_skill`, `test_dm_*`) are its.
        return ["naive", *(name for name in value if name != "naive")]

    @model_validator(mode="after")
    def _rank_by_reference(self) -> EvaluationConfig:
        from core.metrics import describe_column

        _split, _metric, ref = describe_column(self.rank_by)
        if ref is not None and ref not in self.references:
            raise ValueError(f"rank_by {self.rank_by!r} needs reference {ref!r} in evaluation.references")
        return self


class RacingConfig(StrictModel):
    """Racing (docs/reports.md, "Racing"): a variant shown worse than the baseline on
    `evaluation.rank_by` has its remaining runs skipped. It changes no run's result, only
    which runs are trained, so it merges freely; a merge with it off resumes skipped runs."""

    enabled: bool = Field(False, description="Race the variants against the baseline while the sweep runs.")
    alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="The chance, at most, that racing drops any variant no worse than the baseline (the error "
        "rate over every look and variant: Bonferroni over looks, Holm over variants).",
    )
    min_pairs: int = Field(
        4,
        ge=2,
        le=MAX_LIST,
        description="The first candidate look: a variant is tested after min_pairs, 2 x min_pairs, 4 x min_pairs, "
        "... complete (fold, seed) blocks with the baseline, at those of them where the test can drop it at all "
        '(docs/reports.md, "Racing").',
    )


class SweepConfig(ExperimentConfig):
    """A sweep: the baseline `training_config`, what to vary, over which folds and seeds."""

    param_ranges: dict[str, Annotated[list[Any], Field(max_length=MAX_LIST)]] = Field(default_factory=dict)
    configs: list[CandidateConfig] = Field(default_factory=list, max_length=MAX_LIST)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    reuse_runs: bool = Field(
        True,
        description="Record a planned run from a succeeded run with the same cache key (same dataset, fold "
        "windows, features, training config, seed and trainer) in any sweep, instead of training it again.",
    )
    racing: RacingConfig = Field(default_factory=RacingConfig)


def training_with(base: TrainingConfig, overrides: dict[str, Any]) -> TrainingConfig:
    """`base` with `overrides` applied and validated as a whole."""
    return TrainingConfig.model_validate({**base.model_dump(), **overrides})


def check_training_value(key: str, value: Any) -> tuple[Any, str | None]:
    """`value` as training_config key `key` takes it (normalised), or None and why not."""
    try:
        return getattr(TrainingConfig.model_validate({key: value}), key), None
    except ValidationError as exc:
        return None, first_message(exc)


def check_training_key(key: str, where: str, what: str) -> FieldError | None:
    """Why `key` cannot be varied (it is not a training_config key, or it is the seed), or None."""
    if key not in TRAINING_KEYS:
        return FieldError(where, f"{key!r} is not a training_config key; known keys: {', '.join(TRAINING_KEYS)}")
    if key == "seed":
        return FieldError(where, f"seed cannot be {what}: replica_seeds sets the seed of every run")
    return None


def _check_param_ranges(data: dict[str, Any]) -> list[FieldError]:
    ranges = data.get("param_ranges")
    if not isinstance(ranges, dict):
        return []  # the schema reports the wrong type
    errors: list[FieldError] = []
    for key, values in ranges.items():
        where = f"param_ranges.{path_key(key)}"
        problem = check_training_key(key, where, "swept")
        if problem is not None:
            errors.append(problem)
            continue
        if not isinstance(values, list) or len(values) > MAX_LIST:
            continue  # the schema reports it (a list too long is refused before its items are read)
        if not values:
            errors.append(FieldError(where, "the list of values is empty"))
            continue
        normalised: list[Any] = []
        for i, value in enumerate(values):
            if _is_non_finite(value):
                continue  # reported by `non_finite`
            taken, why = check_training_value(key, value)
            if why is None:
                normalised.append(taken)
            else:
                errors.append(FieldError(f"{where}[{i}]", why))
        # One key's normalised values share a type (1 and 1.0 cannot both be there), so
        # equal values are the same setting; spelled as JSON to sort None among numbers.
        dupes = sorted(json.dumps(v) for v in duplicates(normalised))
        if dupes:
            errors.append(FieldError(where, f"duplicate values: {', '.join(dupes)}"))
    return errors


def _check_candidates(data: dict[str, Any]) -> list[FieldError]:
    candidates = data.get("configs")
    if not isinstance(candidates, list) or len(candidates) > MAX_LIST:
        return []  # the schema reports the wrong type or the length
    errors: list[FieldError] = []
    names: set[str] = set()
    for i, cand in enumerate(candidates):
        if not isinstance(cand, dict):
            continue
        where = f"configs[{i}]"
        name = cand.get("name")
        if isinstance(name, str):
            if name == "baseline" or name in names:
                errors.append(FieldError(f"{where}.name", f"{name!r} is already used by another config"))
            names.add(name)
        params = cand.get("params")
        if not isinstance(params, dict):
            continue
        unknown = [k for k in params if k not in TRAINING_KEYS]
        if unknown:
            errors.append(FieldError(f"{where}.params", f"{unknown} are not training_config keys"))
            continue
        if "seed" in params:
            errors.append(FieldError(f"{where}.params.seed", "seed cannot be set per config: replica_seeds sets it"))
            continue
        if any(_is_non_finite(v) for v in params.values()):
            continue  # reported by `non_finite`; the other keys are checked once it is fixed
        try:
            TrainingConfig.model_validate(params)
        except ValidationError as exc:
            errors.extend(field_errors(exc, prefix=f"{where}.params"))
    return errors


def _is_non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def non_finite(data: Any) -> list[FieldError]:
    """Every NaN or infinite number anywhere in parsed JSON, by its path, in document order.

    Python's JSON reader (the API's and the CLI's) takes `NaN`, `Infinity` and an
    overflowing literal such as `1e309` (read as inf); no config means any of them, and
    free-form parts (`configs[].source`, categorical `choices`) have no schema to refuse
    them, so the raw data is checked as a whole: serialised once, and walked (iteratively,
    the depth is the body's, not Python's stack) only to find the paths of what it holds.
    """
    if not isinstance(data, dict | list):
        return [FieldError("(root)", f"must be a finite number (got {data!r})")] if _is_non_finite(data) else []
    try:
        json.dumps(data, allow_nan=False)  # C speed: the common case, all finite, costs no walk
        return []
    except (ValueError, TypeError, RecursionError):
        pass  # a non-finite number somewhere (or data not from JSON): find where
    found: list[tuple[Any, float]] = []
    # Depth first in document order: a stack of (the container's items left, where it is);
    # `where` links back to the parent's, (parent_where, key), so no path is copied.
    stack: list[tuple[Iterator[tuple[Any, Any]], Any]] = [(_items(data), None)]
    while stack:
        items, where = stack[-1]
        for key, value in items:
            if isinstance(value, dict | list):
                stack.append((_items(value), (where, key)))
                break
            if isinstance(value, float) and not math.isfinite(value):
                found.append(((where, key), value))
        else:
            stack.pop()
    errors = []
    for where, value in found:
        parts: list[int | str] = []
        while where is not None:
            where, key = where
            parts.append(key if isinstance(key, int) else str(key))
        errors.append(FieldError(loc_path(tuple(reversed(parts))), f"must be a finite number (got {value!r})"))
    return errors


def _items(container: Any) -> Iterator[tuple[Any, Any]]:
    return iter(container.items()) if isinstance(container, dict) else enumerate(container)


def validate_config(model: type[M], data: Any, checks: Callable[[dict[str, Any]], list[FieldError]]) -> M:
    """Validate parsed JSON as `model` and run the cross-field `checks` on the same data.

    The checks read the raw data, so they run even when the schema finds problems: every
    entry point (API, `plan`, `sweep`, `hpo`) reports the same complete list (its first
    `MAX_ERRORS` problems). A non-finite number is reported once, as such, wherever it is.

    Raises:
        InvalidSweepConfig: with one field-named error per problem.
    """
    if not isinstance(data, dict):
        raise InvalidSweepConfig([FieldError("(root)", f"expected a JSON object, got {type(data).__name__}")])
    errors = non_finite(data)
    seen = set(errors)
    reported = {e.field for e in errors}
    config = None
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        schema_errors = field_errors(exc)
    else:
        schema_errors = []
    required = _check_split_required(data) if issubclass(model, ExperimentConfig) else []
    if required:
        # The schema says it only once every other field is valid, and at the root: the raw
        # check says it beside the other missing keys, at its own path.
        schema_errors = [e for e in schema_errors if e.message != SPLIT_REQUIRED]
    for error in schema_errors + required + checks(data):
        # The schema's own word on a non-finite float ("finite number") would say it twice.
        if error not in seen and error.field not in reported:
            seen.add(error)
            errors.append(error)
    if errors or config is None:
        raise InvalidSweepConfig(_at_most(errors, MAX_ERRORS))
    return config


def _check_split_required(data: dict[str, Any]) -> list[FieldError]:
    """`split_config` missing while walk-forward is off, found from the raw data: the schema's
    own check runs only when every field is valid, so `{}` would name `output_subdir` alone."""
    walk = data.get("walk_forward")
    enabled = isinstance(walk, dict) and walk.get("enabled") is True
    if enabled or "split_config" in data:
        return []
    return [
        FieldError("split_config", "required key is missing (walk_forward is not enabled, so the single split is used)")
    ]


def at_most(errors: list[FieldError], limit: int = MAX_ERRORS) -> list[FieldError]:
    """`errors` cut to `limit`, the rest counted in one last entry (field `(more)`)."""
    return _at_most(errors, limit)


def _at_most(errors: list[FieldError], limit: int) -> list[FieldError]:
    if len(errors) <= limit:
        return errors
    return [*errors[:limit], FieldError("(more)", f"{len(errors) - limit} more problems are not listed")]


def validate_sweep_config(data: Any) -> SweepConfig:
    """Validate parsed JSON as a sweep config (`InvalidSweepConfig` lists every problem)."""
    config = validate_config(SweepConfig, data, lambda raw: _check_param_ranges(raw) + _check_candidates(raw))
    if config.racing.enabled:  # a sweep that asks to race must be able to drop something
        from core.racing import never_drops

        blocks = len(config.folds) * len(config.seeds)
        if (why := never_drops(blocks, config.racing.min_pairs, config.racing.alpha)) is not None:
            raise InvalidSweepConfig([FieldError("racing.enabled", why)])
    return config


def parse_json_text(text: str | bytes) -> Any:
    """Parse JSON, turning a syntax error into a field error with line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSweepConfig(
            [FieldError("(json)", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")]
        ) from None
    except UnicodeDecodeError as exc:
        raise InvalidSweepConfig([FieldError("(json)", f"not UTF-8 text: {exc.reason}")]) from None
    except (ValueError, RecursionError) as exc:  # an integer of over 4300 digits; nesting deeper than Python's stack
        raise InvalidSweepConfig([FieldError("(json)", f"invalid JSON: {exc}")]) from None


def load_sweep_config(text: str | bytes) -> SweepConfig:
    """Parse and validate a sweep config from JSON text."""
    return validate_sweep_config(parse_json_text(text))


def path_key(key: object) -> str:
    """A key as an error's path spells it. A string UTF-8 cannot carry (a lone surrogate,
    which JSON's `\\ud800` escape can make) is backslash-escaped: an answer naming it
    could not be sent otherwise."""
    text = str(key)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def loc_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """A pydantic error location as a dotted path: `walk_forward.folds[0].name`. (The schema
    has no unions that could fail on their own, so every part is a key or an index.)"""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{path_key(part)}" if path else path_key(part)
    return path or "(root)"


def _clean_message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key (not part of the schema)"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if "input" in err and kind not in ("value_error",) and not isinstance(err["input"], (dict, list)):
        msg += f" (got {err['input']!r})"
    return msg


def field_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    seen: set[tuple[str, str]] = set()
    errors: list[FieldError] = []
    for err in exc.errors(include_url=False):  # no per-error URL: a 1 MiB body can hold 100k errors
        item = (loc_path(tuple(err["loc"]), prefix), _clean_message(err))
        if item not in seen:
            seen.add(item)
            errors.append(FieldError(*item))
    return errors


def first_message(exc: ValidationError) -> str:
    return _clean_message(exc.errors(include_url=False)[0])
