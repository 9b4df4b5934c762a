"""Stored datasets: build from prices, save with a sidecar, load, list, fingerprint, validate;
the MSFT example and a synthetic generator.

Layout (docs/datasets.md): `{data_root}/processed/dataset_tft/{ASSET}/dataset_tft_{ASSET}.parquet`
with a JSON sidecar `dataset_tft_{ASSET}.json` (target definition, feature sets, source).
Reading an uploaded file is `core.dataset_files`; a dataset against a config's folds is
`core.dataset_folds`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from core import paths
from core.dataset_files import (
    KEY_COLUMNS,
    DatasetLimits,
    check_dates,
    check_finite,
    parse_dates,
    read_dataset_parquet,
    read_ohlcv_csv,
)
from core.errors import DatasetError, DatasetExists
from core.feature_sets import FEATURE_SETS, resolve_features
from core.features import FEATURE_DOCS, TARGET_DEFINITION, WARMUP_ROWS, compute_features
from core.files import file_sha256, write_bytes_atomic, write_json_atomic
from core.names import check_safe_name
from core.paths import ensure_inside
from core.store import Store

WINDOWS = ("train", "val", "test")


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
    check_dates(pd.to_datetime(frame["date"]), "dataset")
    non_numeric = [c for c in ["target", *features] if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise DatasetError(f"columns {non_numeric} are not numeric")
    check_finite(frame, ["target", *features], "dataset")
