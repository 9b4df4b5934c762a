"""Config limits cost arithmetic, not work: grids, plans, long lists and non-finite numbers are
refused from their size or spelling, within a time and memory bound (issue 21, rows 1, 3, 4, 7)."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.config import (
    DEFAULT_MAX_RUNS,
    MAX_ERRORS,
    MAX_LIST,
    TrainingConfig,
    load_sweep_config,
    validate_sweep_config,
)
from core.errors import InvalidSweepConfig
from core.hpo_config import MAX_GRID_POINTS, HpoConfig, SearchParam, load_hpo_config, validate_hpo_config
from core.plan import check_plan_size, expand_sweep, plan_size
from tests.utils.configs import fold, sweep_dict
from worker.cli import main

MB = 1024 * 1024


@dataclass
class Cost:
    seconds: float
    peak_bytes: int


def refusal(validate: Callable[[Any], object], data: Any, memory: bool = False) -> tuple[dict[str, str], Cost]:
    """The errors (field -> message) of refusing `data`, and what refusing it cost: wall time
    of a plain run and, with `memory`, the peak of Python allocations (tracemalloc) of a
    second run (the tracer slows allocation-heavy code several times over, so it never times)."""
    start = time.perf_counter()
    with pytest.raises(InvalidSweepConfig) as info:
        validate(data)
    seconds = time.perf_counter() - start
    peak = 0
    if memory:
        tracemalloc.start()
        try:
            with pytest.raises(InvalidSweepConfig):
                validate(data)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return {e.field: e.message for e in info.value.errors}, Cost(seconds, peak)


def hpo(**overrides: Any) -> dict[str, Any]:
    data = sweep_dict(**{"output_subdir": "study", "sampler": {"type": "grid"}, **overrides})
    data.pop("param_ranges")
    return data


# -- row 1: a grid is counted, never listed, and refused over the cap ----------------------


@pytest.mark.parametrize(
    ("space", "field", "points"),
    [
        # 5e299 points: listing them would never end; counting them is one division.
        ({"dropout": {"type": "float", "low": 0, "high": 0.5, "step": 1e-300}}, "search_space.dropout", "about 10^299"),
        ({"dropout": {"type": "float", "low": 0, "high": 0.5, "step": 1e-7}}, "search_space.dropout", "5,000,001"),
        (
            {"hidden_size": {"type": "int", "low": 1, "high": 10**12}},
            "search_space.hidden_size",
            "1,000,000,000,000",
        ),
        # Each dimension fits; their product does not.
        (
            {
                "hidden_size": {"type": "int", "low": 1, "high": 200},
                "dropout": {"type": "float", "low": 0, "high": 0.5, "step": 0.01},
                "max_epochs": {"type": "int", "low": 1, "high": 100},
            },
            "search_space",
            "200 x 51 x 100 = 1,020,000",
        ),
    ],
)
def test_a_grid_over_the_cap_is_refused_from_its_size(space: dict[str, Any], field: str, points: str) -> None:
    errors, cost = refusal(validate_hpo_config, hpo(search_space=space), memory=True)
    assert f"a grid of {points} points is over the cap of {MAX_GRID_POINTS:,}" in errors[field]
    assert cost.seconds < 2 and cost.peak_bytes < 200 * MB, cost


def test_a_grid_of_exactly_the_cap_is_accepted_and_one_more_point_is_not() -> None:
    at_cap = {"max_epochs": {"type": "int", "low": 1, "high": MAX_GRID_POINTS}}
    config = validate_hpo_config(hpo(search_space=at_cap))
    assert len(config.grid()["max_epochs"]) == MAX_GRID_POINTS == DEFAULT_MAX_RUNS
    over = {"max_epochs": {"type": "int", "low": 0, "high": MAX_GRID_POINTS}}
    errors, _ = refusal(validate_hpo_config, hpo(search_space=over))
    assert "10,001 points" in errors["search_space.max_epochs"]


def test_a_grid_built_in_code_past_validation_is_still_refused_before_listing() -> None:
    # A config that skipped validate_hpo_config (its checks) cannot reach Optuna's GridSampler
    # with an unbounded grid: HpoConfig.grid() counts first (core.hpo.make_sampler uses it).
    config = HpoConfig.model_validate(
        hpo(search_space={"dropout": {"type": "float", "low": 0, "high": 0.5, "step": 1e-300}})
    )
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError, match="about 10\\^299 points is over the cap"):
            config.grid()
        with pytest.raises(ValueError, match="5,000,001 points"):
            SearchParam(type="float", low=0, high=0.5, step=1e-7).grid()
        seconds, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 1 and peak < 10 * MB, (seconds, peak)


@pytest.mark.parametrize(
    ("low", "high", "step", "values"),
    [
        (0, 0.3, 0.1, [0.0, 0.1, 0.2, 0.3]),  # 0.3 / 0.1 is 2.9999999999999996 in floats
        (0, 0.5, 0.3, [0.0, 0.3]),  # never past high
        (0.1, 0.2, 0.05, [0.1, 0.15, 0.2]),
        (1, 2, 1, [1, 2]),
    ],
)
def test_the_counted_size_is_the_listed_size(low: float, high: float, step: float, values: list[float]) -> None:
    param = SearchParam(type="float", low=low, high=high, step=step)
    assert param.grid() == pytest.approx(values)
    assert param.grid_size() == len(values)


# -- row 3: the plan's size is arithmetic and comes before any dataset -------------------------


def wide_sweep() -> dict[str, Any]:
    """100 folds x 100 encoder lengths x 2 seeds: a 17 kB body, 20,000 runs."""
    return sweep_dict(
        walk_forward={"enabled": True, "folds": [fold(f"wf_{i}", 2015) for i in range(100)]},
        param_ranges={"max_encoder_length": list(range(2, 102))},
    )


def test_the_plan_size_is_counted_without_building_the_plan() -> None:
    config = validate_sweep_config(wide_sweep())
    errors, cost = refusal(check_plan_size, config, memory=True)
    assert errors == {"(plan)": "100 configs x 100 folds x 2 seeds = 20,000 runs, over the cap of 10,000"}
    assert cost.seconds < 0.5 and cost.peak_bytes < 5 * MB, cost


def test_plan_size_is_what_expand_sweep_builds() -> None:
    data = sweep_dict(
        param_ranges={
            "hidden_size": [16, 32, 64],  # 16 is the baseline's: no variant of its own
            "dropout": [0, 0.1, 0.3],  # an int for a float key: 0 is 0.0; 0.1 is the baseline's
            "limit_train_batches": [None, 4],  # None is the baseline's
            "loss": ["mae"],
        },
        configs=[{"name": "cand", "params": {"hidden_size": 48}}],
    )
    config = validate_sweep_config(data)
    plan = expand_sweep(config)
    size = plan_size(config)
    assert (size.configs, size.folds, size.seeds) == (len(plan.configs), len(plan.folds), len(plan.seeds)) == (8, 2, 2)
    assert size.runs == len(plan.runs) == 32
    assert check_plan_size(config, max_runs=32) == size
    with pytest.raises(InvalidSweepConfig, match="= 32 runs, over the cap of 31"):
        check_plan_size(config, max_runs=31)


# -- row 4: every check is linear, and over-long lists are refused before their items -------


def test_32k_duplicate_values_are_refused_by_their_count_at_once() -> None:
    errors, cost = refusal(validate_sweep_config, sweep_dict(param_ranges={"dropout": [0.1] * 32_000}), memory=True)
    assert errors == {"param_ranges.dropout": f"List should have at most {MAX_LIST} items after validation, not 32000"}
    assert cost.seconds < 1 and cost.peak_bytes < 50 * MB, cost


@pytest.mark.parametrize(
    ("overrides", "field", "needle"),
    [
        (
            {"param_ranges": {"dropout": [0.1, 0.2] * (MAX_LIST // 2)}},
            "param_ranges.dropout",
            "duplicate values: 0.1, 0.2",
        ),
        ({"param_ranges": {"dropout": [0.1, 1e-1] + [0.2] * (MAX_LIST - 2)}}, "param_ranges.dropout", "0.1, 0.2"),
        ({"replica_seeds": [1, 2] * (MAX_LIST // 2)}, "replica_seeds", "duplicate seeds: [1, 2]"),
        ({"features": ["ret_5", "vol_10"] * (MAX_LIST // 2)}, "features", "duplicate feature columns"),
        (
            {"walk_forward": {"enabled": True, "folds": [fold("wf", 2015)] * MAX_LIST}},
            "walk_forward.folds",
            "duplicate fold names: ['wf']",
        ),
    ],
)
def test_duplicates_in_a_list_at_the_limit_are_found_in_one_pass(
    overrides: dict[str, Any], field: str, needle: str
) -> None:
    errors, cost = refusal(validate_sweep_config, sweep_dict(**overrides))
    assert needle in errors[field]
    assert cost.seconds < 1, cost


def test_duplicate_choices_at_the_limit_are_found_in_one_pass() -> None:
    space = {"dropout": {"type": "categorical", "choices": [0.1] * MAX_LIST}}
    errors, cost = refusal(validate_hpo_config, hpo(search_space=space))
    assert "duplicate choices" in errors["search_space.dropout"]
    space = {"dropout": {"type": "categorical", "choices": [0.1] * 50_000}}
    errors, cost = refusal(validate_hpo_config, hpo(search_space=space))
    assert f"at most {MAX_LIST} items" in errors["search_space.dropout.choices"]
    assert cost.seconds < 1, cost


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        # 50,000 candidates, each a training config to validate: the cross-field check skips them.
        ({"configs": [{"name": f"c{i}", "params": {"hidden_size": 8}} for i in range(50_000)]}, "configs"),
        ({"replica_seeds": list(range(200_000))}, "replica_seeds"),
        (
            {"walk_forward": {"enabled": True, "folds": [fold(f"wf_{i}", 2015) for i in range(20_000)]}},
            "walk_forward.folds",
        ),
        ({"features": [f"col_{i}" for i in range(200_000)]}, "features"),
    ],
)
def test_an_over_long_list_is_one_error_naming_its_length(overrides: dict[str, Any], field: str) -> None:
    errors, cost = refusal(validate_sweep_config, sweep_dict(**overrides))
    assert list(errors) == [field]
    assert f"{MAX_LIST}" in errors[field]
    assert cost.seconds < 2, cost


def test_a_refusal_lists_at_most_max_errors_problems() -> None:
    # 100k unknown keys (about a 1 MiB body): every one is a problem, the answer lists 100.
    errors, cost = refusal(validate_sweep_config, sweep_dict(training_config={f"k{i}": 1 for i in range(100_000)}))
    assert len(errors) == MAX_ERRORS + 1
    assert errors["(more)"] == f"{100_000 - MAX_ERRORS} more problems are not listed"
    assert cost.seconds < 5, cost


# -- row 7: non-finite numbers, in any spelling, anywhere --------------------------------------

SPELLINGS = ["NaN", "Infinity", "-Infinity", "1e309", "-1e309"]
BASE_TEXT = json.dumps(
    sweep_dict(configs=[{"name": "cand", "params": {"hidden_size": 48}, "source": {"trial": 3, "value": 0.5}}])
)
SWEEP_FIELDS = {
    "training_config.weight_decay": ('"dropout": 0.1', '"dropout": 0.1, "weight_decay": {x}'),
    "training_config.gradient_clip_val": ('"dropout": 0.1', '"dropout": 0.1, "gradient_clip_val": {x}'),
    "training_config.early_stopping_min_delta": ('"early_stopping_min_delta": 0.0', '"early_stopping_min_delta": {x}'),
    "training_config.learning_rate": ('"learning_rate": 0.001', '"learning_rate": {x}'),
    "param_ranges.dropout[1]": ('"dropout": [0.1, 0.2, 0.3]', '"dropout": [0.1, {x}, 0.3]'),
    "configs[0].params.hidden_size": ('"hidden_size": 48', '"hidden_size": {x}'),
    "configs[0].source.value": ('"value": 0.5', '"value": {x}'),
    "stats.alpha": ('"param_ranges"', '"stats": {{"alpha": {x}}}, "param_ranges"'),
}


def spelled(base: str, where: tuple[str, str], number: str) -> str:
    old, new = where
    assert base.count(old) == 1, old
    return base.replace(old, new.format(x=number))


@pytest.mark.parametrize("number", SPELLINGS)
@pytest.mark.parametrize("field", sorted(SWEEP_FIELDS))
def test_a_non_finite_number_in_a_sweep_is_refused_naming_its_field(field: str, number: str) -> None:
    errors, cost = refusal(load_sweep_config, spelled(BASE_TEXT, SWEEP_FIELDS[field], number))
    assert errors == {field: errors[field]}  # said once, whatever else would have noticed it
    assert errors[field].startswith("must be a finite number (got ")
    assert cost.seconds < 1, cost


HPO_TEXT = json.dumps(
    hpo(
        sampler={"type": "tpe", "seed": 1},
        timeout_s=60.0,
        search_space={
            "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
            "loss": {"type": "categorical", "choices": ["rmse", "mae"]},
            "hidden_size": {"type": "categorical", "choices": [8, 16]},
        },
    )
)
HPO_FIELDS = {
    "timeout_s": ('"timeout_s": 60.0', '"timeout_s": {x}'),
    "search_space.dropout.low": ('"low": 0.0', '"low": {x}'),
    "search_space.dropout.high": ('"high": 0.5', '"high": {x}'),
    "search_space.dropout.step": ('"step": 0.1', '"step": {x}'),
    "search_space.hidden_size.choices[1]": ('"choices": [8, 16]', '"choices": [8, {x}]'),
    "sampler.seed": ('"seed": 1', '"seed": {x}'),
    "training_config.weight_decay": ('"dropout": 0.1', '"dropout": 0.1, "weight_decay": {x}'),
}


@pytest.mark.parametrize("number", SPELLINGS)
@pytest.mark.parametrize("field", sorted(HPO_FIELDS))
def test_a_non_finite_number_in_a_study_is_refused_naming_its_field(field: str, number: str) -> None:
    errors, _ = refusal(load_hpo_config, spelled(HPO_TEXT, HPO_FIELDS[field], number))
    assert errors == {field: errors[field]}
    assert errors[field].startswith("must be a finite number (got ")


def test_a_model_built_in_code_refuses_non_finite_floats_too() -> None:
    with pytest.raises(ValueError, match="finite number"):
        TrainingConfig(weight_decay=float("inf"))
    with pytest.raises(ValueError, match="finite number"):
        SearchParam(type="float", low=0, high=float("nan"))


def test_an_integer_too_long_to_read_is_a_json_error() -> None:
    errors, _ = refusal(load_sweep_config, BASE_TEXT.replace('"hidden_size": 48', '"hidden_size": ' + "9" * 5000))
    assert list(errors) == ["(json)"] and "4300 digits" in errors["(json)"]


def test_tftsweep_plan_refuses_an_oversized_plan_before_the_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No dataset for NOPE: an answer about the dataset would mean it was looked at first.
    monkeypatch.setenv("TFTSWEEP_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(wide_sweep()))
    start = time.perf_counter()
    assert main(["plan", "--config-json", str(path), "--asset", "NOPE"]) == 2
    assert time.perf_counter() - start < 2
    err = capsys.readouterr().err
    assert "100 configs x 100 folds x 2 seeds = 20,000 runs, over the cap of 10,000" in err
    assert "no dataset" not in err
