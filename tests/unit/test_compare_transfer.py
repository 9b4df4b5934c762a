"""Transfer between sweeps on different assets, recomputed independently: paired deltas against
each sweep's own baseline by plain loops, Spearman as the Pearson correlation of ranks, Kendall
by counting concordant pairs, p-values from scipy.stats on the scores computed here; and the
MCS membership read back from a config_ranking.csv."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from core.compare import ComparedSweep, Membership, compare_loaded, read_mcs_membership
from core.config import validate_sweep_config
from core.errors import NothingToCompare
from core.runs import RUN_COLUMNS
from core.sweep_runs import runs_table
from tests.utils.data import tiny_fold, tiny_sweep

CONFIGS = ("baseline", "hidden_size=6", "hidden_size=8", "dropout=0.2", "dropout=0.3")
FOLDS = ("f1", "f2", "f3")
SEEDS = (1, 2)


def config() -> Any:
    return validate_sweep_config(
        tiny_sweep(
            replica_seeds=list(SEEDS),
            walk_forward={"enabled": True, "folds": [tiny_fold(f, 2011 + i) for i, f in enumerate(FOLDS)]},
            param_ranges={"hidden_size": [6, 8], "dropout": [0.2, 0.3]},
        )
    )


def records(scale: float, rng: np.random.Generator, fail: tuple[str, str, int] | None = None) -> list[dict[str, Any]]:
    """One run per (config, fold, seed), val RMSE = scale * (1 + noise); `fail` one run failed."""
    out = []
    for i, (config_id, fold, seed) in enumerate(itertools.product(CONFIGS, FOLDS, SEEDS)):
        name, _, value = config_id.partition("=")
        record: dict[str, Any] = dict.fromkeys(RUN_COLUMNS)
        failed = fail == (config_id, fold, seed)
        rmse = float(scale * (1 + rng.normal(0, 0.1)))
        record |= {
            "run_id": i + 1,
            "run_key": f"k{i}",
            "config_id": config_id,
            "param_name": name if value else None,
            "param_value": float(value) if "." in value else (int(value) if value else None),
            "fold": fold,
            "seed": seed,
            "status": "failed" if failed else "succeeded",
            "val_rmse": None if failed else rmse,
            "test_rmse": None if failed else rmse * 1.1,
            "val_naive_rmse": None if failed else scale * 1.02,
        }
        out.append(record)
    return out


def sweep(label: str, asset: str, runs: list[dict[str, Any]], mcs: Membership | None = None) -> ComparedSweep:
    return ComparedSweep(label, asset, config(), runs_table(runs), mcs or Membership(None, "not computed"))


def by_hand_deltas(runs: list[dict[str, Any]]) -> dict[str, tuple[int, float, float, float]]:
    """Per variant: (pairs, mean delta, mean delta / |mean baseline|, mean val_rmse/naive - 1)."""
    ok = {(r["config_id"], r["fold"], r["seed"]): r for r in runs if r["status"] == "succeeded"}
    found = {}
    for config_id in CONFIGS[1:]:
        deltas, bases, naive = [], [], []
        for fold, seed in itertools.product(FOLDS, SEEDS):
            v, b = ok.get((config_id, fold, seed)), ok.get(("baseline", fold, seed))
            if v is None or b is None:
                continue
            deltas.append(v["val_rmse"] - b["val_rmse"])
            bases.append(b["val_rmse"])
            naive.append(v["val_rmse"] / v["val_naive_rmse"] - 1)
        mean = sum(deltas) / len(deltas)
        found[config_id] = (len(deltas), mean, mean / abs(sum(bases) / len(bases)), sum(naive) / len(naive))
    return found


def robust_scores(runs: list[dict[str, Any]]) -> dict[str, float]:
    """mean + sample std of val RMSE over each config's succeeded runs (the ranking's rank_score)."""
    scores = {}
    for config_id in CONFIGS:
        values = [r["val_rmse"] for r in runs if r["config_id"] == config_id and r["status"] == "succeeded"]
        scores[config_id] = float(np.mean(values) + np.std(values, ddof=1))
    return scores


def ranks(values: list[float]) -> np.ndarray:
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = np.empty(len(values))
    for rank, i in enumerate(order, start=1):
        out[i] = rank
    return out


def test_transfer_statistics_match_an_independent_recomputation() -> None:
    rng = np.random.default_rng(7)
    spx, ndx = records(0.01, rng), records(0.025, rng, fail=("dropout=0.2", "f2", 1))
    _, report = compare_loaded([sweep("SPX/a", "SPX", spx), sweep("NDX/b", "NDX", ndx)])
    assert report["kind"] == "transfer" and report["metric"] == "val_rmse"
    (transfer,) = report["transfer"]
    rows = {r["config_id"]: r for r in transfer["rows"]}

    hand_a, hand_b = by_hand_deltas(spx), by_hand_deltas(ndx)
    for config_id in CONFIGS[1:]:
        row = rows[config_id]
        for side, hand in (("a", hand_a), ("b", hand_b)):
            n, delta, rel, naive = hand[config_id]
            assert row[f"n_pairs_{side}"] == n
            assert row[f"delta_{side}"] == pytest.approx(delta, rel=1e-12)
            assert row[f"rel_delta_{side}"] == pytest.approx(rel, rel=1e-12)
            assert row[f"vs_naive_{side}"] == pytest.approx(naive, rel=1e-12)
        assert row["same_sign"] is ((hand_a[config_id][1] > 0) == (hand_b[config_id][1] > 0))
    assert rows["dropout=0.2"]["n_pairs_b"] == 5  # the failed run's pair is left out

    agree = sum((hand_a[c][1] > 0) == (hand_b[c][1] > 0) for c in CONFIGS[1:])
    assert transfer["n_same_sign"] == agree and transfer["n_variants"] == 4
    assert transfer["sign_agreement_pvalue"] == pytest.approx(stats.binom.sf(agree - 1, 4, 0.5))

    score_a, score_b = robust_scores(spx), robust_scores(ndx)
    xs, ys = [score_a[c] for c in CONFIGS], [score_b[c] for c in CONFIGS]
    rho = float(np.corrcoef(ranks(xs), ranks(ys))[0, 1])
    pairs = list(itertools.combinations(range(len(CONFIGS)), 2))
    concordant = sum(np.sign(xs[i] - xs[j]) == np.sign(ys[i] - ys[j]) for i, j in pairs)
    tau = (2 * concordant - len(pairs)) / len(pairs)
    corr = transfer["correlation"]
    assert corr["n_configs"] == 5
    assert corr["spearman"] == pytest.approx(rho, abs=1e-12)
    assert corr["kendall"] == pytest.approx(tau, abs=1e-12)
    assert corr["spearman_pvalue"] == pytest.approx(stats.spearmanr(xs, ys).pvalue)
    assert corr["kendall_pvalue"] == pytest.approx(stats.kendalltau(xs, ys).pvalue)

    best = min(score_a, key=score_a.__getitem__)
    rank_on_b = sorted(score_b, key=score_b.__getitem__).index(best) + 1
    assert transfer["chosen"]["config_id"] == best and transfer["chosen"]["rank_b"] == rank_on_b
    assert report["sentence"].startswith("Transfer from SPX/a to NDX/b")
    assert report["significance"] == []  # RMSE levels of two assets are never tested against each other


def test_a_scaled_copy_on_another_asset_transfers_perfectly() -> None:
    """Volatility alone (every RMSE doubled) changes no delta's sign and no rank."""
    spx = records(0.01, np.random.default_rng(3))
    ndx = [r | {k: r[k] * 2 for k in ("val_rmse", "test_rmse", "val_naive_rmse")} for r in spx]
    _, report = compare_loaded([sweep("SPX/a", "SPX", spx), sweep("NDX/b", "NDX", ndx)])
    (transfer,) = report["transfer"]
    assert transfer["sign_agreement"] == 1.0
    assert transfer["correlation"]["spearman"] == pytest.approx(1.0)
    assert transfer["correlation"]["kendall"] == pytest.approx(1.0)
    for row in transfer["rows"]:
        assert row["rel_delta_a"] == pytest.approx(row["rel_delta_b"])
        assert row["delta_b"] == pytest.approx(2 * row["delta_a"])


def test_too_few_shared_configs_give_no_correlation_and_say_why() -> None:
    rng = np.random.default_rng(1)
    keep = {"baseline", "hidden_size=6"}
    spx = [r for r in records(0.01, rng) if r["config_id"] in keep]
    ndx = records(0.02, rng)
    _, report = compare_loaded([sweep("SPX/a", "SPX", spx), sweep("NDX/b", "NDX", ndx)])
    corr = report["transfer"][0]["correlation"]
    assert corr["spearman"] is None and "2 configs ranked in both" in corr["reason"]
    assert report["common"]["configs"] == ["baseline", "hidden_size=6"]


def test_no_variant_paired_with_its_baseline_in_both_is_nothing_to_compare() -> None:
    rng = np.random.default_rng(2)
    spx = [r for r in records(0.01, rng) if r["config_id"] != "baseline"]
    with pytest.raises(NothingToCompare, match="different assets"):
        compare_loaded([sweep("SPX/a", "SPX", spx), sweep("NDX/b", "NDX", records(0.02, rng))])


def test_membership_is_read_from_the_ranking_file(tmp_path: Path) -> None:
    path = tmp_path / "config_ranking.csv"
    assert read_mcs_membership(path).reason is not None  # no file
    path.write_text("rank,config_id,rank_score\n1,baseline,0.1\n")
    assert "no mcs_pvalue/in_mcs" in str(read_mcs_membership(path).reason)
    path.write_text("rank,config_id,rank_score,mcs_pvalue,in_mcs\n1,baseline,0.1,,\n")
    assert "not computed" in str(read_mcs_membership(path).reason)
    path.write_text("rank,config_id,rank_score,mcs_pvalue,in_mcs\n1,a,0.1,1.0,true\n2,b,0.2,0.04,false\n3,c,0.3,,\n")
    found = read_mcs_membership(path)
    assert found.available and found.configs == {"a": (1.0, True), "b": (0.04, False), "c": (None, None)}

    rng = np.random.default_rng(5)
    same = records(0.01, rng)
    members = Membership({"baseline": (0.5, True), "hidden_size=6": (0.01, False)})
    _, report = compare_loaded([sweep("SYN/a", "SYN", same, members), sweep("SYN/b", "SYN", same)])
    assert report["kind"] == "same asset" and len(report["significance"]) == 5
    rows = {(r["sweep"], r["config_id"]): r for r in report["mcs"]["rows"]}
    assert rows[("SYN/a", "baseline")] == {"sweep": "SYN/a", "config_id": "baseline", "in_mcs": True, "mcs_pvalue": 0.5}
    assert rows[("SYN/b", "baseline")]["in_mcs"] is None
    assert report["mcs"]["sweeps"]["SYN/b"] == {"available": False, "reason": "not computed"}
