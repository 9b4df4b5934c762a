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
from core.plan import BASELINE_ID, format_value

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

# training_config columns beside the run columns; `seed` is already there (the run's seed).
PARAM_COLUMNS: tuple[str, ...] = tuple(k for k in TRAINING_KEYS if k not in SWEEP_RUNS_COLUMNS)

# One spelling for floats in every CSV, so a rebuild is byte-identical.
CSV_FLOAT_FORMAT = "%.10g"


def sweep_runs_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`sweep_runs` rows: the SPEC columns, then one column per training_config key."""
    rows = []
    for rec in records:
        row = {col: rec.get(col) for col in SWEEP_RUNS_COLUMNS}
        params = rec.get("params") or {}
        for key in PARAM_COLUMNS:
            row[key] = params.get(key)
        rows.append(row)
    return rows


def records_from_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run records from `sweep_runs.json` rows (the inverse of `sweep_runs_rows`)."""
    records = []
    for row in rows:
        rec = {col: row.get(col) for col in SWEEP_RUNS_COLUMNS}
        rec["params"] = {key: row.get(key) for key in TRAINING_KEYS}  # seed: the run's seed
        records.append(rec)
    return records


def sweep_runs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = sweep_runs_rows(records)
    frame = pd.DataFrame(rows, columns=[*SWEEP_RUNS_COLUMNS, *PARAM_COLUMNS])
    frame["param_value"] = [None if r["param_name"] is None else format_value(r["param_value"]) for r in rows]
    return frame


def runs_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The analysis view of the runs: `sweep_runs` columns plus `param_raw` (the typed value)."""
    frame = sweep_runs_frame(records)
    frame["param_raw"] = pd.Series([r.get("param_value") for r in records], dtype=object)
    for col in ("val_rmse", "test_rmse", "val_mae", "test_mae", "val_naive_rmse", "test_naive_rmse"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
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


# -- ranking and impact ----------------------------------------------------------------------

RANKING_COLUMNS = (
    "rank",
    "config_id",
    "param_name",
    "param_value",
    "n_runs",
    "n_failed",
    "mean_val_rmse",
    "std_val_rmse",
    "robust_score",
    "mean_test_rmse",
    "std_test_rmse",
    "n_total",
    "mean_val_mae",
    "mean_test_mae",
    "mean_val_naive_rmse",
    "mean_test_naive_rmse",
)
IMPACT_DETAIL_COLUMNS = (
    "config_id",
    "param_name",
    "param_value",
    "fold",
    "seed",
    "val_rmse",
    "baseline_val_rmse",
    "delta_rmse_vs_baseline",
    "test_rmse",
    "baseline_test_rmse",
    "delta_test_rmse_vs_baseline",
)
IMPACT_SUMMARY_COLUMNS = (
    "param_name",
    "param_value",
    "config_id",
    "n_pairs",
    "avg_delta_rmse_vs_baseline",
    "std_delta_rmse_vs_baseline",
    "win_rate",
    "avg_delta_test_rmse_vs_baseline",
    "std_delta_test_rmse_vs_baseline",
)


def sample_std(values: pd.Series) -> float:
    """Sample standard deviation (ddof=1); 0 for exactly one value, NaN for none."""
    if len(values) == 0:
        return math.nan
    if len(values) == 1:
        return 0.0
    return float(values.std(ddof=1))


def build_config_ranking(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per config, sorted by `robust_score = mean_val_rmse + std_val_rmse` ascending.

    Statistics use succeeded runs only (`n_runs` of them); `n_failed` counts failed runs,
    `n_total` every run of the config. Configs without a succeeded run rank last.
    Ties keep plan order.
    """
    rows = []
    for order, (config_id, group) in enumerate(runs.groupby("config_id", sort=False)):
        ok = group[group["status"] == "succeeded"]
        mean_val = float(ok["val_rmse"].mean()) if len(ok) else math.nan
        std_val = sample_std(ok["val_rmse"])
        first = group.iloc[0]
        rows.append(
            {
                "_order": order,
                "config_id": config_id,
                "param_name": first["param_name"],
                "param_value": first["param_value"],
                "n_runs": len(ok),
                "n_failed": int((group["status"] == "failed").sum()),
                "n_total": len(group),
                "mean_val_rmse": mean_val,
                "std_val_rmse": std_val,
                "robust_score": mean_val + std_val,
                "mean_test_rmse": float(ok["test_rmse"].mean()) if len(ok) else math.nan,
                "std_test_rmse": sample_std(ok["test_rmse"]),
                "mean_val_mae": float(ok["val_mae"].mean()) if len(ok) else math.nan,
                "mean_test_mae": float(ok["test_mae"].mean()) if len(ok) else math.nan,
                "mean_val_naive_rmse": float(ok["val_naive_rmse"].mean()) if len(ok) else math.nan,
                "mean_test_naive_rmse": float(ok["test_naive_rmse"].mean()) if len(ok) else math.nan,
            }
        )
    table = pd.DataFrame(rows, columns=["_order", *RANKING_COLUMNS[1:]])
    table = table.sort_values(["robust_score", "_order"], na_position="last", kind="stable").drop(columns="_order")
    table.insert(0, "rank", range(1, len(table) + 1))
    return table.reset_index(drop=True)


def build_param_impact_detail(runs: pd.DataFrame) -> pd.DataFrame:
    """Each succeeded variant run beside the succeeded baseline run of the same fold and seed."""
    ok = runs[runs["status"] == "succeeded"]
    base = ok[ok["config_id"] == BASELINE_ID][["fold", "seed", "val_rmse", "test_rmse"]]
    base = base.rename(columns={"val_rmse": "baseline_val_rmse", "test_rmse": "baseline_test_rmse"})
    variants = ok[ok["param_name"].notna() & (ok["config_id"] != BASELINE_ID)]
    pairs = variants.merge(base, on=["fold", "seed"], how="inner", sort=False)
    pairs["delta_rmse_vs_baseline"] = pairs["val_rmse"] - pairs["baseline_val_rmse"]
    pairs["delta_test_rmse_vs_baseline"] = pairs["test_rmse"] - pairs["baseline_test_rmse"]
    order = _plan_order(runs)
    pairs = pairs.assign(
        _c=pairs["config_id"].map(order["config_id"]),
        _f=pairs["fold"].map(order["fold"]),
        _s=pairs["seed"].map(order["seed"]),
    ).sort_values(["_c", "_f", "_s"], kind="stable")
    return pairs[list(IMPACT_DETAIL_COLUMNS)].reset_index(drop=True)


def build_param_impact_summary(detail: pd.DataFrame) -> pd.DataFrame:
    """Per (param, value): pairs, mean and sample std of the delta, win rate, test delta.

    A pair wins when the variant's val RMSE is strictly below its baseline's.
    Sorted by the average delta ascending (most helpful first); ties keep plan order.
    """
    rows = []
    for order, (config_id, group) in enumerate(detail.groupby("config_id", sort=False)):
        delta = group["delta_rmse_vs_baseline"]
        rows.append(
            {
                "_order": order,
                "param_name": group["param_name"].iloc[0],
                "param_value": group["param_value"].iloc[0],
                "config_id": config_id,
                "n_pairs": len(group),
                "avg_delta_rmse_vs_baseline": float(delta.mean()),
                "std_delta_rmse_vs_baseline": sample_std(delta),
                "win_rate": float((delta < 0).mean()),
                "avg_delta_test_rmse_vs_baseline": float(group["delta_test_rmse_vs_baseline"].mean()),
                "std_delta_test_rmse_vs_baseline": sample_std(group["delta_test_rmse_vs_baseline"]),
            }
        )
    table = pd.DataFrame(rows, columns=["_order", *IMPACT_SUMMARY_COLUMNS])
    table = table.sort_values(["avg_delta_rmse_vs_baseline", "_order"], kind="stable").drop(columns="_order")
    return table.reset_index(drop=True)


def _plan_order(runs: pd.DataFrame) -> dict[str, dict[Any, int]]:
    return {col: {v: i for i, v in enumerate(pd.unique(runs[col]))} for col in ("config_id", "fold", "seed")}
