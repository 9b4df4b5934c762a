"""Reading untrusted dataset files: an OHLCV CSV or a dataset parquet, into a checked frame.

Everything a file can do to a server is bounded here before any data are decoded
(`DatasetLimits`: rows, columns, decoded bytes, from a CSV's header and row count or a
parquet's metadata), and every problem names the file (dates that do not parse, duplicate or
unknown columns, non-finite values). Storing the frame is `core.datasets`.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pandas.tseries.api import guess_datetime_format

from core.errors import DatasetError, DatasetTooLarge
from core.features import WARMUP_ROWS

KEY_COLUMNS = ("date", "asset", "target")


OHLCV_COLUMNS = ("date", "open", "high", "low", "close", "volume")


# A CSV header longer than this is no OHLCV header (256 columns of 4 kB names fit); reading
# it whole would let one line of millions of names cost gigabytes before any check.
MAX_HEADER_BYTES = 1_048_576


# A parquet footer (schema + row-group metadata) longer than this is refused before it is
# parsed: 256 columns in a few row groups need well under 1 MiB of it.
MAX_PARQUET_FOOTER_BYTES = 16 * 1_048_576


@dataclass(frozen=True)
class DatasetLimits:
    """How large an imported dataset may be once decoded; checked from a parquet's metadata
    or a CSV's header and row count before the data are decoded.

    The defaults are the server settings' defaults (TFTSWEEP_MAX_DATASET_ROWS, _COLUMNS,
    _BYTES): a million rows is 2,700 years of daily data, so only a file built to exhaust
    the server meets them.
    """

    max_rows: int = 1_000_000
    max_columns: int = 256
    max_bytes: int = 256 * 1_048_576


def read_ohlcv_csv(source: str | Path | IO[bytes] | bytes, limits: DatasetLimits | None = None) -> pd.DataFrame:
    """Read a daily OHLCV CSV (`Date, Open, High, Low, Close, Volume`, optional `Adj Close`).

    Column names are matched case-insensitively (`Adj Close`, `adj_close`, `AdjClose`).
    The header is read first and only the price columns are parsed, at most
    `limits.max_rows` + 1 rows of them: the limits bound what a file costs, whatever its size.

    Raises:
        DatasetTooLarge: more columns or rows than `limits` allow.
        DatasetError: unreadable file, missing, duplicate or ambiguous columns, bad dates,
            duplicates, unsorted dates, non-numeric, non-finite or non-positive prices.
    """
    limits = limits or DatasetLimits()
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    if isinstance(source, str | Path):
        with open(source, "rb") as stream:
            return _read_ohlcv_stream(stream, limits)
    return _read_ohlcv_stream(source, limits)


def _read_ohlcv_stream(stream: IO[bytes], limits: DatasetLimits) -> pd.DataFrame:
    header = _read_csv_header(stream, limits)
    by_name = {_normalise_column(name): pos for pos, name in enumerate(header)}
    missing = [c for c in OHLCV_COLUMNS if c not in by_name]
    if missing:
        raise DatasetError(f"CSV is missing columns {missing}; found {header}")
    keep = [*OHLCV_COLUMNS, *(["adj_close"] if "adj_close" in by_name else [])]
    positions = [by_name[c] for c in keep]
    try:
        # Positions, not names: the header was parsed above (pandas would rename duplicates),
        # and only the price columns are decoded. Dates stay text so `20200102` is a date.
        raw = pd.read_csv(
            stream,
            header=None,
            usecols=positions,
            dtype={by_name["date"]: str},
            nrows=limits.max_rows + 1,
            index_col=False,
        )
    except pd.errors.EmptyDataError:
        raw = pd.DataFrame(columns=positions)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"cannot read the CSV: {exc}") from None
    if len(raw) > limits.max_rows:
        raise DatasetTooLarge(
            f"CSV has more than {limits.max_rows} rows; at most {limits.max_rows} are accepted "
            "(TFTSWEEP_MAX_DATASET_ROWS)"
        )
    prices = raw[positions].set_axis(keep, axis="columns")
    if len(prices) <= WARMUP_ROWS + 1:
        raise DatasetError(f"CSV has {len(prices)} rows; at least {WARMUP_ROWS + 2} are needed for the features")
    prices["date"] = parse_dates(prices["date"], "CSV", first_row=2)
    for col in keep[1:]:
        numeric = pd.to_numeric(prices[col], errors="coerce")
        bad = numeric.isna() & prices[col].notna()
        if bad.any():
            raise DatasetError(
                f"column {col}: non-numeric value {prices[col][bad].iloc[0]!r} at row {int(bad.idxmax()) + 2}"
            )
        prices[col] = numeric.astype("float64")
    check_dates(prices["date"], "CSV")
    check_finite(prices, keep[1:], "CSV")
    price_cols = [c for c in keep[1:] if c != "volume"]
    nonpositive = (prices[price_cols] <= 0).any(axis=1)
    if nonpositive.any():
        row = int(nonpositive.idxmax())
        raise DatasetError(f"prices must be positive; row {row + 2} ({prices['date'][row].date()}) is not")
    if (prices["volume"] < 0).any():
        raise DatasetError("column volume: negative volume")
    return prices.reset_index(drop=True)


def _read_csv_header(stream: IO[bytes], limits: DatasetLimits) -> list[str]:
    """The CSV's column names (the stream is left at the first data row).

    Raises:
        DatasetTooLarge: a header over `MAX_HEADER_BYTES` or with more than `limits.max_columns` names.
        DatasetError: an empty file, a header that is not UTF-8, or duplicate or ambiguous names.
    """
    line = stream.readline(MAX_HEADER_BYTES + 1)
    if len(line) > MAX_HEADER_BYTES:
        raise DatasetTooLarge(f"CSV header line is longer than {MAX_HEADER_BYTES} bytes")
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"cannot read the CSV: the header is not UTF-8 ({exc})") from None
    if not text.strip():
        raise DatasetError("cannot read the CSV: the file is empty (no header line)")
    header = next(csv.reader([text]))
    if len(header) > limits.max_columns:
        raise DatasetTooLarge(
            f"CSV has {len(header)} columns; at most {limits.max_columns} are accepted (TFTSWEEP_MAX_DATASET_COLUMNS)"
        )
    check_unique_columns(header, "CSV")
    return header


def check_unique_columns(names: list[str], where: str) -> None:
    """No two columns share a name, even after `_normalise_column` (`Close` and `Close `):
    which of them a feature or price means would be a guess.

    Raises:
        DatasetError: naming the columns that clash.
    """
    seen: dict[str, str] = {}
    clashes: list[str] = []
    for name in names:
        key = _normalise_column(name)
        if key in seen:
            clashes.append(f"{seen[key]!r} and {name!r}")
        else:
            seen[key] = name
    if clashes:
        raise DatasetError(
            f"{where}: columns {', '.join(clashes)} have the same name (names are compared ignoring case, "
            "surrounding spaces, and - or _ for a space); rename or drop one"
        )


def _normalise_column(name: object) -> str:
    key = str(name).strip().lower().replace(" ", "_").replace("-", "_")
    return "adj_close" if key in ("adj_close", "adjclose", "adjusted_close") else key


# A timezone offset after a time of day (`T00:00:00+05:00`, `10:30Z`), dropped to keep the wall clock.
_TZ_OFFSET = r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|UTC|[+-]\d{2}:?\d{2})$"


def parse_dates(values: pd.Series, where: str, first_row: int = 1) -> pd.Series:
    """A date column as timezone-naive datetime64, whatever form the file gave it.

    Accepted: datetimes (a timezone-aware one keeps its wall-clock date and time and drops
    the zone: a daily bar's date is its calendar date on its exchange, which converting to
    UTC would shift by a day), dates, integers or 8-digit strings `YYYYMMDD` (never
    nanoseconds since 1970), and strings in one format (ISO 8601 best; an offset after the
    time is dropped as above). Parsing is vectorised: one format per pass, never one guess
    per row.

    Args:
        values: the column as read.
        where: the file, for the message (`CSV`, `parquet`).
        first_row: the row number of `values`' first element in the file (2 for a CSV's
            first data line).

    Raises:
        DatasetError: naming the first value that is no date and its row.
    """
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return values.dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(dtype):
        return values
    if pd.api.types.is_bool_dtype(dtype) or not (
        pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
    ):
        raise DatasetError(f"{where}: column date holds {dtype} values, not dates")
    try:
        if pd.api.types.is_numeric_dtype(dtype):
            parsed = _parse_day_numbers(values, where, first_row)
        else:
            parsed = _parse_date_strings(values)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DatasetError(f"{where}: column date: cannot parse dates ({exc})") from None
    bad = parsed.isna().to_numpy() & values.notna().to_numpy()
    if bad.any():
        pos = int(np.argmax(bad))
        value = _plain(values.iloc[pos])
        raise DatasetError(
            f"{where}: column date: cannot parse dates: {value!r} at row {pos + first_row} is not a date "
            "(dates must share one format; ISO 8601, 2020-01-02, or YYYYMMDD)"
        )
    return parsed


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (`20201340`, not `np.int64(20201340)`)."""
    return value.item() if isinstance(value, np.generic) else value


def _parse_day_numbers(values: pd.Series, where: str, first_row: int) -> pd.Series:
    """Numbers as `YYYYMMDD` dates; any other number is refused (its unit would be a guess)."""
    numbers = values.astype("float64")
    known = numbers.notna().to_numpy()
    wrong = known & ~((numbers >= 10000101) & (numbers <= 99991231) & (numbers % 1 == 0)).to_numpy()
    if wrong.any():
        pos = int(np.argmax(wrong))
        value = _plain(values.iloc[pos])
        raise DatasetError(
            f"{where}: column date: number {value!r} at row {pos + first_row} is not a YYYYMMDD date "
            "(e.g. 20200102); numeric dates are read only in that form"
        )
    text = numbers.astype("Int64").astype("string")
    return pd.to_datetime(text, format="%Y%m%d", errors="coerce").astype("datetime64[us]")


def _parse_date_strings(values: pd.Series) -> pd.Series:
    """Strings as dates: `YYYYMMDD`, ISO 8601, then the format of the first other value."""
    text = values.astype("str").str.strip()
    text = text.str.replace(_TZ_OFFSET, r"\1", regex=True)
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    rest = text.notna()
    for guess in ("%Y%m%d", "ISO8601", None):
        if not rest.any():
            break
        pending = text[rest]
        fmt = guess or guess_datetime_format(str(pending.iloc[0]))
        if fmt is None:
            break
        if fmt == "%Y%m%d":
            pending = pending[pending.str.fullmatch(r"\d{8}")]
        found = pd.to_datetime(pending, format=fmt, errors="coerce")
        if isinstance(found.dtype, pd.DatetimeTZDtype):  # a zone name the offset pattern left
            found = found.dt.tz_localize(None)
        found = found.dropna()
        parsed[found.index] = found.astype("datetime64[us]")
        rest[found.index] = False
    return parsed


def check_dates(dates: pd.Series, where: str) -> None:
    if dates.isna().any():
        raise DatasetError(f"{where}: column date has empty values")
    dupes = dates[dates.duplicated()]
    if len(dupes):
        raise DatasetError(f"{where}: duplicate dates, e.g. {pd.Timestamp(dupes.iloc[0]).date()}")
    if not dates.is_monotonic_increasing:
        pos = int(np.argmax(dates.diff().dt.total_seconds().to_numpy()[1:] < 0)) + 1
        raise DatasetError(
            f"{where}: dates are not sorted ascending ({pd.Timestamp(dates.iloc[pos]).date()} "
            f"follows {pd.Timestamp(dates.iloc[pos - 1]).date()}); sort the file by date"
        )


def check_finite(frame: pd.DataFrame, columns: list[str], where: str) -> None:
    values = frame[columns].to_numpy(dtype="float64")
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        kind = "NaN" if np.isnan(values[row, col]) else "infinite value"
        raise DatasetError(
            f"{where}: column {columns[col]} has a {kind} on {pd.Timestamp(frame['date'].iloc[row]).date()}"
        )


# Columns pandas writes for a frame's index; not data.
_PANDAS_INDEX = re.compile(r"__index_level_\d+__")


def read_dataset_parquet(data: bytes, limits: DatasetLimits | None = None) -> pd.DataFrame:
    """A dataset parquet's frame, its size checked before its data are decoded.

    A parquet's bytes bound nothing: 20 M equal rows compress to 240 kB. So its rows,
    columns and decoded bytes are computed from its metadata first (footer length, row
    counts, column types and uncompressed sizes), and text columns are read as dictionaries
    and measured before they are expanded into one string per row.

    Raises:
        DatasetTooLarge: over a limit; the message names the count, the cap and its setting.
        DatasetError: unreadable, missing key columns, duplicate or nested columns, bad dates.
    """
    limits = limits or DatasetLimits()
    if len(data) < 12 or data[-4:] != b"PAR1":
        raise DatasetError("cannot read the parquet file: it does not end with the parquet footer")
    footer = int.from_bytes(data[-8:-4], "little")
    if footer > MAX_PARQUET_FOOTER_BYTES:
        raise DatasetTooLarge(
            f"parquet metadata is {footer} bytes; at most {MAX_PARQUET_FOOTER_BYTES} are read "
            f"(a dataset of {limits.max_columns} columns needs far less)"
        )
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        schema = parquet.schema_arrow
        meta = parquet.metadata
        groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise DatasetError(f"cannot read the parquet file: {exc}") from None
    rows = max(meta.num_rows, sum(g.num_rows for g in groups))
    if rows > limits.max_rows:
        raise DatasetTooLarge(
            f"parquet has {rows} rows; at most {limits.max_rows} are accepted (TFTSWEEP_MAX_DATASET_ROWS)"
        )
    columns = max(meta.num_columns, len(schema.names))
    if columns > limits.max_columns:
        raise DatasetTooLarge(
            f"parquet has {columns} columns; at most {limits.max_columns} are accepted (TFTSWEEP_MAX_DATASET_COLUMNS)"
        )
    check_unique_columns(schema.names, "parquet")
    missing = [c for c in KEY_COLUMNS if c not in schema.names]
    if missing:
        raise DatasetError(f"dataset is missing columns {missing}")
    nested = [f"{f.name} ({f.type})" for f in schema if pa.types.is_nested(f.type)]
    if nested:
        raise DatasetError(
            f"parquet: columns {', '.join(nested)} hold lists or records; a dataset column holds one value per row"
        )
    fixed_bytes, text = _fixed_width_bytes(schema, rows)
    at_least = fixed_bytes + sum(
        g.column(j).total_uncompressed_size
        for g in groups
        for j in range(g.num_columns)
        if g.column(j).path_in_schema in text
    )
    _check_decoded_bytes(at_least, rows, columns, limits)
    wanted = [n for n in schema.names if not _PANDAS_INDEX.fullmatch(n)]
    try:
        # Text as dictionaries: a 20 M-row column of one long value stays one value until measured.
        reader = pq.ParquetFile(pa.BufferReader(data), read_dictionary=[n for n in text if n in wanted])
        table = reader.read(columns=wanted)
    except Exception as exc:
        raise DatasetError(f"cannot read the parquet file: {exc}") from None
    _check_decoded_bytes(
        fixed_bytes + sum(_text_bytes(table.column(n)) for n in text if n in wanted), rows, columns, limits
    )
    table = pa.table([_undictionary(table.column(i)) for i in range(table.num_columns)], names=table.column_names)
    # Not the pandas metadata: an index named `date` is the date column, whatever the frame's index was.
    frame = table.to_pandas(date_as_object=False, ignore_metadata=True)
    frame["date"] = parse_dates(frame["date"], "parquet")
    return frame


# pandas holds decimals, times and bytes as Python objects: ~100 bytes each (a Decimal's
# size), whatever their width in arrow.
_PYTHON_OBJECT_BYTES = 104


def _held_as_objects(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_decimal(kind)
        or pa.types.is_time(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_fixed_size_binary(kind)
    )


def _value_type(field: pa.Field) -> pa.DataType:
    return field.type.value_type if pa.types.is_dictionary(field.type) else field.type


def _fixed_width_bytes(schema: pa.Schema, rows: int) -> tuple[int, set[str]]:
    """What the fixed-width columns take in pandas (8 bytes a value at least), and the names
    of the variable-width (text, binary) columns, whose size the data decide."""
    fixed = 0
    text: set[str] = set()
    for field in schema:
        kind = _value_type(field)
        if pa.types.is_null(kind):
            continue
        try:
            width = kind.bit_width // 8
        except ValueError:  # not fixed-width
            text.add(field.name)
            continue
        fixed += rows * (_PYTHON_OBJECT_BYTES if _held_as_objects(kind) else max(8, width))
    return fixed, text


def _text_bytes(column: pa.ChunkedArray) -> int:
    """The bytes a text column takes once each row holds its own value (8 for its offset,
    a Python object's for a `bytes` value)."""
    per_row = _PYTHON_OBJECT_BYTES if _held_as_objects(_value_type(pa.field("c", column.type))) else 8
    total = 0
    for chunk in column.chunks:
        if isinstance(chunk, pa.DictionaryArray):
            lengths = pc.binary_length(chunk.dictionary).take(chunk.indices)
            total += int(pc.sum(lengths).as_py() or 0) + per_row * len(chunk)
        else:
            total += chunk.nbytes + (per_row - 8) * len(chunk)
    return total


def _undictionary(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if not pa.types.is_dictionary(column.type):
        return column
    return pa.chunked_array([c.dictionary_decode() for c in column.chunks], type=column.type.value_type)


def _check_decoded_bytes(size: int, rows: int, columns: int, limits: DatasetLimits) -> None:
    if size > limits.max_bytes:
        raise DatasetTooLarge(
            f"parquet decodes to at least {size} bytes ({rows} rows, {columns} columns); at most {limits.max_bytes} "
            "are accepted (TFTSWEEP_MAX_DATASET_BYTES)"
        )
