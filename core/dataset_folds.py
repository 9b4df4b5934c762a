"""A stored dataset against a config's folds: which rows each fold's windows hold (with the
embargo), whether a fold fits the dataset's dates and the model's encoder and horizon, and the
problems named by the config's field path (`walk_forward.folds[2].val_end`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from core.config import WINDOW_KEYS, ExperimentConfig, Fold, SweepConfig, TrainingConfig, at_most, parse_date
from core.datasets import WINDOWS, load_dataset
from core.errors import DatasetError, FieldError, InvalidSweepConfig
from core.plan import plan_configs

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
