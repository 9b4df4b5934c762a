"""Benchmark 6 (needs a GPU): runs per hour with 1, 2, 4 and 8 concurrent tiny runs on one GPU,
with mixed precision off and on. One command, well under 10 minutes:

    .venv/bin/python -m bench.gpu_packing [--runs-per-setting 8]

Each setting starts N processes that each train `runs_per_setting / N` runs of the
example config on synthetic data (torch threads 1 per process) and reports the wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from bench.common import save


def _train(args: tuple[int, str]) -> float:
    count, precision = args
    from core.config import TrainingConfig
    from core.datasets import synthetic_dataset
    from core.training import build_fold_data, set_torch_threads, train_and_evaluate
    from tests.utils.data import tiny_fold_model

    set_torch_threads(1)
    frame = synthetic_dataset(n_days=1050)
    training = TrainingConfig(
        max_encoder_length=30, hidden_size=16, batch_size=128, max_epochs=3, learning_rate=0.003, limit_train_batches=8
    )
    data = build_fold_data(frame, tiny_fold_model(), training, ["ret_5", "vol_10", "rsi_14", "day_of_week"])
    train_and_evaluate(data, training, precision=precision)  # warm-up: CUDA context and kernels
    started = time.perf_counter()
    for seed in range(count):
        train_and_evaluate(
            data, TrainingConfig.model_validate({**training.model_dump(), "seed": seed}), precision=precision
        )
    return time.perf_counter() - started


def main() -> None:
    import torch

    if not torch.cuda.is_available():
        sys.exit("no GPU: this benchmark needs one")
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs-per-setting", type=int, default=8)
    args = parser.parse_args()
    results = {}
    for precision in ("32-true", "16-mixed"):
        for concurrent in (1, 2, 4, 8):
            per = max(1, args.runs_per_setting // concurrent)
            started = time.perf_counter()
            with ProcessPoolExecutor(concurrent, mp_context=get_context("spawn")) as pool:
                list(pool.map(_train, [(per, precision)] * concurrent))
            wall = time.perf_counter() - started
            results[f"{precision}_x{concurrent}"] = {
                "runs": per * concurrent,
                "wall_s": wall,
                "runs_per_hour": 3600 * per * concurrent / wall,
            }
    save(
        "gpu_packing",
        f"python -m bench.gpu_packing --runs-per-setting {args.runs_per_setting}",
        {"device": torch.cuda.get_device_name(0), "results": results},
    )


if __name__ == "__main__":
    main()
