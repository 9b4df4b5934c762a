"""A toy metric to register in a test: what a researcher's own metric would be."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from core.metrics import METRICS, Metric, SplitRows, register_metric

TOY = "toy_abs_bias"


def _abs_bias(rows: SplitRows, ref: str | None) -> float | None:
    frame = rows.rows
    return float(abs(np.mean(frame["predicted"] - frame["actual"]))) if len(frame) else None


@contextmanager
def toy_metric_registered() -> Iterator[str]:
    """`toy_abs_bias` (|mean(predicted - actual)|, lower is better) registered for the block."""
    register_metric(Metric(TOY, "|mean(predicted - actual)| over the split's rows", "lower", _abs_bias))
    try:
        yield TOY
    finally:
        METRICS.pop(TOY, None)
