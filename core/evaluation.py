"""A run's prediction rows and the metrics computed from them: the one path the trainer (at run
time) and `tftsweep regenerate` (later, from the stored file) both take.

`predictions.parquet` holds one row per (split, date, horizon), split in val and test: `split,
date` (the target day, YYYY-MM-DD), `horizon` (1-based), `actual, predicted`, the quantile
forecasts `q02 ... q98` with a quantile loss, and `ref_{name}` per reference forecast.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Fold
from core.dataset_folds import fold_rows
from core.files import write_bytes_atomic
from core.metrics import QUANTILE_COLUMNS, SPLITS, SplitRows, column_name, compute_split, metric_names
from core.paths import LEGACY_PREDICTIONS_FILE, PREDICTIONS_FILE
from core.references import forecast_references

KEY_COLUMNS = ("split", "date", "horizon")
VALUE_COLUMNS = ("actual", "predicted")
REF_PREFIX = "ref_"


def origin_targets(frame: pd.DataFrame, dates: Sequence[str] | np.ndarray, horizon: np.ndarray) -> np.ndarray:
    """For each row, the target of the dataset day `horizon` rows before its date: the last day
    observed before the row's forecast window.

    `frame` is the asset's dataset (`date, target, ...` sorted by date, as `load_dataset` gives).

    Raises:
        ValueError: a date is not a dataset day, or its origin would precede the dataset.
    """
    days = pd.DatetimeIndex(frame["date"])
    wanted = pd.DatetimeIndex(pd.to_datetime(np.asarray(dates)))
    steps = np.asarray(horizon, dtype="int64")
    position = days.searchsorted(wanted)
    found = position < len(days)
    found[found] = days[position[found]] == wanted[found]
    if not found.all():
        raise ValueError(f"prediction dates not in the dataset: {sorted(set(wanted[~found].strftime('%Y-%m-%d')))[:5]}")
    origin = position - steps
    if (origin < 0).any():
        raise ValueError("a prediction row's origin day precedes the dataset's first day")
    out: np.ndarray = frame["target"].to_numpy(dtype="float64")[origin]
    return out


def train_target(frame: pd.DataFrame, fold: Fold) -> np.ndarray:
    """The target over `fold`'s train window, in date order."""
    out: np.ndarray = fold_rows(frame, fold)["train"]["target"].to_numpy(dtype="float64")
    return out


def add_references(
    predictions: pd.DataFrame, frame: pd.DataFrame, fold: Fold, references: Sequence[str]
) -> pd.DataFrame:
    """A copy of `predictions` with `ref_{name}` (re)computed for every row: each reference is
    fitted on `fold`'s train window of `frame` and forecast from each row's origin day."""
    out = predictions.copy()
    horizon = out["horizon"].to_numpy(dtype="int64")
    origin = origin_targets(frame, out["date"].to_numpy(), horizon)
    forecasts = forecast_references(references, train_target(frame, fold), origin, horizon)
    for name, forecast in forecasts.items():
        out[f"{REF_PREFIX}{name}"] = forecast
    return out


def evaluate(
    predictions: pd.DataFrame, frame: pd.DataFrame, fold: Fold, references: Sequence[str], costs_bps: float
) -> dict[str, float | None]:
    """Every metric column (`core.metrics.metric_columns(references)`) from a run's prediction
    rows; the columns of a split without rows are None. Reference forecasts the rows lack are
    computed first (`add_references`)."""
    missing = [ref for ref in references if f"{REF_PREFIX}{ref}" not in predictions.columns]
    if missing:
        predictions = add_references(predictions, frame, fold, missing)
    train = train_target(frame, fold)
    out: dict[str, float | None] = {}
    for split in SPLITS:
        rows = predictions[predictions["split"] == split]
        values = compute_split(SplitRows(rows, train, costs_bps), references) if len(rows) else {}
        for name in metric_names(references):
            out[column_name(split, name)] = values.get(name)
    return out


def read_predictions(version_dir: Path) -> pd.DataFrame | None:
    """A model version's prediction rows: `predictions.parquet`, else an older run's
    `test_predictions.csv` as its `test` rows (its `naive` column dropped: the reference is
    recomputed as `ref_naive`); None when the version has neither."""
    path = version_dir / PREDICTIONS_FILE
    if path.is_file():
        return pd.read_parquet(path)
    legacy = version_dir / LEGACY_PREDICTIONS_FILE
    if not legacy.is_file():
        return None
    rows = pd.read_csv(legacy, dtype={"date": str})
    rows = rows.drop(columns=["naive"], errors="ignore")
    rows.insert(0, "split", "test")
    return _typed(rows)


def write_predictions(path: Path, frame: pd.DataFrame) -> None:
    """Write prediction rows to `path` atomically (parquet via pyarrow): the key and value
    columns, the quantile columns if any, then the reference columns in the frame's order;
    every forecast as float64.

    Raises:
        ValueError: a required column is missing, the quantile columns are incomplete, or a
            column is none of these.
    """
    required = [*KEY_COLUMNS, *VALUE_COLUMNS]
    missing = [column for column in required if column not in frame.columns]
    quantiles = [column for column in QUANTILE_COLUMNS if column in frame.columns]
    if quantiles and len(quantiles) != len(QUANTILE_COLUMNS):
        missing += [column for column in QUANTILE_COLUMNS if column not in quantiles]
    if missing:
        raise ValueError(f"prediction rows lack columns {missing}")
    references = [column for column in frame.columns if str(column).startswith(REF_PREFIX)]
    unknown = [column for column in frame.columns if column not in {*required, *quantiles, *references}]
    if unknown:
        raise ValueError(f"unexpected prediction columns {unknown}")
    rows = _typed(frame[[*required, *quantiles, *references]])
    buffer = io.BytesIO()
    rows.to_parquet(buffer, engine="pyarrow", index=False)
    write_bytes_atomic(path, buffer.getvalue())


def _typed(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with the file's types: split and date strings, horizon int64, the rest float64."""
    types = {column: "float64" for column in rows.columns if column not in KEY_COLUMNS} | {
        "split": "str",
        "date": "str",
        "horizon": "int64",
    }
    return rows.astype(types).reset_index(drop=True)
