"""Datasets on disk: import from OHLCV CSV, the MSFT example, a synthetic generator, validation.

Layout (docs/datasets.md): `{data_root}/processed/dataset_tft/{ASSET}/dataset_tft_{ASSET}.parquet`
with a JSON sidecar `dataset_tft_{ASSET}.json` (target definition, feature sets, source).

Two jobs share this module today: reading untrusted files (CSV and parquet under
`DatasetLimits`, date parsing, column-name checks) and the stored dataset (save, load,
fingerprint, fold checks). The first is the seam to split along (a module of its own that
returns a checked frame); it was grown in place with the upload limits, and moving it is
left to a change that only moves code.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pandas.tseries.api import guess_datetime_format

from core import paths
from core.config import WINDOW_KEYS, ExperimentConfig, Fold, SweepConfig, TrainingConfig, at_most, parse_date
from core.errors import DatasetError, DatasetExists, DatasetTooLarge, FieldError, InvalidSweepConfig
from core.feature_sets import FEATURE_SETS, resolve_features
from core.features import FEATURE_DOCS, TARGET_DEFINITION, WARMUP_ROWS, compute_features
from core.files import file_sha256, write_bytes_atomic, write_json_atomic
from core.names import check_safe_name
from core.paths import ensure_inside
from core.plan import plan_configs
from core.store import Store

KEY_COLUMNS = ("date", "asset", "target")
OHLCV_COLUMNS = ("date", "open", "high", "low", "close", "volume")
WINDOWS = ("train", "val", "test")
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


def check_asset(asset: str) -> str:
    problem = check_safe_name(asset)
    if problem is not None:
        raise DatasetError(f"asset {asset!r} {problem}", field="asset")
    return asset


def dataset_path(root: Path, asset: str) -> Path:
    return dataset_dir(root, check_asset(asset)) / f"dataset_tft_{asset}.parquet"


def dataset_dir(root: Path, asset: str) -> Path:
    """The folder of an asset's dataset and sidecar (published to an object store as one)."""
    return paths.dataset_dir(root, check_asset(asset))


def sidecar_path(root: Path, asset: str) -> Path:
    return dataset_path(root, asset).with_suffix(".json")


@dataclass(frozen=True)
class DatasetInfo:
    asset: str
    path: Path
    rows: int
    first_date: str
    last_date: str
    columns: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "path": str(self.path),
            "rows": self.rows,
            "first_date": self.first_date,
            "last_date": self.last_date,
            "columns": self.columns,
        }


# -- reading OHLCV -----------------------------------------------------------------------


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
    _check_dates(prices["date"], "CSV")
    _check_finite(prices, keep[1:], "CSV")
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


def _check_dates(dates: pd.Series, where: str) -> None:
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


def _check_finite(frame: pd.DataFrame, columns: list[str], where: str) -> None:
    values = frame[columns].to_numpy(dtype="float64")
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        kind = "NaN" if np.isnan(values[row, col]) else "infinite value"
        raise DatasetError(
            f"{where}: column {columns[col]} has a {kind} on {pd.Timestamp(frame['date'].iloc[row]).date()}"
        )


# -- building and storing -----------------------------------------------------------------


def build_dataset(prices: pd.DataFrame, asset: str) -> pd.DataFrame:
    """The TFT dataset (date, asset, target, features) from clean OHLCV prices."""
    frame = compute_features(prices)
    frame.insert(1, "asset", asset)
    return frame


def save_dataset(root: Path, asset: str, frame: pd.DataFrame, source: dict[str, Any]) -> DatasetInfo:
    """Validate and store a dataset and its sidecar, each written atomically; its `date`
    column is stored timezone-naive datetime64 whatever the caller's frame held."""
    check_asset(asset)
    frame = frame.assign(date=parse_dates(frame["date"], "dataset"))
    validate_dataset(frame, _known_features(frame))
    path = dataset_path(root, asset)
    ensure_inside(root, path.parent)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    write_bytes_atomic(path, buffer.getvalue())
    info = describe(asset, path, frame)
    write_json_atomic(
        sidecar_path(root, asset),
        {
            "asset": asset,
            "target": TARGET_DEFINITION,
            "features": {c: FEATURE_DOCS.get(c, "user-supplied column") for c in frame.columns if c not in KEY_COLUMNS},
            "feature_sets": {name: list(cols) for name, cols in FEATURE_SETS.items() if set(cols) <= set(frame)},
            "rows": info.rows,
            "first_date": info.first_date,
            "last_date": info.last_date,
            "source": source,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    return info


def import_ohlcv_csv(
    root: Path,
    asset: str,
    source: str | Path | IO[bytes] | bytes,
    origin: str,
    *,
    replace: bool = False,
    limits: DatasetLimits | None = None,
) -> DatasetInfo:
    """`tftsweep dataset import`: OHLCV CSV to a stored dataset.

    Raises:
        DatasetError: a bad asset name (field `asset`) or a file that is no usable OHLCV CSV (`file`).
        DatasetTooLarge: a CSV over `limits` (field `file`); nothing is read past the limit.
        DatasetExists: the asset has a dataset and `replace` is off.
    """
    check_asset(asset)
    _check_replace(root, asset, replace)
    with _the_file_at_fault():
        frame = build_dataset(read_ohlcv_csv(source, limits), asset)
        return save_dataset(root, asset, frame, {"kind": "ohlcv_csv", "origin": origin})


def import_dataset_parquet(
    root: Path, asset: str, data: bytes, origin: str, *, replace: bool = False, limits: DatasetLimits | None = None
) -> DatasetInfo:
    """Store a ready dataset parquet after checking it has the dataset's shape.

    Raises:
        DatasetError: a bad asset name (field `asset`) or a file that is no usable dataset (`file`).
        DatasetTooLarge: a parquet over `limits` (field `file`), refused from its metadata.
        DatasetExists: the asset has a dataset and `replace` is off.
    """
    check_asset(asset)
    _check_replace(root, asset, replace)
    with _the_file_at_fault():
        frame = read_dataset_parquet(data, limits)
        frame["asset"] = asset
        return save_dataset(root, asset, frame, {"kind": "dataset_parquet", "origin": origin})


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


def _check_replace(root: Path, asset: str, replace: bool) -> None:
    if not replace and dataset_path(root, asset).is_file():
        raise DatasetExists(
            f"asset {asset!r} has a dataset already; replacing it needs replace=true (--replace): sweeps run on "
            "it keep its fingerprint and take no new runs on another dataset"
        )


@contextmanager
def _the_file_at_fault() -> Iterator[None]:
    """Problems found while reading an imported file are the file's (field `file`)."""
    try:
        yield
    except DatasetError as exc:
        exc.field = "file"  # the same exception (a DatasetTooLarge stays one)
        raise


def _known_features(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(f for s in FEATURE_SETS.values() for f in s if f in frame))


def build_example_dataset(root: Path) -> DatasetInfo:
    """`tftsweep dataset example`: MSFT daily prices shipped with pmdarima (works offline)."""
    try:
        from pmdarima.datasets import load_msft  # demo/dev dependency only
    except ImportError:
        raise DatasetError("the example dataset needs pmdarima: pip install pmdarima==2.1.1") from None
    raw = load_msft()
    prices = read_ohlcv_csv(raw.drop(columns=["OpenInt"], errors="ignore").to_csv(index=False).encode())
    frame = build_dataset(prices, "MSFT")
    return save_dataset(root, "MSFT", frame, {"kind": "example", "origin": "pmdarima.datasets.load_msft"})


def synthetic_ohlcv(n_days: int = 1500, seed: int = 0, start: str = "2010-01-04") -> pd.DataFrame:
    """Deterministic daily OHLCV prices with weak, learnable structure (for tests).

    Returns follow an AR(1) with regime-switching volatility, so a model can beat the
    zero forecast a little, and volume correlates with absolute returns.
    """
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start=start, periods=n_days)
    vol = np.where((np.arange(n_days) // 250) % 2 == 0, 0.01, 0.02)
    shocks = rng.standard_normal(n_days) * vol
    returns = np.empty(n_days)
    returns[0] = shocks[0]
    for i in range(1, n_days):
        returns[i] = 0.3 * returns[i - 1] + shocks[i]
    close = 100 * np.exp(np.cumsum(returns))
    spread = np.abs(rng.standard_normal(n_days)) * vol * close
    open_ = close * np.exp(-returns / 2)
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread / 2
    volume = np.round(1e6 * (1 + 20 * np.abs(returns)) * np.exp(rng.standard_normal(n_days) * 0.1))
    return pd.DataFrame({"date": dates, "open": open_, "high": high, "low": low, "close": close, "volume": volume})


# The first date of `synthetic_dataset`: folds of tests start on a year's first day, and a
# window that starts before a dataset's first date is refused.
SYNTHETIC_FIRST_DATE = "2010-01-01"


def synthetic_dataset(asset: str = "SYN", n_days: int = 1500, seed: int = 0) -> pd.DataFrame:
    """A dataset from `synthetic_ohlcv(n_days, seed)` (prices from 2010-01-04) whose rows start
    on `SYNTHETIC_FIRST_DATE`: the feature warm-up is a price history of its own (drawn from
    `seed + 1`, scaled to close where the first price opens) in the business days up to that
    date, so the dataset holds `n_days + 1` rows."""
    days = pd.bdate_range(end=SYNTHETIC_FIRST_DATE, periods=WARMUP_ROWS + 1)
    history = synthetic_ohlcv(WARMUP_ROWS + 1, seed + 1, start=str(days[0].date()))
    main = synthetic_ohlcv(n_days, seed)
    price_cols = ["open", "high", "low", "close"]
    history[price_cols] *= main["open"].iloc[0] / history["close"].iloc[-1]
    prices = pd.concat([history, main], ignore_index=True)
    return build_dataset(prices, asset)


# -- loading and validation ------------------------------------------------------------------


def describe(asset: str, path: Path, frame: pd.DataFrame) -> DatasetInfo:
    return DatasetInfo(
        asset=asset,
        path=path,
        rows=len(frame),
        first_date=str(pd.Timestamp(frame["date"].iloc[0]).date()) if len(frame) else "",
        last_date=str(pd.Timestamp(frame["date"].iloc[-1]).date()) if len(frame) else "",
        columns=list(frame.columns),
    )


def list_datasets(root: Path) -> list[DatasetInfo]:
    base = paths.datasets_dir(root)
    out = []
    for folder in sorted(base.iterdir()) if base.is_dir() else []:
        path = base / folder.name / f"dataset_tft_{folder.name}.parquet"
        if check_safe_name(folder.name) is None and path.is_file():
            frame = pd.read_parquet(path, columns=["date"])
            info = describe(folder.name, path, frame)
            out.append(
                DatasetInfo(info.asset, path, info.rows, info.first_date, info.last_date, _parquet_columns(path))
            )
    return out


def list_stored_datasets(store: Store) -> list[DatasetInfo]:
    """The datasets of `store` (an object store's are fetched to this machine's data root first)."""
    assets = store.fetch_datasets()
    return [info for info in list_datasets(store.root) if info.asset in assets]


def import_to_store(store: Store, asset: str, build: Callable[[Path], DatasetInfo]) -> DatasetInfo:
    """Store a dataset `build` writes under a data root: the store's dataset is fetched first
    (it is the one a replace must be asked for), the new one published after.

    Raises:
        DatasetError, DatasetExists: as `build`; nothing is published.
        StoreError: the object store failed.
    """
    store.fetch_dataset(check_asset(asset))
    info = build(store.root)
    store.publish_dataset(asset)
    return info


def _parquet_columns(path: Path) -> list[str]:
    return list(pq.read_schema(path).names)


def load_dataset(root: Path, asset: str, features: str | list[str] | None = None) -> pd.DataFrame:
    """Read and validate an asset's dataset.

    Raises:
        DatasetError: no dataset for the asset, or it fails `validate_dataset`.
    """
    path = dataset_path(root, asset)
    if not path.is_file():
        raise DatasetError(
            f"no dataset for asset {asset!r} at {path.relative_to(root)} (under the data root); build one with "
            f"`tftsweep dataset import --asset {asset} --csv FILE` (or `tftsweep dataset example` for MSFT)"
        )
    frame = pd.read_parquet(path)
    # A dataset stored before uploads dropped timezones may still carry one; comparing it with
    # fold dates would raise, so it gets the wall-clock dates an upload gets now.
    frame["date"] = parse_dates(frame["date"], "dataset")
    validate_dataset(frame, resolve_features(features) if features is not None else [])
    return frame


def dataset_fingerprint(root: Path, asset: str) -> dict[str, Any]:
    """What identifies the dataset a sweep trains on: its file (relative to the data root),
    the sha256 of its bytes, its rows and first and last dates.

    Raises:
        DatasetError: there is no dataset for the asset.
    """
    path = dataset_path(root, asset)
    if not path.is_file():
        raise DatasetError(f"no dataset for asset {asset!r} at {path.relative_to(root)}")
    info = describe(asset, path, pd.read_parquet(path, columns=["date"]))
    return {
        "file": str(path.relative_to(root)),
        "sha256": file_sha256(path),
        "rows": info.rows,
        "first_date": info.first_date,
        "last_date": info.last_date,
    }


def check_fingerprint(root: Path, asset: str, recorded: dict[str, Any]) -> None:
    """The asset's dataset under `root` is the one `recorded` (by `dataset_fingerprint`) describes.

    Raises:
        DatasetError: it is missing or differs; the message names the file.
    """
    path = dataset_path(root, asset)
    where = recorded.get("file") or str(path.relative_to(root))
    if not path.is_file():
        raise DatasetError(f"dataset {where} is missing")
    if file_sha256(path) != recorded.get("sha256"):
        found = dataset_fingerprint(root, asset)  # rows and dates, for the message
        raise DatasetError(
            f"dataset {where} is not the one the sweep was trained on: sha256 {str(recorded.get('sha256'))[:12]}... "
            f"({recorded.get('rows')} rows, {recorded.get('first_date')}..{recorded.get('last_date')}) recorded, "
            f"{found['sha256'][:12]}... ({found['rows']} rows, {found['first_date']}..{found['last_date']}) found"
        )


def validate_dataset(frame: pd.DataFrame, features: list[str]) -> None:
    """Check the columns a run needs: keys present, dates unique and sorted, values finite.

    Raises:
        DatasetError: naming the column, date or feature at fault.
    """
    missing = [c for c in KEY_COLUMNS if c not in frame]
    if missing:
        raise DatasetError(f"dataset is missing columns {missing}")
    absent = [f for f in features if f not in frame]
    if absent:
        raise DatasetError(f"features {absent} are not columns of the dataset; columns: {list(frame.columns)}")
    if frame.empty:
        raise DatasetError("dataset has no rows")
    _check_dates(pd.to_datetime(frame["date"]), "dataset")
    non_numeric = [c for c in ["target", *features] if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise DatasetError(f"columns {non_numeric} are not numeric")
    _check_finite(frame, ["target", *features], "dataset")


# The windows an embargo shortens, at their end: the rows just before the next window.
EMBARGOED = ("train", "val")


def fold_rows(frame: pd.DataFrame, fold: Fold) -> dict[str, pd.DataFrame]:
    """The rows of each window of `fold` (inclusive dates, `frame` in date order), less the
    fold's embargo: its last `fold.embargo_days` rows of the train and of the val window are
    left out (docs/config.md, "Embargo"), so no target the model trains on, or is stopped and
    selected by, lies within `embargo_days` rows of the window after it. The test window, the
    one a fold is named and judged by, stays whole."""
    out = {}
    for part in WINDOWS:
        start, end = _window_dates(fold, part)
        rows = frame[(frame["date"] >= start) & (frame["date"] <= end)]
        if part in EMBARGOED and fold.embargo_days:
            rows = rows.iloc[: max(0, len(rows) - fold.embargo_days)]
        out[part] = rows
    return out


def _window_dates(fold: Fold, part: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = pd.Timestamp(parse_date(getattr(fold, f"{part}_start")))
    end = pd.Timestamp(parse_date(getattr(fold, f"{part}_end")))
    return start, end


@dataclass(frozen=True)
class FoldCounts:
    """How many rows each window of a fold has (after its embargo, as `fold_rows` cuts them),
    and how many precede it."""

    fold: Fold
    rows: dict[str, int]
    before: dict[str, int]


def fold_counts(dates: pd.DatetimeIndex, fold: Fold) -> FoldCounts:
    """`fold`'s window sizes by binary search on a validated dataset's dates (sorted, unique):
    O(log rows), where filtering the frame is O(rows) per window."""
    rows: dict[str, int] = {}
    before: dict[str, int] = {}
    for part in WINDOWS:
        start, end = _window_dates(fold, part)
        first = int(dates.searchsorted(start, side="left"))
        rows[part] = max(0, int(dates.searchsorted(end, side="right")) - first)
        if part in EMBARGOED:
            rows[part] = max(0, rows[part] - fold.embargo_days)
        # Unique sorted dates: those before the window's first row (embargoed rows still precede
        # the next window and feed its encoder: they are its past, not its targets).
        before[part] = first
    return FoldCounts(fold, rows, before)


def _after_embargo(fold: Fold, part: str) -> str:
    return f" after an embargo of {fold.embargo_days} rows" if part in EMBARGOED and fold.embargo_days else ""


def fold_problem(counts: FoldCounts, encoder: int, prediction: int) -> str | None:
    """Why a fold with `counts` cannot serve (encoder, prediction) lengths, or None when it can."""
    fold = counts.fold
    need_train = encoder + prediction + 1
    if counts.rows["train"] < need_train:
        return (
            f"fold {fold.name}: train window {fold.train_start}..{fold.train_end} has {counts.rows['train']} rows"
            f"{_after_embargo(fold, 'train')}; max_encoder_length={encoder} + max_prediction_length={prediction} "
            f"needs at least {need_train}"
        )
    for part in ("val", "test"):
        if counts.rows[part] < prediction:
            return (
                f"fold {fold.name}: {part} window {getattr(fold, part + '_start')}..{getattr(fold, part + '_end')} "
                f"has {counts.rows[part]} rows{_after_embargo(fold, part)}; at least "
                f"max_prediction_length={prediction} are needed"
            )
        if counts.before[part] < encoder:
            return (
                f"fold {fold.name}: only {counts.before[part]} rows precede the {part} window; "
                f"max_encoder_length={encoder} needs that many"
            )
    return None


def check_fold_fits(frame: pd.DataFrame, fold: Fold, training: TrainingConfig) -> None:
    """Enough rows in each window of `fold` (of a validated dataset) for the encoder and decoder lengths.

    Raises:
        DatasetError: naming the fold, the window and the counts.
    """
    counts = fold_counts(pd.DatetimeIndex(frame["date"]), fold)
    problem = fold_problem(counts, training.max_encoder_length, training.max_prediction_length)
    if problem is not None:
        raise DatasetError(problem)


def fold_paths(keys: ExperimentConfig) -> list[str]:
    """Where each effective fold is written in the config: `walk_forward.folds[i]`, or
    `split_config` for the one `default` fold. Generated folds are named by their place in
    `walk_forward.folds` too: the list `analysis_config.json` holds them in."""
    if keys.walk_forward.enabled:
        return [f"walk_forward.folds[{i}]" for i in range(len(keys.walk_forward.folds))]
    return ["split_config"]


def folds_out_of_range(keys: ExperimentConfig, asset: str, first: date, last: date) -> list[FieldError]:
    """The folds of `keys` whose windows reach before `first` or after `last` (the dataset's
    first and last dates), each by the path of its date at the edge: the latest before the
    data (`train_start` when only the start is early) and the earliest after it (`test_end`
    when only the end is late; `train_start` when the whole fold is after). O(folds), from
    the two dates alone."""
    errors: list[FieldError] = []
    span = f"{asset}'s dataset runs {first:%Y%m%d}..{last:%Y%m%d}"
    fix = "move the window inside the data, or set walk_forward.clip_to_data: true to cut windows to it"
    if keys.walk_forward.generate is not None:
        fix = (
            "move walk_forward.generate.start and end inside the data (generated folds), or set "
            "walk_forward.clip_to_data: true to cut windows to it"
        )
    for path, fold in zip(fold_paths(keys), keys.folds, strict=True):
        days = {key: parse_date(getattr(fold, key)) for key in WINDOW_KEYS}
        before = [key for key in WINDOW_KEYS if days[key] < first]
        after = [key for key in WINDOW_KEYS if days[key] > last]
        found = []
        if before:
            found.append((before[-1], "before the dataset's first date", len(before)))
        if after:
            found.append((after[0], "after the dataset's last date", len(after)))
        for key, side, count in found:
            whole = " (the whole fold)" if count == len(WINDOW_KEYS) else ""
            message = f"fold {fold.name}: {key} {getattr(fold, key)} is {side}{whole} ({span}); {fix}"
            errors.append(FieldError(f"{path}.{key}", message))
    return errors


def check_folds_in_range(keys: ExperimentConfig, asset: str, first: date, last: date) -> None:
    """Refuse folds whose windows reach outside the dataset's dates (`walk_forward.clip_to_data`
    off): a window cut to the data without a word trains on other dates than it says.

    Raises:
        InvalidSweepConfig: every date outside `first..last`, each by its path
            (`walk_forward.folds[0].train_start`) with the dataset's range.
    """
    errors = folds_out_of_range(keys, asset, first, last)
    if errors:
        raise InvalidSweepConfig(at_most(errors))


def check_dataset_for_sweep(root: Path, asset: str, config: SweepConfig) -> None:
    """Fail before any training when the dataset cannot serve every (fold, config) shape.

    Raises:
        DatasetError: missing dataset or features, bad values, too-short windows.
        InvalidSweepConfig: a window outside the dataset's dates (unless `clip_to_data`).
    """
    shapes = {(c.training.max_encoder_length, c.training.max_prediction_length) for c in plan_configs(config)}
    check_dataset_shapes(root, asset, config, shapes)


def check_dataset_shapes(root: Path, asset: str, keys: ExperimentConfig, shapes: set[tuple[int, int]]) -> None:
    """The dataset has the features and, in every fold, rows for each (encoder, prediction) length.

    O(rows + folds x shapes): the dataset is read once, each fold's windows are counted once
    by binary search, and each distinct shape is then two comparisons per window (a plan of
    100 folds x 100 encoder lengths filtered the frame 10,000 times before: 16 s). Windows
    outside the dataset's dates are refused first, unless `walk_forward.clip_to_data`.

    Raises:
        InvalidSweepConfig: every window date outside the dataset's range (`check_folds_in_range`).
        DatasetError: the first (fold, shape) in fold order and sorted shape order that does
            not fit, as `check_fold_fits` words it.
    """
    frame = load_dataset(root, asset, keys.features)
    dates = pd.DatetimeIndex(frame["date"])
    if not keys.walk_forward.clip_to_data:
        check_folds_in_range(keys, asset, dates[0].date(), dates[-1].date())
    ordered = sorted(shapes)
    for fold in keys.folds:
        counts = fold_counts(dates, fold)
        for enc, pred in ordered:
            problem = fold_problem(counts, enc, pred)
            if problem is not None:
                raise DatasetError(problem)
