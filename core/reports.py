"""Report tables built from run records (SPEC section 3), written atomically with stable formatting.

A run record is a dict with the `sweep_runs` columns plus `params` (the run's full
training config). Every table here is a pure function of the records, so reports can be
rebuilt at any time from `sweep_runs.json` without training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from core.config import TRAINING_KEYS
from core.files import write_bytes_atomic, write_text_atomic
from core.plan import BASELINE_ID, format_value
from core.runs import FLOAT_COLUMNS, RUN_COLUMNS

# training_config columns beside the run columns; `seed` is already there (the run's seed).
PARAM_COLUMNS: tuple[str, ...] = tuple(k for k in TRAINING_KEYS if k not in RUN_COLUMNS)

# One spelling for floats in every CSV, so a rebuild is byte-identical.
CSV_FLOAT_FORMAT = "%.10g"


def _one_line(value: Any) -> Any:
    # Errors are the only free text in a run record; one line each keeps a CSV row one line.
    return " ".join(value.split()) if isinstance(value, str) else value


SWEEP_RUNS_NAMES: tuple[str, ...] = (*RUN_COLUMNS, *PARAM_COLUMNS)


def sweep_runs_columns(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The `sweep_runs` table as columns of plain (JSON) values: the SPEC columns, then one
    column per training_config key; errors on one line."""
    columns = {col: [rec.get(col) for rec in records] for col in RUN_COLUMNS}
    params = [rec.get("params") or {} for rec in records]
    columns.update({key: [p.get(key) for p in params] for key in PARAM_COLUMNS})
    columns["error"] = [_one_line(e) for e in columns["error"]]
    return columns


def sweep_runs_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`sweep_runs` rows (what `sweep_runs.json` holds): non-finite metrics are null."""
    columns = sweep_runs_columns(records)
    for col in FLOAT_COLUMNS:  # the only columns that can hold NaN
        columns[col] = json_safe(columns[col])
    return _rows(columns)


def _rows(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    values = [columns[name] for name in SWEEP_RUNS_NAMES]
    return [dict(zip(SWEEP_RUNS_NAMES, row, strict=True)) for row in zip(*values, strict=True)]


def positions(values: list[Any]) -> dict[Any, list[int]]:
    """Each distinct value with the positions where it occurs, in order."""
    found: dict[Any, list[int]] = {}
    for i, value in enumerate(values):
        found.setdefault(value, []).append(i)
    return found


def records_from_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run records from `sweep_runs.json` rows (the inverse of `sweep_runs_rows`)."""
    records = []
    for row in rows:
        rec = {col: row.get(col) for col in RUN_COLUMNS}
        rec["params"] = {key: row.get(key) for key in TRAINING_KEYS}  # seed: the run's seed
        records.append(rec)
    return records


def spelled_values(columns: dict[str, list[Any]]) -> list[str | None]:
    """`param_value` as spelled in config ids (None for the baseline), each distinct value spelled once."""
    spelled: dict[tuple[type, Any], str] = {}
    out: list[str | None] = []
    for name, value in zip(columns["param_name"], columns["param_value"], strict=True):
        if name is None:
            out.append(None)
        elif type(value) in (int, float, str) and value != 0:  # hashable, and 0.0 == -0.0 as a key
            key = (type(value), value)
            if key not in spelled:
                spelled[key] = format_value(value)
            out.append(spelled[key])
        else:
            out.append(format_value(value))
    return out


def sweep_runs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The `sweep_runs` table, `param_value` spelled as in config ids."""
    columns = sweep_runs_columns(records)
    return pd.DataFrame(columns | {"param_value": spelled_values(columns)}, columns=list(SWEEP_RUNS_NAMES))


def _analysis_frame(columns: dict[str, list[Any]], spelled: list[str | None]) -> pd.DataFrame:
    data: dict[str, Any] = {col: columns[col] for col in RUN_COLUMNS}
    data["param_value"] = spelled
    data["param_raw"] = pd.Series(columns["param_value"], dtype=object)
    runs = pd.DataFrame(data)
    for col in FLOAT_COLUMNS:
        runs[col] = pd.to_numeric(runs[col], errors="coerce").astype("float64")
    return runs


def runs_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The analysis view of the runs: the SPEC `sweep_runs` columns (not the training params)
    plus `param_raw` (the typed value), metrics as floats."""
    columns = sweep_runs_columns(records)
    return _analysis_frame(columns, spelled_values(columns))


_CSV_SPECIAL = ',"\n'


def _csv_field(text: str) -> str:
    """A CSV field quoted as the csv module's QUOTE_MINIMAL does (pandas' default)."""
    if any(c in text for c in _CSV_SPECIAL):
        return '"' + text.replace('"', '""') + '"'
    return text


def _cell(value: Any) -> str:
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return CSV_FLOAT_FORMAT % value
    return _csv_field(str(value))


def _float_text(value: float) -> str:
    return "" if value != value else CSV_FLOAT_FORMAT % value


def _spell_column(values: list[Any], spell: Callable[[Any], str]) -> list[str]:
    """Each value spelled by `spell` (None: empty). A column of few distinct values (a training
    parameter, a seed) spells each once."""
    distinct = set(values)
    if 4 * len(distinct) > len(values) or 0.0 in distinct:  # 0.0 == -0.0 as a key
        return ["" if v is None else spell(v) for v in values]
    spelled = {v: "" if v is None else spell(v) for v in distinct}
    return [spelled[v] for v in values]


def _csv_cells(values: list[Any]) -> list[str]:
    """One column's CSV cells: floats as `%.10g`, missing values (None, NaN) empty, text quoted
    only when it must be. Columns of one kind take a fast path; mixed ones go value by value."""
    kinds = set(map(type, values)) - {type(None)}
    if kinds <= {float}:
        return _spell_column(values, _float_text)
    if kinds <= {int} or kinds <= {bool}:
        return _spell_column(values, str)
    if kinds <= {str, float} and all(v != v for v in values if type(v) is float):  # text; NaN is pandas' missing
        cells = ["" if v is None or type(v) is float else v for v in values]
        joined = "".join(cells)
        return [_csv_field(c) for c in cells] if any(c in joined for c in _CSV_SPECIAL) else cells
    return [_cell(v) for v in values]


def _csv_lines(columns: list[tuple[str, list[Any]]]) -> list[str]:
    header = ",".join(_csv_field(name) for name, _ in columns)
    cells = [_csv_cells(values) for _, values in columns]
    if len(cells) == 1:  # the csv module quotes an empty field that is a whole row
        cells = [['""' if c == "" else c for c in cells[0]]]
    return [header, *map(",".join, zip(*cells, strict=True))]


def csv_lines(frame: pd.DataFrame) -> list[str]:
    """The lines of `frame` as CSV (header first, no index), one line per row.

    The same text pandas writes with `float_format="%.10g"`, several times faster on
    100,000-row tables: each column is formatted once, as a whole.
    """
    return _csv_lines([(str(name), frame[name].tolist()) for name in frame.columns])


def to_csv_text(frame: pd.DataFrame) -> str:
    return "\n".join(csv_lines(frame)) + "\n"


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_text_atomic(path, to_csv_text(frame), durable=False)


def json_safe(value: Any) -> Any:
    """`value` as plain JSON data: numpy and pandas scalars become Python values, and NaN,
    infinities and pandas' missing values become null (JSON has no spelling for them);
    dicts, lists and tuples are converted throughout. The one such helper of the project."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # a numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def table_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A report table as JSON-ready rows (what the API serves)."""
    rows: list[dict[str, Any]] = json_safe(frame.to_dict(orient="records"))
    return rows


class SweepRunsFiles:
    """`sweep_runs.csv`/`.json` of a sweep, and `sweep_runs.csv` of each fold, formatted once.

    Each run is one CSV line, so a fold's CSV is the header plus its lines in the same
    order; no cell is formatted twice. `runs` is the analysis view (`runs_table`).
    """

    def __init__(self, records: list[dict[str, Any]]) -> None:
        columns = sweep_runs_columns(records)
        spelled = spelled_values(columns)
        self.runs = _analysis_frame(columns, spelled)
        table = [(name, spelled if name == "param_value" else columns[name]) for name in SWEEP_RUNS_NAMES]
        self.header, *self.csv_lines = _csv_lines(table)
        self.rows = _rows(columns)  # orjson writes NaN and infinities as null, as `sweep_runs_rows` does
        self.by_fold = positions(columns["fold"])

    def write(self, directory: Path) -> None:
        """The sweep's `sweep_runs.csv` and `sweep_runs.json`."""
        self._write_csv(directory, self.csv_lines)
        write_bytes_atomic(directory / "sweep_runs.json", json_rows(self.rows), durable=False)

    def write_fold(self, directory: Path, fold: str) -> None:
        """One fold's `sweep_runs.csv` (its runs as JSON: `GET /sweeps/{id}/runs?fold=`)."""
        self._write_csv(directory, [self.csv_lines[i] for i in self.by_fold.get(fold, [])])
        (directory / "sweep_runs.json").unlink(missing_ok=True)  # written per fold by earlier versions

    def _write_csv(self, directory: Path, lines: list[str]) -> None:
        write_text_atomic(directory / "sweep_runs.csv", "\n".join([self.header, *lines]) + "\n", durable=False)


def json_rows(rows: list[dict[str, Any]]) -> bytes:
    """A JSON array of rows, one row per line; NaN and infinities are null (orjson's spelling)."""
    if not rows:
        return b"[]\n"
    return b"[\n" + b",\n".join(map(orjson.dumps, rows)) + b"\n]\n"


def write_sweep_runs(directory: Path, records: list[dict[str, Any]]) -> None:
    """`sweep_runs.csv` and `sweep_runs.json` under `directory`."""
    SweepRunsFiles(records).write(directory)


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


def _keys(per_fold: bool) -> list[str]:
    return ["fold", "config_id"] if per_fold else ["config_id"]


def build_config_ranking(runs: pd.DataFrame, per_fold: bool = False) -> pd.DataFrame:
    """One row per config, sorted by `robust_score = mean_val_rmse + std_val_rmse` ascending.

    Statistics use succeeded runs only (`n_runs` of them); `n_failed` counts failed runs,
    `n_total` every run of the config. Configs without a succeeded run rank last.
    Ties keep plan order. `per_fold`: one ranking per fold in one pass, each fold's rows
    together (in the order folds first appear) under a leading `fold` column; split them
    with `split_by_fold`.
    """
    keys = _keys(per_fold)
    configs = runs.groupby(keys, sort=False)
    table = configs.agg(
        param_name=("param_name", "first"), param_value=("param_value", "first"), n_total=("status", "size")
    )
    table["n_failed"] = (runs["status"] == "failed").groupby([runs[k] for k in keys], sort=False).sum()
    ok = runs[runs["status"] == "succeeded"]
    stats = ok.groupby(keys, sort=False).agg(
        n_runs=("val_rmse", "size"),
        mean_val_rmse=("val_rmse", "mean"),
        std_val_rmse=("val_rmse", "std"),
        mean_test_rmse=("test_rmse", "mean"),
        std_test_rmse=("test_rmse", "std"),
        mean_val_mae=("val_mae", "mean"),
        mean_test_mae=("test_mae", "mean"),
        mean_val_naive_rmse=("val_naive_rmse", "mean"),
        mean_test_naive_rmse=("test_naive_rmse", "mean"),
    )
    table = table.join(stats, how="left")
    table["n_runs"] = table["n_runs"].fillna(0).astype(int)
    for col in ("std_val_rmse", "std_test_rmse"):  # the sample std of one value is 0, not undefined
        table.loc[table["n_runs"] == 1, col] = 0.0
    table["robust_score"] = table["mean_val_rmse"] + table["std_val_rmse"]
    table = _sorted(table, "robust_score", per_fold)
    rank = table.groupby("fold", sort=False).cumcount() + 1 if per_fold else range(1, len(table) + 1)
    table.insert(0, "rank", rank)
    return table[[*keys[:-1], *RANKING_COLUMNS]].reset_index(drop=True)


def build_param_impact_detail(runs: pd.DataFrame, per_fold: bool = False) -> pd.DataFrame:
    """Each succeeded variant run beside the succeeded baseline run of the same fold and seed.

    Rows follow plan order: config, then fold, then seed (`per_fold`: fold first, then the
    order configs and seeds first appear within the fold).
    """
    pairs = _impact_pairs(runs)
    return _detail(pairs, per_fold).reset_index(drop=True)


def _impact_pairs(runs: pd.DataFrame) -> pd.DataFrame:
    """The detail rows, unsorted, with the plan-order keys of both orders (`_c`, `_f`, `_s`
    overall; `_fc`, `_fs` within the fold)."""
    ok = runs[runs["status"] == "succeeded"]
    base = ok[ok["config_id"] == BASELINE_ID][["fold", "seed", "val_rmse", "test_rmse"]]
    base = base.rename(columns={"val_rmse": "baseline_val_rmse", "test_rmse": "baseline_test_rmse"})
    variants = ok[ok["param_name"].notna() & (ok["config_id"] != BASELINE_ID)]
    pairs = variants.merge(base, on=["fold", "seed"], how="inner", sort=False)
    pairs["delta_rmse_vs_baseline"] = pairs["val_rmse"] - pairs["baseline_val_rmse"]
    pairs["delta_test_rmse_vs_baseline"] = pairs["test_rmse"] - pairs["baseline_test_rmse"]
    for name, keys in (
        ("_c", ["config_id"]),
        ("_f", ["fold"]),
        ("_s", ["seed"]),
        ("_fc", ["fold", "config_id"]),
        ("_fs", ["fold", "seed"]),
    ):
        pairs = pairs.merge(_first_seen(runs, keys, name), on=keys, how="left", sort=False)
    return pairs


def _detail(pairs: pd.DataFrame, per_fold: bool) -> pd.DataFrame:
    order = ["_f", "_fc", "_fs"] if per_fold else ["_c", "_f", "_s"]
    return pairs.sort_values(order, kind="stable")[list(IMPACT_DETAIL_COLUMNS)]


class ImpactDetail:
    """`param_impact_detail` of the sweep and of each fold, paired once and formatted once.

    The sweep's table and the folds' tables hold the same rows in two orders, so the CSV
    lines are formatted for the per-fold order and reordered for the sweep's.
    """

    def __init__(self, runs: pd.DataFrame) -> None:
        pairs = _impact_pairs(runs)
        by_fold, overall = _detail(pairs, per_fold=True), _detail(pairs, per_fold=False)
        position = pd.Series(range(len(by_fold)), index=by_fold.index)
        self._overall_order = position[overall.index].tolist()
        self.overall = overall.reset_index(drop=True)
        self.per_fold = by_fold.reset_index(drop=True)
        self._header, *self._lines = csv_lines(self.per_fold)
        self._by_fold = positions(self.per_fold["fold"].tolist())

    def overall_csv(self) -> str:
        return "\n".join([self._header, *(self._lines[i] for i in self._overall_order)]) + "\n"

    def fold_csv(self, fold: str) -> str:
        return "\n".join([self._header, *(self._lines[i] for i in self._by_fold.get(fold, []))]) + "\n"


def _first_seen(runs: pd.DataFrame, keys: list[str], name: str) -> pd.DataFrame:
    """Each distinct value of `keys` with its rank (as `name`) in the order it first appears in `runs`."""
    seen = runs[keys].drop_duplicates()
    return seen.assign(**{name: range(len(seen))})


def build_param_impact_summary(detail: pd.DataFrame, per_fold: bool = False) -> pd.DataFrame:
    """Per (param, value): pairs, mean and sample std of the delta, win rate, test delta.

    A pair wins when the variant's val RMSE is strictly below its baseline's.
    Sorted by the average delta ascending (most helpful first); ties keep plan order.
    `per_fold` takes `build_param_impact_detail(runs, per_fold=True)`.
    """
    keys = _keys(per_fold)
    wins = detail.assign(_win=(detail["delta_rmse_vs_baseline"] < 0).astype(float))
    table = wins.groupby(keys, sort=False).agg(
        param_name=("param_name", "first"),
        param_value=("param_value", "first"),
        n_pairs=("delta_rmse_vs_baseline", "size"),
        avg_delta_rmse_vs_baseline=("delta_rmse_vs_baseline", "mean"),
        std_delta_rmse_vs_baseline=("delta_rmse_vs_baseline", "std"),
        win_rate=("_win", "mean"),
        avg_delta_test_rmse_vs_baseline=("delta_test_rmse_vs_baseline", "mean"),
        std_delta_test_rmse_vs_baseline=("delta_test_rmse_vs_baseline", "std"),
    )
    for col in ("std_delta_rmse_vs_baseline", "std_delta_test_rmse_vs_baseline"):
        table.loc[table["n_pairs"] == 1, col] = 0.0
    table = _sorted(table, "avg_delta_rmse_vs_baseline", per_fold)
    return table[[*keys[:-1], *IMPACT_SUMMARY_COLUMNS]].reset_index(drop=True)


def _sorted(table: pd.DataFrame, by: str, per_fold: bool) -> pd.DataFrame:
    """A grouped table (index: the group keys, in plan order) sorted by `by`, missing values
    last, ties in plan order; `per_fold` keeps each fold's rows together."""
    table = table.assign(_order=range(len(table))).reset_index()
    order = [by, "_order"]
    if per_fold:
        table["_fold"] = pd.factorize(table["fold"])[0]
        order.insert(0, "_fold")
    return table.sort_values(order, na_position="last", kind="stable")


def split_by_fold(table: pd.DataFrame, folds: list[str]) -> dict[str, pd.DataFrame]:
    """A `per_fold` table as one table per fold (without the leading `fold` column the ranking and
    impact summary add); empty for a fold without rows."""
    columns = list(table.columns[1:] if table.columns[0] == "fold" else table.columns)
    parts = {str(f): part for f, part in table.groupby("fold", sort=False)}
    empty = table[columns].iloc[0:0]
    return {f: parts[f][columns].reset_index(drop=True) if f in parts else empty for f in folds}
