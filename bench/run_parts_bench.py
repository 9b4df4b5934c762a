"""Benchmark 8: where a run's time goes inside the run, and what keeping every forecast costs.

The example sweep (12 real runs) in this process (`tftsweep sweep`'s path), with each run's
parts timed by the trainer: the fold's datasets (cached per process), training (seed, model,
fit), predicting both windows, the reference forecasts and every registered metric, writing
`predictions.parquet`, and publishing the model version. The target: predictions and metrics
cost at most 2% of a run's training time.

    .venv/bin/python -m bench.run_parts_bench
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.common import median, save
from bench.store_bench import example_sweep_timings
from bench.sweep_bench import example_root

PARTS = (
    "dataset_seconds",
    "train_seconds",
    "predict_seconds",
    "evaluate_seconds",
    "write_predictions_seconds",
    "publish_seconds",
    "total_seconds",
)


def sweep(root: Path) -> dict[str, Any]:
    wall, trained = example_sweep_timings(root)
    sums = {part: sum(t.get(part, 0.0) for t in trained) for part in PARTS}
    kept = sums["evaluate_seconds"] + sums["write_predictions_seconds"]
    return {
        "wall_s": wall,
        "runs": len(trained),
        "sum_s": sums,
        "median_ms": {part: 1000 * median([t.get(part, 0.0) for t in trained]) for part in PARTS},
        "outside_training_s": sums["total_seconds"] - sums["train_seconds"],
        "predictions_and_metrics_share": kept / sums["train_seconds"],
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = sweep(example_root(Path(tmp)))
    save("run_parts", "python -m bench.run_parts_bench", {**result, "target_share": 0.02})


if __name__ == "__main__":
    main()
