"""The real trainer (`core.runs.Trainer`): fit one run's Temporal Fusion Transformer from its
spec and write its model version.

Shared by Celery's pool processes and the CLI's process pool.

Imports of the ML stack happen on first use, inside the worker process, and stay for its
lifetime together with the per-process dataset caches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import DatasetError
from core.files import file_sha256
from core.paths import ensure_inside, version_dir
from core.run_cache import TrainerIdentity, trainer_identity
from core.runs import RUN_FILE, RunOutcome, RunSpec, run_file

_frames: dict[str, tuple[float, str, Any]] = {}
_cache: Any = None
# Set once per process by `init_worker_process`, before the first run.
_precision: str | None = None


def _dataset(spec: RunSpec) -> tuple[str, Any]:
    """The asset's dataset frame, read once per process and re-read only when the file changes;
    a file other than the one the sweep recorded (by sha256) fails the run."""
    from core.datasets import dataset_path, load_dataset

    path = dataset_path(Path(spec.data_root), spec.asset)
    mtime = path.stat().st_mtime if path.exists() else -1.0
    key = str(path)
    cached = _frames.get(key)
    if cached is None or cached[0] != mtime:
        frame = load_dataset(Path(spec.data_root), spec.asset, spec.features)
        _frames[key] = (mtime, file_sha256(path), frame)
        cached = _frames[key]
    if spec.dataset_sha256 is not None and cached[1] != spec.dataset_sha256:
        raise DatasetError(
            f"the dataset of {spec.asset} is not the one its sweep recorded (sha256 {spec.dataset_sha256[:12]}... "
            f"recorded, {cached[1][:12]}... found): it was replaced after the sweep started"
        )
    return f"{key}@{cached[0]}", cached[2]


def train_tft(spec: RunSpec, stop_requested: Callable[[], bool] | None = None) -> RunOutcome:
    """Fit the TFT of `spec` and write its model version; errors become the outcome's `error`."""
    global _cache
    from core.training import DatasetCache, describe_error, train_and_evaluate

    if _cache is None:
        _cache = DatasetCache()
    outcome = RunOutcome(spec.run_id)
    started = time.perf_counter()
    try:
        frame_id, frame = _dataset(spec)
        fold, training = spec.fold, spec.training
        before = _cache.build_seconds
        fold_data = _cache.get(frame_id, frame, fold, training, spec.features)
        outcome.timings["dataset_seconds"] = _cache.build_seconds - before
        target = version_dir(Path(spec.sweep_dir), fold.name, spec.config_id, spec.seed)
        ensure_inside(Path(spec.data_root), Path(spec.sweep_dir))
        ensure_inside(Path(spec.sweep_dir), target.parent)
        result = train_and_evaluate(
            fold_data,
            training,
            target,
            extra_files={RUN_FILE: run_file(spec)},
            stop_requested=stop_requested,
            precision=_precision,
            evaluation=spec.evaluation,
        )
        outcome.metrics = result.metrics()
        outcome.timings |= result.timings
        outcome.model_version = spec.version
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # any failure is recorded as the run's error, never crashes the sweep
        outcome.error = describe_error(exc)
    outcome.timings["total_seconds"] = time.perf_counter() - started
    return outcome


def identity() -> TrainerIdentity:
    """Who trains here, for the run cache: this process's precision, its device kind (what
    Lightning's `accelerator="auto"` picks: cuda, mps or cpu), the trainer's version and the
    training libraries' versions."""
    from core.training import device_kind

    return trainer_identity(_precision, device_kind())


# The run cache asks a trainer who it is (core.runs.trainer_identity_of).
train_tft.identity = identity  # type: ignore[attr-defined]


def init_worker_process(threads: int, precision: str | None = None) -> None:
    """Set up a process that trains: torch's threads (before any torch op, or every process
    would use every core and they would fight over them) and the training precision."""
    global _precision
    from core.training import set_torch_threads

    set_torch_threads(threads)
    _precision = precision
