"""A run as a trainer sees it: the spec it trains from and the outcome it hands back.

Both are plain, picklable data, so a spec crosses into a worker process (Celery's pool, the
CLI's process pool) and an outcome comes back without touching the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.paths import model_version


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to train a run, without touching the database."""

    run_id: int
    run_key: str
    asset: str
    config_id: str
    fold: dict[str, str]
    seed: int
    params: dict[str, Any]
    features: list[str]
    data_root: str
    sweep_dir: str
    # sha256 of the dataset file the sweep recorded; a worker that finds another file fails the run.
    dataset_sha256: str | None = None

    @property
    def version(self) -> str:
        return model_version(self.config_id, self.seed)

    @property
    def label(self) -> str:
        """How progress lines and logs name the run: config, fold and seed."""
        return f"run {self.run_id} ({self.config_id}, fold {self.fold['name']}, seed {self.seed})"


@dataclass
class RunOutcome:
    """What training a run gave: metrics and a model version, or an error."""

    run_id: int
    metrics: dict[str, Any] | None = None
    model_version: str | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


class Trainer(Protocol):
    """Trains one run. The real one is `worker.run_executor.execute_run`; tests pass fakes.

    `stop_requested` is polled during training (a cancel, a lost lease, a shutdown).
    Failures are returned as the outcome's `error`, never raised.
    """

    def __call__(self, spec: RunSpec, stop_requested: Callable[[], bool] | None = None) -> RunOutcome: ...
