"""Train one stored run from a picklable spec: shared by the local process pool and Celery tasks.

Imports of the ML stack happen on first use, inside the worker process, and stay for its
lifetime together with the per-process dataset caches.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import Fold, TrainingConfig
from core.paths import model_version, version_dir


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

    @property
    def version(self) -> str:
        return model_version(self.config_id, self.seed)


@dataclass
class RunOutcome:
    run_id: int
    metrics: dict[str, Any] | None = None
    model_version: str | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


_frames: dict[str, tuple[float, Any]] = {}
_cache: Any = None


def _dataset(spec: RunSpec) -> tuple[str, Any]:
    """The asset's dataset frame, read once per process and re-read only when the file changes."""
    from core.datasets import dataset_path, load_dataset

    path = dataset_path(Path(spec.data_root), spec.asset)
    mtime = path.stat().st_mtime if path.exists() else -1.0
    key = str(path)
    cached = _frames.get(key)
    if cached is None or cached[0] != mtime:
        frame = load_dataset(Path(spec.data_root), spec.asset, spec.features)
        _frames[key] = (mtime, frame)
        cached = _frames[key]
    return f"{key}@{cached[0]}", cached[1]


def execute_run(spec: RunSpec, stop_requested: Callable[[], bool] | None = None) -> RunOutcome:
    """Train `spec` and publish its model version; errors become the outcome's `error`."""
    global _cache
    from core.training import DatasetCache, describe_error, set_torch_threads, train_run

    if _cache is None:
        # First run in this process: fix torch's thread count before any torch work, or
        # every pool process would use all cores and they would fight over them.
        set_torch_threads()
        _cache = DatasetCache()
    outcome = RunOutcome(spec.run_id)
    started = time.perf_counter()
    try:
        frame_id, frame = _dataset(spec)
        fold = Fold.model_validate(spec.fold)
        training = TrainingConfig.model_validate(spec.params)
        before = _cache.build_seconds
        fold_data = _cache.get(frame_id, frame, fold, training, spec.features)
        outcome.timings["dataset_seconds"] = _cache.build_seconds - before
        target = version_dir(Path(spec.sweep_dir), fold.name, spec.config_id, spec.seed)
        result = train_run(
            fold_data,
            training,
            target,
            extra_files={
                "run.json": {
                    "run_id": spec.run_id,
                    "run_key": spec.run_key,
                    "config_id": spec.config_id,
                    "fold": fold.name,
                    "seed": spec.seed,
                    "asset": spec.asset,
                }
            },
            stop_requested=stop_requested,
        )
        outcome.metrics = result.metrics()
        outcome.model_version = spec.version
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # any failure is recorded as the run's error, never crashes the sweep
        outcome.error = describe_error(exc)
    outcome.timings["total_seconds"] = time.perf_counter() - started
    return outcome


def init_worker_process(threads: int) -> None:
    """Process-pool initializer: torch threads for this process, set before any torch op."""
    os.environ["TFTSWEEP_TORCH_THREADS"] = str(threads)
    from core.training import set_torch_threads

    set_torch_threads(threads)
