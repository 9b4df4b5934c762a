"""The sweep config schema: every rule produces an error that names its field."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from core.config import Fold, clipped_window, load_sweep_config, validate_sweep_config
from core.errors import InvalidSweepConfig
from tests.utils.configs import fold, sweep_dict


def errors_of(data: object) -> dict[str, str]:
    with pytest.raises(InvalidSweepConfig) as info:
        validate_sweep_config(data)
    return {e.field: e.message for e in info.value.errors}


def test_the_guides_example_is_valid() -> None:
    config = load_sweep_config(Path("core/configs/model_analysis.default.json").read_text())
    assert config.seeds == [7, 11, 13, 42, 123]
    assert [f.name for f in config.folds] == ["wf_1"]
    assert config.param_ranges == {"max_encoder_length": [120, 150, 180, 210]}


def test_defaults_fill_training_config_and_seeds() -> None:
    data = sweep_dict(replica_seeds=[])
    data["training_config"] = {"seed": 5}
    config = validate_sweep_config(data)
    assert config.seeds == [5]
    assert config.training_config.max_encoder_length == 120
    assert config.training_config.gradient_clip_val == 0.1


def test_split_config_gives_one_default_fold() -> None:
    data = sweep_dict(
        walk_forward={"enabled": False}, split_config={k: v for k, v in fold("x", 2020).items() if k != "name"}
    )
    config = validate_sweep_config(data)
    assert [f.name for f in config.folds] == ["default"]
    assert config.folds[0].val_start == "20200101"


def test_split_config_required_without_walk_forward() -> None:
    errors = errors_of(sweep_dict(walk_forward={"enabled": False}))
    assert list(errors) == ["split_config"]
    assert errors["split_config"].startswith("required key is missing")


def test_an_empty_config_lists_every_missing_key_at_once() -> None:
    """Issue 22 item 7: `{}` named only `output_subdir`; the split it also lacks came after a fix."""
    assert errors_of({}) == {
        "output_subdir": "required key is missing",
        "split_config": "required key is missing (walk_forward is not enabled, so the single split is used)",
    }
    empty_fold = errors_of({"walk_forward": {"enabled": True, "folds": [{}]}})
    window = ["train_start", "train_end", "val_start", "val_end", "test_start", "test_end"]
    assert set(empty_fold) == {
        "output_subdir",
        "walk_forward.folds[0].name",
        *(f"walk_forward.folds[0].{k}" for k in window),
    }
    assert "split_config" not in empty_fold  # walk-forward is on: no split needed


def test_clip_to_data_is_off_by_default_and_old_configs_load() -> None:
    data = sweep_dict()
    assert "clip_to_data" not in data["walk_forward"]  # a config stored before the key existed
    config = validate_sweep_config(data)
    assert config.walk_forward.clip_to_data is False
    assert config.to_json_dict()["walk_forward"]["clip_to_data"] is False
    on = validate_sweep_config(sweep_dict(walk_forward={**data["walk_forward"], "clip_to_data": True}))
    assert on.walk_forward.clip_to_data is True
    assert errors_of(sweep_dict(walk_forward={**data["walk_forward"], "clip_to_data": "yes"})) == {
        "walk_forward.clip_to_data": "Input should be a valid boolean (got 'yes')"
    }


def test_clipped_window_cuts_only_what_lies_outside() -> None:
    window = Fold.model_validate(fold("wf", 2016))  # train 2013..2015, val 2016, test 2017
    cut = clipped_window(window, "wf", date(2014, 3, 3), date(2017, 6, 30))
    assert cut == {
        "name": "wf",
        "train_start": "20140303",
        "train_end": "20151231",
        "val_start": "20160101",
        "val_end": "20161231",
        "test_start": "20170101",
        "test_end": "20170630",
        "clipped": ["train_start", "test_end"],
    }
    assert clipped_window(window, "wf", date(2000, 1, 1), date(2030, 1, 1))["clipped"] == []


def test_invalid_json_names_line_and_column() -> None:
    with pytest.raises(InvalidSweepConfig) as info:
        load_sweep_config('{\n  "output_subdir": "x",\n}')
    (err,) = info.value.errors
    assert err.field == "(json)"
    assert "line 3 column 1" in err.message


def test_root_must_be_an_object() -> None:
    assert "(root)" in errors_of([1, 2])


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"bogus": 1}, "bogus"),
        ({"training_config": {"hidden_sz": 3}}, "training_config.hidden_sz"),
        (
            {"walk_forward": {"enabled": True, "folds": [{**fold("a", 2015), "extra": 1}]}},
            "walk_forward.folds[0].extra",
        ),
    ],
)
def test_unknown_keys_are_rejected_at_any_level(patch: dict, field: str) -> None:
    errs = errors_of(sweep_dict(**patch))
    assert "unknown key" in errs[field]


@pytest.mark.parametrize(
    ("training", "field", "needle"),
    [
        ({"hidden_size": "32"}, "training_config.hidden_size", "valid integer"),
        ({"hidden_size": 3.5}, "training_config.hidden_size", "valid integer"),
        ({"batch_size": True}, "training_config.batch_size", "valid integer"),
        ({"dropout": 1.5}, "training_config.dropout", "less than 1"),
        ({"loss": "huber"}, "training_config.loss", "'rmse'"),
        ({"learning_rate": 0}, "training_config.learning_rate", "greater than 0"),
    ],
)
def test_wrong_types_and_ranges(training: dict, field: str, needle: str) -> None:
    errs = errors_of(sweep_dict(training_config=training))
    assert needle in errs[field]


@pytest.mark.parametrize(
    ("value", "needle"),
    [("2015-01-01", "not a YYYYMMDD date"), ("20150230", "not a real calendar date"), ("2015010", "not a YYYYMMDD")],
)
def test_malformed_and_impossible_dates(value: str, needle: str) -> None:
    bad = {**fold("wf_1", 2015), "train_start": value}
    errs = errors_of(sweep_dict(walk_forward={"enabled": True, "folds": [bad]}))
    assert needle in errs["walk_forward.folds[0].train_start"]


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"val_start": "20141201"}, "train window (to 20141231) must end before val_start"),
        ({"test_start": "20151231"}, "val window (to 20151231) must end before test_start"),
        ({"train_start": "20150101", "train_end": "20120101"}, "train_start 20150101 is after train_end"),
    ],
)
def test_overlapping_or_out_of_order_windows(changes: dict, needle: str) -> None:
    bad = {**fold("wf_1", 2015), **changes}
    errs = errors_of(sweep_dict(walk_forward={"enabled": True, "folds": [bad]}))
    assert needle in errs["walk_forward.folds[0]"]


def test_duplicate_fold_names_and_seeds() -> None:
    errs = errors_of(
        sweep_dict(replica_seeds=[7, 7, 8], walk_forward={"enabled": True, "folds": [fold("a", 2015), fold("a", 2016)]})
    )
    assert "duplicate seeds: [7]" in errs["replica_seeds"]
    assert "duplicate fold names: ['a']" in errs["walk_forward.folds"]


def test_enabled_walk_forward_needs_folds() -> None:
    errs = errors_of(sweep_dict(walk_forward={"enabled": True, "folds": []}))
    assert "no folds" in errs["walk_forward"]


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("../etc", "path separators"),
        ("a/b", "path separators"),
        ("a\\b", "path separators"),
        ("..", "start with a dot"),
        (".hidden", "start with a dot"),
        ("a..b", "'..'"),
        ("x" * 65, "at most 64"),
        ("", "must not be empty"),
        ("a b", "may hold only"),
        ("a\x00b", "NUL"),
    ],
)
def test_unsafe_names(name: str, needle: str) -> None:
    assert needle in errors_of(sweep_dict(output_subdir=name))["output_subdir"]
    unsafe_fold = {**fold("x", 2015), "name": name}
    assert (
        needle
        in errors_of(sweep_dict(walk_forward={"enabled": True, "folds": [unsafe_fold]}))["walk_forward.folds[0].name"]
    )


def test_sixty_four_character_names_are_fine() -> None:
    assert validate_sweep_config(sweep_dict(output_subdir="a" * 64)).output_subdir == "a" * 64


def test_param_ranges_rules() -> None:
    errs = errors_of(
        sweep_dict(
            param_ranges={
                "hidden_sz": [1],
                "dropout": [],
                "hidden_size": [8, "16", 4.5],
                "learning_rate": [0.1, 1e-1],
                "seed": [1, 2],
            }
        )
    )
    assert "not a training_config key" in errs["param_ranges.hidden_sz"]
    assert "empty" in errs["param_ranges.dropout"]
    assert "valid integer" in errs["param_ranges.hidden_size[1]"]
    assert "valid integer" in errs["param_ranges.hidden_size[2]"]
    assert "duplicate values: 0.1" in errs["param_ranges.learning_rate"]
    assert "replica_seeds" in errs["param_ranges.seed"]


def test_float_params_accept_json_integers() -> None:
    config = validate_sweep_config(sweep_dict(param_ranges={"gradient_clip_val": [0, 1]}))
    assert config.param_ranges["gradient_clip_val"] == [0, 1]


def test_features_must_be_registered_or_a_list() -> None:
    assert "unknown feature set" in errors_of(sweep_dict(features="NOPE"))["features"]
    assert "duplicate feature columns" in errors_of(sweep_dict(features=["a", "a"]))["features"]
    assert "dataset keys" in errors_of(sweep_dict(features=["target", "x"]))["features"]
    assert validate_sweep_config(sweep_dict(features=["rsi_14", "macd"])).features == ["rsi_14", "macd"]


def test_explicit_configs_are_checked() -> None:
    errs = errors_of(
        sweep_dict(
            configs=[
                {"name": "baseline", "params": {}},
                {"name": "c1", "params": {"hidden_sz": 1}},
                {"name": "c2", "params": {"dropout": 3.0}},
                {"name": "c2", "params": {"seed": 1}},
            ]
        )
    )
    assert "already used" in errs["configs[0].name"]
    assert "not training_config keys" in errs["configs[1].params"]
    assert "less than 1" in errs["configs[2].params.dropout"]
    assert "already used" in errs["configs[3].name"]


def test_every_error_is_reported_not_only_the_first() -> None:
    errs = errors_of(sweep_dict(bogus=1, replica_seeds=[1, 1], output_subdir="../x"))
    assert {"bogus", "replica_seeds", "output_subdir"} <= set(errs)


def test_effective_config_round_trips() -> None:
    config = validate_sweep_config(sweep_dict())
    again = load_sweep_config(json.dumps(config.to_json_dict()))
    assert again == config
