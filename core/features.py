"""Feature engineering from daily OHLCV prices: the columns behind the registered feature sets.

Every feature on row `d` uses prices up to and including the close of `d`. The target on
row `d` is the log return from the previous close to the close of `d`; a model forecasts
it from rows strictly before `d` (the encoder), plus calendar covariates of `d`, which are
known in advance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGET_DEFINITION = (
    "target[d] = ln(close[d] / close[d-1]): the daily log return of the (adjusted) close; "
    "forecast for day d from the encoder's rows before d"
)

FEATURE_DOCS: dict[str, str] = {
    "ret_5": "ln(close[d] / close[d-5]): one-week log return",
    "ret_21": "ln(close[d] / close[d-21]): one-month log return",
    "ret_63": "ln(close[d] / close[d-63]): one-quarter log return",
    "vol_10": "sample std of the last 10 daily log returns (two-week realised volatility)",
    "vol_21": "sample std of the last 21 daily log returns (one-month realised volatility)",
    "rsi_14": "Wilder's 14-day relative strength index, 0..100",
    "macd": "(EMA12(close) - EMA26(close)) / close: trend, scale-free",
    "macd_signal": "EMA9 of macd",
    "macd_hist": "macd - macd_signal",
    "volume_z_21": "z-score of ln(1 + volume) against its last 21 days (0 when they are constant)",
    "hl_range": "ln(high[d] / low[d]): intraday range",
    "day_of_week": "0 = Monday .. 4 = Friday (known in advance)",
    "day_of_month": "1..31 (known in advance)",
    "month": "1..12 (known in advance)",
}

# Rows lost at the start while the longest window (63 days) fills.
WARMUP_ROWS = 63


def compute_features(prices: pd.DataFrame) -> pd.DataFrame:
    """Target and every registered feature from a clean, date-sorted OHLCV frame.

    `prices` has `date, open, high, low, close, volume` (and optionally `adj_close`,
    which then drives returns and trend). The first `WARMUP_ROWS` rows, whose windows
    are incomplete, are dropped.
    """
    close = prices["adj_close"] if "adj_close" in prices else prices["close"]
    close = close.astype("float64")
    log_close = np.log(close)
    logret = log_close.diff()
    out = pd.DataFrame({"date": prices["date"].to_numpy()})
    out["target"] = logret.to_numpy()
    for days in (5, 21, 63):
        out[f"ret_{days}"] = (log_close - log_close.shift(days)).to_numpy()
    for days in (10, 21):
        out[f"vol_{days}"] = logret.rolling(days).std().to_numpy()
    out["rsi_14"] = _rsi(close, 14).to_numpy()
    ema12 = close.ewm(span=12, adjust=False).mean()
    ema26 = close.ewm(span=26, adjust=False).mean()
    macd = (ema12 - ema26) / close
    signal = macd.ewm(span=9, adjust=False).mean()
    out["macd"] = macd.to_numpy()
    out["macd_signal"] = signal.to_numpy()
    out["macd_hist"] = (macd - signal).to_numpy()
    log_volume = np.log1p(prices["volume"].astype("float64"))
    mean = log_volume.rolling(21).mean()
    std = log_volume.rolling(21).std()
    out["volume_z_21"] = ((log_volume - mean) / std.where(std > 0)).fillna(0.0).where(mean.notna()).to_numpy()
    out["hl_range"] = np.log(prices["high"].astype("float64") / prices["low"].astype("float64")).to_numpy()
    dates = pd.DatetimeIndex(out["date"])
    out["day_of_week"] = dates.dayofweek.astype("float64")
    out["day_of_month"] = dates.day.astype("float64")
    out["month"] = dates.month.astype("float64")
    return out.iloc[WARMUP_ROWS:].reset_index(drop=True)


def _rsi(close: pd.Series, days: int) -> pd.Series:
    delta = close.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / days, adjust=False, min_periods=days).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / days, adjust=False, min_periods=days).mean()
    rs = gain / loss.where(loss > 0)
    rsi = 100 - 100 / (1 + rs)
    # No losses in the window: RSI is 100 by definition (rs is infinite).
    return rsi.where(loss > 0, 100.0).where(gain.notna())
