"""Property-based checks of OFAT expansion invariants (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import validate_sweep_config
from core.merge import validate_merge
from core.plan import expand_sweep
from tests.utils.configs import fold, sweep_dict

hidden = st.lists(st.integers(4, 128), min_size=1, max_size=5, unique=True)
dropouts = st.lists(st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.3, 0.5]), min_size=1, max_size=4, unique=True)
seeds = st.lists(st.integers(0, 10_000), min_size=1, max_size=4, unique=True)
years = st.lists(st.integers(2005, 2020), min_size=1, max_size=3, unique=True)


def build(h: list[int], d: list[float], s: list[int], y: list[int]) -> dict:
    return sweep_dict(
        replica_seeds=s,
        walk_forward={"enabled": True, "folds": [fold(f"wf_{year}", year) for year in y]},
        param_ranges={"hidden_size": h, "dropout": d},
    )


@settings(max_examples=60, deadline=None)
@given(hidden, dropouts, seeds, years)
def test_run_count_and_unique_keys(h: list[int], d: list[float], s: list[int], y: list[int]) -> None:
    plan = expand_sweep(validate_sweep_config(build(h, d, s, y)))
    variants = len([v for v in h if v != 16]) + len([v for v in d if v != 0.1])
    assert len(plan.configs) == 1 + variants
    assert len(plan.runs) == len(plan.configs) * len(y) * len(s)
    assert len({r.run_key for r in plan.runs}) == len(plan.runs)


@settings(max_examples=60, deadline=None)
@given(hidden, dropouts, seeds, years, hidden, dropouts, seeds, years)
def test_additions_never_change_existing_keys(
    h: list[int],
    d: list[float],
    s: list[int],
    y: list[int],
    h2: list[int],
    d2: list[float],
    s2: list[int],
    y2: list[int],
) -> None:
    old = build(h, d, s, y)
    grown = build(
        h + [v for v in h2 if v not in h],
        d + [v for v in d2 if v not in d],
        s + [v for v in s2 if v not in s],
        y + [v for v in y2 if v not in y],
    )
    old_plan = expand_sweep(validate_sweep_config(old))
    result = validate_merge(validate_sweep_config(old), validate_sweep_config(grown))
    old_keys = {(r.config_id, r.fold, r.seed): r.run_key for r in old_plan.runs}
    new_keys = {(r.config_id, r.fold, r.seed): r.run_key for r in result.plan.runs}
    assert all(new_keys[k] == v for k, v in old_keys.items())
    assert len(result.new_runs) == len(result.plan.runs) - len(old_plan.runs)
