"""Walk-forward folds generated from a pattern (`walk_forward.generate`, docs/config.md).

Ten walk-forward folds are sixty dates to type, and an off-by-one leaves a gap or an overlap.
Here every window boundary is computed from `start` in whole calendar years (or, for the train
window, calendar days), and each window ends the day before the next one starts, so the windows
of a fold tile the calendar by construction. Nothing here knows the config schema: the schema
(`core.config.FoldGenerator`) hands over a `FoldPattern` and turns the windows into folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import MAXYEAR, MINYEAR, date, timedelta

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class FoldPattern:
    """What `walk_forward.generate` asks for, as dates and whole numbers (already validated).

    Exactly one of `train_years` and `train_days` is set; every size is positive."""

    start: date
    end: date
    train_years: int | None
    train_days: int | None
    val_years: int
    test_years: int
    step_years: int
    expanding: bool


@dataclass(frozen=True)
class FoldWindows:
    """One generated fold: its name and its six inclusive dates."""

    name: str
    train_start: date
    train_end: date
    val_start: date
    val_end: date
    test_start: date
    test_end: date

    def window_dict(self) -> dict[str, str]:
        """The six dates as `YYYYMMDD` strings, keyed as a fold's windows are."""
        keys = ("train_start", "train_end", "val_start", "val_end", "test_start", "test_end")
        return {key: getattr(self, key).strftime("%Y%m%d") for key in keys}


def add_years(day: date, years: int) -> date:
    """`day` moved by whole calendar years; a 29 February lands on 1 March in a year without one
    (so a year counted from 29 February 2016 ends on 28 February 2017).

    Raises:
        OverflowError: the year leaves the calendar (1..9999).
    """
    year = day.year + years
    if not MINYEAR <= year <= MAXYEAR:
        raise OverflowError(f"year {year} is outside the calendar")
    try:
        return day.replace(year=year)
    except ValueError:
        return date(year, 3, 1)


def last_day(start: date, years: int) -> date:
    """The last day of a window of `years` calendar years from `start`: the day before
    `add_years(start, years)`, which may be 1 January of the year after the calendar's last.

    Raises:
        OverflowError: the window ends after the calendar's last day.
    """
    if start.year + years == MAXYEAR + 1 and (start.month, start.day) == (1, 1):
        return date.max
    return add_years(start, years) - ONE_DAY


def _boundaries(pattern: FoldPattern, k: int) -> tuple[date, date, date, date] | None:
    """Fold `k`'s train, val and test starts and the last day of its test window, or None when
    a boundary leaves the calendar. Year boundaries count from `start` itself (not from the
    previous boundary), so a 29 February start never drifts."""
    try:
        shift = k * pattern.step_years
        train_start = pattern.start if pattern.expanding else add_years(pattern.start, shift)
        if pattern.train_years is not None:
            years = shift + pattern.train_years
            val_start = add_years(pattern.start, years)
            test_start = add_years(pattern.start, years + pattern.val_years)
            test_end = last_day(pattern.start, years + pattern.val_years + pattern.test_years)
        else:
            assert pattern.train_days is not None
            val_start = add_years(pattern.start, shift) + timedelta(days=pattern.train_days)
            test_start = add_years(val_start, pattern.val_years)
            test_end = last_day(val_start, pattern.val_years + pattern.test_years)
    except OverflowError:
        return None
    return train_start, val_start, test_start, test_end


def _fits(pattern: FoldPattern, k: int) -> bool:
    bounds = _boundaries(pattern, k)
    return bounds is not None and bounds[3] <= pattern.end


def fold_count(pattern: FoldPattern) -> int:
    """How many folds `pattern` generates, without generating them: fold `k`'s test window ends
    later as `k` grows (every window moves by `step_years >= 1`), so the count is the first `k`
    that does not fit, found by bisection over at most the years from `start` to `end`
    (O(log years) date computations)."""
    low, high = 0, (pattern.end.year - pattern.start.year) // pattern.step_years + 1
    # Invariant: every k < low fits; k = high does not (its train window starts after `end`'s year).
    while low < high:
        mid = (low + high) // 2
        if _fits(pattern, mid):
            low = mid + 1
        else:
            high = mid
    return low


def first_test_end(pattern: FoldPattern) -> date | None:
    """The last day of the first fold's test window (None when it leaves the calendar): what an
    `end` that generates no fold must reach."""
    bounds = _boundaries(pattern, 0)
    return None if bounds is None else bounds[3]


def fold_name(test_start: date, test_end: date) -> str:
    """A generated fold's name, from its test window: `wf_2019` for the calendar year 2019,
    `wf_2019_2020` for the calendar years 2019 to 2020, else `wf_` and the test window's first
    day (`wf_20190701`). Test windows of one pattern start on distinct days, so names are unique."""
    whole_years = (test_start.month, test_start.day) == (1, 1) and (test_end.month, test_end.day) == (12, 31)
    if not whole_years:
        return f"wf_{test_start:%Y%m%d}"
    if test_start.year == test_end.year:
        return f"wf_{test_start.year}"
    return f"wf_{test_start.year}_{test_end.year}"


def generate_windows(pattern: FoldPattern) -> list[FoldWindows]:
    """Every fold of `pattern`, first to last: the last is the last whose test window ends on
    or before `end`. Callers bound `fold_count(pattern)` before calling this."""
    out = []
    for k in range(fold_count(pattern)):
        bounds = _boundaries(pattern, k)
        assert bounds is not None  # fold_count counted it
        train_start, val_start, test_start, test_end = bounds
        out.append(
            FoldWindows(
                name=fold_name(test_start, test_end),
                train_start=train_start,
                train_end=val_start - ONE_DAY,
                val_start=val_start,
                val_end=test_start - ONE_DAY,
                test_start=test_start,
                test_end=test_end,
            )
        )
    return out
