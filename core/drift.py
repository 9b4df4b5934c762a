"""Feature drift per fold: two-sample KS and PSI of the train window against val and test.

Drift needs only the dataset and the folds, so it can be computed before any run ends.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from core.config import Fold
from core.dataset_folds import fold_rows

PSI_BINS = 10
PSI_EPSILON = 1e-6
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25
BANDS = ("stable", "moderate", "significant")

DRIFT_COLUMNS = (
    "fold",
    "feature",
    "reference",
    "compared",
    "n_reference",
    "n_compared",
    "ks_stat",
    "ks_pvalue",
    "psi",
    "psi_band",
)


def psi(reference: np.ndarray, compared: np.ndarray, bins: int = PSI_BINS, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of `compared` against `reference`.

    Bin edges are the reference's deciles (duplicates merged, so a discrete feature gets
    fewer bins), the outer bins open-ended; empty bins count as `epsilon`.
    `PSI = sum((c - r) * ln(c / r))` over the bins' shares.
    """
    inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_counts = np.bincount(np.searchsorted(inner, reference, side="right"), minlength=len(inner) + 1)
    cmp_counts = np.bincount(np.searchsorted(inner, compared, side="right"), minlength=len(inner) + 1)
    ref_share = np.maximum(ref_counts / len(reference), epsilon)
    cmp_share = np.maximum(cmp_counts / len(compared), epsilon)
    return float(np.sum((cmp_share - ref_share) * np.log(cmp_share / ref_share)))


def psi_band(value: float) -> str:
    if value < PSI_MODERATE:
        return "stable"
    if value < PSI_SIGNIFICANT:
        return "moderate"
    return "significant"


def drift_by_fold(frame: pd.DataFrame, folds: list[Fold], features: list[str]) -> pd.DataFrame:
    """One row per (fold, feature, compared window): KS statistic and p-value, PSI and its band."""
    rows: list[dict[str, Any]] = []
    for fold in folds:
        windows = fold_rows(frame, fold)
        for feature in features:
            reference = windows["train"][feature].to_numpy(dtype="float64")
            for part in ("val", "test"):
                compared = windows[part][feature].to_numpy(dtype="float64")
                if len(reference) == 0 or len(compared) == 0:
                    continue
                ks = ks_2samp(reference, compared)
                value = psi(reference, compared)
                rows.append(
                    {
                        "fold": fold.name,
                        "feature": feature,
                        "reference": "train",
                        "compared": part,
                        "n_reference": len(reference),
                        "n_compared": len(compared),
                        "ks_stat": float(ks.statistic),
                        "ks_pvalue": float(ks.pvalue),
                        "psi": value,
                        "psi_band": psi_band(value),
                    }
                )
    return pd.DataFrame(rows, columns=list(DRIFT_COLUMNS))


def drift_overall_summary(by_fold: pd.DataFrame, top: int = 5) -> dict[str, Any]:
    """Per feature: mean and max KS/PSI over folds and windows, rows per band; the most drifting features."""
    features: dict[str, Any] = {}
    for feature, group in by_fold.groupby("feature", sort=False):
        bands = group["psi_band"].value_counts()
        features[str(feature)] = {
            "mean_ks": float(group["ks_stat"].mean()),
            "max_ks": float(group["ks_stat"].max()),
            "mean_psi": float(group["psi"].mean()),
            "max_psi": float(group["psi"].max()),
            "n_by_band": {band: int(bands.get(band, 0)) for band in BANDS},
            "worst": _worst(group),
        }
    ranked = sorted(features, key=lambda f: (-features[f]["max_psi"], f))
    counts = by_fold["psi_band"].value_counts()
    return {
        "reference": "train window of each fold",
        "compared": ["val", "test"],
        "psi_bins": PSI_BINS,
        "psi_epsilon": PSI_EPSILON,
        "bands": {
            "stable": f"psi < {PSI_MODERATE}",
            "moderate": f"{PSI_MODERATE} <= psi < {PSI_SIGNIFICANT}",
            "significant": f"psi >= {PSI_SIGNIFICANT}",
        },
        "n_comparisons": len(by_fold),
        "n_by_band": {band: int(counts.get(band, 0)) for band in BANDS},
        "most_drifting_features": ranked[:top],
        "features": features,
    }


def _worst(group: pd.DataFrame) -> dict[str, Any]:
    row = group.loc[group["psi"].idxmax()]
    return {"fold": str(row["fold"]), "compared": str(row["compared"]), "psi": float(row["psi"])}
