"""Named feature sets a sweep config may refer to instead of listing columns.

Kept free of pandas so that validating a config stays cheap; `core.features`
computes the columns these names refer to.
"""

from __future__ import annotations

# Observed (unknown in the future) reals: only the encoder sees them.
BASELINE_OBSERVED: tuple[str, ...] = (
    "ret_5",
    "ret_21",
    "ret_63",
    "vol_10",
    "vol_21",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "volume_z_21",
    "hl_range",
)
# Calendar covariates are known in advance, so the decoder may use them.
CALENDAR_KNOWN: tuple[str, ...] = ("day_of_week", "day_of_month", "month")

FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "BASELINE_FEATURES": (*BASELINE_OBSERVED, *CALENDAR_KNOWN),
    "PRICE_ONLY_FEATURES": ("ret_5", "ret_21", "ret_63", *CALENDAR_KNOWN),
    "MOMENTUM_FEATURES": ("ret_5", "ret_21", "ret_63", "rsi_14", "macd", "macd_signal", "macd_hist", *CALENDAR_KNOWN),
}

KNOWN_FEATURES: frozenset[str] = frozenset(CALENDAR_KNOWN)


def resolve_features(features: str | list[str]) -> list[str]:
    """Return the column names a `features` setting stands for.

    Raises:
        KeyError: `features` is a string that names no registered set.
    """
    if isinstance(features, str):
        return list(FEATURE_SETS[features])
    return list(features)
