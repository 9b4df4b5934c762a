"""OFAT expansion: configs, runs, run keys and the plan cap."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import validate_sweep_config
from core.errors import InvalidSweepConfig
from core.plan import check_plan_size, expand_sweep, plan_size
from tests.utils.configs import sweep_dict


def test_baseline_then_variants_then_candidates() -> None:
    config = validate_sweep_config(
        sweep_dict(
            param_ranges={"hidden_size": [8, 16, 32], "loss": ["rmse", "mae"], "learning_rate": [1e-3, 0.01]},
            configs=[{"name": "optuna_1", "params": {"hidden_size": 24, "dropout": 0.25}}],
        )
    )
    plan = expand_sweep(config)
    # 16, rmse and 0.001 are the baseline values: they are the baseline, not variants.
    assert [c.config_id for c in plan.configs] == [
        "baseline",
        "hidden_size=8",
        "hidden_size=32",
        "loss=mae",
        "learning_rate=0.01",
        "optuna_1",
    ]
    variant = plan.configs[1]
    assert (variant.param_name, variant.param_value, variant.training.hidden_size) == ("hidden_size", 8, 8)
    assert plan.configs[-1].training.dropout == 0.25
    assert plan.configs[-1].param_name is None


def test_run_count_is_configs_times_folds_times_seeds() -> None:
    plan = expand_sweep(validate_sweep_config(sweep_dict()))
    # baseline, hidden_size=32, dropout=0.2, dropout=0.3 over 2 folds and 2 seeds
    assert len(plan.configs) == 4
    assert len(plan.runs) == 4 * 2 * 2
    assert len({r.run_key for r in plan.runs}) == len(plan.runs)
    assert {(r.fold, r.seed) for r in plan.runs} == {("wf_1", 7), ("wf_1", 11), ("wf_2", 7), ("wf_2", 11)}
    assert all(r.training.seed == r.seed for r in plan.runs)


def test_run_keys_ignore_key_order_and_float_spelling() -> None:
    a = sweep_dict(param_ranges={"learning_rate": [0.01]})
    b = json.loads(json.dumps(a).replace("0.01", "1e-2"))
    b["training_config"] = dict(reversed(list(b["training_config"].items())))
    b = dict(reversed(list(b.items())))
    keys_a = [r.run_key for r in expand_sweep(validate_sweep_config(a)).runs]
    keys_b = [r.run_key for r in expand_sweep(validate_sweep_config(b)).runs]
    assert keys_a == keys_b


def test_run_keys_are_stable_across_processes() -> None:
    # Pinned: a change here silently retrains every stored run.
    plan = expand_sweep(validate_sweep_config(sweep_dict()))
    first = plan.runs[0]
    assert (first.config_id, first.fold, first.seed) == ("baseline", "wf_1", 7)
    assert first.run_key == "b95e615d1bbd8af6a796376f1d0f53a0"


def test_a_candidate_identical_to_the_baseline_is_refused() -> None:
    config = validate_sweep_config(sweep_dict(configs=[{"name": "same", "params": {"hidden_size": 16}}]))
    with pytest.raises(InvalidSweepConfig) as info:
        expand_sweep(config)
    assert "same" in str(info.value) and "baseline" in str(info.value)


def test_plan_cap() -> None:
    config = validate_sweep_config(sweep_dict())
    with pytest.raises(InvalidSweepConfig) as info:
        expand_sweep(config, max_runs=15)
    assert info.value.errors[0].field == "(plan)"
    assert "16 runs, over the cap of 15" in info.value.errors[0].message
    assert len(expand_sweep(config, max_runs=16).runs) == 16


def test_plan_cap_default_is_the_documented_one() -> None:
    from core.config import DEFAULT_MAX_RUNS

    wide = sweep_dict(param_ranges={"hidden_size": list(range(1, 1000))}, replica_seeds=[1, 2, 3, 4, 5, 6])
    with pytest.raises(InvalidSweepConfig, match=f"= 11,988 runs, over the cap of {DEFAULT_MAX_RUNS:,}"):
        expand_sweep(validate_sweep_config(wide))


# Values around each kind of key's baseline (sweep_dict's): ints, floats given as ints,
# optional ints, literals; drawn unique, so the schema accepts every list.
_values_by_key = {
    "hidden_size": st.lists(st.integers(1, 64), min_size=1, max_size=6, unique=True),
    "dropout": st.lists(st.sampled_from([0, 0.1, 0.2, 0.5]), min_size=1, max_size=4, unique=True),
    "weight_decay": st.lists(st.sampled_from([0, 1, 0.001]), min_size=1, max_size=3, unique=True),
    "limit_train_batches": st.lists(st.sampled_from([None, 1, 4]), min_size=1, max_size=3, unique=True),
    "loss": st.lists(st.sampled_from(["rmse", "mae", "quantile"]), min_size=1, max_size=3, unique=True),
}


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(
    ranges=st.fixed_dictionaries({}, optional=_values_by_key),
    seeds=st.lists(st.integers(0, 99), max_size=3, unique=True),
    candidates=st.integers(0, 2),
)
def test_plan_size_counts_what_expand_sweep_builds(
    ranges: dict[str, list[Any]], seeds: list[int], candidates: int
) -> None:
    configs = [{"name": f"cand_{i}", "params": {"hidden_size": 100 + i}} for i in range(candidates)]
    config = validate_sweep_config(sweep_dict(param_ranges=ranges, replica_seeds=seeds, configs=configs))
    plan = expand_sweep(config)
    size = plan_size(config)
    assert (size.configs, size.folds, size.seeds) == (len(plan.configs), len(plan.folds), len(plan.seeds))
    assert size.runs == len(plan.runs)
    with pytest.raises(InvalidSweepConfig, match=f"= {size.runs:,} runs, over the cap of {size.runs - 1:,}"):
        check_plan_size(config, max_runs=size.runs - 1)
