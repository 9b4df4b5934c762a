"""A run as a trainer sees it: the spec it trains from and the outcome it hands back.

Both are picklable, so a spec crosses into a worker process (Celery's pool, the CLI's process
pool) and an outcome comes back without touching the database. The spec carries validated
models (its fold, its training config) and the sweep's features as resolved at planning: a
trainer validates and resolves nothing again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.config import EvaluationConfig, Fold, TrainingConfig
from core.paths import model_version
from core.run_cache import TrainerIdentity


@dataclass(frozen=True)
class RunField:
    """One column of a run record: a row of `sweep_runs.csv`/`.json`, of the database export
    and of the API's runs. Every list of run columns is derived from `RUN_FIELDS`."""

    name: str
    kind: type  # int, float, str, or object (any JSON value)
    description: str
    nullable: bool = True
    metric: bool = False  # measured by training and recorded with the run's outcome

    @property
    def annotation(self) -> Any:
        """The field's Python type for an API model."""
        base: Any = Any if self.kind is object else self.kind
        return base | None if self.nullable and base is not Any else base


RUN_FIELDS: tuple[RunField, ...] = (
    RunField("run_id", int, "The run's id in the database.", nullable=False),
    RunField(
        "run_key",
        str,
        "Hash of the run's canonical config, fold and seed: the same run is never trained twice.",
        nullable=False,
    ),
    RunField(
        "config_id", str, "`baseline`, `{param}={value}` (an OFAT variant) or a candidate's name.", nullable=False
    ),
    RunField("param_name", str, "The training_config key the variant changes (null for the baseline and candidates)."),
    RunField("param_value", object, "The variant's value of that key."),
    RunField("fold", str, "Walk-forward fold name (`default` without walk-forward).", nullable=False),
    RunField("seed", int, "Replica seed.", nullable=False),
    RunField("status", str, "queued, running, succeeded, failed, cancelled or skipped (racing).", nullable=False),
    RunField("val_rmse", float, "RMSE of the predictions over the validation window.", metric=True),
    RunField("test_rmse", float, "RMSE over the test window.", metric=True),
    RunField("val_mae", float, "MAE over the validation window.", metric=True),
    RunField("test_mae", float, "MAE over the test window.", metric=True),
    RunField(
        "val_naive_rmse", float, "RMSE of the naive (zero-return) forecast over the validation window.", metric=True
    ),
    RunField("test_naive_rmse", float, "RMSE of the naive forecast over the test window.", metric=True),
    RunField("best_epoch", int, "Epoch with the lowest validation loss (its weights are kept).", metric=True),
    RunField("epochs_trained", int, "Epochs run before early stopping or max_epochs.", metric=True),
    RunField("train_seconds", float, "Wall time of training.", metric=True),
    RunField("model_version", str, "The run's model version folder under `folds/{fold}/models/`."),
    RunField("error", str, "Why the run failed or was cancelled (one line)."),
    RunField("attempts", int, "Claims of the run by a worker (a lease that expired counts).", nullable=False),
    RunField("started_at", str, "When its last attempt started (ISO 8601, UTC)."),
    RunField("finished_at", str, "When it finished (ISO 8601, UTC)."),
    RunField(
        "test_skill", float, "1 - test_rmse / test_naive_rmse: above 0, better than the naive forecast.", metric=True
    ),
    RunField(
        "test_dm_stat",
        float,
        "Diebold-Mariano statistic (HLN corrected) of the model against the naive forecast on the test window's "
        "first-horizon rows, squared-error loss: negative means smaller errors.",
        metric=True,
    ),
    RunField("test_dm_pvalue", float, "Its two-sided p-value (t distribution, n-1 degrees of freedom).", metric=True),
    RunField(
        "cache_key",
        str,
        "The run cache's key (core.run_cache): hash of the dataset, fold windows, features, training config, "
        "seed and trainer the run was trained (or looked up) with.",
    ),
    RunField(
        "cached_from",
        str,
        "For a run recorded from the run cache instead of trained: the source run, `{sweep id}/{run_key}`.",
    ),
    RunField("skip_reason", str, "Why a `skipped` run was not trained (raced out: after how many pairs, p-value)."),
)
RUN_COLUMNS: tuple[str, ...] = tuple(f.name for f in RUN_FIELDS)
# What an outcome records (the database's metric columns).
METRIC_COLUMNS: tuple[str, ...] = tuple(f.name for f in RUN_FIELDS if f.metric)
# The columns that hold floats (and so may hold NaN).
FLOAT_COLUMNS: tuple[str, ...] = tuple(f.name for f in RUN_FIELDS if f.kind is float)
INT_COLUMNS: tuple[str, ...] = tuple(f.name for f in RUN_FIELDS if f.kind is int)


# Kept with a record's extra scores: what they were computed with (`core.rescore.scoring_key`)
# and from which file; neither is a column of the files.
SCORED_WITH = "_scored_with"
SCORED_FROM = "_scored_from"


def extra_scores(metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """The registered metric columns (`core.metrics`) of a record beyond the seed's run fields,
    and the scoring marks: what the database keeps in `runs.scores_json` and the files add
    after the seed's columns."""
    from core.metrics import describe_column

    out: dict[str, Any] = {}
    for key, value in (metrics or {}).items():
        if key in (SCORED_WITH, SCORED_FROM):
            out[key] = value
            continue
        if key in RUN_COLUMNS:
            continue
        try:
            describe_column(key)
        except KeyError:
            continue
        # NaN is JSON's null here: a metric that is undefined on a run.
        out[key] = None if isinstance(value, float) and not math.isfinite(value) else value
    return out


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to train a run, without touching the database."""

    run_id: int
    run_key: str
    asset: str
    config_id: str
    fold: Fold
    seed: int
    training: TrainingConfig
    features: list[str]  # resolved once, when the sweep was planned
    data_root: str
    sweep_dir: str
    # sha256 of the dataset file the sweep recorded; a worker that finds another file fails the run.
    dataset_sha256: str | None = None
    # What the run is scored with (references, costs): the sweep's `evaluation` block.
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    # The sweep's `reuse_runs`: whether a run with the same cache key may stand in for training.
    reuse: bool = True
    # The run cache's key (core.run_cache), set by the pipeline before the trainer is called
    # (it depends on the trainer: precision, device); the trainer writes it into `run.json`.
    cache_key: str | None = None

    @property
    def version(self) -> str:
        return model_version(self.config_id, self.seed)

    @property
    def label(self) -> str:
        """How progress lines and logs name the run: config, fold and seed."""
        return f"run {self.run_id} ({self.config_id}, fold {self.fold.name}, seed {self.seed})"


@dataclass
class RunOutcome:
    """What training a run gave: metrics and a model version, or an error."""

    run_id: int
    metrics: dict[str, Any] | None = None
    model_version: str | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # The run cache: the key it was trained with, and the run it was recorded from instead.
    cache_key: str | None = None
    cached_from: str | None = None


class Trainer(Protocol):
    """Trains one run. The real one is `worker.trainer.train_tft`; tests pass fakes.

    `stop_requested` is polled during training (a cancel, a lost lease, a shutdown).
    Failures are returned as the outcome's `error`, never raised. A trainer that says who it
    is (an `identity()` attribute returning a `core.run_cache.TrainerIdentity`) takes part in
    the run cache; one that does not is never cached.
    """

    def __call__(self, spec: RunSpec, stop_requested: Callable[[], bool] | None = None) -> RunOutcome: ...


def trainer_identity_of(trainer: Trainer) -> TrainerIdentity | None:
    """What the trainer says of itself for the run cache (`identity()`), or None."""
    identity = getattr(trainer, "identity", None)
    return identity() if callable(identity) else None


RUN_FILE = "run.json"


def run_file(spec: RunSpec, cached_from: str | None = None) -> dict[str, Any]:
    """A model version's `run.json`: which run it is, its cache key, and for a run recorded
    from the cache, its source; the folder alone then says what the database said."""
    data: dict[str, Any] = {
        "run_id": spec.run_id,
        "run_key": spec.run_key,
        "config_id": spec.config_id,
        "fold": spec.fold.name,
        "seed": spec.seed,
        "asset": spec.asset,
    }
    if spec.cache_key is not None:
        data["cache_key"] = spec.cache_key
    if cached_from is not None:
        data["cached_from"] = cached_from
    return data
