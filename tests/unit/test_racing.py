"""Racing keeps the sweep's error rate: simulated sweeps, no training.

Every simulated run's `val_rmse` is a fold effect plus a seed effect plus noise; under the null
every config draws from the same distribution, so any variant racing drops is a false drop.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from core.racing import RaceDecision, RacedRun, look_points, never_drops, race, racing_design

FOLDS, SEEDS, VARIANTS = 3, 4, 4
BLOCKS = [(f"f{f}", s) for f in range(FOLDS) for s in range(SEEDS)]
ALPHA, MIN_PAIRS = 0.05, 4
SWEEPS = 2000
CONFIGS = ["baseline", *(f"v{i}" for i in range(VARIANTS))]
DESIGN = racing_design(BLOCKS, MIN_PAIRS, ALPHA)


def simulated_values(rng: np.random.Generator, planted: float = 0.0) -> np.ndarray:
    """values[config, block]; `planted` shifts the last variant up (worse on val_rmse)."""
    fold = np.repeat(rng.normal(0, 1.0, FOLDS), SEEDS)
    seed = rng.normal(0, 0.3, len(BLOCKS))
    values = fold + seed + rng.normal(0, 0.5, (len(CONFIGS), len(BLOCKS)))
    values[-1] += planted
    return values


def race_sweep(values: np.ndarray) -> tuple[dict[str, RaceDecision], int]:
    """Race one sweep block by block, as the server does after each finished run (decisions
    change only when a look point is reached, so it is asked there); returns the final
    decisions and how many runs were trained (a dropped variant's later blocks are skipped)."""
    decisions: dict[str, RaceDecision] = {}
    trained = 0
    dropped_at: dict[str, int] = {}
    for b in range(len(BLOCKS)):
        trained += sum(1 for c in CONFIGS if c not in dropped_at)
        if b + 1 not in DESIGN.looks:
            continue
        runs = [
            RacedRun(c, *BLOCKS[i], "succeeded", float(values[ci, i]))
            for ci, c in enumerate(CONFIGS)
            for i in range(b + 1)
            if c not in dropped_at or i < dropped_at[c]
        ]
        before = {c: d for c, d in decisions.items() if d.dropped}
        decisions = race(runs, DESIGN, "baseline", min_pairs=MIN_PAIRS, better="lower", dropped=before)
        for c, d in decisions.items():
            if d.dropped and c not in dropped_at:
                dropped_at[c] = b + 1
    return decisions, trained


def test_looks_are_the_points_at_which_a_drop_is_possible() -> None:
    """Candidate points min_pairs * 2**j below the blocks; a point where the exact test over k
    pairs cannot go below the level (2**-k >= alpha / L) is no look, and L counts the rest."""
    assert look_points(12, 4) == [4, 8] and look_points(40, 4) == [4, 8, 16, 32] and look_points(4, 4) == []
    # 12 blocks: 1/16 at 4 pairs is above 0.05, so the one look is at 8, at level 0.05.
    assert (DESIGN.looks, DESIGN.level) == ((8,), 0.05)
    # 40 blocks: 8, 16 and 32 can all drop at 0.05 / 3; 4 cannot.
    forty = racing_design([("f", i) for i in range(40)], 4, 0.05)
    assert forty.looks == (8, 16, 32) and forty.level == pytest.approx(0.05 / 3)
    assert racing_design([("f", i) for i in range(6)], 4, 0.05).looks == ()
    message = never_drops(6, 4, 0.05)
    assert message is not None and "racing could never drop a variant" in message
    assert never_drops(12, 4, 0.05) is None


def test_under_the_null_racing_drops_a_variant_in_at_most_alpha_of_the_sweeps() -> None:
    rng = np.random.default_rng(0)
    any_drop = sum(any(d.dropped for d in race_sweep(simulated_values(rng))[0].values()) for _ in range(SWEEPS))
    share = any_drop / SWEEPS
    monte_carlo = 3 * math.sqrt(ALPHA * (1 - ALPHA) / SWEEPS)  # three standard errors
    assert share <= ALPHA + monte_carlo, f"racing dropped a variant in {share:.3%} of null sweeps"


def test_looking_at_every_block_without_a_correction_would_not_keep_it() -> None:
    """The contrast: one-sided tests at level alpha after every block from min_pairs on, per
    variant, no correction: the same simulation finds an error rate well above alpha, so the
    check above has teeth."""
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(SWEEPS // 4):
        values = simulated_values(rng)
        deltas = values[1:] - values[0]
        hits += any(
            stats.wilcoxon(deltas[v, :n], alternative="greater").pvalue < ALPHA
            for v in range(VARIANTS)
            for n in range(MIN_PAIRS, len(BLOCKS))
        )
    assert hits / (SWEEPS // 4) > 2 * ALPHA


def test_a_planted_worse_variant_is_raced_out_and_runs_are_saved() -> None:
    rng = np.random.default_rng(1)
    full = len(CONFIGS) * len(BLOCKS)
    trained, caught, false = [], 0, 0
    for _ in range(SWEEPS // 4):
        decisions, runs = race_sweep(simulated_values(rng, planted=2.0))
        trained.append(runs)
        caught += decisions[CONFIGS[-1]].dropped
        false += any(d.dropped for c, d in decisions.items() if c != CONFIGS[-1])
    # Dropped at the 8-block look, its last 4 runs are saved: 56 runs of 60 (docs/reports.md).
    assert caught / len(trained) > 0.9
    assert np.mean(trained) <= full - 0.9 * (len(BLOCKS) - 8)
    assert false / len(trained) <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / len(trained))


def test_a_better_variant_is_never_dropped_and_a_drop_says_why() -> None:
    values = np.zeros((2, len(BLOCKS)))
    values[1] = -np.arange(1, len(BLOCKS) + 1)  # better in every block
    runs = [
        RacedRun(c, *BLOCKS[i], "succeeded", float(values[ci, i])) for ci, c in enumerate(CONFIGS[:2]) for i in range(8)
    ]
    assert not race(runs, DESIGN, "baseline", min_pairs=MIN_PAIRS, better="lower")["v0"].dropped
    # The same deltas on a higher-better metric are worse: dropped at the 8-block look.
    decision = race(runs, DESIGN, "baseline", min_pairs=MIN_PAIRS, better="higher")["v0"]
    assert decision.dropped and (decision.blocks, decision.pairs) == (8, 8)
    assert decision.pvalue == pytest.approx(1 / 2**8)
    assert decision.reason().startswith("raced out after 8 pairs: worse than the baseline")


def test_the_test_at_a_look_uses_exactly_its_leading_blocks() -> None:
    """A run of a later block that finished early, or a failed pair, changes nothing but what
    the look's blocks hold: the test at look k is one fixed test."""
    runs = [RacedRun(c, *BLOCKS[i], "succeeded", float(i if c == "v0" else 0)) for c in CONFIGS[:2] for i in range(8)]
    early = [
        *runs,
        RacedRun("v0", *BLOCKS[10], "succeeded", -100.0),
        RacedRun("baseline", *BLOCKS[10], "succeeded", 0.0),
    ]
    first = race(runs, DESIGN, "baseline", min_pairs=MIN_PAIRS, better="lower")["v0"]
    later = race(early, DESIGN, "baseline", min_pairs=MIN_PAIRS, better="lower")["v0"]
    assert first == later and (first.blocks, first.pairs) == (8, 8)
    # Before the look at 8 blocks nothing is tested.
    seven = race(
        [r for r in runs if BLOCKS.index((r.fold, r.seed)) < 7], DESIGN, "baseline", min_pairs=4, better="lower"
    )
    assert (seven["v0"].blocks, seven["v0"].pvalue, seven["v0"].dropped) == (0, None, False)
    # A failed run finishes its block but makes no pair.
    failed = [
        RacedRun("v0", r.fold, r.seed, "failed", None) if (r.config_id, (r.fold, r.seed)) == ("v0", BLOCKS[1]) else r
        for r in runs
    ]
    decision = race(failed, DESIGN, "baseline", min_pairs=MIN_PAIRS, better="lower")["v0"]
    assert (decision.blocks, decision.pairs) == (8, 7)


def test_a_sweep_that_races_but_could_never_drop_a_variant_is_refused_by_name() -> None:
    from core.config import validate_sweep_config
    from core.errors import InvalidSweepConfig
    from tests.utils.data import tiny_fold, tiny_sweep

    with pytest.raises(InvalidSweepConfig, match=r"racing\.enabled: with 2 \(fold, seed\) blocks .* never drop"):
        validate_sweep_config(tiny_sweep(replica_seeds=[1, 2], racing={"enabled": True}))
    folds = {"enabled": True, "folds": [tiny_fold("f1", 2012), tiny_fold("f2", 2013), tiny_fold("f3", 2014)]}
    config = validate_sweep_config(tiny_sweep(replica_seeds=[1, 2, 3, 4], walk_forward=folds, racing={"enabled": True}))
    assert config.racing.enabled
