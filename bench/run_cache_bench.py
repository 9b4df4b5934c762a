"""Benchmark 9: a second sweep that repeats most of a first trains only its new runs.

Two overlapping sweeps on the example data (`core/configs/sweeps/example_msft.json`, its
12 runs: baseline, hidden_size=32, dropout=0.2 over 2 folds x 2 seeds). The second adds one
value (dropout 0.3) to the first's `param_ranges` under a new `output_subdir`: 16 runs, of
which 12 have a succeeded twin in the first. It runs twice, each through `tftsweep sweep`'s
path in this process (2 torch threads): after the first sweep in the same data root (the run
cache on, the default), and in a fresh data root with `reuse_runs: false` (every run trained).
The second sweep's wall time includes its reports, as `tftsweep sweep` does.

    .venv/bin/python -m bench.run_cache_bench
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

ADDED = ("dropout", 0.3)
METRICS = ("val_rmse", "test_rmse")


def configs() -> tuple[dict[str, Any], dict[str, Any]]:
    """The demo sweep (`first`) and the same sweep with one more value under a new name (`second`)."""
    first = json.loads(CONFIG.read_text())
    first["output_subdir"] = "cache_first"
    second = json.loads(json.dumps(first))
    second["output_subdir"] = "cache_second"
    name, value = ADDED
    second["param_ranges"][name] = [*second["param_ranges"][name], value]
    return first, second


def run_sweep(root: Path, config: dict[str, Any]) -> dict[str, Any]:
    """One sweep through `tftsweep sweep`'s path: wall time, runs trained and cached, the
    gap before each finished run (for a cached run: what recording it from the cache cost)."""
    from core.config import load_sweep_config
    from core.runs import RunOutcome
    from worker.local_sweep import LocalSetup, run_local_sweep

    finished: list[tuple[float, RunOutcome]] = []
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    outcome = run_local_sweep(
        root,
        "MSFT",
        load_sweep_config(json.dumps(config)),
        setup=LocalSetup(database_url=f"sqlite:///{root / 'tftsweep.db'}", threads=2),
        on_run_finished=lambda o: finished.append((time.perf_counter(), o)),
    )
    wall = time.perf_counter() - started
    gaps = [t - (finished[i - 1][0] if i else started) for i, (t, _) in enumerate(finished)]
    cached_gaps = [g for g, (_, o) in zip(gaps, finished, strict=True) if o.cached_from]
    result: dict[str, Any] = {
        "wall_s": wall,
        "runs": sum(outcome.counts.values()),
        "succeeded": outcome.counts.get("succeeded", 0),
        "trained": outcome.trained,
        "cached": outcome.cached,
        "train_s": [round(o.timings.get("total_seconds", 0.0), 2) for _, o in finished if not o.cached_from],
        "cached_run_ms": 1000 * median(cached_gaps) if cached_gaps else None,
        # Where the first trained run's time went (the first run of a data root is the slowest).
        "first_trained_timings": next(
            ({k: round(v, 3) for k, v in o.timings.items()} for _, o in finished if not o.cached_from), None
        ),
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "metrics": _metrics(outcome.sweep_dir),
    }
    result["train_s_sum"] = sum(result["train_s"])
    return result


def _metrics(folder: Path) -> dict[str, list[str]]:
    """Each run's metric cells as `sweep_runs.csv` spells them (10 significant digits), by run."""
    rows = csv.DictReader((folder / "sweep_runs.csv").open())
    return {f"{r['config_id']}/{r['fold']}/{r['seed']}": [r[m] for m in METRICS] for r in rows}


def same_cells(a: dict[str, list[str]], b: dict[str, list[str]]) -> dict[str, int]:
    """How many runs two sweeps share and how many of those have the same metric cells."""
    shared = a.keys() & b.keys()
    return {"shared": len(shared), "equal": sum(a[k] == b[k] for k in shared)}


def main() -> None:
    first, second = configs()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cache_root = example_root(base / "cache")
        full_root = example_root(base / "full")
        first_run = run_sweep(cache_root, first)
        full = run_sweep(full_root, {**second, "reuse_runs": False})  # a fresh root: no cache to find
        cached = run_sweep(cache_root, second)
    checks = {
        # The cache's promise: a cached run carries its source run's metrics exactly.
        "cached_equal_to_source": same_cells(first_run["metrics"], cached["metrics"]),
        # Not promised, measured: does training the same run again give the same numbers?
        "retrained_equal_to_cached": same_cells(full["metrics"], cached["metrics"]),
    }
    for part in (first_run, full, cached):
        part.pop("metrics")
    save(
        "run_cache",
        "python -m bench.run_cache_bench",
        {
            "added": f"{ADDED[0]}={ADDED[1]}",
            "first": first_run,
            "second_cached": cached,
            "second_full": full,
            "speedup": full["wall_s"] / cached["wall_s"],
            **checks,
        },
    )


def render(r: dict[str, Any]) -> list[str]:
    """The section's lines for `bench.report`."""
    c, f = r["second_cached"], r["second_full"]
    loads = ", ".join(f"{p['load_1min'][0]:.1f} → {p['load_1min'][1]:.1f}" for p in (r["first"], f, c))
    same, again = r["cached_equal_to_source"], r["retrained_equal_to_cached"]
    return [
        f"Command: `{r['command']}` ({r['date']}). The demo sweep (`core/configs/sweeps/example_msft.json`, "
        f"{r['first']['runs']} runs: 3 configs × 2 folds × 2 seeds, 3 epochs of 8 batches) and a second sweep "
        f"adding `{r['added']}` under a new `output_subdir` ({c['runs']} runs), through `tftsweep sweep`'s path "
        "in one process, 2 torch threads. With the cache: the second sweep after the first in one data root; "
        "in full: the second in a fresh root with `reuse_runs: false`. Walls include the reports.",
        "",
        "| second sweep | runs | trained | from the cache | wall (s) | training, summed (s) "
        "| per run: median, mean (s) |",
        "|---|---|---|---|---|---|---|",
        f"| in full (`reuse_runs: false`) | {f['runs']} | {f['trained']} | {f['cached']} | {f['wall_s']:.1f} | "
        f"{f['train_s_sum']:.1f} | {median(f['train_s']):.1f}, {_per_run(f):.1f} |",
        f"| with the run cache | {c['runs']} | {c['trained']} | {c['cached']} | {c['wall_s']:.1f} | "
        f"{c['train_s_sum']:.1f} | {median(c['train_s']):.1f}, {_per_run(c):.1f} |",
        f"| ratio | | | | **{r['speedup']:.2f}× faster** | | |",
        "",
        f"Recording a run from the cache: {c['cached_run_ms']:.0f} ms (median, from the run before it finishing "
        "to it finishing). "
        f"The first sweep took {r['first']['wall_s']:.1f} s. "
        f"Cached runs with their source's metric cells (`val_rmse`, `test_rmse` in `sweep_runs.csv`): "
        f"{same['equal']} of {same['shared']}; the same runs trained again in the full sweep gave the same cells "
        f"in {again['equal']} of {again['shared']}. Load average (1 min) before → after each sweep (first, "
        f"full, cached): {loads}.",
        "",
    ]


def _per_run(sweep: dict[str, Any]) -> float:
    """Mean training time of a run trained (the trainer's total, seed to publishing)."""
    return float(sweep["train_s_sum"]) / max(1, int(sweep["trained"]))


if __name__ == "__main__":
    main()
