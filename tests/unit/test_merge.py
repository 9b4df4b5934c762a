"""Merge rules: additions are accepted and queue exactly the new runs; anything else is refused."""

from __future__ import annotations

from typing import Any

import pytest

from core.config import validate_sweep_config
from core.errors import MergeRejected
from core.merge import validate_merge
from core.plan import expand_sweep
from tests.utils.configs import fold, sweep_dict


def merge(old: dict[str, Any], new: dict[str, Any]):
    return validate_merge(validate_sweep_config(old), validate_sweep_config(new))


def violations(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(MergeRejected) as info:
        merge(old, new)
    return {v.field: v for v in info.value.violations}


def test_identical_config_adds_nothing() -> None:
    result = merge(sweep_dict(), sweep_dict())
    assert result.new_runs == []
    assert len(result.plan.runs) == 16


def test_adding_values_queues_only_their_runs() -> None:
    new = sweep_dict(param_ranges={"hidden_size": [16, 32, 64], "dropout": [0.1, 0.2, 0.3]})
    result = merge(sweep_dict(), new)
    assert {r.config_id for r in result.new_runs} == {"hidden_size=64"}
    assert len(result.new_runs) == 2 * 2  # folds x seeds


def test_adding_a_param_is_allowed() -> None:
    new = sweep_dict(param_ranges={"hidden_size": [16, 32], "dropout": [0.1, 0.2, 0.3], "learning_rate": [0.003]})
    result = merge(sweep_dict(), new)
    assert {r.config_id for r in result.new_runs} == {"learning_rate=0.003"}


def test_adding_a_fold_runs_every_config_on_it() -> None:
    new = sweep_dict(
        walk_forward={"enabled": True, "folds": [fold("wf_1", 2015), fold("wf_2", 2016), fold("wf_3", 2017)]}
    )
    result = merge(sweep_dict(), new)
    assert {r.fold for r in result.new_runs} == {"wf_3"}
    assert len(result.new_runs) == 4 * 2


def test_adding_a_seed_runs_every_config_with_it() -> None:
    result = merge(sweep_dict(), sweep_dict(replica_seeds=[7, 11, 13]))
    assert {r.seed for r in result.new_runs} == {13}
    assert len(result.new_runs) == 4 * 2


def test_all_additions_together() -> None:
    new = sweep_dict(
        replica_seeds=[11, 7, 13],
        walk_forward={"enabled": True, "folds": [fold("wf_2", 2016), fold("wf_1", 2015), fold("wf_3", 2017)]},
        param_ranges={"dropout": [0.3, 0.2, 0.1, 0.4], "hidden_size": [32, 16]},
    )
    result = merge(sweep_dict(), new)
    old_keys = {r.run_key for r in expand_sweep(validate_sweep_config(sweep_dict())).runs}
    assert len(result.plan.runs) == 5 * 3 * 3
    assert len(result.new_runs) == 45 - 16
    assert not old_keys & {r.run_key for r in result.new_runs}
    assert old_keys <= {r.run_key for r in result.plan.runs}


def test_float_spelling_is_not_a_removal() -> None:
    old = sweep_dict(param_ranges={"learning_rate": [0.01]})
    new = sweep_dict(param_ranges={"learning_rate": [1e-2, 0.02]})
    assert {r.config_id for r in merge(old, new).new_runs} == {"learning_rate=0.02"}


def test_removing_values_params_folds_and_seeds_lists_every_violation() -> None:
    changed_fold = {**fold("wf_2", 2016), "test_end": "20171130"}
    new = sweep_dict(
        replica_seeds=[7],
        walk_forward={"enabled": True, "folds": [changed_fold]},
        param_ranges={"hidden_size": [32]},
    )
    found = violations(sweep_dict(), new)
    assert set(found) == {
        "replica_seeds",
        "walk_forward.folds[0]",
        "walk_forward.folds[1]",
        "param_ranges.hidden_size",
        "param_ranges.dropout",
    }
    assert "seeds may not be removed: [11]" in found["replica_seeds"].rule
    assert "'wf_1' may not be removed" in found["walk_forward.folds[0]"].rule
    assert "'wf_2' may not be changed" in found["walk_forward.folds[1]"].rule
    assert found["walk_forward.folds[1]"].new["test_end"] == "20171130"
    assert "values may not be removed: [16]" in found["param_ranges.hidden_size"].rule
    assert found["param_ranges.dropout"].new is None


def test_other_fields_are_violations_with_old_and_new_values() -> None:
    new = sweep_dict(
        features="PRICE_ONLY_FEATURES",
        training_config={**sweep_dict()["training_config"], "hidden_size": 64, "max_epochs": 3},
    )
    found = violations(sweep_dict(), new)
    assert set(found) == {"features", "training_config.hidden_size", "training_config.max_epochs"}
    hs = found["training_config.hidden_size"]
    assert (hs.old, hs.new) == (16, 64)
    assert "may not change" in hs.rule


def test_walk_forward_switch_and_split_config_are_violations() -> None:
    split = {k: v for k, v in fold("x", 2020).items() if k != "name"}
    old = sweep_dict(walk_forward={"enabled": False}, split_config=split)
    new = sweep_dict(walk_forward={"enabled": False}, split_config={**split, "test_end": "20211130"})
    assert set(violations(old, new)) == {"split_config.test_end"}
    switched = sweep_dict(split_config=split)
    assert "walk_forward.enabled" in violations(old, switched)


def test_an_explicit_config_may_not_change() -> None:
    old = sweep_dict(configs=[{"name": "c1", "params": {"hidden_size": 24}}])
    new = sweep_dict(configs=[{"name": "c1", "params": {"hidden_size": 25}}])
    found = violations(old, new)
    assert set(found) == {"configs[0].params.hidden_size"}
    assert (found["configs[0].params.hidden_size"].old, found["configs[0].params.hidden_size"].new) == (24, 25)
    assert "config 'c1' may not be changed" in found["configs[0].params.hidden_size"].rule


def test_an_explicit_config_may_not_lose_or_gain_a_param() -> None:
    old = sweep_dict(configs=[{"name": "c1", "params": {"hidden_size": 24, "dropout": 0.3}}])
    new = sweep_dict(configs=[{"name": "c1", "params": {"hidden_size": 24, "learning_rate": 0.003}}])
    assert set(violations(old, new)) == {"configs[0].params.dropout", "configs[0].params.learning_rate"}


def test_an_explicit_config_may_not_be_removed() -> None:
    old = sweep_dict(
        configs=[{"name": "c1", "params": {"hidden_size": 24}}, {"name": "c2", "params": {"dropout": 0.3}}]
    )
    new = sweep_dict(configs=[{"name": "c2", "params": {"dropout": 0.3}}])
    found = violations(old, new)
    assert set(found) == {"configs[0]"}
    assert "config 'c1' may not be removed" in found["configs[0]"].rule and found["configs[0]"].new is None


def test_adding_configs_queues_only_their_runs() -> None:
    """An OFAT sweep, then a study's top-k merged into it: the old configs run nothing again."""
    top_k = [
        {"name": "optuna_t003", "params": {"hidden_size": 24, "dropout": 0.15}, "source": {"trial": 3, "rank": 1}},
        {"name": "optuna_t007", "params": {"learning_rate": 0.004}, "source": {"trial": 7, "rank": 2}},
    ]
    result = merge(sweep_dict(), sweep_dict(configs=top_k))
    assert {r.config_id for r in result.new_runs} == {"optuna_t003", "optuna_t007"}
    assert len(result.new_runs) == 2 * 2 * 2  # two configs x folds x seeds
    assert len(result.plan.runs) == 16 + 8


def test_kept_configs_may_be_respelled_reranked_and_joined_by_new_ones() -> None:
    old = sweep_dict(configs=[{"name": "c1", "params": {"learning_rate": 0.01}, "source": {"rank": 1}}])
    new = sweep_dict(
        configs=[
            {"name": "c2", "params": {"hidden_size": 24}},
            {"name": "c1", "params": {"learning_rate": 1e-2}, "source": {"rank": 2}},
        ]
    )
    result = merge(old, new)
    assert {r.config_id for r in result.new_runs} == {"c2"}
    assert [c.source for c in result.config.configs if c.name == "c1"] == [{"rank": 2}]


def test_a_refused_merge_combines_rule_and_field_violations() -> None:
    new = sweep_dict(replica_seeds=[11], training_config={**sweep_dict()["training_config"], "dropout": 0.2})
    assert set(violations(sweep_dict(), new)) == {"replica_seeds", "training_config.dropout"}
