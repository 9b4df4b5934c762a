"""What a sweep plan costs and can detect before any run trains (the dry run of `POST /sweeps`
and `tftsweep plan`): its runs per config, fold and seed, a training-time estimate from runs
this server already recorded, and the smallest p-value and delta its design can reach.

Exact definitions (docs/config.md, "Dry run"):

- pairs per variant `n` = folds x seeds of the whole (merged) plan: a variant's runs paired
  with the baseline's on the same fold and seed, when every run succeeds;
- family `m` = configs - 1: every config but the baseline is compared with it, and Holm
  adjusts their p-values together (config_ranking);
- smallest adjusted p-value = `min(1, m * 2 / 2**n)` (`smallest_adjusted_pvalue`): every
  pair on one side; `better_reachable` when it is below alpha; `pairs_needed` the fewest
  `n` that make it so for this `m`;
- seed spread `s` = the pooled sample standard deviation of `val_rmse` across seeds within
  (sweep, config, fold) groups of past succeeded runs of the asset with at least two seeds:
  `sqrt(sum((k_g - 1) * var_g) / sum(k_g - 1))`, `var_g` with ddof=1 over a group's `k_g` runs;
- smallest detectable delta = `t.ppf(0.975, n-1) * sqrt(2) * s / sqrt(n)`: the half-width of
  the paired t-interval when each paired delta (two runs, each with seed noise `s`) has
  standard deviation `sqrt(2) * s`; the simultaneous one uses `t.ppf(1 - alpha / (2m), n-1)`;
- estimate: per planned config, the median `train_seconds` of succeeded runs of the same
  asset with the same `max_epochs`, `max_encoder_length` and `hidden_size` ("similar"), else
  of every succeeded run on the server ("any"); the total is the sum over the new runs, one
  run after another (divide by the runs trained at once).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.plan import PlannedConfig, PlannedRun, SweepPlan
from core.significance import pairs_needed, smallest_adjusted_pvalue

# The training_config keys that decide most of a run's duration.
SIMILAR_KEYS = ("max_epochs", "max_encoder_length", "hidden_size")
NO_ESTIMATE = "no estimate: no succeeded run with a recorded duration on this server"


@dataclass(frozen=True)
class PastRun:
    """A succeeded run recorded on this server, as the dry run reads it."""

    asset: str
    sweep_id: int
    config_id: str
    fold: str
    seed: int
    params: dict[str, Any]
    train_seconds: float | None
    val_rmse: float | None


def plan_counts(plan: SweepPlan, new_runs: list[PlannedRun]) -> dict[str, Any]:
    """Runs new and total: in all, per config, per fold and per seed (plan order)."""
    new_keys = {r.run_key for r in new_runs}

    def rows(label: str, values: Iterable[Any], attr: str, extra: dict[Any, dict[str, Any]]) -> list[dict[str, Any]]:
        total: dict[Any, int] = defaultdict(int)
        new: dict[Any, int] = defaultdict(int)
        for run in plan.runs:
            value = getattr(run, attr)
            total[value] += 1
            new[value] += run.run_key in new_keys
        return [{label: v, **extra.get(v, {}), "runs_new": new[v], "runs_total": total[v]} for v in values]

    kinds = {
        c.config_id: {"kind": c.kind, "param_name": c.param_name, "param_value": c.param_value} for c in plan.configs
    }
    # Each fold's windows, so generated folds (`walk_forward.generate`) can be read before anything trains.
    windows = {f.name: {**f.window_dict(), "embargo_days": f.embargo_days} for f in plan.folds}
    return {
        "runs_new": len(new_runs),
        "runs_total": len(plan.runs),
        "configs": rows("config_id", [c.config_id for c in plan.configs], "config_id", kinds),
        "folds": rows("fold", [f.name for f in plan.folds], "fold", windows),
        "seeds": rows("seed", plan.seeds, "seed", {}),
    }


def pooled_seed_sd(past: Iterable[PastRun]) -> tuple[float | None, int]:
    """The pooled within-group std of `val_rmse` across seeds (groups: sweep, config, fold with
    at least two seeds) and the number of runs it rests on; (None, 0) without such a group."""
    groups: dict[tuple[int, str, str], list[float]] = defaultdict(list)
    for run in past:
        if run.val_rmse is not None and math.isfinite(run.val_rmse):
            groups[(run.sweep_id, run.config_id, run.fold)].append(run.val_rmse)
    dof = 0
    squares = 0.0
    runs = 0
    for values in groups.values():
        if len(values) >= 2:
            dof += len(values) - 1
            squares += statistics.variance(values) * (len(values) - 1)
            runs += len(values)
    if dof == 0:
        return None, 0
    return math.sqrt(squares / dof), runs


def detectability(n_pairs: int, family: int, alpha: float, seed_sd: float | None, sd_runs: int) -> dict[str, Any]:
    """What the design can detect (the module docstring's definitions)."""
    from scipy import stats  # deferred: the plan command without a design to judge stays light

    out: dict[str, Any] = {
        "alpha": alpha,
        "pairs_per_variant": n_pairs,
        "family": family,
        "smallest_pvalue_after_holm": None,
        "better_reachable": False,
        "pairs_needed": pairs_needed(alpha, max(family, 1)),
        "seed_sd": seed_sd,
        "seed_sd_runs": sd_runs,
        "min_detectable_delta": None,
        "min_detectable_delta_simultaneous": None,
    }
    if family >= 1 and n_pairs >= 1:
        smallest = smallest_adjusted_pvalue(n_pairs, family)
        out["smallest_pvalue_after_holm"] = smallest
        out["better_reachable"] = smallest < alpha
    if seed_sd is not None and n_pairs >= 2 and family >= 1:
        spread = math.sqrt(2.0) * seed_sd / math.sqrt(n_pairs)
        out["min_detectable_delta"] = float(stats.t.ppf(0.975, n_pairs - 1) * spread)
        out["min_detectable_delta_simultaneous"] = float(stats.t.ppf(1 - alpha / (2 * family), n_pairs - 1) * spread)
    out["sentence"] = detectability_sentence(out)
    return out


def detectability_sentence(d: dict[str, Any]) -> str:
    """One plain line on whether a `better` verdict is reachable with this design."""
    if d["family"] < 1:
        return "only the baseline is planned: there is no variant to compare with it"
    n, m, alpha = d["pairs_per_variant"], d["family"], d["alpha"]
    head = (
        f"{n} pairs per variant, {m} variant(s) in the Holm family: the smallest adjusted p-value is "
        f"{d['smallest_pvalue_after_holm']:.3g}"
    )
    if d["better_reachable"]:
        text = f"{head} < {alpha:g}, so 'better' is reachable"
    else:
        text = (
            f"{head} >= {alpha:g}, so no outcome can give 'better'; {d['pairs_needed']} pairs per variant "
            f"(folds x seeds) would make it reachable with {m} variant(s)"
        )
    if d["min_detectable_delta"] is not None:
        text += (
            f"; from past seed spread ({d['seed_sd']:.3g}, {d['seed_sd_runs']} runs) the smallest detectable "
            f"val_rmse delta is about {d['min_detectable_delta']:.3g}"
        )
    return text


def estimate(
    asset: str, configs: list[PlannedConfig], new_runs: list[PlannedRun], past: list[PastRun]
) -> dict[str, Any] | None:
    """The training time of `new_runs` from past durations (module docstring), or None when
    no succeeded run has a recorded duration."""
    timed = [r for r in past if r.train_seconds is not None and math.isfinite(r.train_seconds)]
    if not timed:
        return None
    overall = statistics.median(r.train_seconds for r in timed if r.train_seconds is not None)
    by_shape: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for run in timed:
        if run.asset == asset and run.train_seconds is not None:
            by_shape[tuple(run.params.get(k) for k in SIMILAR_KEYS)].append(run.train_seconds)
    new_per_config: dict[str, int] = defaultdict(int)
    for planned in new_runs:
        new_per_config[planned.config_id] += 1
    per_config = []
    total = 0.0
    for cfg in configs:
        similar = by_shape.get(tuple(getattr(cfg.training, k) for k in SIMILAR_KEYS), [])
        seconds = statistics.median(similar) if similar else overall
        runs = new_per_config.get(cfg.config_id, 0)
        total += seconds * runs
        per_config.append(
            {
                "config_id": cfg.config_id,
                "runs_new": runs,
                "seconds_per_run": seconds,
                "basis": "similar" if similar else "any",
                "from_runs": len(similar) if similar else len(timed),
            }
        )
    return {"seconds": total, "per_config": per_config, "serial": True}


def dry_run_report(
    asset: str,
    plan: SweepPlan,
    new_runs: list[PlannedRun],
    alpha: float,
    past: list[PastRun] | None,
) -> dict[str, Any]:
    """The plan, the estimate (or why none) and the detectability of a plan; `past` None when
    no database could be read (then "no estimate" and no seed spread)."""
    runs = past or []
    same_asset = [r for r in runs if r.asset == asset]
    seed_sd, sd_runs = pooled_seed_sd(same_asset)
    guess = estimate(asset, plan.configs, new_runs, runs)
    reason = None
    if guess is None:
        reason = "no estimate: no database to read past runs from" if past is None else NO_ESTIMATE
    pairs = len(plan.folds) * len(plan.seeds)
    return {
        "plan": plan_counts(plan, new_runs),
        "estimate": guess,
        "estimate_reason": reason,
        "detectability": detectability(pairs, len(plan.configs) - 1, alpha, seed_sd, sd_runs),
    }


def fold_lines(plan: dict[str, Any]) -> list[str]:
    """One line per fold of a dry run's `plan`: its windows and embargo (generated folds are
    read here before anything trains)."""
    lines = []
    for fold in plan["folds"]:
        windows = "  ".join(f"{p} {fold[p + '_start']}..{fold[p + '_end']}" for p in ("train", "val", "test"))
        embargo = f"  (embargo: last {fold['embargo_days']} rows of train and of val left out)"
        lines.append(f"  fold {fold['fold']}: {windows}{embargo if fold['embargo_days'] else ''}")
    return lines


def dry_run_lines(report: dict[str, Any]) -> list[str]:
    """The dry run as the lines `tftsweep plan` prints: each fold's windows, then the detectability."""
    d = report["detectability"]
    smallest = d["smallest_pvalue_after_holm"]
    lines = [
        *fold_lines(report["plan"]),
        f"detectability: {d['pairs_per_variant']} pairs per variant (folds x seeds), Holm family {d['family']}, "
        f"smallest adjusted p-value {'-' if smallest is None else format(smallest, '.3g')} "
        f"(alpha {d['alpha']:g}): better {'reachable' if d['better_reachable'] else 'not reachable'}; "
        f"pairs needed {d['pairs_needed']}",
    ]
    if d["min_detectable_delta"] is not None:
        lines.append(
            f"smallest detectable delta: {d['min_detectable_delta']:.3g} (simultaneous "
            f"{d['min_detectable_delta_simultaneous']:.3g}; seed spread {d['seed_sd']:.3g} from {d['seed_sd_runs']} "
            "past runs)"
        )
    else:
        lines.append("smallest detectable delta: unknown (no past runs with two or more seeds)")
    guess = report["estimate"]
    if guess is None:
        lines.append(report["estimate_reason"])
    else:
        lines.append(
            f"estimate: {guess['seconds']:.0f} s of training for {report['plan']['runs_new']} new runs, one at a time"
        )
    return lines
