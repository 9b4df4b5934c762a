"""The HPO config: the sweep's data keys plus a search space, with field-named errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import InvalidSweepConfig
from core.hpo_config import (
    LEGACY_DEFAULT_PRUNER,
    continued_config,
    load_hpo_config,
    stored_hpo_config,
    study_shapes,
    validate_hpo_config,
)
from tests.utils.data import tiny_sweep


def hpo_dict(**overrides: Any) -> dict[str, Any]:
    data = tiny_sweep(output_subdir="study")
    data.pop("param_ranges")
    data["search_space"] = {
        "learning_rate": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
        "hidden_size": {"type": "int", "low": 4, "high": 8, "step": 2},
        "loss": {"type": "categorical", "choices": ["rmse", "mae"]},
    }
    data["n_trials"] = 4
    data.update(overrides)
    return data


def errors_of(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidSweepConfig) as info:
        validate_hpo_config(data)
    return {e.field: e.message for e in info.value.errors}


def test_default_config_file_is_valid() -> None:
    config = load_hpo_config(Path("core/configs/optuna/default_tft_optuna_sweep.json").read_text())
    assert config.sampler.type == "tpe" and config.pruner.type == "median"
    assert config.objective == "mean_val_rmse" and config.storage is None
    assert study_shapes(config) == {(20, 1), (30, 1), (60, 1)}  # every categorical choice


def test_defaults() -> None:
    config = validate_hpo_config(hpo_dict())
    assert (config.top_k, config.sampler.seed, config.timeout_s) == (5, 42, None)


@pytest.mark.parametrize(
    ("space", "field", "needle"),
    [
        ({"hidden_sz": {"type": "int", "low": 1, "high": 2}}, "search_space.hidden_sz", "not a training_config key"),
        ({"seed": {"type": "int", "low": 1, "high": 2}}, "search_space.seed", "replica_seeds"),
        ({"dropout": {"type": "float", "low": 0.5, "high": 0.2}}, "search_space.dropout", "must be below high"),
        ({"dropout": {"type": "float", "low": 0.0, "high": 1.5}}, "search_space.dropout", "less than 1"),
        (
            {"learning_rate": {"type": "float", "low": 0, "high": 1, "log": True}},
            "search_space.learning_rate",
            "low > 0",
        ),
        ({"hidden_size": {"type": "int", "low": 4.5, "high": 8}}, "search_space.hidden_size", "integers"),
        ({"loss": {"type": "categorical", "choices": []}}, "search_space.loss", "non-empty"),
        ({"loss": {"type": "categorical", "choices": ["rmse", "huber"]}}, "search_space.loss", "'huber'"),
        (
            {"dropout": {"type": "float", "low": 0.1, "high": 0.2, "log": True, "step": 0.1}},
            "search_space.dropout",
            "cannot be combined",
        ),
        ({"dropout": {"type": "uniform", "low": 0.1, "high": 0.2}}, "search_space.dropout.type", "'int'"),
        ({}, "search_space", "at least one"),
    ],
)
def test_search_space_errors_name_the_field(space: dict[str, Any], field: str, needle: str) -> None:
    errs = errors_of(hpo_dict(search_space=space))
    assert field in errs, errs
    assert needle in errs[field]


def test_other_errors() -> None:
    errs = errors_of(hpo_dict(n_trials=0, objective="median", storage="sqlite:///x", bogus=1, replica_seeds=[1, 1]))
    assert {"n_trials", "objective", "storage", "bogus", "replica_seeds"} <= set(errs)


def test_grid_needs_steps_for_floats() -> None:
    errs = errors_of(hpo_dict(sampler={"type": "grid"}))
    assert "needs a 'step'" in errs["search_space.learning_rate"]
    space = {
        "hidden_size": {"type": "int", "low": 4, "high": 8, "step": 2},
        "dropout": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.1},
    }
    config = validate_hpo_config(hpo_dict(sampler={"type": "grid"}, search_space=space))
    assert config.search_space["hidden_size"].grid() == [4, 6, 8]
    assert config.search_space["dropout"].grid() == [0.0, 0.1, 0.2]


def test_a_config_names_a_storage_and_never_carries_a_url() -> None:
    from core.hpo_config import parallel_trials_ok

    assert validate_hpo_config(hpo_dict(storage="shared")).storage == "shared"
    for url in ("postgresql+psycopg://u@h/db", "sqlite:////some/where/else.db"):
        assert "storage" in errors_of(hpo_dict(storage=url))
    assert parallel_trials_ok("postgresql+psycopg://u@h/db")
    assert not parallel_trials_ok("sqlite:///x.db") and not parallel_trials_ok(None)


def test_round_trip() -> None:
    config = validate_hpo_config(hpo_dict())
    assert validate_hpo_config(json.loads(json.dumps(config.to_json_dict()))) == config


@pytest.mark.parametrize(
    ("space", "value"),
    [
        ({"hidden_size": {"type": "int", "low": 8, "high": 16}}, "6"),
        ({"learning_rate": {"type": "float", "low": 0.02, "high": 0.1, "log": True}}, "0.01"),
        ({"loss": {"type": "categorical", "choices": ["mae", "quantile"]}}, "'rmse'"),
    ],
)
def test_the_search_space_must_hold_the_baseline_trial_0_trains(space: dict[str, Any], value: str) -> None:
    data = hpo_dict(search_space=space)
    data["training_config"] |= {"hidden_size": 6}
    ((field, message),) = errors_of(data).items()
    assert field == f"search_space.{next(iter(space))}"
    assert f"the baseline's value {value} (training_config.{next(iter(space))}) is outside" in message
    assert "trial 0 trains the baseline" in message


def test_a_baseline_off_the_step_or_a_numeric_choice_is_held() -> None:
    space = {
        "hidden_size": {"type": "int", "low": 3, "high": 9, "step": 3},  # 4 lies between the steps
        "dropout": {"type": "categorical", "choices": [0, 0.1]},  # the baseline's 0.1
    }
    assert validate_hpo_config(hpo_dict(search_space=space)).search_space["hidden_size"].holds(4)


def test_the_pruner_warm_up_defaults_to_every_fold_seen() -> None:
    pruner = validate_hpo_config(hpo_dict()).pruner
    assert (pruner.type, pruner.n_startup_trials, pruner.n_warmup_steps) == ("median", 2, None)


def pre_baseline_stored(data: dict[str, Any]) -> dict[str, Any]:
    """What a study created before trial 0 was the baseline has in `config_json`: every default
    of then filled in (the old default pruner) and no `walk_forward.clip_to_data`."""
    stored = validate_hpo_config(data).to_json_dict()
    stored["pruner"] = dict(LEGACY_DEFAULT_PRUNER)
    stored["walk_forward"].pop("clip_to_data")
    return stored


def test_a_study_stored_before_the_baseline_rules_reads_back_and_continues() -> None:
    data = hpo_dict()
    stored = pre_baseline_stored(data)
    # Submitted again as it was: it may continue, with the pruner its trials were pruned by.
    config, changed = continued_config(stored, validate_hpo_config(data), ("n_trials", "timeout_s"))
    assert changed == [] and config.pruner.model_dump() == LEGACY_DEFAULT_PRUNER
    assert config.walk_forward.clip_to_data is False
    # A real change is still named; an explicit pruner is the user's.
    other = validate_hpo_config(hpo_dict(sampler={"type": "random", "seed": 7}, pruner={"n_warmup_steps": 3}))
    assert continued_config(stored, other, ("n_trials", "timeout_s"))[1] == ["pruner", "sampler"]


def test_a_stored_search_space_without_the_baseline_still_reads() -> None:
    """Trial 0 needs the baseline inside the space: a new submission is refused, but a study
    stored before that rule is read back by its worker (it trains on without a baseline trial)."""
    data = hpo_dict(search_space={"hidden_size": {"type": "int", "low": 8, "high": 16}})
    data["training_config"] |= {"hidden_size": 6}
    assert list(errors_of(data)) == ["search_space.hidden_size"]
    stored = {**data, "pruner": dict(LEGACY_DEFAULT_PRUNER)}
    assert stored_hpo_config(stored).search_space["hidden_size"].low == 8
