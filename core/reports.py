"""Report tables built from run records (SPEC section 3), written atomically with stable formatting.

A run record is a dict with the `sweep_runs` columns plus `params` (the run's full
training config). Every table here is a pure function of the records, so reports can be
rebuilt at any time from `sweep_runs.json` without training.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import TRAINING_KEYS
from core.files import write_json_atomic, write_text_atomic
from core.plan import format_value

SWEEP_RUNS_COLUMNS: tuple[str, ...] = (
    "run_id",
    "run_key",
    "config_id",
    "param_name",
    "param_value",
    "fold",
    "seed",
    "status",
    "val_rmse",
    "test_rmse",
    "val_mae",
    "test_mae",
    "val_naive_rmse",
    "test_naive_rmse",
    "best_epoch",
    "epochs_trained",
    "train_seconds",
    "model_version",
    "error",
    "attempts",
    "started_at",
    "finished_at",
)

# One spelling for floats in every CSV, so a rebuild is byte-identical.
CSV_FLOAT_FORMAT = "%.10g"


def sweep_runs_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`sweep_runs` rows: the SPEC columns, then one column per training_config key."""
    rows = []
    for rec in records:
        row = {col: rec.get(col) for col in SWEEP_RUNS_COLUMNS}
        params = rec.get("params") or {}
        for key in TRAINING_KEYS:
            row[key] = params.get(key)
        rows.append(row)
    return rows


def records_from_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run records from `sweep_runs.json` rows (the inverse of `sweep_runs_rows`)."""
    records = []
    for row in rows:
        rec = {col: row.get(col) for col in SWEEP_RUNS_COLUMNS}
        rec["params"] = {key: row.get(key) for key in TRAINING_KEYS}
        records.append(rec)
    return records


def sweep_runs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = sweep_runs_rows(records)
    frame = pd.DataFrame(rows, columns=[*SWEEP_RUNS_COLUMNS, *TRAINING_KEYS])
    frame["param_value"] = [None if r["param_name"] is None else format_value(r["param_value"]) for r in rows]
    return frame


def to_csv_text(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format=CSV_FLOAT_FORMAT, lineterminator="\n")
    return buffer.getvalue()


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_text_atomic(path, to_csv_text(frame))


def json_safe(value: Any) -> Any:
    """NaN and infinities become null (JSON has no spelling for them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def write_sweep_runs(directory: Path, records: list[dict[str, Any]]) -> None:
    """`sweep_runs.csv` and `sweep_runs.json` under `directory`."""
    write_csv(directory / "sweep_runs.csv", sweep_runs_frame(records))
    write_json_atomic(directory / "sweep_runs.json", json_safe(sweep_runs_rows(records)))
