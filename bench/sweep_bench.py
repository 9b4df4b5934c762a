"""Benchmarks 1-3: overhead per run against a plain script, worker scaling, dataset reuse.

1. The example sweep (12 runs) through `tftsweep serve` with one worker (2 torch threads)
   against `bench/plain_reference.py` training the same runs in one process.
2. The same sweep with 1 worker x 2 threads against 2 workers x 1 thread.
3. Time spent building fold datasets for those 12 runs, with and without the cache.

    .venv/bin/python -m bench.sweep_bench [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import median, save
from tests.utils.processes import free_port

CONFIG = Path("core/configs/sweeps/example_msft.json")


def example_root(base: Path) -> Path:
    """A data root holding the MSFT example dataset (copied from ./data when present)."""
    from core.datasets import build_example_dataset, dataset_path

    root = base / "data"
    source = dataset_path(Path("data").resolve(), "MSFT")
    if source.is_file():
        target = dataset_path(root, "MSFT")
        target.parent.mkdir(parents=True)
        shutil.copy(source, target)
        shutil.copy(source.with_suffix(".json"), target.with_suffix(".json"))
    else:
        build_example_dataset(root)
    return root


def plain(root: Path, threads: int) -> float:
    from core.datasets import dataset_path

    out = subprocess.run(
        [sys.executable, "-m", "bench.plain_reference", str(dataset_path(root, "MSFT")), str(CONFIG), str(threads)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["wall_s"])


def _parse(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


def server(root: Path, concurrency: int, threads: int) -> dict[str, Any]:
    """Submit the example sweep to a fresh `tftsweep serve`; time from submit to the last run."""
    work = root.parent / f"srv-{time.monotonic_ns()}"
    shutil.copytree(root, work)
    port = free_port()
    env = {**os.environ, "TFTSWEEP_DATA_DIR": str(work), "TFTSWEEP_TORCH_THREADS": str(threads)}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "serve", "--port", str(port), "--concurrency", str(concurrency)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for _ in range(300):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            time.sleep(2)  # let the worker process come up, as a long-lived worker would be
            submitted = time.time()
            sweep_id = client.post("/sweeps", json={"asset": "MSFT", "config": json.loads(CONFIG.read_text())}).json()[
                "id"
            ]
            while True:
                sweep = client.get(f"/sweeps/{sweep_id}").json()
                if not sweep["runs"]["queued"] and not sweep["runs"]["running"]:
                    done = time.time()
                    break
                time.sleep(0.05)
            while not client.get(f"/sweeps/{sweep_id}").json()["reports_at"]:
                time.sleep(0.05)
            reports_done = time.time()
            runs = client.get(f"/sweeps/{sweep_id}/runs", params={"limit": 1000}).json()["data"]
    finally:
        proc.send_signal(2)
        proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    starts = sorted(_parse(r["started_at"]) for r in runs)
    in_run = sum(_parse(r["finished_at"]) - _parse(r["started_at"]) for r in runs)
    training = sum(r["train_seconds"] for r in runs)
    return {
        "wall_s": done - submitted,
        "first_start_s": starts[0] - submitted,  # queue latency + worker's first imports
        "training_s": training,  # seed + model + fit (sum over runs)
        "in_run_not_training_s": in_run - training,  # dataset, predictions, publishing, recording
        "between_runs_s": max(0.0, (done - submitted) - (starts[0] - submitted) - in_run / concurrency),
        "reports_s": reports_done - done,
        "runs": len(runs),
        "succeeded": sum(r["status"] == "succeeded" for r in runs),
    }


def dataset_reuse() -> dict[str, Any]:
    from app.settings import Settings
    from core.config import load_sweep_config
    from core.datasets import load_dataset
    from core.feature_sets import resolve_features
    from core.plan import expand_sweep
    from core.training import DatasetCache, build_fold_data

    config = load_sweep_config(CONFIG.read_text())
    frame = load_dataset(Settings().data_root, "MSFT", config.features)
    features = resolve_features(config.features)
    folds = {f.name: f for f in config.folds}
    runs = expand_sweep(config).runs
    started = time.perf_counter()
    for run in runs:
        build_fold_data(frame, folds[run.fold], run.training, features)
    without = time.perf_counter() - started
    cache = DatasetCache()
    started = time.perf_counter()
    for run in runs:
        cache.get("msft", frame, folds[run.fold], run.training, features)
    with_cache = time.perf_counter() - started
    return {
        "runs": len(runs),
        "without_cache_s": without,
        "with_cache_s": with_cache,
        "builds_with_cache": cache.misses,
        "per_run_without_ms": 1000 * without / len(runs),
        "per_run_with_ms": 1000 * with_cache / len(runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = example_root(Path(tmp))
        plain_times, one, two = [], [], []
        for _ in range(args.repeat):
            plain_times.append(plain(root, threads=2))
            one.append(server(root, concurrency=1, threads=2))
            two.append(server(root, concurrency=2, threads=1))
    one_wall = median([r["wall_s"] for r in one])
    two_wall = median([r["wall_s"] for r in two])
    plain_wall = median(plain_times)
    breakdown = {k: median([r[k] for r in one]) for k in one[0] if k.endswith("_s")}
    save(
        "overhead",
        f"python -m bench.sweep_bench --repeat {args.repeat}",
        {
            "plain_script_s": {"median": plain_wall, "all": plain_times},
            "server_1_worker_s": {"median": one_wall, "all": [r["wall_s"] for r in one]},
            "ratio": one_wall / plain_wall,
            "target_ratio": 1.10,
            "breakdown_median_s": breakdown,
            "runs": one[0]["runs"],
        },
    )
    save(
        "scaling",
        f"python -m bench.sweep_bench --repeat {args.repeat}",
        {
            "one_worker_two_threads_s": {"median": one_wall, "all": [r["wall_s"] for r in one]},
            "two_workers_one_thread_s": {"median": two_wall, "all": [r["wall_s"] for r in two]},
            "runs_per_hour_1x2": 3600 * one[0]["runs"] / one_wall,
            "runs_per_hour_2x1": 3600 * two[0]["runs"] / two_wall,
            "speedup": one_wall / two_wall,
            "target_speedup": 1.4,
        },
    )
    save("dataset_reuse", "python -m bench.sweep_bench", dataset_reuse())


if __name__ == "__main__":
    main()
