"""Factories for small, deterministic datasets and tiny (fast) training configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from core.config import Fold, TrainingConfig
from core.datasets import save_dataset, synthetic_dataset, synthetic_ohlcv

ASSET = "SYN"

TINY_TRAINING: dict[str, Any] = {
    "max_encoder_length": 10,
    "max_prediction_length": 1,
    "batch_size": 32,
    "max_epochs": 2,
    "learning_rate": 0.01,
    "hidden_size": 4,
    "attention_head_size": 1,
    "dropout": 0.1,
    "hidden_continuous_size": 2,
    "seed": 42,
    "early_stopping_patience": 2,
    "limit_train_batches": 2,
}


def tiny_fold(name: str = "f1", year: int = 2012) -> dict[str, str]:
    """Train on the two years before `year`, validate on its first half, test on its second."""
    return {
        "name": name,
        "train_start": f"{year - 2}0101",
        "train_end": f"{year - 1}1231",
        "val_start": f"{year}0101",
        "val_end": f"{year}0630",
        "test_start": f"{year}0701",
        "test_end": f"{year}1231",
    }


def tiny_training(**overrides: Any) -> TrainingConfig:
    return TrainingConfig.model_validate({**TINY_TRAINING, **overrides})


def tiny_fold_model(name: str = "f1", year: int = 2012) -> Fold:
    return Fold.model_validate(tiny_fold(name, year))


def make_data_root(root: Path, asset: str = ASSET, n_days: int = 1050, seed: int = 0) -> Path:
    """A data root holding one synthetic dataset (2010-01 to about 2014-01)."""
    save_dataset(root, asset, synthetic_dataset(asset, n_days=n_days, seed=seed), {"kind": "synthetic", "seed": seed})
    return root


def tiny_sweep(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "output_subdir": "tiny",
        "features": ["ret_5", "vol_10", "rsi_14", "day_of_week"],
        "replica_seeds": [1],
        "walk_forward": {"enabled": True, "folds": [tiny_fold("f1", 2012)]},
        "training_config": dict(TINY_TRAINING),
        "param_ranges": {"hidden_size": [4, 6]},
    }
    data.update(overrides)
    return data


def tiny_study(**overrides: Any) -> dict[str, Any]:
    """A 2-fold, 1-seed study with a wide learning-rate range, so hopeless trials get pruned."""
    data = tiny_sweep(
        output_subdir="study",
        replica_seeds=[1],
        walk_forward={"enabled": True, "folds": [tiny_fold("f1", 2012), tiny_fold("f2", 2013)]},
    )
    data.pop("param_ranges")
    data["training_config"] |= {"max_epochs": 3, "early_stopping_patience": 3}
    data["search_space"] = {
        "learning_rate": {"type": "float", "low": 0.0001, "high": 0.5, "log": True},
        "hidden_size": {"type": "int", "low": 4, "high": 8, "step": 2},
    }
    data["n_trials"] = 6
    data["sampler"] = {"type": "random", "seed": 3}
    data["pruner"] = {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 0}
    data["top_k"] = 2
    data.update(overrides)
    return data


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """`frame` as the CSV a user would upload."""
    return frame.to_csv(index=False).encode()


def prices(n: int = 300) -> pd.DataFrame:
    """An OHLCV price table with the column names and ISO dates of a downloaded CSV."""
    frame = synthetic_ohlcv(n, seed=3)
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    return frame.rename(columns=str.capitalize)
