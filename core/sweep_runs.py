"""The `sweep_runs` table (docs/reports.md): run records as columns, rows, CSV/JSON files and
the analysis frame the reports are computed from.

A run record is a dict with the `sweep_runs` columns plus `params` (the run's full
training config), so every table is a pure function of the records and can be rebuilt
at any time from `sweep_runs.json` without training.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import TRAINING_KEYS
from core.files import write_bytes_atomic, write_text_atomic
from core.plan import format_value
from core.report_files import csv_cells, formatted_lines, json_rows, json_safe
from core.runs import FLOAT_COLUMNS, INT_COLUMNS, RUN_COLUMNS

# training_config columns beside the run columns; `seed` is already there (the run's seed).
PARAM_COLUMNS: tuple[str, ...] = tuple(k for k in TRAINING_KEYS if k not in RUN_COLUMNS)


def _one_line(value: Any) -> Any:
    # Errors are the only free text in a run record; one line each keeps a CSV row one line.
    return " ".join(value.split()) if isinstance(value, str) else value


SWEEP_RUNS_NAMES: tuple[str, ...] = (*RUN_COLUMNS, *PARAM_COLUMNS)


def sweep_runs_columns(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The `sweep_runs` table as columns of plain (JSON) values: the documented columns, then one
    column per training_config key; errors on one line."""
    columns = _transposed(records, RUN_COLUMNS)
    params = [rec.get("params") or {} for rec in records]
    columns.update(_transposed(params, PARAM_COLUMNS))
    columns["error"] = [_one_line(e) for e in columns["error"]]
    return columns


def _transposed(rows: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, list[Any]]:
    """`names`' values of every row as columns (None where a row lacks one)."""
    if len(names) < 2:  # itemgetter needs a name, and of one gives values, not tuples
        return {name: [row.get(name) for row in rows] for name in names}
    try:
        values = list(map(itemgetter(*names), rows))  # the usual case, every key present: 4 times faster
    except KeyError:
        values = [tuple(row.get(name) for name in names) for row in rows]
    if not values:
        return {name: [] for name in names}
    return {name: list(column) for name, column in zip(names, zip(*values, strict=True), strict=True)}


def sweep_runs_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`sweep_runs` rows (what `sweep_runs.json` holds): non-finite metrics are null."""
    columns = sweep_runs_columns(records)
    for col in FLOAT_COLUMNS:  # the only columns that can hold NaN
        columns[col] = json_safe(columns[col])
    return _rows(columns)


def _rows(columns: dict[str, list[Any]], names: tuple[str, ...] = SWEEP_RUNS_NAMES) -> list[dict[str, Any]]:
    values = [columns[name] for name in names]  # every column as long as the others
    return list(map(dict, map(partial(zip, names), zip(*values, strict=True))))


def extra_score_names(scores: Sequence[str]) -> tuple[str, ...]:
    """The metric columns of `scores` beyond the run fields: `sweep_runs` adds them after its
    training_config columns, in registry order."""
    return tuple(name for name in dict.fromkeys(scores) if name not in RUN_COLUMNS)


def positions(values: list[Any]) -> dict[Any, list[int]]:
    """Each distinct value (names: none missing) with the positions where it occurs, in order."""
    if not values:
        return {}
    codes, uniques = pd.factorize(np.array(values, dtype=object), use_na_sentinel=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes))[:-1]
    return {value: rows.tolist() for value, rows in zip(uniques, np.split(order, bounds), strict=True)}


def records_from_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run records from `sweep_runs.json` rows (the inverse of `sweep_runs_rows`)."""
    records = []
    for row in rows:
        rec = {col: row.get(col) for col in RUN_COLUMNS}
        rec["params"] = {key: row.get(key) for key in TRAINING_KEYS}  # seed: the run's seed
        # The metric columns after the seed's (`extra_score_names`), as the record carried them.
        rec.update({key: value for key, value in row.items() if key not in _KNOWN})
        records.append(rec)
    return records


_KNOWN = frozenset(SWEEP_RUNS_NAMES)


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


def carried_scores(records: list[dict[str, Any]], scores: Sequence[str]) -> tuple[str, ...]:
    """The scores beyond the run fields (`extra_score_names`) that some record carries. A score
    no record carries is null at once: 100,000 runs take 35 ms to list their keys, a second to
    look each absent score up in each."""
    extra = extra_score_names(scores)
    if not extra:
        return ()
    carried = set(chain.from_iterable(map(dict.keys, records)))
    return tuple(name for name in extra if name in carried)


def _analysis_frame(
    columns: dict[str, list[Any]],
    spelled: list[str | None],
    records: list[dict[str, Any]],
    scores: Sequence[str],
    carried: tuple[str, ...],
) -> pd.DataFrame:
    data: dict[str, Any] = {col: columns[col] for col in RUN_COLUMNS}
    extra = extra_score_names(scores)
    if extra:
        found = _transposed(records, carried)
        data.update({name: _floats(found[name]) if name in found else np.full(len(records), np.nan) for name in extra})
    data["param_value"] = spelled
    data["param_raw"] = pd.Series(columns["param_value"], dtype=object)
    for col in FLOAT_COLUMNS:
        data[col] = _floats(data[col])
    for col in INT_COLUMNS:  # without a missing value: int64 at once (pandas takes 15 ms a column)
        if None not in data[col]:
            data[col] = np.array(data[col], dtype="int64")
    return pd.DataFrame(data)


def _floats(values: list[Any]) -> np.ndarray:
    """A metric column as float64: None (and anything not a number) is NaN."""
    try:
        return np.array(values, dtype="float64")  # numbers and None: a tenth of pandas' time
    except (TypeError, ValueError):
        floats: np.ndarray = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype="float64")
        return floats


def runs_table(records: list[dict[str, Any]], scores: Sequence[str] = ()) -> pd.DataFrame:
    """The analysis view of the runs: the documented `sweep_runs` columns (not the training params)
    plus `param_raw` (the typed value), metrics as floats; then each of `scores` beyond those, the
    registered metric columns (`core.metrics.metric_columns`) records may carry (null where one
    does not)."""
    columns = sweep_runs_columns(records)
    return _analysis_frame(columns, spelled_values(columns), records, scores, carried_scores(records, scores))


class SweepRunsFiles:
    """`sweep_runs.csv`/`.json` of a sweep, and `sweep_runs.csv` of each fold, formatted once.

    Each run is one CSV line, so a fold's CSV is the header plus its lines in the same
    order; no cell is formatted twice. `runs` is the analysis view (`runs_table`).
    """

    def __init__(self, records: list[dict[str, Any]], scores: Sequence[str] = ()) -> None:
        """`scores`: the metric columns `runs` carries beyond the run fields (`runs_table`)."""
        columns = sweep_runs_columns(records)
        spelled = spelled_values(columns)
        # Only the scores some run carries go into the files: a sweep trained before metrics
        # were kept (and not rescored) keeps its files as they were.
        extra = carried_scores(records, scores)
        self.runs = _analysis_frame(columns, spelled, records, scores, extra)
        names = (*SWEEP_RUNS_NAMES, *extra)
        # The extra scores as the analysis frame holds them (NaN where a record has none).
        columns.update({name: self.runs[name].tolist() for name in extra})
        table = [(name, spelled if name == "param_value" else columns[name]) for name in names]
        cells = [csv_cells(values) for _, values in table]
        self.header, *self.csv_lines = formatted_lines(list(names), cells)
        # Each run's metric cells, for the impact detail (the same numbers, formatted once).
        self.cells = {name: cells[names.index(name)] for name in ("val_rmse", "test_rmse")}
        self.rows = _rows(columns, names)  # orjson writes NaN and infinities as null, as `sweep_runs_rows` does
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
