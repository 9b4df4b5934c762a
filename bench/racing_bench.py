"""Benchmark 10: racing on a real sweep with a planted, clearly worse variant.

The demo's training (`core/configs/sweeps/example_msft.json`: 3 epochs of 8 batches) over
3 folds x 4 seeds (12 blocks: racing looks after 4 and 8), three configs: the baseline,
`learning_rate=1e-05` (planted: with so small a step the model stays near its random start,
worse on val RMSE than the baseline in every fold and seed of a probe) and `dropout=0.2` (an
ordinary variant). The sweep runs twice through `tftsweep sweep`'s path in this process
(2 torch threads), in fresh data roots (so no run comes from the run cache): racing off (the
full plan) and racing on (alpha 0.05, min_pairs 4). Reported: runs trained, skipped and wall
time of each, both rankings' verdicts, and each look's test replayed on the full sweep's runs.

    .venv/bin/python -m bench.racing_bench
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import median, save
from bench.sweep_bench import CONFIG, example_root

PLANTED = "learning_rate=1e-05"
ALPHA, MIN_PAIRS = 0.05, 4
RACING: dict[str, Any] = {"enabled": True, "alpha": ALPHA, "min_pairs": MIN_PAIRS}
SEEDS = [7, 11, 13, 17]
# The demo's two folds and a third a year later (the example data ends 2017-11-10).
THIRD_FOLD = {
    "name": "wf_3",
    "train_start": "20100101",
    "train_end": "20151231",
    "val_start": "20160101",
    "val_end": "20161231",
    "test_start": "20170101",
    "test_end": "20171110",
}


def config(racing: bool) -> dict[str, Any]:
    cfg = json.loads(CONFIG.read_text())
    cfg["output_subdir"] = "racing"
    cfg["replica_seeds"] = SEEDS
    cfg["walk_forward"]["folds"].append(THIRD_FOLD)
    cfg["param_ranges"] = {"learning_rate": [1e-05], "dropout": [0.2]}
    cfg["racing"] = RACING if racing else {"enabled": False}
    return cfg


def run_sweep(root: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    from core.config import load_sweep_config
    from core.runs import RunOutcome
    from worker.local_sweep import LocalSetup, run_local_sweep

    finished: list[RunOutcome] = []
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    outcome = run_local_sweep(
        root,
        "MSFT",
        load_sweep_config(json.dumps(cfg)),
        setup=LocalSetup(database_url=f"sqlite:///{root / 'tftsweep.db'}", threads=2),
        on_run_finished=finished.append,
    )
    wall = time.perf_counter() - started
    runs = list(csv.DictReader((outcome.sweep_dir / "sweep_runs.csv").open()))
    ranking = list(csv.DictReader((outcome.sweep_dir / "config_ranking.csv").open()))
    return {
        "wall_s": wall,
        "runs": sum(outcome.counts.values()),
        "trained": outcome.trained,
        "cached": outcome.cached,
        "counts": outcome.counts,
        "train_s": [round(o.timings.get("total_seconds", 0.0), 2) for o in finished if not o.cached_from],
        "skipped": sorted(f"{r['config_id']}/{r['fold']}/{r['seed']}" for r in runs if r["status"] == "skipped"),
        "skip_reasons": sorted({r["skip_reason"] for r in runs if r["status"] == "skipped"}),
        "verdicts": {r["config_id"]: r["verdict"] for r in ranking},
        "mean_val_rmse": {r["config_id"]: r["mean_val_rmse"] for r in ranking},
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "_runs": runs,
    }


def replay_looks(runs: list[dict[str, str]]) -> dict[str, Any]:
    """`core.racing.race` on the full sweep's runs as they stood at each look (the first k
    blocks finished): what racing saw, without the drop cutting the plan short."""
    from core.racing import RacedRun, look_points, race, racing_design

    blocks = list(dict.fromkeys((r["fold"], int(r["seed"])) for r in runs))
    design = racing_design(blocks, MIN_PAIRS, ALPHA)
    raced = [
        RacedRun(
            r["config_id"], r["fold"], int(r["seed"]), r["status"], float(r["val_rmse"]) if r["val_rmse"] else None
        )
        for r in runs
    ]
    looks = []
    for k in design.looks:
        seen = [run for run in raced if blocks.index((run.fold, run.seed)) < k]
        decisions = race(seen, design, "baseline", min_pairs=MIN_PAIRS, better="lower")
        worse = {c: sum(_delta(raced, c, b) > 0 for b in blocks[:k]) for c in decisions}
        for d in decisions.values():
            looks.append(
                {
                    "blocks": k,
                    "config_id": d.config_id,
                    "worse_pairs": worse[d.config_id],
                    "pairs": d.pairs,
                    "pvalue": d.pvalue,
                    "adjusted": d.adjusted,
                    "level": d.level,
                    "dropped": d.dropped,
                }
            )
    return {
        "blocks": len(blocks),
        "candidate_points": look_points(len(blocks), MIN_PAIRS),
        "looks": list(design.looks),
        "level": design.level,
        "replayed": looks,
    }


def _delta(runs: list[Any], config_id: str, block: tuple[str, int]) -> float:
    value = {(r.config_id, r.fold, r.seed): r.value for r in runs}
    return float(value[(config_id, *block)]) - float(value[("baseline", *block)])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        full = run_sweep(example_root(base / "full"), config(racing=False))
        raced = run_sweep(example_root(base / "raced"), config(racing=True))
    design = replay_looks(full.pop("_runs"))
    raced.pop("_runs")
    save(
        "racing",
        "python -m bench.racing_bench",
        {
            "planted": PLANTED,
            "racing": RACING,
            "folds": 3,
            "seeds": len(SEEDS),
            "full": full,
            "raced": raced,
            "design": {k: v for k, v in design.items() if k != "replayed"},
            "looks_replayed_on_full": design["replayed"],
            "runs_saved": full["trained"] - raced["trained"],
            "wall_saved_s": full["wall_s"] - raced["wall_s"],
        },
    )


def render(r: dict[str, Any]) -> list[str]:
    """The section's lines for `bench.report`."""
    f, c = r["full"], r["raced"]
    configs = list(f["verdicts"])
    lines = [
        f"Command: `{r['command']}` ({r['date']}). The demo's training (3 epochs of 8 batches) over "
        f"{r['folds']} folds × {r['seeds']} seeds, 3 configs: baseline, `{r['planted']}` (planted: clearly worse) "
        f"and `dropout=0.2`; racing alpha {r['racing']['alpha']}, min_pairs {r['racing']['min_pairs']} "
        f"({_looks(r['design'])}). Fresh data roots, `tftsweep sweep`'s path in one process, "
        "2 torch threads; walls include the reports.",
        "",
        "| sweep | runs planned | trained | skipped | wall (s) | training, summed (s) | per run, median (s) |",
        "|---|---|---|---|---|---|---|",
        f"| full plan (racing off) | {f['runs']} | {f['trained']} | {f['counts'].get('skipped', 0)} | "
        f"{f['wall_s']:.1f} | {sum(f['train_s']):.1f} | {median(f['train_s']):.1f} |",
        f"| raced | {c['runs']} | {c['trained']} | {c['counts'].get('skipped', 0)} | {c['wall_s']:.1f} | "
        f"{sum(c['train_s']):.1f} | {median(c['train_s']):.1f} |",
        f"| saved | | **{r['runs_saved']} runs ({r['runs_saved'] / f['trained']:.0%})** | | "
        f"{r['wall_saved_s']:.1f} ({r['wall_saved_s'] / f['wall_s']:.0%}) | | |",
        "",
        "The walls compare only under the same load (load averages below): at the raced sweep's median run "
        f"({median(c['train_s']):.1f} s) the {r['runs_saved']} runs "
        f"skipped are {r['runs_saved'] * median(c['train_s']):.0f} s of training.",
        "",
        "Verdicts (`config_ranking.csv`):",
        "",
        "| config | full plan | raced |",
        "|---|---|---|",
        *(f"| {cid} | {f['verdicts'][cid]} | {c['verdicts'].get(cid, '')} |" for cid in configs),
        "",
        "Each look replayed on the full sweep's runs (`core.racing.race` on the first k blocks; "
        "dropped when the Holm-adjusted p-value is below the look's level):",
        "",
        "| after blocks | variant | worse in | one-sided p | Holm-adjusted | level | dropped |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {look['blocks']} | {look['config_id']} | {look['worse_pairs']} of {look['pairs']} | "
            f"{_p(look['pvalue'])} | {_p(look['adjusted'])} | {look['level']:.3g} | "
            f"{'yes' if look['dropped'] else 'no'} |"
            for look in r["looks_replayed_on_full"]
        ),
        "",
        f"Skip reason: {'; '.join(c['skip_reasons']) or 'none'}. Load average (1 min) before → after each sweep "
        f"(full, raced): {f['load_1min'][0]:.1f} → {f['load_1min'][1]:.1f}, "
        f"{c['load_1min'][0]:.1f} → {c['load_1min'][1]:.1f}.",
        "",
    ]
    return lines


def _looks(design: dict[str, Any]) -> str:
    """The racing design in words: its looks among the candidate points, and their level."""
    looks = ", ".join(map(str, design["looks"])) or "none"
    points = ", ".join(map(str, design["candidate_points"]))
    return (
        f"{design['blocks']} blocks; of the candidate looks after {points} blocks, racing tests at {looks}, the "
        f"looks where a drop is possible at all, each at level {design['level']:.3g}"
    )


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


if __name__ == "__main__":
    main()
