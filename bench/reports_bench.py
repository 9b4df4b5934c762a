"""Benchmark 4: reports (CSV/JSON, no plots) for 100,000 runs; plots for 1,000 runs.

.venv/bin/python -m bench.reports_bench
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import median, save, timed
from core.config import validate_sweep_config
from core.metrics import metric_columns
from core.runs import RUN_COLUMNS
from core.sweep_folder import SweepFolderConfig
from core.sweep_report import write_sweep_reports
from tests.utils.configs import fold, sweep_dict

ASSET = "SYN"


def synthetic_records(
    n_configs: int, n_folds: int, n_seeds: int, seed: int = 0, *, scores: bool = True
) -> tuple[Any, list[dict[str, Any]]]:
    """A sweep config and run records: `n_configs` hidden_size variants x folds x seeds; with
    `scores`, every registered metric column too (else the seed's columns only)."""
    rng = np.random.default_rng(seed)
    sizes = list(range(8, 8 + n_configs - 1))
    config = validate_sweep_config(
        sweep_dict(
            replica_seeds=list(range(1, n_seeds + 1)),
            walk_forward={"enabled": True, "folds": [fold(f"wf_{i}", 2000 + i) for i in range(n_folds)]},
            training_config={"hidden_size": 4},
            param_ranges={"hidden_size": sizes},
        )
    )
    from core.plan import expand_sweep

    plan = expand_sweep(config, max_runs=10**7)
    # Every registered metric beyond the seed's columns, as a trained run carries them.
    extra = [c for c in metric_columns(config.evaluation.references) if c not in RUN_COLUMNS] if scores else []
    records = []
    for i, run in enumerate(plan.runs, start=1):
        failed = rng.random() < 0.02
        val = None if failed else float(0.01 + rng.normal(0, 0.001))
        records.append(
            {
                "run_id": i,
                "run_key": run.run_key,
                "config_id": run.config_id,
                "param_name": run.param_name,
                "param_value": run.param_value,
                "fold": run.fold,
                "seed": run.seed,
                "status": "failed" if failed else "succeeded",
                "val_rmse": val,
                "test_rmse": None if val is None else val + 0.001,
                "val_mae": None if val is None else val / 2,
                "test_mae": None if val is None else val / 2,
                "val_naive_rmse": 0.0101,
                "test_naive_rmse": 0.0102,
                "best_epoch": 3,
                "epochs_trained": 5,
                "train_seconds": 4.2,
                "test_skill": None if val is None else 1 - (val + 0.001) / 0.0102,
                "test_dm_stat": None if val is None else float(rng.normal(0, 1.5)),
                "test_dm_pvalue": None if val is None else float(rng.random()),
                "model_version": None,
                "error": "RuntimeError: x" if failed else None,
                "attempts": 1,
                "started_at": None,
                "finished_at": None,
                "params": run.training.model_dump(),
                **dict(zip(extra, [None] * len(extra) if failed else rng.random(len(extra)).tolist(), strict=True)),
            }
        )
    return config, records


def main() -> None:
    config, records = synthetic_records(n_configs=200, n_folds=25, n_seeds=20)  # 100,000 runs
    assert len(records) == 100_000
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "models/SYN/sweeps/unit_sweep"
        folder = SweepFolderConfig(ASSET, None, config)
        big, _ = timed(lambda: write_sweep_reports(sweep, records, folder, None, plots=False), repeat=3)
    _, seed_only = synthetic_records(n_configs=200, n_folds=25, n_seeds=20, scores=False)
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "models/SYN/sweeps/unit_sweep"
        seed_times, _ = timed(lambda: write_sweep_reports(sweep, seed_only, folder, None, plots=False), repeat=3)
    config_p, records_p = synthetic_records(n_configs=25, n_folds=4, n_seeds=10)  # 1,000 runs
    assert len(records_p) == 1_000
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "models/SYN/sweeps/unit_sweep"
        folder_p = SweepFolderConfig(ASSET, None, config_p)
        plots, _ = timed(lambda: write_sweep_reports(sweep, records_p, folder_p, None, plots=True), repeat=3)
    save(
        "reports",
        "python -m bench.reports_bench",
        {
            "reports_100k_runs_s": {"median": median(big), "all": big, "target": 3.0},
            "reports_100k_runs_seed_columns_s": {"median": median(seed_times), "all": seed_times, "target": 3.0},
            "reports_and_plots_1k_runs_s": {"median": median(plots), "all": plots, "target": 15.0},
            "metric_columns": len(metric_columns(config.evaluation.references)),
            "note": "every registered metric column filled; no drift (no dataset for the synthetic sweep); "
            "plots include 5 fold folders",
        },
    )


if __name__ == "__main__":
    main()
