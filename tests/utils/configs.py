"""Plain factory functions for sweep configs used across the test suites."""

from __future__ import annotations

import copy
from typing import Any


def fold(name: str, year: int, train_years: int = 3) -> dict[str, str]:
    """A fold that trains on `train_years` years before `year`, validates on `year`, tests on the next."""
    return {
        "name": name,
        "train_start": f"{year - train_years}0101",
        "train_end": f"{year - 1}1231",
        "val_start": f"{year}0101",
        "val_end": f"{year}1231",
        "test_start": f"{year + 1}0101",
        "test_end": f"{year + 1}1231",
    }


def sweep_dict(**overrides: Any) -> dict[str, Any]:
    """A valid walk-forward sweep config as JSON data, with top-level `overrides` applied."""
    data: dict[str, Any] = {
        "output_subdir": "unit_sweep",
        "features": "BASELINE_FEATURES",
        "replica_seeds": [7, 11],
        "walk_forward": {"enabled": True, "folds": [fold("wf_1", 2015), fold("wf_2", 2016)]},
        "training_config": {
            "max_encoder_length": 30,
            "max_prediction_length": 1,
            "batch_size": 64,
            "max_epochs": 2,
            "learning_rate": 0.001,
            "hidden_size": 16,
            "attention_head_size": 2,
            "dropout": 0.1,
            "hidden_continuous_size": 8,
            "seed": 42,
            "early_stopping_patience": 2,
            "early_stopping_min_delta": 0.0,
        },
        "param_ranges": {"hidden_size": [16, 32], "dropout": [0.1, 0.2, 0.3]},
    }
    data.update(copy.deepcopy(overrides))
    return data
