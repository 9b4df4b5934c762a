"""Reference forecasts a model is measured against: each is fitted on a fold's train window and
forecasts every prediction row from the last day observed before that row's window.

A reference becomes the column `ref_{name}` of `predictions.parquet` and the per-reference
metrics of `core.metrics` (`{ref}_rmse`, `skill_{ref}`, `dm_{ref}_*`). Adding one is one
`register_reference` call; the built-ins are `naive`, `mean` and `ar1`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

# (origin_target, horizon) -> forecast, one value per row.
Forecaster = Callable[[np.ndarray, np.ndarray], np.ndarray]

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
T = TypeVar("T")


@dataclass(frozen=True)
class Reference:
    """A reference forecast.

    Attributes:
        name: `[a-z][a-z0-9_]*`; its forecasts are the column `ref_{name}`.
        description: one line with the formula (docs and column descriptions quote it).
        fit: fit(train_target) -> forecaster; `train_target` is the target over the fold's
            train window in date order (consecutive values are consecutive days).
    """

    name: str
    description: str
    fit: Callable[[np.ndarray], Forecaster]


REFERENCES: dict[str, Reference] = {}


def add_named(registry: dict[str, T], name: str, item: T, kind: str) -> T:
    """Add `item` to `registry` under `name` (a registry of references, losses, ...) and return it.

    Raises:
        ValueError: the name is taken or is not `[a-z][a-z0-9_]*` (the message says `kind`).
    """
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"{kind} name {name!r} must match [a-z][a-z0-9_]*")
    if name in registry:
        raise ValueError(f"{kind} {name!r} is already registered")
    registry[name] = item
    return item


def register_reference(ref: Reference) -> Reference:
    """Add `ref` to `REFERENCES` and return it.

    Raises:
        ValueError: the name is taken or is not `[a-z][a-z0-9_]*`.
    """
    return add_named(REFERENCES, ref.name, ref, "reference")


def forecast_references(
    names: Iterable[str], train_target: np.ndarray, origin_target: np.ndarray, horizon: np.ndarray
) -> dict[str, np.ndarray]:
    """Each named reference, fitted on `train_target`, forecast for every row (float64).

    `origin_target[i]` is the target of the day before the first forecast day of row i's
    window; `horizon[i]` is row i's 1-based horizon.

    Raises:
        KeyError: a name is not registered.
        ValueError: the arrays differ in length or a horizon is below 1.
    """
    train = np.asarray(train_target, dtype="float64")
    origin = np.asarray(origin_target, dtype="float64")
    steps = np.asarray(horizon, dtype="int64")
    if origin.shape != steps.shape or origin.ndim != 1:
        raise ValueError(f"origin_target {origin.shape} and horizon {steps.shape} must be 1-d of one length")
    if steps.size and steps.min() < 1:
        raise ValueError("horizons are 1-based: found one below 1")
    out = {}
    for name in names:
        if name not in REFERENCES:
            raise KeyError(f"unknown reference {name!r}; registered: {sorted(REFERENCES)}")
        forecast = np.asarray(REFERENCES[name].fit(train)(origin, steps), dtype="float64")
        out[name] = np.broadcast_to(forecast, origin.shape).copy()
    return out


def _fit_naive(train_target: np.ndarray) -> Forecaster:
    """Tomorrow's log return is zero: a random walk in prices."""
    return lambda origin, horizon: np.zeros(len(origin))


def _mean(values: np.ndarray) -> float:
    """The mean; NaN for no values (the metrics on such a forecast are None), without numpy's warning."""
    return float(np.mean(values)) if len(values) else float("nan")


def _fit_mean(train_target: np.ndarray) -> Forecaster:
    mean = _mean(train_target)
    return lambda origin, horizon: np.full(len(origin), mean)


def ar1_coefficients(train_target: np.ndarray) -> tuple[float, float]:
    """(a, b) of the OLS fit `y[d] = a + b * y[d-1]` over consecutive train-window days;
    `(mean, 0)` with fewer than 3 points or lagged values that never vary (no slope to fit)."""
    y = np.asarray(train_target, dtype="float64")
    if len(y) < 3:
        return _mean(y), 0.0
    lagged, current = y[:-1], y[1:]
    # ptp, not var: the mean of equal floats can differ from them in the last bit.
    if np.ptp(lagged) == 0:
        return _mean(y), 0.0
    centred = lagged - lagged.mean()
    b = float(np.sum(centred * (current - current.mean())) / np.sum(centred**2))
    return float(current.mean() - b * lagged.mean()), b


def _fit_ar1(train_target: np.ndarray) -> Forecaster:
    a, b = ar1_coefficients(train_target)

    def forecast(origin: np.ndarray, horizon: np.ndarray) -> np.ndarray:
        # Iterate a + b * previous from the origin, taking each row's value at its horizon.
        out = np.empty(len(origin))
        current = np.asarray(origin, dtype="float64")
        for step in range(1, int(horizon.max(initial=0)) + 1):
            current = a + b * current
            at_step = horizon == step
            out[at_step] = current[at_step]
        return out

    return forecast


NAIVE = register_reference(Reference("naive", "0: tomorrow's log return is zero (a random walk in prices)", _fit_naive))
MEAN = register_reference(Reference("mean", "mean(target over the train window)", _fit_mean))
AR1 = register_reference(
    Reference(
        "ar1",
        "a*(1+b+...+b^(h-1)) + b^h*origin, (a, b) the OLS fit of target[d] on target[d-1] over the train window "
        "(b = 0, a = mean with fewer than 3 points or constant lagged values)",
        _fit_ar1,
    )
)
