"""Benchmark 5: API latency with 10,000 runs in the database, under concurrent load.

Starts `uvicorn app.api.main:app` on loopback (SQLite, embedded broker, no worker),
records a 10,000-run sweep, then measures with 20 concurrent connections for 30 s:
`GET /sweeps/{id}/ranking` and `GET /sweeps/{id}` (p50/p95), and `POST /sweeps` of
a 5,000-run plan.

    .venv/bin/python -m bench.api_bench [--seconds 30] [--connections 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import save
from tests.utils.configs import fold
from tests.utils.data import make_data_root, tiny_sweep
from tests.utils.processes import free_port


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


async def load(base: str, paths: list[str], seconds: float, connections: int) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {p: [] for p in paths}
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def user(i: int) -> None:
            n = i
            while time.monotonic() < deadline:
                path = paths[n % len(paths)]
                n += 1
                started = time.perf_counter()
                response = await client.get(path)
                latencies[path].append(time.perf_counter() - started)
                response.raise_for_status()

        await asyncio.gather(*(user(i) for i in range(connections)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--connections", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_data_root(Path(tmp) / "data", n_days=1050)
        port = free_port()
        env = {**os.environ, "TFTSWEEP_DATA_DIR": str(root), "TFTSWEEP_REAPER_INTERVAL_SECONDS": "3600"}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.api.main:app", "--port", str(port), "--log-level", "warning"],
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=120) as client:
                for _ in range(200):
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.2)
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
            paths = [f"/sweeps/{sweep_id}/ranking", f"/sweeps/{sweep_id}"]
            latencies = asyncio.run(load(base, paths, args.seconds, args.connections))
        finally:
            server.terminate()
            server.wait()
    result: dict[str, Any] = {"connections": args.connections, "seconds": args.seconds, "runs_in_sweep": 10_000}
    for path, values in latencies.items():
        key = "get_ranking" if path.endswith("ranking") else "get_sweep"
        result[key] = {
            "requests": len(values),
            "p50_ms": round(1000 * statistics.median(values), 1),
            "p95_ms": round(1000 * percentile(values, 0.95), 1),
            "target_p95_ms": 50,
        }
    result["post_5000_run_plan_s"] = {"median": statistics.median(post_times), "all": post_times, "target": 1.0}
    save("api", f"python -m bench.api_bench --seconds {args.seconds} --connections {args.connections}", result)


if __name__ == "__main__":
    main()
