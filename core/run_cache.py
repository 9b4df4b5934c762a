"""The run cache's key: what a run's training depends on, hashed (docs/architecture.md, "Run cache").

A run whose key has a succeeded run anywhere in the database (any sweep, any asset) is
recorded from that run instead of trained. The key covers everything training reads: the
dataset's content (its sha256), the fold's windows, the resolved features, the full effective
training config (defaults filled in) and the seed, and the trainer: its precision, the kind of
device it trains on, `TRAINER_VERSION` and the installed pytorch-forecasting, lightning and
torch. Not in it: the fold's and the config's names (the same windows and values train the
same model under any name) and the `evaluation` block (scores are recomputed from the
predictions, `core.rescore`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from core.config import Fold, TrainingConfig
from core.plan import canonical_json

# Bump whenever what training does with the same inputs changes (the model, the loss, the
# data cut, the predictions written): every cached run of an older version is trained again.
TRAINER_VERSION = 1
# The training libraries whose versions are part of the key.
TRAINING_LIBRARIES = ("pytorch-forecasting", "lightning", "torch")
DEFAULT_PRECISION = "32-true"


@dataclass(frozen=True)
class TrainerIdentity:
    """Who trains a run: what of the trainer a run's result depends on."""

    precision: str
    device: str  # "cpu" or "cuda"
    trainer_version: int = TRAINER_VERSION
    libraries: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "device": self.device,
            "trainer_version": self.trainer_version,
            "libraries": dict(self.libraries),
        }


def library_versions() -> tuple[tuple[str, str], ...]:
    """The installed versions of `TRAINING_LIBRARIES` ("missing" for one not installed)."""
    out = []
    for name in TRAINING_LIBRARIES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "missing"))
    return tuple(out)


def trainer_identity(precision: str | None, device: str) -> TrainerIdentity:
    return TrainerIdentity(precision or DEFAULT_PRECISION, device, TRAINER_VERSION, library_versions())


def fold_windows(fold: Fold) -> dict[str, Any]:
    """What of a fold training reads: its windows and anything else it sets, not its name."""
    data: dict[str, Any] = fold.model_dump(mode="json")
    data.pop("name", None)
    return data


def cache_key(
    *,
    dataset_sha256: str,
    fold: Fold,
    features: list[str],
    training: TrainingConfig,
    seed: int,
    trainer: TrainerIdentity,
) -> str:
    """The run's cache key: sha256 of its inputs and its trainer, in a canonical spelling."""
    params = training.model_dump(mode="json")
    params["seed"] = seed
    payload: Mapping[str, Any] = {
        "dataset_sha256": dataset_sha256,
        "fold": fold_windows(fold),
        "features": list(features),
        "training": params,
        "seed": seed,
        "trainer": trainer.as_dict(),
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()
