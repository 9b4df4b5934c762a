"""Datasets on disk: import from OHLCV CSV, the MSFT example, a synthetic generator, validation.

Layout (SPEC): `{data_root}/processed/dataset_tft/{ASSET}/dataset_tft_{ASSET}.parquet`
with a JSON sidecar `dataset_tft_{ASSET}.json` (target definition, feature sets, source).
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

from core.config import ExperimentConfig, Fold, SweepConfig, TrainingConfig, parse_date
from core.errors import DatasetError, DatasetExists
from core.feature_sets import FEATURE_SETS, resolve_features
from core.features import FEATURE_DOCS, TARGET_DEFINITION, WARMUP_ROWS, compute_features
from core.files import file_sha256, write_bytes_atomic, write_json_atomic
from core.names import check_safe_name
from core.paths import ensure_inside
from core.plan import plan_configs
from core.store import Store

KEY_COLUMNS = ("date", "asset", "target")
OHLCV_COLUMNS = ("date", "open", "high", "low", "close", "volume")


def check_asset(asset: str) -> str:
    problem = check_safe_name(asset)
    if problem is not None:
        raise DatasetError(f"asset {asset!r} {problem}", field="asset")
    return asset


def dataset_path(root: Path, asset: str) -> Path:
    check_asset(asset)
    return root / "processed" / "dataset_tft" / asset / f"dataset_tft_{asset}.parquet"


def dataset_dir(root: Path, asset: str) -> Path:
    """The folder of an asset's dataset and sidecar (published to an object store as one)."""
    return dataset_path(root, asset).parent


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


def read_ohlcv_csv(source: str | Path | IO[bytes] | bytes) -> pd.DataFrame:
    """Read a daily OHLCV CSV (`Date, Open, High, Low, Close, Volume`, optional `Adj Close`).

    Column names are matched case-insensitively (`Adj Close`, `adj_close`, `AdjClose`).

    Raises:
        DatasetError: unreadable file, missing columns, bad dates, duplicates, unsorted
            dates, non-numeric, non-finite or non-positive prices.
    """
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        raw = pd.read_csv(source)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"cannot read the CSV: {exc}") from None
    rename = {c: _normalise_column(c) for c in raw.columns}
    prices = raw.rename(columns=rename)
    missing = [c for c in OHLCV_COLUMNS if c not in prices.columns]
    if missing:
        raise DatasetError(f"CSV is missing columns {missing}; found {list(raw.columns)}")
    keep = [*OHLCV_COLUMNS, *(["adj_close"] if "adj_close" in prices.columns else [])]
    prices = prices[keep].copy()
    try:
        prices["date"] = pd.to_datetime(prices["date"], format="mixed")
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"column date: cannot parse dates ({exc})") from None
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
    if len(prices) <= WARMUP_ROWS + 1:
        raise DatasetError(f"CSV has {len(prices)} rows; at least {WARMUP_ROWS + 2} are needed for the features")
    return prices.reset_index(drop=True)


def _normalise_column(name: object) -> str:
    key = str(name).strip().lower().replace(" ", "_").replace("-", "_")
    return "adj_close" if key in ("adj_close", "adjclose", "adjusted_close") else key


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
    """Validate and store a dataset and its sidecar, each written atomically."""
    check_asset(asset)
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
    root: Path, asset: str, source: str | Path | IO[bytes] | bytes, origin: str, *, replace: bool = False
) -> DatasetInfo:
    """`tftsweep dataset import`: OHLCV CSV to a stored dataset.

    Raises:
        DatasetError: a bad asset name (field `asset`) or a file that is no usable OHLCV CSV (`file`).
        DatasetExists: the asset has a dataset and `replace` is off.
    """
    check_asset(asset)
    _check_replace(root, asset, replace)
    with _the_file_at_fault():
        frame = build_dataset(read_ohlcv_csv(source), asset)
        return save_dataset(root, asset, frame, {"kind": "ohlcv_csv", "origin": origin})


def import_dataset_parquet(root: Path, asset: str, data: bytes, origin: str, *, replace: bool = False) -> DatasetInfo:
    """Store a ready dataset parquet after checking it has the dataset's shape.

    Raises:
        DatasetError: a bad asset name (field `asset`) or a file that is no usable dataset (`file`).
        DatasetExists: the asset has a dataset and `replace` is off.
    """
    check_asset(asset)
    _check_replace(root, asset, replace)
    with _the_file_at_fault():
        try:
            frame = pd.read_parquet(io.BytesIO(data))
        except Exception as exc:  # pyarrow raises many types for a corrupt file
            raise DatasetError(f"cannot read the parquet file: {exc}") from None
        missing = [c for c in KEY_COLUMNS if c not in frame]
        if missing:
            raise DatasetError(f"dataset is missing columns {missing}")
        frame["date"] = pd.to_datetime(frame["date"])
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
        raise DatasetError(str(exc), field="file") from None


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


def synthetic_dataset(asset: str = "SYN", n_days: int = 1500, seed: int = 0) -> pd.DataFrame:
    return build_dataset(synthetic_ohlcv(n_days, seed), asset)


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
    base = root / "processed" / "dataset_tft"
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
    assets = store.datasets()
    store.fetch_many([dataset_dir(store.root, asset) for asset in assets])
    return [info for info in list_datasets(store.root) if info.asset in assets]


def import_to_store(store: Store, asset: str, build: Callable[[Path], DatasetInfo]) -> DatasetInfo:
    """Store a dataset `build` writes under a data root: the store's dataset is fetched first
    (it is the one a replace must be asked for), the new one published after.

    Raises:
        DatasetError, DatasetExists: as `build`; nothing is published.
        StoreError: the object store failed.
    """
    folder = dataset_dir(store.root, check_asset(asset))
    store.fetch(folder)
    info = build(store.root)
    store.publish(folder)
    return info


def _parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

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
    frame["date"] = pd.to_datetime(frame["date"])
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


def fold_rows(frame: pd.DataFrame, fold: Fold) -> dict[str, pd.DataFrame]:
    """The rows of each window of `fold` (inclusive dates)."""
    out = {}
    for part in ("train", "val", "test"):
        start = pd.Timestamp(parse_date(getattr(fold, f"{part}_start")))
        end = pd.Timestamp(parse_date(getattr(fold, f"{part}_end")))
        out[part] = frame[(frame["date"] >= start) & (frame["date"] <= end)]
    return out


def check_fold_fits(frame: pd.DataFrame, fold: Fold, training: TrainingConfig) -> None:
    """Enough rows in each window of `fold` for the encoder and decoder lengths.

    Raises:
        DatasetError: naming the fold, the window and the counts.
    """
    windows = fold_rows(frame, fold)
    need_train = training.max_encoder_length + training.max_prediction_length + 1
    n_train = len(windows["train"])
    if n_train < need_train:
        raise DatasetError(
            f"fold {fold.name}: train window {fold.train_start}..{fold.train_end} has {n_train} rows; "
            f"max_encoder_length={training.max_encoder_length} + max_prediction_length="
            f"{training.max_prediction_length} needs at least {need_train}"
        )
    for part in ("val", "test"):
        rows = windows[part]
        if len(rows) < training.max_prediction_length:
            raise DatasetError(
                f"fold {fold.name}: {part} window {getattr(fold, part + '_start')}..{getattr(fold, part + '_end')} "
                f"has {len(rows)} rows; at least max_prediction_length={training.max_prediction_length} are needed"
            )
        history = int((frame["date"] < rows["date"].iloc[0]).sum())
        if history < training.max_encoder_length:
            raise DatasetError(
                f"fold {fold.name}: only {history} rows precede the {part} window; "
                f"max_encoder_length={training.max_encoder_length} needs that many"
            )


def check_dataset_for_sweep(root: Path, asset: str, config: SweepConfig) -> None:
    """Fail before any training when the dataset cannot serve every (fold, config) shape.

    Raises:
        DatasetError: missing dataset or features, bad values, too-short windows.
    """
    shapes = {(c.training.max_encoder_length, c.training.max_prediction_length) for c in plan_configs(config)}
    check_dataset_shapes(root, asset, config, shapes)


def check_dataset_shapes(root: Path, asset: str, keys: ExperimentConfig, shapes: set[tuple[int, int]]) -> None:
    """The dataset has the features and, in every fold, rows for each (encoder, prediction) length."""
    frame = load_dataset(root, asset, keys.features)
    for fold in keys.folds:
        for enc, pred in sorted(shapes):
            check_fold_fits(frame, fold, TrainingConfig(max_encoder_length=enc, max_prediction_length=pred))
