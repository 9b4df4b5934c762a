"""Whether a difference is real: paired intervals, Wilcoxon signed-rank p-values, Holm's
adjustment, verdicts, and the Diebold-Mariano test against the naive forecast.

The definitions (docs/reports.md) are exact, so an independent check with scipy recomputes
them. Pairs are a config's run and the baseline's run with the same fold and seed, both
succeeded; `d` are their val-RMSE deltas (config minus baseline), `n` their count:

- interval: `mean(d) ± t.ppf(0.975, n-1) * std(d, ddof=1) / sqrt(n)` (NaN when n < 2),
  unadjusted; its half-width is the smallest delta the pairs could show;
- simultaneous interval: the same with `t.ppf(1 - alpha / (2 * m), n-1)`, `m` the row's Holm
  family (Bonferroni): the intervals of a table cover every true delta at once with
  probability at least `1 - alpha`, so one that excludes zero is not a multiple-testing
  artefact;
- Wilcoxon: `scipy.stats.wilcoxon(d)` with its defaults (NaN when n < 2 or every d is 0),
  computed here in batches (a sweep of 100,000 runs has thousands of groups; scipy takes
  0.6 ms a call) and by scipy itself where its default is a permutation test (ties or
  zeros among at most 13 pairs);
- Holm: the step-down adjustment over the rows of one table (NaN rows left out), capped
  at 1 and monotone;
- Holm family of a row: `m`, the rows of its table with a p-value (the tests Holm adjusts
  together), counting the row itself when it has none;
- verdict: `better` / `worse` when the Holm p-value is below alpha and the mean delta is
  negative / positive; else `insufficient` when the smallest Holm-adjusted p-value the row
  could reach is not below alpha: no outcome of its pairs (nor of the other rows') could have
  given `better`; else `indistinguishable`. That smallest value is
  `max(2 / 2**n, min(1, m * 2 / 2**N))`, `N` the most pairs any row of the family has: Holm
  multiplies the family's smallest p-value (at best `2 / 2**N`) by `m`, and no row's adjusted
  p-value is below that nor below its own p-value (at best `2 / 2**n`); both bounds are
  reached when every pair of every row is on one side. With equal pair counts it is
  `min(1, m * 2 / 2**n)`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

DEFAULT_ALPHA = 0.05
BASELINE = "baseline"
BETTER = "better"
WORSE = "worse"
INDISTINGUISHABLE = "indistinguishable"
INSUFFICIENT = "insufficient"
# Above this many pairs scipy's default is the normal approximation, ties or not.
EXACT_MAX = 50
# Up to this many pairs with ties or zeros scipy's default is an exact permutation test.
PERMUTATION_MAX = 13


def smallest_pvalue(n: int) -> float:
    """The smallest two-sided p-value the exact signed-rank test can give with `n` pairs."""
    return 2.0 / 2.0**n


def smallest_adjusted_pvalue(n: int, family: int = 1, most_pairs: int | None = None) -> float:
    """The smallest Holm-adjusted p-value a variant with `n` pairs can reach in a family of
    `family` tests whose rows have at most `most_pairs` pairs (default `n`: equal counts):
    `max(2 / 2**n, min(1, family * 2 / 2**most_pairs))` (the module's docstring says why)."""
    most = n if most_pairs is None else max(n, most_pairs)
    return max(smallest_pvalue(n), min(1.0, max(family, 1) * smallest_pvalue(most)))


def pairs_needed(alpha: float, family: int = 1) -> int:
    """The fewest pairs with which the exact test can reach a Holm-adjusted p-value below
    `alpha` in a family of `family` tests."""
    n = 1
    while smallest_adjusted_pvalue(n, family) >= alpha:
        n += 1
    return n


def paired_intervals(means: np.ndarray, stds: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the paired t-interval per group; NaN where a group has fewer than 2 pairs."""
    counts = counts.astype("float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.975, counts - 1) * stds / np.sqrt(counts)
    half = np.where(counts >= 2, half, np.nan)
    return means - half, means + half


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of `pvalues` (NaN left out and left NaN), capped at 1, monotone."""
    p = np.asarray(pvalues, dtype="float64")
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    adjusted = np.minimum(np.maximum.accumulate((m - np.arange(m)) * p[order]), 1.0)
    out[order] = adjusted
    return out


def holm_families(holm_pvalues: np.ndarray) -> np.ndarray:
    """The Holm family size of each row of one table: how many of its rows have a p-value
    (the tests Holm adjusts together), plus one for a row without (were it tested, it would
    join them)."""
    missing = np.isnan(np.asarray(holm_pvalues, dtype="float64"))
    return np.asarray((~missing).sum() + missing, dtype="int64")


def family_most_pairs(counts: np.ndarray, holm_pvalues: np.ndarray) -> np.ndarray:
    """For each row of one table, the most pairs a row of its Holm family has: the rows with
    a p-value, and the row itself."""
    counts = np.asarray(counts, dtype="int64")
    tested = ~np.isnan(np.asarray(holm_pvalues, dtype="float64"))
    most = int(counts[tested].max()) if tested.any() else 0
    out: np.ndarray = np.maximum(counts, most)
    return out


def simultaneous_intervals(
    means: np.ndarray, stds: np.ndarray, counts: np.ndarray, families: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the Bonferroni simultaneous t-interval per group: `mean ± t.ppf(1 - alpha /
    (2 * m), n - 1) * std / sqrt(n)` with `m` the group's Holm family; NaN with fewer than 2 pairs."""
    counts = np.asarray(counts, dtype="float64")
    families = np.maximum(np.asarray(families, dtype="float64"), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(1 - alpha / (2 * families), counts - 1) * stds / np.sqrt(counts)
    half = np.where(counts >= 2, half, np.nan)
    return means - half, means + half


def verdicts(
    counts: np.ndarray,
    means: np.ndarray,
    holm_pvalues: np.ndarray,
    alpha: float,
    families: np.ndarray | None = None,
    most_pairs: np.ndarray | None = None,
) -> list[str]:
    """The verdict of each group (see the module's docstring). `families`: each row's Holm family
    size, `most_pairs`: the most pairs a row of its family has; by default the rows are one
    table (`holm_families`, `family_most_pairs`)."""
    families = holm_families(holm_pvalues) if families is None else np.asarray(families)
    most_pairs = family_most_pairs(counts, holm_pvalues) if most_pairs is None else np.asarray(most_pairs)
    out = []
    for n, mean, p, m, most in zip(counts, means, holm_pvalues, families, most_pairs, strict=True):
        if p < alpha and mean < 0:
            out.append(BETTER)
        elif p < alpha and mean > 0:
            out.append(WORSE)
        elif smallest_adjusted_pvalue(int(n), int(m), int(most)) >= alpha:
            out.append(INSUFFICIENT)
        else:
            out.append(INDISTINGUISHABLE)
    return out


@dataclass(frozen=True)
class Groups:
    """Several groups' values, concatenated group after group: group `i` is
    `values[starts[i]:starts[i + 1]]`. The statistics below work on all groups at once."""

    values: np.ndarray
    starts: np.ndarray

    @classmethod
    def of(cls, arrays: list[np.ndarray]) -> Groups:
        lengths = np.array([len(a) for a in arrays], dtype="int64")
        values = np.concatenate(arrays).astype("float64") if arrays else np.empty(0)
        return cls(values, np.r_[0, np.cumsum(lengths)].astype("int64"))

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.starts[i] : self.starts[i + 1]]

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.starts)

    @property
    def ids(self) -> np.ndarray:
        """The group of each value."""
        return np.repeat(np.arange(len(self)), self.counts)


def wilcoxon_pvalues(groups: Groups | list[np.ndarray]) -> np.ndarray:
    """`scipy.stats.wilcoxon(d).pvalue` for every group `d` (NaN when it has fewer than 2 values
    or only zeros): the exact test of groups without ties or zeros for all of them at once,
    the normal approximation and scipy's permutation test group by group."""
    if not isinstance(groups, Groups):
        groups = Groups.of(groups)
    size = len(groups)
    counts, ids, values = groups.counts, groups.ids, groups.values
    out = np.full(size, np.nan)
    # Within each group, values by absolute size: ranks, and ties as equal neighbours.
    order = np.lexsort((np.abs(values), ids))
    magnitude, owner, positive = np.abs(values)[order], ids[order], values[order] > 0
    nonzero = np.bincount(ids, weights=values != 0, minlength=size).astype("int64")
    equal = (magnitude[1:] == magnitude[:-1]) & (owner[1:] == owner[:-1]) & (magnitude[1:] != 0)
    tied = np.bincount(owner[1:][equal], minlength=size) > 0
    awkward = tied | (nonzero < counts)  # ties or zeros
    testable = (counts >= 2) & (nonzero > 0)
    asymptotic = testable & ((counts > EXACT_MAX) | (awkward & (counts > PERMUTATION_MAX)))
    permutation = testable & awkward & ~asymptotic
    exact = testable & ~awkward & ~asymptotic
    out[asymptotic] = _asymptotic_pvalues(magnitude, owner, positive, asymptotic, nonzero)[asymptotic]
    for i in np.flatnonzero(permutation):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[i] = float(stats.wilcoxon(groups[int(i)]).pvalue)
    # Without ties or zeros a value's rank is its position in its group, by absolute size.
    rank = np.arange(len(values)) - groups.starts[owner] + 1
    r_plus = np.bincount(owner, weights=rank * positive, minlength=size).astype("int64")
    for n in np.unique(counts[exact]):
        members = exact & (counts == n)
        out[members] = _exact_pvalues(int(n))[r_plus[members]]
    return out


def _asymptotic_pvalues(
    magnitude: np.ndarray, owner: np.ndarray, positive: np.ndarray, chosen: np.ndarray, nonzero: np.ndarray
) -> np.ndarray:
    """The normal approximation scipy uses, for the `chosen` groups (values sorted by group,
    then by absolute size): zeros dropped, average ranks for ties, tie-corrected variance, no
    continuity correction. Ranks are whole or half numbers, so the sums are exact."""
    keep = chosen[owner] & (magnitude != 0)
    size, m, o, pos = len(chosen), magnitude[keep], owner[keep], positive[keep]
    if not len(m):
        return np.full(size, np.nan)
    first = np.r_[True, o[1:] != o[:-1]]  # each group's first value
    starts = np.flatnonzero(first)
    rank = np.arange(len(m)) - np.repeat(starts, np.diff(np.r_[starts, len(m)])) + 1
    block = np.cumsum(np.r_[True, (m[1:] != m[:-1]) | first[1:]]) - 1  # runs of equal values
    sizes = np.bincount(block).astype("float64")
    average = (np.bincount(block, weights=rank) / sizes)[block]
    r_plus = np.bincount(o, weights=average * pos, minlength=size)
    ties = np.bincount(
        o[np.flatnonzero(np.r_[True, block[1:] != block[:-1]])], weights=sizes**3 - sizes, minlength=size
    )
    count = nonzero.astype("float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt((count * (count + 1) * (2 * count + 1) - ties / 2) / 24)
        z = (r_plus - count * (count + 1) * 0.25) / se
    pvalues: np.ndarray = 2 * special.ndtr(-np.abs(z))
    return pvalues


@cache
def _signed_rank_counts(n: int) -> tuple[int, ...]:
    """How many of the 2**n sign patterns of ranks 1..n give each positive-rank sum."""
    counts = [1]
    for rank in range(1, n + 1):
        grown = counts + [0] * rank
        for total, ways in enumerate(counts):
            grown[total + rank] += ways
        counts = grown
    return tuple(counts)


@cache
def _exact_pvalues(n: int) -> np.ndarray:
    """The exact two-sided p-value for each positive-rank sum 0..n(n+1)/2 with `n` pairs."""
    counts = _signed_rank_counts(n)
    below = np.cumsum([float(c) for c in counts])  # counts reach 2**n: floats, as scipy's
    above = below[-1] - np.r_[0.0, below[:-1]]
    pvalues: np.ndarray = np.minimum(1.0, 2 * np.minimum(below, above) / float(2**n))
    return pvalues


def grouped_values(frame: pd.DataFrame, keys: list[str], value: str) -> tuple[pd.DataFrame, Groups]:
    """The distinct `keys` of `frame` in order of first appearance, and their `value`s grouped
    in the same order (each group's values in the frame's order)."""
    codes = frame.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    values = frame[value].to_numpy(dtype="float64")[order]
    counts = np.bincount(codes, minlength=codes.max() + 1 if len(codes) else 0)
    names = frame[keys].drop_duplicates().reset_index(drop=True)
    return names, Groups(values, np.r_[0, np.cumsum(counts)].astype("int64"))


def pair_statistics(groups: Groups) -> dict[str, np.ndarray]:
    """Per group of paired deltas: n, mean, sample std (0 with one pair), interval, half-width, Wilcoxon p."""
    counts, ids = groups.counts, groups.ids
    size = len(groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.bincount(ids, weights=groups.values, minlength=size) / counts
        squares = np.bincount(ids, weights=(groups.values - means[ids]) ** 2, minlength=size)
        stds = np.where(counts > 1, np.sqrt(squares / (counts - 1)), np.where(counts == 1, 0.0, np.nan))
    low, high = paired_intervals(means, stds, counts)
    return {
        "n": counts,
        "mean": means,
        "std": stds,
        "ci95_low": low,
        "ci95_high": high,
        "min_detectable_delta": (high - low) / 2,
        "wilcoxon_pvalue": wilcoxon_pvalues(groups),
    }


def skill(rmse: Any, naive_rmse: Any) -> Any:
    """`1 - rmse / naive_rmse` (numbers or columns): above 0, better than the naive forecast."""
    return 1 - rmse / naive_rmse


def diebold_mariano(actual: np.ndarray, predicted: np.ndarray, naive: np.ndarray) -> tuple[float, float]:
    """The Harvey-Leybourne-Newbold corrected Diebold-Mariano statistic of the model against the
    naive forecast (squared-error loss; negative: the model's errors are smaller) and its
    two-sided p-value; NaN for fewer than 2 rows or a loss difference that never varies."""
    loss = (actual - predicted) ** 2 - (actual - naive) ** 2
    n = len(loss)
    variance = float(np.var(loss)) if n else 0.0
    if n < 2 or variance == 0.0:
        return math.nan, math.nan
    dm = float(np.mean(loss)) / math.sqrt(variance / n)
    corrected = dm * math.sqrt((n - 1) / n)
    return corrected, float(2 * stats.t.sf(abs(corrected), n - 1))
