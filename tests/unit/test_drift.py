"""KS and PSI against direct scipy/numpy computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from core.datasets import synthetic_dataset
from core.drift import drift_by_fold, drift_overall_summary, psi, psi_band
from tests.utils.data import tiny_fold_model


def direct_psi(ref: np.ndarray, cmp: np.ndarray) -> float:
    edges = np.quantile(ref, [0.1 * i for i in range(1, 10)])
    edges = np.unique(edges)
    bins = np.concatenate([[-np.inf], edges, [np.inf]])
    r = np.histogram(ref, bins)[0] / len(ref)
    c = np.histogram(cmp, bins)[0] / len(cmp)
    # np.histogram's bins are closed on the left except the last; ours put a value equal
    # to an edge in the bin above it, which is the same for continuous data.
    r = np.where(r == 0, 1e-6, r)
    c = np.where(c == 0, 1e-6, c)
    return float(np.sum((c - r) * np.log(c / r)))


def test_psi_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 2000)
    for shift in (0.0, 0.2, 0.5, 1.5):
        cmp = rng.normal(shift, 1, 700)
        assert psi(ref, cmp) == pytest.approx(direct_psi(ref, cmp), rel=1e-9)


def test_psi_identical_samples_is_zero_and_grows_with_shift() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, 5000)
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    values = [psi(ref, ref + s) for s in (0.1, 0.5, 1.0)]
    assert values == sorted(values)


def test_psi_empty_bins_use_epsilon_not_infinity() -> None:
    ref = np.arange(100, dtype=float)
    cmp = np.full(50, 1000.0)  # everything in the top bin
    value = psi(ref, cmp)
    assert np.isfinite(value) and value > 1


def test_bands() -> None:
    assert [psi_band(v) for v in (0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0)] == [
        "stable",
        "stable",
        "moderate",
        "moderate",
        "significant",
        "significant",
    ]


def test_drift_by_fold_uses_the_train_window_as_reference() -> None:
    frame = synthetic_dataset(n_days=1050)
    fold = tiny_fold_model()
    table = drift_by_fold(frame, [fold], ["rsi_14", "vol_10"])
    assert table[["feature", "compared"]].values.tolist() == [
        ["rsi_14", "val"],
        ["rsi_14", "test"],
        ["vol_10", "val"],
        ["vol_10", "test"],
    ]
    train = frame[(frame["date"] >= "2010-01-01") & (frame["date"] <= "2011-12-31")]["vol_10"].to_numpy()
    test = frame[(frame["date"] >= "2012-07-01") & (frame["date"] <= "2012-12-31")]["vol_10"].to_numpy()
    row = table[(table["feature"] == "vol_10") & (table["compared"] == "test")].iloc[0]
    expected = ks_2samp(train, test)
    assert row["ks_stat"] == pytest.approx(expected.statistic)
    assert row["ks_pvalue"] == pytest.approx(expected.pvalue)
    assert row["psi"] == pytest.approx(direct_psi(train, test))
    assert row["psi_band"] == psi_band(row["psi"])
    assert (row["reference"], row["n_reference"], row["n_compared"]) == ("train", len(train), len(test))


def test_overall_summary() -> None:
    table = pd.DataFrame(
        {
            "fold": ["a", "a", "b", "b"],
            "feature": ["x", "y", "x", "y"],
            "reference": "train",
            "compared": "val",
            "n_reference": 10,
            "n_compared": 5,
            "ks_stat": [0.1, 0.2, 0.3, 0.4],
            "ks_pvalue": 0.5,
            "psi": [0.05, 0.3, 0.15, 0.01],
            "psi_band": ["stable", "significant", "moderate", "stable"],
        }
    )
    summary = drift_overall_summary(table)
    assert summary["most_drifting_features"] == ["y", "x"]
    assert summary["features"]["x"]["mean_psi"] == pytest.approx(0.1)
    assert summary["features"]["x"]["max_ks"] == pytest.approx(0.3)
    assert summary["features"]["y"]["n_by_band"] == {"stable": 1, "moderate": 0, "significant": 1}
    assert summary["features"]["y"]["worst"] == {"fold": "a", "compared": "val", "psi": 0.3}
    assert summary["n_by_band"] == {"stable": 2, "moderate": 1, "significant": 1}
