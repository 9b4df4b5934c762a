"""Config bodies the API must answer in bounded time with a 4xx, never a 5xx: the limits of
issue 21 (rows 1, 3, 4, 7) through HTTP, and hypothesis fuzzing of POST /sweeps and /hpo."""

from __future__ import annotations

import copy
import json
import time
import tracemalloc
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_hpo_config import hpo_dict
from tests.utils.configs import fold
from tests.utils.data import ASSET, tiny_sweep

MB = 1024 * 1024
SPELLINGS = ["NaN", "Infinity", "-Infinity", "1e309", "-1e309"]


def post(client: TestClient, route: str, body: Any) -> tuple[httpx.Response, float]:
    """POST `body` as Python's JSON writer spells it (NaN and Infinity included, which the
    test client's own encoder refuses); the answer and its wall time."""
    return post_text(client, route, json.dumps(body))


def post_text(client: TestClient, route: str, content: str) -> tuple[httpx.Response, float]:
    """POST `content`, JSON text as written, and time the answer."""
    start = time.perf_counter()
    response = client.post(route, content=content, headers={"content-type": "application/json"})
    return response, time.perf_counter() - start


def post_traced(client: TestClient, route: str, body: Any) -> tuple[httpx.Response, float, int]:
    """`post`, timed, then again under tracemalloc (which sees the app's thread too) for the
    peak of Python allocations: the tracer slows allocation-heavy code, so it never times."""
    response, seconds = post(client, route, body)
    tracemalloc.start()
    try:
        again, _ = post(client, route, body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert again.status_code == response.status_code
    return response, seconds, peak


def problems(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {p["field"]: p["message"] for p in response.json()["detail"]}


# -- the probe's rows, through HTTP --------------------------------------------------------


@pytest.mark.parametrize(
    ("dimension", "points"),
    [
        ({"type": "float", "low": 0, "high": 0.5, "step": 1e-300}, "about 10^299"),  # hung the API, +43 MB/s
        ({"type": "float", "low": 0, "high": 0.5, "step": 1e-7}, "5,000,001"),  # was accepted, 3.5 s, +200 MB
    ],
)
def test_row_1_a_grid_over_the_cap_is_422_at_once(client: TestClient, dimension: dict[str, Any], points: str) -> None:
    config = hpo_dict(sampler={"type": "grid"}, search_space={"dropout": dimension})
    response, seconds, peak = post_traced(client, "/hpo", {"asset": ASSET, "config": config})
    assert f"a grid of {points} points is over the cap of 10,000" in problems(response)["config.search_space.dropout"]
    assert seconds < 2 and peak < 200 * MB, (seconds, peak)
    assert client.get("/hpo").json()["count"] == 0


def test_row_1_an_int_dimension_to_10_12_is_422_at_once(client: TestClient) -> None:
    space = {"max_epochs": {"type": "int", "low": 1, "high": 10**12}}
    config = hpo_dict(sampler={"type": "grid"}, search_space=space)
    response, seconds, peak = post_traced(client, "/hpo", {"asset": ASSET, "config": config})
    assert "1,000,000,000,000 points" in problems(response)["config.search_space.max_epochs"]
    assert seconds < 2 and peak < 200 * MB, (seconds, peak)


@pytest.mark.parametrize("asset", [ASSET, "NODATA"])
def test_row_3_a_plan_over_the_cap_is_422_before_any_dataset_is_read(client: TestClient, asset: str) -> None:
    # 100 folds x 100 encoder lengths: 16 s of fold-fit checks before the cap, before the fix.
    # On an asset with no dataset the answer is still the cap's: the dataset was never looked at.
    config = tiny_sweep(
        walk_forward={"enabled": True, "folds": [fold(f"wf_{i}", 2012, 2) for i in range(100)]},
        param_ranges={"max_encoder_length": list(range(2, 102))},
        replica_seeds=[1, 2],
    )
    response, seconds = post(client, "/sweeps", {"asset": asset, "config": config})
    assert problems(response) == {"(plan)": "100 configs x 100 folds x 2 seeds = 20,000 runs, over the cap of 10,000"}
    assert seconds < 2, seconds


def test_row_4_32k_values_are_422_at_once(client: TestClient) -> None:
    body = {"asset": ASSET, "config": tiny_sweep(param_ranges={"dropout": [0.1] * 32_000})}
    response, seconds, peak = post_traced(client, "/sweeps", body)
    assert problems(response) == {
        "config.param_ranges.dropout": "List should have at most 1000 items after validation, not 32000"
    }
    assert seconds < 1 and peak < 100 * MB, (seconds, peak)


SWEEP_TEXT = json.dumps(
    {
        "asset": ASSET,
        "config": tiny_sweep(
            training_config={"max_encoder_length": 10, "weight_decay": 0.0},
            param_ranges={"gradient_clip_val": [0.1, 0.5]},
            configs=[{"name": "cand", "params": {"early_stopping_min_delta": 0.01}, "source": {"value": 1.5}}],
        ),
    }
)
SWEEP_SPOTS = {
    "config.training_config.weight_decay": ('"weight_decay": 0.0', '"weight_decay": {x}'),
    "config.param_ranges.gradient_clip_val[1]": ("[0.1, 0.5]", "[0.1, {x}]"),
    "config.configs[0].params.early_stopping_min_delta": (
        '"early_stopping_min_delta": 0.01',
        '"early_stopping_min_delta": {x}',
    ),
    "config.configs[0].source.value": ('"value": 1.5', '"value": {x}'),
}
STUDY_TEXT = json.dumps(
    {
        "asset": ASSET,
        "config": hpo_dict(
            timeout_s=60.0,
            search_space={
                "dropout": {"type": "float", "low": 0.0, "high": 0.5},
                "hidden_size": {"type": "categorical", "choices": [4, 8]},
            },
        ),
    }
)
STUDY_SPOTS = {
    "config.timeout_s": ('"timeout_s": 60.0', '"timeout_s": {x}'),
    "config.search_space.dropout.high": ('"high": 0.5', '"high": {x}'),
    "config.search_space.hidden_size.choices[0]": ("[4, 8]", "[{x}, 8]"),
}


@pytest.mark.parametrize(
    ("route", "text", "field", "spot"),
    [("/sweeps", SWEEP_TEXT, f, s) for f, s in SWEEP_SPOTS.items()]
    + [("/hpo", STUDY_TEXT, f, s) for f, s in STUDY_SPOTS.items()],
)
def test_row_7_a_non_finite_number_is_422_naming_its_field(
    client: TestClient, route: str, text: str, field: str, spot: tuple[str, str]
) -> None:
    old, new = spot
    assert text.count(old) == 1
    for number in SPELLINGS:  # one server for the five spellings
        response, seconds = post_text(client, route, text.replace(old, new.format(x=number)))
        assert problems(response) == {field: f"must be a finite number (got {json.loads(number)!r})"}, number
        assert seconds < 2, seconds
    assert client.get(route).json()["count"] == 0  # nothing recorded


def test_the_unmodified_bodies_are_accepted(client: TestClient) -> None:
    # The row 7 bodies are valid but for the one number: without it they are 201.
    assert post_text(client, "/sweeps", SWEEP_TEXT)[0].status_code == 201
    assert post_text(client, "/hpo", STUDY_TEXT)[0].status_code == 201
    assert [client.get(route).json()["count"] for route in ("/sweeps", "/hpo")] == [1, 1]


@pytest.mark.parametrize(
    ("route", "config", "field"),
    [
        ("/sweeps", tiny_sweep(param_ranges={"\ud800": [1]}), "config.param_ranges.\\ud800"),
        (
            "/hpo",
            hpo_dict(search_space={"\udfff": {"type": "int", "low": 1, "high": 2}}),
            "config.search_space.\\udfff",
        ),
        (
            "/sweeps",
            tiny_sweep(configs=[{"name": "c", "params": {}, "source": {"\ud800": float("nan")}}]),
            "config.configs[0].source.\\ud800",
        ),
    ],
)
def test_a_key_utf8_cannot_carry_is_named_escaped(
    client: TestClient, route: str, config: dict[str, Any], field: str
) -> None:
    # JSON's "\ud800" escape reads as a lone surrogate; an error path holding it raw could
    # not be encoded into the answer (a 500).
    response, _ = post(client, route, {"asset": ASSET, "config": config})
    assert field in problems(response)


def test_an_integer_too_long_to_read_is_a_4xx(client: TestClient) -> None:
    response, _ = post_text(client, "/sweeps", SWEEP_TEXT.replace('"value": 1.5', '"value": ' + "9" * 5000))
    assert response.status_code == 400, response.text


# -- fuzzing: anything JSON can say gets a 2xx or 4xx, quickly ---------------------------------

# Numbers near every limit the schema has, the non-finite ones, and plain junk.
numbers = st.one_of(
    st.integers(-(2**64), 2**64),
    st.sampled_from([0, 1, -1, 2, 1000, 1001, 10_000, 10_001, 2**32, 2**53 + 1, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1e-300, 5e-324, 1e308, -0.0, 0.5, 1.0]),
)
# Text with what breaks encoders and paths: lone surrogates (JSON's "\\ud800" reads as one,
# and UTF-8 cannot send it back), NUL, quotes, dots and brackets, spreadsheet formula starts.
texts = st.one_of(
    st.text(max_size=12),
    st.lists(
        st.sampled_from(["\ud800", "\udfff", "\x00", "'", '"', "\\", ".", "[0]", "=", "é", "a", "1"]), max_size=6
    ).map("".join),
    st.sampled_from(["baseline", "hidden_size", "dropout", "grid", "categorical", "20150101", "SYN", ""]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(texts, inner, max_size=6),
    ),
    max_leaves=25,
)


def leaf_paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key and index of `data`, the containers' own paths included."""
    paths = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            paths += leaf_paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            paths += leaf_paths(value, (*prefix, i))
    return paths


def mutated(base: dict[str, Any], path: tuple[Any, ...], action: str, value: Any, key: str) -> dict[str, Any]:
    """`base` with the item at `path` replaced by `value`, deleted, or given a sibling `key`."""
    data = copy.deepcopy(base)
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "delete" and isinstance(parent, dict):
        del parent[last]
    elif action == "sibling" and isinstance(parent, dict):
        parent[key] = value
    else:
        parent[last] = value
    return data


SWEEP = tiny_sweep(
    split_config=None,
    configs=[{"name": "cand", "params": {"hidden_size": 8}, "source": {"trial": 1}}],
    stats={"alpha": 0.05},
)
STUDY = hpo_dict(
    sampler={"type": "grid", "seed": 1},
    pruner={"type": "median", "n_startup_trials": 1, "n_warmup_steps": 1},
    timeout_s=30.0,
    search_space={
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
        "hidden_size": {"type": "int", "low": 4, "high": 8, "step": 2},
        "loss": {"type": "categorical", "choices": ["rmse", "mae"]},
    },
)
actions = st.sampled_from(["replace", "delete", "sibling"])
FUZZ = settings(
    max_examples=120,
    deadline=None,  # the bound is asserted on each answer instead (a deadline would be flaky on a shared CPU)
    derandomize=True,  # the same examples on every run: no flake, no database
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def assert_answered(response: httpx.Response, seconds: float) -> None:
    assert response.status_code < 500, response.text
    assert seconds < 2, seconds


@FUZZ
@given(route=st.sampled_from(["/sweeps", "/hpo"]), body=json_values)
def test_any_json_body_is_answered_without_a_5xx(client: TestClient, route: str, body: Any) -> None:
    response, seconds = post(client, route, body)
    assert_answered(response, seconds)


@FUZZ
@given(route=st.sampled_from(["/sweeps", "/hpo"]), config=json_values)
def test_any_json_config_is_answered_without_a_5xx(client: TestClient, route: str, config: Any) -> None:
    response, seconds = post(client, route, {"asset": ASSET, "config": config})
    assert_answered(response, seconds)
    assert response.status_code in (400, 404, 409, 413, 415, 422) or response.status_code < 300


@FUZZ
@given(data=st.data(), action=actions, value=json_values)
def test_a_near_valid_sweep_is_answered_without_a_5xx(
    client: TestClient, data: st.DataObject, action: str, value: Any
) -> None:
    path = data.draw(st.sampled_from(leaf_paths(SWEEP)))
    body = {"asset": ASSET, "config": mutated(SWEEP, path, action, value, data.draw(texts))}
    response, seconds = post(client, "/sweeps", body)
    assert_answered(response, seconds)


@FUZZ
@given(data=st.data(), action=actions, value=json_values)
def test_a_near_valid_study_is_answered_without_a_5xx(
    client: TestClient, data: st.DataObject, action: str, value: Any
) -> None:
    path = data.draw(st.sampled_from(leaf_paths(STUDY)))
    body = {"asset": ASSET, "config": mutated(STUDY, path, action, value, data.draw(texts))}
    response, seconds = post(client, "/hpo", body)
    assert_answered(response, seconds)
