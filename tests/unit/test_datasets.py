"""Datasets: OHLCV import, causal features, and every bad-data error before training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import SweepConfig, TrainingConfig
from core.dataset_files import read_ohlcv_csv
from core.dataset_folds import check_dataset_for_sweep, check_fold_fits
from core.datasets import (
    dataset_path,
    import_dataset_parquet,
    import_ohlcv_csv,
    list_datasets,
    load_dataset,
    synthetic_dataset,
    synthetic_ohlcv,
)
from core.errors import DatasetError, InvalidSweepConfig
from core.feature_sets import FEATURE_SETS
from core.features import WARMUP_ROWS, compute_features
from tests.utils.data import csv_bytes, make_data_root, prices, tiny_fold, tiny_fold_model, tiny_sweep


def test_import_builds_dataset_and_sidecar(tmp_path: Path) -> None:
    info = import_ohlcv_csv(tmp_path, "ABC", csv_bytes(prices()), origin="test")
    assert info.path == tmp_path / "processed/dataset_tft/ABC/dataset_tft_ABC.parquet"
    frame = pd.read_parquet(info.path)
    assert list(frame.columns[:3]) == ["date", "asset", "target"]
    assert set(FEATURE_SETS["BASELINE_FEATURES"]) <= set(frame.columns)
    assert len(frame) == 300 - WARMUP_ROWS
    sidecar = json.loads(info.path.with_suffix(".json").read_text())
    assert "log return" in sidecar["target"]
    assert sidecar["source"] == {"kind": "ohlcv_csv", "origin": "test"}
    assert "BASELINE_FEATURES" in sidecar["feature_sets"]
    assert set(sidecar["features"]) >= {"rsi_14", "macd", "volume_z_21"}
    assert [d.asset for d in list_datasets(tmp_path)] == ["ABC"]


def test_column_names_are_case_insensitive_and_adj_close_drives_returns() -> None:
    frame = prices()
    frame.columns = ["DATE", "open", "HIGH", "Low", "close", "VoLuMe"]
    frame["Adj Close"] = frame["close"] * 0.5
    parsed = read_ohlcv_csv(csv_bytes(frame))
    assert "adj_close" in parsed
    with_adj = compute_features(parsed)
    without = compute_features(parsed.drop(columns=["adj_close"]))
    # Halving every price leaves log returns unchanged: returns come from the adjusted close.
    np.testing.assert_allclose(with_adj["target"], without["target"], atol=1e-12)


def test_target_is_the_log_return_of_the_row() -> None:
    raw = synthetic_ohlcv(200, seed=1)
    feats = compute_features(raw)
    expected = np.log(raw["close"] / raw["close"].shift(1)).iloc[WARMUP_ROWS:].to_numpy()
    np.testing.assert_allclose(feats["target"].to_numpy(), expected)


def test_features_are_causal() -> None:
    """A feature on day d never changes when later prices change (no look-ahead)."""
    raw = synthetic_ohlcv(400, seed=2)
    cut = 300
    changed = raw.copy()
    changed.loc[cut:, ["open", "high", "low", "close"]] *= 1.5
    changed.loc[cut:, "volume"] *= 3
    a = compute_features(raw)
    b = compute_features(changed)
    upto = cut - WARMUP_ROWS  # rows before the change
    pd.testing.assert_frame_equal(a.iloc[:upto], b.iloc[:upto])
    assert not a.iloc[upto:].equals(b.iloc[upto:])


def test_synthetic_data_is_deterministic() -> None:
    pd.testing.assert_frame_equal(synthetic_dataset(n_days=300, seed=4), synthetic_dataset(n_days=300, seed=4))
    assert not synthetic_dataset(n_days=300, seed=4).equals(synthetic_dataset(n_days=300, seed=5))


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda f: f.drop(columns=["Volume"]), "missing columns ['volume']"),
        (lambda f: pd.concat([f.iloc[:10], f.iloc[9:]]), "duplicate dates"),
        (lambda f: f.iloc[::-1], "not sorted ascending"),
        (lambda f: f.assign(Close=f["Close"].where(f.index != 50)), "column close has a NaN"),
        (lambda f: f.assign(High=f["High"].where(f.index != 60, np.inf)), "column high has a infinite value"),
        (lambda f: f.assign(Open=f["Open"].astype(object).where(f.index != 70, "abc")), "non-numeric value 'abc'"),
        (lambda f: f.assign(Low=f["Low"].where(f.index != 80, -1.0)), "prices must be positive"),
        (lambda f: f.assign(Date=f["Date"].where(f.index != 5, "not a date")), "cannot parse dates"),
        (lambda f: f.iloc[:40], "at least"),
    ],
)
def test_bad_csv_errors(tmp_path: Path, mutate, needle: str) -> None:
    with pytest.raises(DatasetError) as info:
        import_ohlcv_csv(tmp_path, "BAD", csv_bytes(mutate(prices())), origin="test")
    assert needle in str(info.value)
    assert not dataset_path(tmp_path, "BAD").exists()  # nothing half-written


def test_unsafe_asset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=re.escape("asset '../x'")):
        import_ohlcv_csv(tmp_path, "../x", csv_bytes(prices()), origin="test")


def test_empty_csv(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot read the CSV"):
        import_ohlcv_csv(tmp_path, "E", b"", origin="test")


def test_load_dataset_checks_features_and_values(tmp_path: Path) -> None:
    make_data_root(tmp_path, n_days=300)
    with pytest.raises(DatasetError, match=r"features \['nope'\] are not columns"):
        load_dataset(tmp_path, "SYN", ["rsi_14", "nope"])
    with pytest.raises(DatasetError, match="no dataset for asset 'MISSING'"):
        load_dataset(tmp_path, "MISSING")
    # A synthetic dataset holds its n_days rows and the first day of 2010 (its warm-up comes before).
    assert len(load_dataset(tmp_path, "SYN", "BASELINE_FEATURES")) == 300 + 1


def test_parquet_upload_is_validated(tmp_path: Path) -> None:
    frame = synthetic_dataset("X", n_days=300)
    frame.loc[10, "rsi_14"] = np.nan
    buffer = frame.to_parquet(index=False)
    with pytest.raises(DatasetError, match="column rsi_14 has a NaN"):
        import_dataset_parquet(tmp_path, "X", buffer, origin="upload")
    with pytest.raises(DatasetError, match="missing columns"):
        import_dataset_parquet(tmp_path, "X", frame.drop(columns=["target"]).to_parquet(), origin="upload")
    with pytest.raises(DatasetError, match="cannot read the parquet"):
        import_dataset_parquet(tmp_path, "X", b"not parquet", origin="upload")
    assert not dataset_path(tmp_path, "X").exists()


def test_windows_too_short_for_the_encoder(tmp_path: Path) -> None:
    frame = synthetic_dataset(n_days=900)
    fold = tiny_fold_model()
    check_fold_fits(frame, fold, TrainingConfig(max_encoder_length=100))
    with pytest.raises(DatasetError, match=re.escape("fold f1: train window 20100101..20111231 has")):
        check_fold_fits(frame, fold, TrainingConfig(max_encoder_length=600))
    late = tiny_fold_model("late", 2020)
    with pytest.raises(DatasetError, match="fold late: train window"):
        check_fold_fits(frame, late, TrainingConfig(max_encoder_length=10))


def test_synthetic_datasets_start_on_the_first_day_of_2010() -> None:
    """The test folds start on 20100101; a dataset that began in April would be refused under them."""
    frame = synthetic_dataset(n_days=300)
    assert str(frame["date"].iloc[0].date()) == "2010-01-01"
    assert len(frame) == 301
    assert frame["target"].abs().max() < 0.1  # the warm-up history joins the prices without a jump


def folds_config(*folds: dict[str, str], clip: bool = False) -> SweepConfig:
    return SweepConfig.model_validate(
        tiny_sweep(walk_forward={"enabled": True, "folds": list(folds), "clip_to_data": clip})
    )


def test_windows_outside_the_dataset_are_refused_by_path(tmp_path: Path) -> None:
    """Issue 22 item 2: a 2005 train_start and a 2019 test_end on 2010-01..2014-01 data were cut silently."""
    make_data_root(tmp_path)
    early = {**tiny_fold("early", 2012), "train_start": "20050101"}
    late = {**tiny_fold("late", 2013), "test_end": "20191231"}
    after = tiny_fold("after", 2030)
    config = folds_config(tiny_fold("inside", 2012), early, late, after)
    with pytest.raises(InvalidSweepConfig) as info:
        check_dataset_for_sweep(tmp_path, "SYN", config)
    found = {e.field: e.message for e in info.value.errors}
    span = "(SYN's dataset runs 20100101..20140110)"
    fix = "move the window inside the data, or set walk_forward.clip_to_data: true to cut windows to it"
    assert found == {
        "walk_forward.folds[1].train_start": f"fold early: train_start 20050101 is before the dataset's first date "
        f"{span}; {fix}",
        "walk_forward.folds[2].test_end": f"fold late: test_end 20191231 is after the dataset's last date "
        f"{span}; {fix}",
        "walk_forward.folds[3].train_start": f"fold after: train_start 20280101 is after the dataset's last date "
        f"(the whole fold) {span}; {fix}",
    }


def test_clip_to_data_lets_the_row_counts_decide(tmp_path: Path) -> None:
    make_data_root(tmp_path)
    early = {**tiny_fold("early", 2012), "train_start": "20050101"}
    check_dataset_for_sweep(tmp_path, "SYN", folds_config(early, clip=True))  # cut to 2010-01-01: enough rows
    with pytest.raises(DatasetError, match=re.escape("fold after: train window 20280101..20291231 has 0 rows")):
        check_dataset_for_sweep(tmp_path, "SYN", folds_config(tiny_fold("after", 2030), clip=True))
