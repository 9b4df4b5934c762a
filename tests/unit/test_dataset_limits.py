"""Dataset imports within a decoded budget, dates read as dates, and fold checks in linear time.

Each test asserts the outcome and a bound measured in the test (time, and memory where a
file could expand): a parquet's or CSV's size on disk bounds nothing it could cost.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.settings import Settings
from core.config import Fold, SweepConfig, TrainingConfig
from core.dataset_files import DatasetLimits, read_dataset_parquet, read_ohlcv_csv
from core.dataset_folds import check_dataset_shapes, check_fold_fits, fold_counts, fold_problem
from core.datasets import dataset_path, import_dataset_parquet, import_ohlcv_csv, synthetic_dataset
from core.errors import DatasetError, DatasetTooLarge
from core.features import WARMUP_ROWS
from tests.utils.data import csv_bytes, make_data_root, prices, tiny_fold, tiny_sweep

MB = 1_048_576


def parquet_bytes(table: pa.Table, **options: object) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", **options)
    return buffer.getvalue()


def constant_rows_parquet(path: Path, rows: int, chunk: int = 500_000) -> int:
    """A dataset-shaped parquet of `rows` equal rows (zstd + dictionary: a few hundred kB),
    written a chunk at a time so building it costs the test little memory."""
    part = pa.table(
        {
            "date": pa.array(np.zeros(chunk, dtype="datetime64[ns]")),
            "asset": pa.array(["X"]).take(pa.array(np.zeros(chunk, dtype="int32"))),
            "target": pa.array(np.zeros(chunk)),
        }
    )
    with pq.ParquetWriter(path, part.schema, compression="zstd") as writer:
        for _ in range(rows // chunk):
            writer.write_table(part)
    return path.stat().st_size


# One import in a fresh interpreter, reporting its peak RSS above the peak before it
# (ru_maxrss; tracemalloc does not see arrow's allocations) and its time.
MEASURE = """
import json, resource, sys, time
from pathlib import Path
from core.datasets import import_dataset_parquet
from core.errors import DatasetError
data = Path(sys.argv[1]).read_bytes()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    import_dataset_parquet(Path(sys.argv[2]), "BOMB", data, origin="test")
    outcome = {"error": None}
except DatasetError as exc:
    outcome = {"error": type(exc).__name__, "field": exc.field, "message": str(exc)}
outcome["seconds"] = time.perf_counter() - started
outcome["peak_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps(outcome))
"""


def import_in_fresh_process(file: Path, root: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(file), str(root)], capture_output=True, text=True, check=True, timeout=120
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_parquet_bomb_is_refused_from_its_metadata(tmp_path: Path) -> None:
    """20 M equal rows in ~250 kB: decoded they took the API from 348 MB to 1.7 GB."""
    bomb = tmp_path / "bomb.parquet"
    size = constant_rows_parquet(bomb, 20_000_000)
    assert size < 1 * MB  # the upload limit (200 MiB) cannot see it
    outcome = import_in_fresh_process(bomb, tmp_path / "root")
    assert outcome["error"] == "DatasetTooLarge" and outcome["field"] == "file"
    assert "parquet has 20000000 rows; at most 1000000 are accepted (TFTSWEEP_MAX_DATASET_ROWS)" in str(
        outcome["message"]
    )
    assert float(str(outcome["seconds"])) < 2
    assert float(str(outcome["peak_mb"])) < 200
    assert not dataset_path(tmp_path / "root", "BOMB").exists()


@pytest.mark.parametrize("dictionary", [True, False], ids=["dictionary", "plain"])
def test_long_text_values_are_refused_before_they_are_expanded(tmp_path: Path, dictionary: bool) -> None:
    """300 k rows of one 2 kB string: 600 MB decoded from a file of a few MB. Plain-encoded,
    the metadata's uncompressed size refuses it unread; dictionary-encoded, the dictionary is
    measured before it is expanded into a string per row."""
    chunk = 10_000
    file = tmp_path / "text.parquet"
    schema = pa.schema(
        [("date", pa.timestamp("ns")), ("asset", pa.string()), ("target", pa.float64()), ("note", pa.string())]
    )
    with pq.ParquetWriter(file, schema, compression="zstd", use_dictionary=dictionary) as writer:
        for i in range(30):
            writer.write_table(
                pa.table(
                    {
                        "date": pa.array(pd.date_range("1900-01-01", periods=chunk, freq="D").to_numpy() + i),
                        "asset": pa.array(["X"] * chunk),
                        "target": pa.array(np.zeros(chunk)),
                        "note": pa.array(["x" * 2000] * chunk),
                    },
                    schema=schema,
                )
            )
    assert file.stat().st_size < 20 * MB
    outcome = import_in_fresh_process(file, tmp_path / "root")
    assert outcome["error"] == "DatasetTooLarge"
    message = str(outcome["message"])
    assert "parquet decodes to at least" in message and "(TFTSWEEP_MAX_DATASET_BYTES)" in message
    assert float(str(outcome["seconds"])) < 2
    assert float(str(outcome["peak_mb"])) < 200


def test_too_many_columns(tmp_path: Path) -> None:
    wide = synthetic_dataset("X", n_days=300)
    wide = pd.concat([wide, pd.DataFrame(np.zeros((len(wide), 300)), columns=[f"x{i}" for i in range(300)])], axis=1)
    header = ",".join(["Date", "Open", "High", "Low", "Close", "Volume", *(f"x{i}" for i in range(300))])
    started = time.perf_counter()
    with pytest.raises(DatasetTooLarge, match=r"parquet has 317 columns; at most 256 .*TFTSWEEP_MAX_DATASET_COLUMNS"):
        import_dataset_parquet(tmp_path, "W", wide.to_parquet(index=False), origin="test")
    with pytest.raises(DatasetTooLarge, match=r"CSV has 306 columns; at most 256 .*TFTSWEEP_MAX_DATASET_COLUMNS"):
        import_ohlcv_csv(tmp_path, "W", (header + "\n").encode(), origin="test")
    assert time.perf_counter() - started < 2
    assert not dataset_path(tmp_path, "W").exists()


def test_csv_is_read_only_up_to_the_row_cap(tmp_path: Path) -> None:
    """A million short lines with a cap of 1,000: 1,001 are parsed, not a million."""
    line = b"2020-01-01,1,1,1,1,1\n"
    data = b"Date,Open,High,Low,Close,Volume\n" + line * 1_000_000
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(DatasetTooLarge, match=r"CSV has more than 1000 rows; .*TFTSWEEP_MAX_DATASET_ROWS") as info:
            import_ohlcv_csv(tmp_path, "LONG", data, origin="test", limits=DatasetLimits(max_rows=1000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.field == "file"
    assert time.perf_counter() - started < 2
    assert peak < 16 * MB  # the whole file parsed: more than 40 MB of floats alone
    assert not dataset_path(tmp_path, "LONG").exists()


def test_header_of_millions_of_names_is_refused_unparsed() -> None:
    started = time.perf_counter()
    with pytest.raises(DatasetTooLarge, match="header line is longer than"):
        read_ohlcv_csv(b"a," * 5_000_000 + b"\n1\n")
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(
    ("header", "clash"),
    [
        ("Date,Open,High,Low,Close,Close ,Volume", "'Close' and 'Close '"),
        ("Date,Open,High,Low,Close,close,Volume", "'Close' and 'close'"),
        ("Date,Open,High,Low,Close,Volume,Adj Close,adj_close", "'Adj Close' and 'adj_close'"),
    ],
)
def test_columns_equal_after_normalising_are_refused(tmp_path: Path, header: str, clash: str) -> None:
    data = (header + "\n").encode() + csv_bytes(prices()).split(b"\n", 1)[1]  # refused from the header
    started = time.perf_counter()
    with pytest.raises(DatasetError, match=clash) as info:
        import_ohlcv_csv(tmp_path, "DUP", data, origin="test")
    assert info.value.field == "file" and "have the same name" in str(info.value)
    assert time.perf_counter() - started < 2
    assert not dataset_path(tmp_path, "DUP").exists()


def test_duplicate_parquet_columns_are_refused(tmp_path: Path) -> None:
    frame = synthetic_dataset("X", n_days=300)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.append_column("rsi_14", table.column("rsi_14"))
    started = time.perf_counter()
    with pytest.raises(DatasetError, match="columns 'rsi_14' and 'rsi_14' have the same name"):
        import_dataset_parquet(tmp_path, "DUP", parquet_bytes(table), origin="test")
    assert time.perf_counter() - started < 2


def test_non_dates_name_the_column_and_the_value(tmp_path: Path) -> None:
    frame = synthetic_dataset("X", n_days=300)
    text = frame.assign(date=frame["date"].astype(str).where(frame.index != 5, "not-a-date"))
    listed = pa.Table.from_pandas(frame.assign(date=[[str(d)] for d in frame["date"]]), preserve_index=False)
    csv = prices().assign(Date=lambda f: f["Date"].where(f.index != 7, "not-a-date"))
    started = time.perf_counter()
    with pytest.raises(DatasetError, match="column date: cannot parse dates: 'not-a-date' at row 6 is not a date"):
        import_dataset_parquet(tmp_path, "BAD", text.to_parquet(index=False), origin="test")
    with pytest.raises(DatasetError, match=r"columns date \(list<.*>\) hold lists or records"):
        import_dataset_parquet(tmp_path, "BAD", parquet_bytes(listed), origin="test")
    with pytest.raises(DatasetError, match="'not-a-date' at row 9 is not a date"):  # line 9: header + 7 rows before
        import_ohlcv_csv(tmp_path, "BAD", csv_bytes(csv), origin="test")
    with pytest.raises(DatasetError, match="number 1262304000 at row 1 is not a YYYYMMDD date"):  # epoch seconds
        import_dataset_parquet(
            tmp_path, "BAD", frame.assign(date=frame["date"].astype("int64") // 10**6).to_parquet(), origin="test"
        )
    assert time.perf_counter() - started < 2
    assert not dataset_path(tmp_path, "BAD").exists()


def test_integer_yyyymmdd_dates_are_dates(tmp_path: Path) -> None:
    """Not nanoseconds after 1970: the CSV's and the parquet's dates are the calendar days written."""
    csv = prices()
    csv["Date"] = csv["Date"].str.replace("-", "")
    frame = synthetic_dataset("X", n_days=300)
    as_int = frame.assign(date=frame["date"].dt.strftime("%Y%m%d").astype("int64"))
    as_text = frame.assign(date=frame["date"].dt.strftime("%Y%m%d"))
    started = time.perf_counter()
    from_csv = import_ohlcv_csv(tmp_path, "CSV", csv_bytes(csv), origin="test")
    assert (from_csv.first_date, from_csv.last_date) == (
        str(pd.Timestamp(csv["Date"].iloc[WARMUP_ROWS]).date()),
        "2011-02-25",
    )
    for asset, data in (("INT", as_int), ("TEXT", as_text)):
        info = import_dataset_parquet(tmp_path, asset, data.to_parquet(index=False), origin="test")
        assert (info.first_date, info.last_date) == ("2010-01-01", "2011-02-25")
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("offset", ["+05:00", "-04:00", "Z"])
def test_timezone_aware_dates_keep_their_calendar_date(tmp_path: Path, offset: str) -> None:
    """`2010-01-04T00:00:00+05:00` is the 4th on its exchange (UTC would make it the 3rd)."""
    csv = prices()
    csv["Date"] = csv["Date"] + "T00:00:00" + offset
    started = time.perf_counter()
    info = import_ohlcv_csv(tmp_path, "TZ", csv_bytes(csv), origin="test")
    stored = pd.read_parquet(info.path)["date"]
    assert stored.dt.tz is None and pd.api.types.is_datetime64_dtype(stored)
    assert str(stored.iloc[0].date()) == csv["Date"].iloc[WARMUP_ROWS][:10]
    assert time.perf_counter() - started < 2


def test_timezone_aware_parquet_and_stored_dates_are_naive(tmp_path: Path) -> None:
    frame = synthetic_dataset("X", n_days=300)
    aware = frame.assign(date=frame["date"].dt.tz_localize("Asia/Karachi"))
    info = import_dataset_parquet(tmp_path, "TZ", aware.to_parquet(index=False), origin="test")
    assert pd.read_parquet(info.path)["date"].dt.tz is None
    assert info.first_date == "2010-01-01"
    # A dataset stored with a zone (before this fix) loads with the same wall-clock dates.
    root = make_data_root(tmp_path / "old", n_days=900)
    path = dataset_path(root, "SYN")
    old = pd.read_parquet(path)
    old.assign(date=old["date"].dt.tz_localize("America/New_York")).to_parquet(path, index=False)
    started = time.perf_counter()
    check_dataset_shapes(root, "SYN", SweepConfig.model_validate(tiny_sweep()), {(10, 1)})
    assert time.perf_counter() - started < 2


def test_read_dataset_parquet_measures_text_it_keeps(tmp_path: Path) -> None:
    """A text column within the budget is read, as one string per row again."""
    frame = synthetic_dataset("X", n_days=300).assign(sector="tech")
    started = time.perf_counter()
    read = read_dataset_parquet(frame.to_parquet(index=False), DatasetLimits(max_bytes=2 * MB))
    assert list(read["sector"].unique()) == ["tech"] and not isinstance(read["sector"].dtype, pd.CategoricalDtype)
    with pytest.raises(DatasetTooLarge, match="at most 1048576"):
        read_dataset_parquet(frame.assign(sector="t" * 8000).to_parquet(index=False), DatasetLimits(max_bytes=MB))
    assert time.perf_counter() - started < 2


def test_limits_default_to_the_settings_defaults() -> None:
    settings = Settings()
    assert DatasetLimits() == DatasetLimits(
        settings.max_dataset_rows, settings.max_dataset_columns, settings.max_dataset_bytes
    )


# -- fold checks -----------------------------------------------------------------------------


def yearly_folds(count: int) -> list[dict[str, str]]:
    """`count` folds of one year each (2012 onwards, wrapping round so every one fits)."""
    return [tiny_fold(f"f{i}", 2012 + i % 2) for i in range(count)]


def test_hundred_folds_by_hundred_shapes_in_linear_time(tmp_path: Path) -> None:
    """10,000 (fold, shape) checks: 16 s when each filtered the frame, now a binary search
    per fold and arithmetic per shape."""
    root = make_data_root(tmp_path, n_days=1050)
    config = SweepConfig.model_validate(tiny_sweep(walk_forward={"enabled": True, "folds": yearly_folds(100)}))
    shapes = {(enc, 1) for enc in range(2, 102)}
    started = time.perf_counter()
    check_dataset_shapes(root, "SYN", config, shapes)  # all fit
    with pytest.raises(DatasetError, match=r"fold f0: train window 20100101..20111231 has \d+ rows; .*=600 "):
        check_dataset_shapes(root, "SYN", config, shapes | {(600, 1)})  # 2 years hold ~460 rows
    assert time.perf_counter() - started < 2


def test_fold_problems_read_as_before() -> None:
    """The messages tests and users match on: train rows, window rows, rows before a window."""
    frame = synthetic_dataset(n_days=900)
    dates = pd.DatetimeIndex(frame["date"])
    fold = Fold.model_validate(tiny_fold("f1", 2012))
    counts = fold_counts(dates, fold)
    started = time.perf_counter()
    assert counts.rows["train"] == int(((frame["date"] >= "2010-01-01") & (frame["date"] <= "2011-12-31")).sum())
    assert counts.before["val"] == int((frame["date"] < "2012-01-01").sum())
    assert fold_problem(counts, 100, 1) is None
    assert fold_problem(counts, 600, 1) == (
        f"fold f1: train window 20100101..20111231 has {counts.rows['train']} rows; "
        f"max_encoder_length=600 + max_prediction_length=1 needs at least 602"
    )
    late = fold_counts(dates, Fold.model_validate(tiny_fold("late", 2020)))
    assert fold_problem(late, 10, 1) == (
        "fold late: train window 20180101..20191231 has 0 rows; "
        "max_encoder_length=10 + max_prediction_length=1 needs at least 12"
    )
    short_val = Fold.model_validate({**tiny_fold("v", 2012), "val_start": "20120101", "val_end": "20120103"})
    assert fold_problem(fold_counts(dates, short_val), 10, 5) == (
        "fold v: val window 20120101..20120103 has 2 rows; at least max_prediction_length=5 are needed"
    )
    with pytest.raises(DatasetError, match="needs at least 602"):
        check_fold_fits(frame, fold, TrainingConfig(max_encoder_length=600))
    assert time.perf_counter() - started < 2
