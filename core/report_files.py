"""How report tables are spelled on disk: CSV cells (with the CSV-injection escaping), JSON
values and rows, and their atomic writers.

Every table of `core.reports` and `core.sweep_runs` goes through here, so a rebuild is
byte-identical; each column is formatted once, as a whole, which keeps a 100,000-run build
near 2.5 s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from core.files import write_text_atomic
from core.plan import format_value

# One spelling for floats in every CSV, so a rebuild is byte-identical.
CSV_FLOAT_FORMAT = "%.10g"


_CSV_SPECIAL = ',"\n'
# A spreadsheet reads a cell that starts with one of these as a formula (CSV injection): a
# column named `=HYPERLINK(...)` would come back live. OWASP's remedy: a leading `'` in a quoted
# cell (OWASP's characters, and NUL as ASVS 1.2.10 adds). Numbers (`-0.5`, `+1e-05`) are left
# alone: they start with a sign, not a formula.
_FORMULA_START = frozenset("=+-@\t\r\x00")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# Such a first character in a column's cells joined with a unit separator before each (`_needs_field`).
_STARTS_FORMULA = re.compile("\x1f[=+\\-@\t\r\x00]")


def _csv_field(text: str) -> str:
    """A CSV field quoted as the csv module's QUOTE_MINIMAL does (pandas' default); text a
    spreadsheet would run as a formula is escaped as OWASP describes (`'` first, quoted)."""
    if text[:1] in _FORMULA_START and not (text[0] in "+-" and _NUMBER.fullmatch(text)):
        return "\"'" + text.replace('"', '""') + '"'
    if any(c in text for c in _CSV_SPECIAL):
        return '"' + text.replace('"', '""') + '"'
    return text


def _needs_field(cells: list[str]) -> bool:
    """Whether any of `cells` may need quoting or escaping, from scans in C of the cells joined:
    a column of 100,000 cells costs a few milliseconds, not a Python call per cell."""
    joined = "\x1f" + "\x1f".join(cells)  # a cell that holds the separator only costs the slow path
    return any(c in joined for c in _CSV_SPECIAL) or _STARTS_FORMULA.search(joined) is not None


def _cell(value: Any) -> str:
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return CSV_FLOAT_FORMAT % value
    return _csv_field(str(value))


def _missing(value: Any) -> bool:
    return value is None or value != value


def _float_text(value: float) -> str:
    return "" if value != value else CSV_FLOAT_FORMAT % value


def _spell_column(values: list[Any], spell: Callable[[Any], str]) -> list[str]:
    """Each value spelled by `spell` (None: empty). A column of few distinct values (a training
    parameter, a seed) spells each once."""
    sample = values[:1000]  # a column of metrics is distinct throughout: skip building its set
    if 4 * len(set(sample)) > len(sample) or 0.0 in values:  # 0.0 == -0.0 as a key
        return ["" if v is None else spell(v) for v in values]
    distinct = set(values)
    spelled = {v: "" if v is None else spell(v) for v in distinct}
    return [spelled[v] for v in values]


def _float_cells(values: list[float | None]) -> list[str]:
    """`_spell_column(values, _float_text)`, with the formatting inlined for a column of distinct
    values (metrics): a call per cell was two thirds of the time of 5 million cells."""
    sample = values[:1000]
    if 4 * len(set(sample)) > len(sample) or 0.0 in values:
        fmt = CSV_FLOAT_FORMAT
        return ["" if v is None or v != v else fmt % v for v in values]
    return _spell_column(values, _float_text)


def csv_cells(values: list[Any]) -> list[str]:
    """One column's CSV cells: floats as `%.10g`, missing values (None, NaN) empty, text quoted
    only when it must be. Columns of one kind take a fast path; mixed ones go value by value."""
    kinds = set(map(type, values)) - {type(None)}
    if kinds <= {float}:
        # A score no run has: no set of NaNs, and one C-level test (a call per cell took 0.8 s at 100,000 runs).
        if values and _missing(values[0]) and bool(np.isnan(np.array(values, dtype="float64")).all()):
            return [""] * len(values)
        return _float_cells(values)
    if kinds <= {int} or kinds <= {bool}:
        return _spell_column(values, str)
    if kinds <= {str, float} and all(v != v for v in values if type(v) is float):  # text; NaN is pandas' missing
        cells = ["" if v is None or type(v) is float else v for v in values]
        return _spell_column(cells, _csv_field) if _needs_field(cells) else cells
    return [_cell(v) for v in values]


# Report tables keep a parameter's value with its type (JSON answers serve it so); CSV files
# spell it as config ids do (`60`, `0.1`, `mae`, `true`).
PARAM_VALUE = "param_value"


def spelled_cells(values: list[Any]) -> list[str]:
    """`param_value` cells of a CSV: each value spelled as in config ids (missing: empty), each
    distinct value once."""
    spelled: dict[tuple[type, Any], str] = {}
    out: list[str] = []
    for value in values:
        if value is None or (isinstance(value, float) and value != value):
            out.append("")
        elif type(value) in (int, float, str, bool) and value != 0:  # hashable, and 0.0 == -0.0 as a key
            key = (type(value), value)
            if key not in spelled:
                spelled[key] = _csv_field(format_value(value))
            out.append(spelled[key])
        else:
            out.append(_csv_field(format_value(value)))
    return out


def column_cells(name: str, values: list[Any]) -> list[str]:
    return spelled_cells(values) if name == PARAM_VALUE else csv_cells(values)


def _csv_lines(columns: list[tuple[str, list[Any]]]) -> list[str]:
    return formatted_lines([name for name, _ in columns], [column_cells(name, values) for name, values in columns])


def formatted_lines(names: list[str], cells: list[list[str]]) -> list[str]:
    """CSV lines (header first) of columns whose cells are formatted already."""
    header = ",".join(_csv_field(name) for name in names)
    if len(cells) == 1:  # the csv module quotes an empty field that is a whole row
        cells = [['""' if c == "" else c for c in cells[0]]]
    return [header, *map(",".join, zip(*cells, strict=True))]


def csv_lines(frame: pd.DataFrame) -> list[str]:
    """The lines of `frame` as CSV (header first, no index), one line per row.

    The same text pandas writes with `float_format="%.10g"`, several times faster on
    100,000-row tables: each column is formatted once, as a whole; a `param_value` column is
    spelled as in config ids (`spelled_cells`).
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


def json_rows(rows: list[dict[str, Any]]) -> Iterator[bytes]:
    """A JSON array of rows, one row per line, as pieces to write one after the other (100,000
    runs make 100 MB, never joined in memory); NaN and infinities are null (orjson's spelling)."""
    if not rows:
        yield b"[]\n"
        return
    yield b"[\n"
    last = len(rows) - 1
    for i, row in enumerate(rows):
        yield orjson.dumps(row)
        yield b",\n" if i < last else b"\n]\n"
