"""Reference forecasts: each built-in against numbers worked out by hand or by an independent
numpy fit, ar1's iteration over horizons, its degenerate windows, and registration."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from core.references import REFERENCES, Reference, ar1_coefficients, forecast_references, register_reference

TRAIN = np.array([1.0, 2.0, 1.5, 3.0, 2.0, 2.5])


def test_naive_and_mean_forecasts() -> None:
    out = forecast_references(["naive", "mean"], TRAIN, np.array([5.0, -1.0, 0.0]), np.array([1, 2, 3]))
    assert out["naive"].tolist() == [0.0, 0.0, 0.0]
    assert out["mean"] == pytest.approx([2.0, 2.0, 2.0])  # 12 / 6


def test_ar1_is_the_ols_fit_of_today_on_yesterday() -> None:
    a, b = ar1_coefficients(TRAIN)
    slope, intercept = np.polyfit(TRAIN[:-1], TRAIN[1:], 1)
    assert (a, b) == pytest.approx((intercept, slope))
    out = forecast_references(["ar1"], TRAIN, np.array([4.0]), np.array([1]))
    assert out["ar1"] == pytest.approx([intercept + slope * 4.0])


def test_ar1_iterates_over_horizons() -> None:
    a, b = ar1_coefficients(TRAIN)
    origin = np.array([4.0, 4.0, 4.0, -2.0])
    horizon = np.array([1, 2, 3, 3])
    out = forecast_references(["ar1"], TRAIN, origin, horizon)["ar1"]
    closed_form = [a * sum(b**k for k in range(h)) + b**h * y for y, h in zip(origin, horizon, strict=True)]
    assert out == pytest.approx(closed_form)


def test_ar1_by_hand() -> None:
    # lagged 0, 1, 3 -> 1, 3, 7: y = 1 + 2 * previous, exactly.
    assert ar1_coefficients(np.array([0.0, 1.0, 3.0, 7.0])) == pytest.approx((1.0, 2.0))
    out = forecast_references(["ar1"], np.array([0.0, 1.0, 3.0, 7.0]), np.array([1.0, 1.0]), np.array([1, 2]))
    assert out["ar1"] == pytest.approx([3.0, 7.0])


@pytest.mark.parametrize(
    "train",
    [np.array([1.0, 3.0]), np.array([2.0, 2.0, 2.0, 7.0])],
    ids=["fewer than 3 points", "constant lagged values"],
)
def test_ar1_degenerate_window_forecasts_the_mean(train: np.ndarray) -> None:
    a, b = ar1_coefficients(train)
    assert a == pytest.approx(train.mean())
    assert b == 0.0
    out = forecast_references(["ar1"], train, np.array([10.0, 10.0]), np.array([1, 4]))
    assert out["ar1"] == pytest.approx([train.mean(), train.mean()])


def test_forecast_refuses_unknown_names_and_bad_horizons() -> None:
    with pytest.raises(KeyError, match="nope"):
        forecast_references(["nope"], TRAIN, np.array([1.0]), np.array([1]))
    with pytest.raises(ValueError, match="1-based"):
        forecast_references(["naive"], TRAIN, np.array([1.0]), np.array([0]))
    with pytest.raises(ValueError, match="one length"):
        forecast_references(["naive"], TRAIN, np.array([1.0, 2.0]), np.array([1]))


@pytest.fixture
def last_value() -> Iterator[Reference]:
    ref = register_reference(
        Reference("last_value", "origin_target: the last observed value", lambda train: lambda origin, h: origin)
    )
    yield ref
    del REFERENCES[ref.name]


def test_a_registered_reference_forecasts(last_value: Reference) -> None:
    out = forecast_references(["last_value", "naive"], TRAIN, np.array([0.3, -0.1]), np.array([1, 2]))
    assert out["last_value"].tolist() == [0.3, -0.1]
    assert out["naive"].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("name", ["naive", "Naive", "1ar", "ar-1", ""])
def test_register_refuses_duplicate_and_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match=repr(name)):
        register_reference(Reference(name, "x", lambda train: lambda origin, h: origin))
