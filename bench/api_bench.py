"""Benchmark 5: API latency with 10,000 runs in the database, under concurrent load.

Starts `uvicorn app.api.main:app` on loopback (SQLite, embedded broker, no worker), with the
HTTP settings of `tftsweep serve` (its read-deadline protocol, keep-alive and concurrency limit),
times `POST /sweeps` of a 5,000-run plan, records a 10,000-run sweep and finishes its
runs with metrics (as workers would, straight in the database), then measures
`GET /sweeps/{id}/ranking` and `GET /sweeps/{id}` (p50/p95) with 20 concurrent
keep-alive connections for 30 s, in 3 rounds of 10 s (`bench/http_load.py`, a client
light enough not to take the server's CPU); then again while one run of the sweep finishes every 2 s, so
the cached answers are rebuilt as they would be during a live sweep. Both with one
uvicorn process, then with two (`--workers 2`). Targets: p95 under 20 ms for the cached GETs on
one process (static load), under 50 ms for every row.

    .venv/bin/python -m bench.api_bench [--seconds 30] [--connections 20]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from app.db.lifecycle import claim_run, finish_run
from app.db.models import Run
from app.db.session import make_engine, make_session_factory, session_scope
from bench.common import save
from bench.http_load import Load, run_load
from tests.utils.configs import fold
from tests.utils.data import make_data_root, tiny_sweep
from tests.utils.processes import free_port

LIVE_RUNS = 100  # left queued, then finished one by one during the live phase
ROUNDS = 3  # each load is measured in rounds; the medians of their p50 and p95 are reported
CACHED_TARGET_MS = 20  # cached GETs, one process, static load
TARGET_MS = 50  # every other row
# As `tftsweep serve` runs uvicorn (app.serve.server_config), with the settings' defaults.
SERVE_HTTP = [
    "--http",
    "app.http_protocol:ReadTimeoutProtocol",
    "--timeout-keep-alive",
    "5",
    "--limit-concurrency",
    "256",
]


def big_config(name: str, n_values: int, n_folds: int, n_seeds: int) -> dict[str, Any]:
    folds = [fold(f"wf_{i}", 2012, train_years=2) | {"name": f"wf_{i}"} for i in range(n_folds)]
    return tiny_sweep(
        output_subdir=name,
        replica_seeds=list(range(1, n_seeds + 1)),
        walk_forward={"enabled": True, "folds": folds},
        param_ranges={"hidden_size": list(range(5, 5 + n_values))},
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def finish_runs(db_url: str, run_ids: list[int], rng: random.Random) -> None:
    """Claim and finish runs with metrics through the same calls a worker makes."""
    factory = make_session_factory(make_engine(db_url))
    with session_scope(factory) as session:
        for run_id in run_ids:
            assert claim_run(session, run_id, "bench", 600)
            val = 0.01 + rng.gauss(0, 0.001)
            metrics = {
                "val_rmse": val,
                "test_rmse": val + 0.0005,
                "val_mae": val / 2,
                "test_mae": val / 2,
                "val_naive_rmse": 0.0101,
                "test_naive_rmse": 0.0102,
                "best_epoch": 3,
                "epochs_trained": 5,
                "train_seconds": 4.2,
            }
            assert finish_run(session, run_id, "bench", metrics=metrics, model_version=f"v{run_id}")


def summarise(rounds: list[Load], target_ms: float = TARGET_MS) -> dict[str, Any]:
    """Per path: requests over all rounds, and the median over rounds of each round's p50 and p95."""
    result = {}
    for path in rounds[0].latencies:
        assert not any(r.errors for r in rounds), [r.errors[:5] for r in rounds]
        p50s = [1000 * statistics.median(r.latencies[path]) for r in rounds]
        p95s = [1000 * percentile(r.latencies[path], 0.95) for r in rounds]
        key = "get_ranking" if path.endswith("ranking") else "get_sweep"
        result[key] = {
            "requests": sum(len(r.latencies[path]) for r in rounds),
            "p50_ms": round(statistics.median(p50s), 1),
            "p95_ms": round(statistics.median(p95s), 1),
            "p95_ms_rounds": [round(v, 1) for v in p95s],
            "body_kb": round(rounds[0].body_bytes[path] / 1024, 1),
            "target_p95_ms": target_ms,
        }
    return result


def start_server(env: dict[str, str], port: int, processes: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.api.main:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *SERVE_HTTP,
    ]
    server = subprocess.Popen([*command, "--workers", str(processes)] if processes > 1 else command, env=env)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        for _ in range(300):
            try:
                if client.get("/healthz").status_code == 200:
                    return server
            except httpx.HTTPError:
                time.sleep(0.2)
    raise RuntimeError("the API did not start")


def measure(
    db_url: str,
    port: int,
    paths: list[str],
    live_ids: list[int],
    seconds: float,
    connections: int,
    cached_target: float,
) -> Any:
    """Static load, then the same load while one run finishes every 2 s (each change rebuilds
    the ranking); each in `ROUNDS` rounds of `seconds / ROUNDS`."""
    rng = random.Random(1)
    run_load("127.0.0.1", port, paths, 3, connections)  # warm-up: the caches are built
    static = [run_load("127.0.0.1", port, paths, seconds / ROUNDS, connections) for _ in range(ROUNDS)]
    stop = threading.Event()
    finished: list[int] = []

    def finisher() -> None:
        for run_id in live_ids:
            if stop.wait(2.0):
                return
            finish_runs(db_url, [run_id], rng)
            finished.append(run_id)

    thread = threading.Thread(target=finisher)
    thread.start()
    live = [run_load("127.0.0.1", port, paths, seconds / ROUNDS, connections) for _ in range(ROUNDS)]
    stop.set()
    thread.join()
    live_result = {"run_finishes_every_s": 2.0, "runs_finished": len(finished), **summarise(live)}
    return {**summarise(static, cached_target), "live": live_result}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--connections", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(0)
    result: dict[str, Any] = {"connections": args.connections, "seconds": args.seconds, "runs_in_sweep": 10_000}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_data_root(Path(tmp) / "data", n_days=1050)
        db_url = f"sqlite:///{root / 'tftsweep.db'}"
        port = free_port()
        env = {**os.environ, "TFTSWEEP_DATA_DIR": str(root), "TFTSWEEP_REAPER_INTERVAL_SECONDS": "3600"}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        server = start_server(env, port, 1)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                # POSTs first, on an idle server, each after the previous one's messages went out
                # (they are sent in the background after the answer).
                post_times = []
                for i in range(3):
                    started = time.perf_counter()
                    response = client.post("/sweeps", json={"asset": "SYN", "config": big_config(f"p{i}", 49, 10, 10)})
                    post_times.append(time.perf_counter() - started)
                    assert response.json()["total_runs"] == 5_000, response.text
                    time.sleep(10)
                big = client.post("/sweeps", json={"asset": "SYN", "config": big_config("big", 99, 10, 10)})
                assert big.status_code == 201, big.text
                sweep_id = big.json()["id"]
                assert big.json()["total_runs"] == 10_000
                time.sleep(15)  # its 10,000 messages are sent before the load starts
            factory = make_session_factory(make_engine(db_url))
            with session_scope(factory) as session:
                ids = list(session.scalars(select(Run.id).where(Run.sweep_id == sweep_id).order_by(Run.ordinal)))
            finish_runs(db_url, ids[:-LIVE_RUNS], rng)
            result["finished_runs_at_start"] = 10_000 - LIVE_RUNS
            paths = [f"/sweeps/{sweep_id}/ranking", f"/sweeps/{sweep_id}"]
            live_ids = ids[-LIVE_RUNS:]
            load = (args.seconds, args.connections)
            result["one_process"] = measure(db_url, port, paths, live_ids[: LIVE_RUNS // 2], *load, CACHED_TARGET_MS)
        finally:
            server.terminate()
            server.wait()
        server = start_server(env, port, 2)
        try:
            result["two_processes"] = measure(db_url, port, paths, live_ids[LIVE_RUNS // 2 :], *load, TARGET_MS)
        finally:
            server.terminate()
            server.wait()
    result["post_5000_run_plan_s"] = {"median": statistics.median(post_times), "all": post_times, "target": 1.0}
    save("api", f"python -m bench.api_bench --seconds {args.seconds} --connections {args.connections}", result)


if __name__ == "__main__":
    main()
