"""POST /datasets/{asset} with files built to hurt: 413 or 422 naming the problem, fast, and
nothing stored; dates that once broke every later sweep on the asset now read as dates."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from core.datasets import synthetic_dataset, synthetic_ohlcv
from core.features import WARMUP_ROWS
from tests.utils.data import tiny_fold, tiny_sweep
from tests.utils.fakes import RecordingQueue
from tests.utils.server import api_client, server_settings

MB = 1_048_576


def rss_bytes() -> int:
    """This process's resident memory now (the test client runs the app in this process)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def ohlcv_csv(n_days: int = 1050, **dates: object) -> bytes:
    frame = synthetic_ohlcv(n_days).rename(columns=str.title)
    for name, value in dates.items():
        frame[name] = value
    return frame.to_csv(index=False).encode()


def upload(client: TestClient, asset: str, data: bytes) -> tuple[int, list[dict[str, str]] | dict[str, object], float]:
    started = time.perf_counter()
    response = client.post(f"/datasets/{asset}", files={"file": ("f", data)})
    return response.status_code, response.json().get("detail", response.json()), time.perf_counter() - started


def stored_assets(client: TestClient) -> set[str]:
    return {d["asset"] for d in client.get("/datasets").json()["data"]}


@pytest.fixture
def capped(root: Path, queue: RecordingQueue, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """A server with small dataset limits (settings, as an operator would set them)."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = server_settings(root, max_dataset_rows=1000, max_dataset_columns=20, max_dataset_bytes=2 * MB)
    with api_client(create_app(settings, queue=queue, reaper=False)) as test_client:
        yield test_client


def test_parquet_bomb_is_413_before_decoding(client: TestClient) -> None:
    chunk = 500_000
    part = pa.table(
        {
            "date": pa.array(np.zeros(chunk, dtype="datetime64[ns]")),
            "asset": pa.array(["X"]).take(pa.array(np.zeros(chunk, dtype="int32"))),
            "target": pa.array(np.zeros(chunk)),
        }
    )
    buffer = io.BytesIO()
    with pq.ParquetWriter(buffer, part.schema, compression="zstd") as writer:
        for _ in range(40):  # 20 M rows
            writer.write_table(part)
    del part
    bomb = buffer.getvalue()
    assert len(bomb) < MB
    arrow_before, rss_before = pa.total_allocated_bytes(), rss_bytes()
    status, detail, seconds = upload(client, "BOMB", bomb)
    assert status == 413
    assert detail == [
        {
            "field": "file",
            "message": "parquet has 20000000 rows; at most 1000000 are accepted (TFTSWEEP_MAX_DATASET_ROWS)",
        }
    ]
    assert seconds < 2
    assert pa.total_allocated_bytes() - arrow_before < 10 * MB and rss_bytes() - rss_before < 200 * MB
    assert stored_assets(client) == {"SYN"}


def test_limits_come_from_the_settings(capped: TestClient) -> None:
    long_csv = ohlcv_csv(1500)
    wide = synthetic_dataset("W", n_days=300).assign(**{f"x{i}": 0.0 for i in range(10)})
    texty = synthetic_dataset("T", n_days=300).assign(note="n" * 10_000)  # 2.4 MB once decoded
    cases = [
        (long_csv, "CSV has more than 1000 rows; at most 1000 are accepted (TFTSWEEP_MAX_DATASET_ROWS)"),
        (
            wide.to_parquet(index=False),
            "parquet has 27 columns; at most 20 are accepted (TFTSWEEP_MAX_DATASET_COLUMNS)",
        ),
        (texty.to_parquet(index=False), "at most 2097152 are accepted (TFTSWEEP_MAX_DATASET_BYTES)"),
    ]
    for data, needle in cases:
        status, detail, seconds = upload(capped, "BIG", data)
        assert status == 413, detail
        assert isinstance(detail, list) and detail[0]["field"] == "file" and needle in detail[0]["message"]
        assert seconds < 2
    assert stored_assets(capped) == {"SYN"}


def test_bad_columns_and_dates_are_422_naming_them(client: TestClient) -> None:
    prices = synthetic_ohlcv(300).rename(columns=str.title)
    frame = synthetic_dataset("X", n_days=300)
    listed = pa.Table.from_pandas(frame.assign(date=[[str(d)] for d in frame["date"]]), preserve_index=False)
    listed_bytes = io.BytesIO()
    pq.write_table(listed, listed_bytes)
    cases = [
        (prices.assign(**{"Close ": prices["Close"]}).to_csv(index=False).encode(), "columns 'Close' and 'Close '"),
        (
            frame.assign(date=frame["date"].astype(str).where(frame.index != 3, "not-a-date")).to_parquet(),
            "column date: cannot parse dates: 'not-a-date' at row 4 is not a date",
        ),
        (listed_bytes.getvalue(), "columns date (list<element: string>) hold lists or records"),
        (
            prices.assign(Date=prices["Date"].astype("int64")).to_csv(index=False).encode(),
            "at row 2 is not a date",  # nanoseconds since 1970 are no date a user means
        ),
    ]
    for data, needle in cases:
        status, detail, seconds = upload(client, "BAD", data)
        assert status == 422, detail
        assert isinstance(detail, list) and detail[0]["field"] == "file" and needle in detail[0]["message"]
        assert seconds < 2
    assert stored_assets(client) == {"SYN"}


def test_timezone_aware_dates_then_a_sweep_on_the_asset(client: TestClient) -> None:
    """The upload was 201 and every later POST /sweeps on the asset 500: now the dates are the
    calendar days written (the offset dropped) and sweeps run on them."""
    days = pd.bdate_range("2010-01-04", periods=1050)
    status, body, seconds = upload(client, "TZ", ohlcv_csv(Date=days.strftime("%Y-%m-%dT00:00:00+05:00")))
    assert status == 201, body
    assert isinstance(body, dict) and body["first_date"] == str(days[WARMUP_ROWS].date())
    started = time.perf_counter()
    # The upload's first rows warm the features up: the fold starts where its data does.
    first = str(days[WARMUP_ROWS].date()).replace("-", "")
    folds = [{**tiny_fold("f1", 2012), "train_start": first}]
    config = tiny_sweep(walk_forward={"enabled": True, "folds": folds})
    response = client.post("/sweeps", json={"asset": "TZ", "config": config})
    assert response.status_code == 201, response.text
    assert seconds + time.perf_counter() - started < 4


def test_integer_yyyymmdd_dates_are_read_as_dates(client: TestClient) -> None:
    days = pd.bdate_range("2010-01-04", periods=1050)
    status, body, seconds = upload(client, "INT", ohlcv_csv(Date=days.strftime("%Y%m%d").astype(int)))
    assert status == 201, body
    assert isinstance(body, dict) and (body["first_date"], body["last_date"]) == (
        str(days[WARMUP_ROWS].date()),
        str(days[-1].date()),
    )
    frame = synthetic_dataset("PQ", n_days=300)
    status, body, more = upload(
        client, "PQ", frame.assign(date=frame["date"].dt.strftime("%Y%m%d").astype(int)).to_parquet()
    )
    assert status == 201, body
    assert isinstance(body, dict) and (body["first_date"], body["last_date"]) == ("2010-01-01", "2011-02-25")
    assert seconds + more < 4
