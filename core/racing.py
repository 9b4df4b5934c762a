"""Racing: stop training a variant once it is shown worse than the baseline (docs/reports.md, "Racing").

Runs are planned in blocks: one (fold, seed) pair for every config, fold by fold and seed by
seed (`core.plan.expand_sweep`'s order), so every config advances together. A variant is
judged on the blocks it has finished with the baseline; the test and the error control:

- **Looks.** A variant is tested only after `k` complete leading blocks (both its run and the
  baseline's finished, in plan order) with `k` a look of the design (`racing_design`): of the
  points `min_pairs * 2**j < B` (`B` the blocks of the plan; never the end, nothing is left
  to save), those at which a drop is possible at all. The exact one-sided signed-rank test
  over `k` pairs cannot go below `2**-k`, so a point with `2**-k >= alpha / L` can never drop
  anything and is no look; `L` is the smallest count for which at most `L` points are left,
  and those are the looks. The design is fixed before any run (by `B`, `min_pairs` and
  `alpha`) and kept with the sweep's decisions, so a merge that adds folds or seeds never
  changes it. A variant's test at look `k` uses exactly the succeeded pairs of those `k`
  blocks: one fixed test per look.
- **Test.** The one-sided paired Wilcoxon signed-rank test (`scipy.stats.wilcoxon` of the
  deltas variant minus baseline on `evaluation.rank_by`, `alternative="greater"` for a
  lower-better metric, "less" for a higher-better one: "the variant is worse"), the test of
  the reports' verdicts made one-sided. A variant that is better is never dropped.
- **Level.** Bonferroni over looks and Holm over variants: at each decision, the variants'
  p-values at their latest look are Holm-adjusted over all `m` variants of the sweep at level
  `alpha / L`. A dropped variant stays dropped.

The test is on the deltas' signed ranks: "worse" means the deltas lean positive (their
pseudo-median), not that their mean does; a variant better on average but worse in nearly
every block can be dropped.

Why the sweep's error rate stays at most `alpha` (the chance that any variant no worse than
the baseline is dropped). Let `m0` be the number of such variants. When the first of them is
dropped, every variant Holm rejected before it in that step is truly worse, so its Holm
divisor is at least `m0` and its p-value at that look at most `alpha / (L * m0)`. Hence the
event is inside the union, over those `m0` variants and their at most `L` looks, of
`p <= alpha / (L * m0)`, each of probability at most `alpha / (L * m0)` (a valid p-value
under its null), and the union has probability at most `m0 * L * alpha / (L * m0) = alpha`,
whatever the dependence between looks, variants and folds. `tests/unit/test_racing.py`
checks it on 2,000 simulated sweeps.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from core.significance import holm

# States in which a run is over (its block counts as finished for it).
FINISHED_STATES = frozenset({"succeeded", "failed"})


@dataclass(frozen=True)
class RacedRun:
    """What racing reads of one run: its config, block (fold, seed), state and rank_by value."""

    config_id: str
    fold: str
    seed: int
    state: str
    value: float | None


@dataclass(frozen=True)
class RaceDecision:
    """One variant at its latest look: the blocks and pairs tested, the one-sided p-value,
    the Holm-adjusted one, the level it is compared with, and whether it is dropped."""

    config_id: str
    blocks: int
    pairs: int
    pvalue: float | None
    adjusted: float | None
    level: float
    dropped: bool

    def reason(self) -> str:
        """Why the variant's remaining runs were skipped (the runs' skip reason)."""
        return (
            f"raced out after {self.pairs} pairs: worse than the baseline "
            f"(one-sided Wilcoxon p = {self.pvalue:.3g}, Holm-adjusted {self.adjusted:.3g} < {self.level:.3g})"
        )


def look_points(blocks: int, min_pairs: int) -> list[int]:
    """The candidate block counts of a test: `min_pairs * 2**j` below `blocks`."""
    points: list[int] = []
    k = max(1, min_pairs)
    while k < blocks:
        points.append(k)
        k *= 2
    return points


@dataclass(frozen=True)
class RacingDesign:
    """How a sweep races, fixed before its first decision: its blocks in plan order, the block
    counts at which a variant is tested, and the level of each test (`alpha / len(looks)`)."""

    blocks: tuple[tuple[str, int], ...]
    looks: tuple[int, ...]
    level: float

    def as_dict(self) -> dict[str, Any]:
        return {"blocks": [list(b) for b in self.blocks], "looks": list(self.looks), "level": self.level}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RacingDesign:
        blocks = tuple((str(fold), int(seed)) for fold, seed in data["blocks"])
        return cls(blocks, tuple(int(k) for k in data["looks"]), float(data["level"]))


def racing_design(blocks: Sequence[tuple[str, int]], min_pairs: int, alpha: float) -> RacingDesign:
    """The looks at which a drop is possible and their level: of `look_points`, those with
    `2**-k < alpha / L` for the smallest `L` that leaves at most `L` of them (no look when even
    `L = 1` leaves none: racing can then drop nothing)."""
    points = look_points(len(blocks), min_pairs)
    for count in range(1, len(points) + 1):
        level = alpha / count
        looks = [k for k in points if 2.0**-k < level]
        if len(looks) <= count:
            return RacingDesign(tuple(blocks), tuple(looks), level if looks else alpha)
    return RacingDesign(tuple(blocks), (), alpha)


def never_drops(blocks: int, min_pairs: int, alpha: float) -> str | None:
    """Why racing a plan of `blocks` (fold, seed) blocks can drop no variant, or None."""
    design = racing_design([("", i) for i in range(blocks)], min_pairs, alpha)
    if design.looks:
        return None
    points = look_points(blocks, min_pairs)
    tested = f"tested after {', '.join(map(str, points))} blocks" if points else "never tested (no look below the end)"
    return (
        f"with {blocks} (fold, seed) blocks a variant is {tested}, and the one-sided signed-rank test over k pairs "
        f"cannot go below 1/2**k, not below alpha {alpha:g}: racing could never drop a variant; add folds or "
        "seeds, or lower racing.min_pairs"
    )


def _worse_pvalue(deltas: np.ndarray, better: str) -> float | None:
    """One-sided signed-rank p-value that the variant is worse (deltas variant minus baseline)."""
    if len(deltas) < 2 or not np.any(deltas != 0):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's note on ties falling back to the normal approximation
        alternative = "greater" if better == "lower" else "less"
        return float(stats.wilcoxon(deltas, alternative=alternative).pvalue)


def race(
    runs: Iterable[RacedRun],
    design: RacingDesign,
    baseline: str,
    *,
    min_pairs: int,
    better: str,
    dropped: Mapping[str, RaceDecision] | None = None,
) -> dict[str, RaceDecision]:
    """Every variant's decision after the runs so far, by the sweep's `design`.

    `dropped`: the variants dropped before, kept as they were (a drop is final).
    """
    blocks = design.blocks
    position = {block: i for i, block in enumerate(blocks)}
    by_config: dict[str, dict[int, RacedRun]] = {}
    for run in runs:
        index = position.get((run.fold, run.seed))
        if index is not None:
            by_config.setdefault(run.config_id, {})[index] = run
    base = by_config.get(baseline, {})
    variants = [c for c in by_config if c != baseline]
    points, level = design.looks, design.level
    before = dict(dropped or {})
    tested: dict[str, tuple[int, int, float | None]] = {}
    for config_id in variants:
        if config_id in before:
            continue
        own = by_config[config_id]
        done = 0  # complete leading blocks
        while done < len(blocks) and _finished(own.get(done)) and _finished(base.get(done)):
            done += 1
        look = max((k for k in points if k <= done), default=0)
        deltas = [
            float(own[i].value) - float(base[i].value)  # type: ignore[arg-type]
            for i in range(look)
            if _succeeded(own.get(i)) and _succeeded(base.get(i))
        ]
        pvalue = _worse_pvalue(np.asarray(deltas), better) if len(deltas) >= min_pairs else None
        tested[config_id] = (look, len(deltas), pvalue)
    # Holm over every variant of the sweep, so its divisor counts them all: the dropped ones
    # with the p-value they were dropped at, one not testable yet as p = 1 (never rejected).
    names = [c for c in variants if c in before] + [c for c in variants if c not in before]
    raw = np.array([_pvalue_of(c, before, tested) for c in names], dtype="float64")
    adjusted = holm(raw) if len(raw) else raw
    out: dict[str, RaceDecision] = dict(before)
    for name, adj in zip(names, adjusted, strict=True):
        if name in before:
            continue
        look, pairs, pvalue = tested[name]
        adj_value = None if pvalue is None else float(adj)
        out[name] = RaceDecision(
            name, look, pairs, pvalue, adj_value, level, dropped=adj_value is not None and adj_value < level
        )
    return out


def _pvalue_of(
    config_id: str, before: Mapping[str, RaceDecision], tested: Mapping[str, tuple[int, int, float | None]]
) -> float:
    pvalue = before[config_id].pvalue if config_id in before else tested[config_id][2]
    return 1.0 if pvalue is None else pvalue


def _finished(run: RacedRun | None) -> bool:
    return run is not None and run.state in FINISHED_STATES


def _succeeded(run: RacedRun | None) -> bool:
    return run is not None and run.state == "succeeded" and run.value is not None and math.isfinite(run.value)
