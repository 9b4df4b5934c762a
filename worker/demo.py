"""`make demo`: the main job end to end over HTTP on the shipped example data.

Builds the MSFT example dataset, starts `tftsweep serve` (SQLite + the filesystem broker),
submits the example sweep (`core/configs/sweeps/example_msft.json`), shows progress, prints the ranking and how to
fetch the plots, then stops the server.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ASSET = "MSFT"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(client: httpx.Client, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited during start-up; see the log above")
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("the server did not become healthy in time")


def _submit(client: httpx.Client, config: dict[str, object]) -> int:
    response = client.post("/sweeps", json={"asset": ASSET, "config": config})
    if response.status_code == 201:
        body = response.json()
        print(f"submitted sweep {body['id']}: {body['new_runs']} runs queued")
        return int(body["id"])
    if response.status_code == 409:
        sweeps = client.get("/sweeps", params={"asset": ASSET, "limit": 1000}).json()["data"]
        existing = next(s for s in sweeps if s["output_subdir"] == config["output_subdir"])
        print(f"sweep {existing['id']} already exists in this data folder: resuming and showing it")
        if existing["runs"]["failed"] or existing["runs"]["cancelled"]:
            client.post(f"/sweeps/{existing['id']}/retry")
        return int(existing["id"])
    raise SystemExit(f"submission refused ({response.status_code}): {response.text}")


def _follow(client: httpx.Client, sweep_id: int, timeout: float = 1800) -> dict[str, object]:
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < timeout:
        sweep = client.get(f"/sweeps/{sweep_id}").json()
        runs = sweep["runs"]
        done = runs["succeeded"] + runs["failed"] + runs["cancelled"]
        line = (
            f"  {done}/{sweep['total_runs']} runs finished ({runs['running']} running, {runs['failed']} failed), "
            f"status {sweep['status']}, best so far {sweep['best_config'] or '-'}"
        )
        if line != last:
            print(f"[{time.monotonic() - started:5.0f}s]{line}", flush=True)
            last = line
        if not runs["queued"] and not runs["running"] and sweep["reports_at"]:
            return dict(sweep)
        time.sleep(1)
    raise SystemExit("the sweep did not finish in time")


def _print_results(client: httpx.Client, sweep_id: int, root: Path) -> None:
    from core.summary import ranking_text

    ranking = client.get(f"/sweeps/{sweep_id}/ranking").json()["data"]
    summary = client.get(f"/sweeps/{sweep_id}/summary").json()
    print("\n" + ranking_text(ranking, summary["significance"]["sentence"]))
    plots = client.get(f"/sweeps/{sweep_id}/plots").json()["data"]
    folder = root / "models" / ASSET / "sweeps" / "example_msft"
    print(f"\nreports and {len(plots)} plots on disk: {folder.resolve()}")
    print("to fetch them over HTTP, start the server again (.venv/bin/tftsweep serve) and:")
    print("  http://127.0.0.1:8000/ui                         # the dashboard: ranking, impact, drift, plots")
    print("  http://127.0.0.1:8000/docs                       # the API")
    print(f"  curl http://127.0.0.1:8000/sweeps/{sweep_id}/ranking")
    for plot in plots[:2]:
        print(f"  curl -o {plot['name']} http://127.0.0.1:8000{plot['url']}")


def main() -> int:
    from app.settings import Settings
    from core.datasets import build_example_dataset, dataset_path
    from core.shipped import shipped_config

    root = Settings().data_root
    if not dataset_path(root, ASSET).is_file():
        info = build_example_dataset(root)
        print(f"built the example dataset {ASSET}: {info.rows} rows, {info.first_date}..{info.last_date}")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"starting tftsweep serve on {base} (data {root})", flush=True)
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "serve", "--port", str(port)])
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            _wait_healthy(client, proc)
            sweep_id = _submit(client, json.loads(shipped_config("example")[1]))
            sweep = _follow(client, sweep_id)
            print(f"sweep {sweep_id} finished: {sweep['status']}")
            _print_results(client, sweep_id, root)
            return 0 if sweep["status"] == "succeeded" else 1
    finally:
        proc.send_signal(signal.SIGTERM)  # a normal stop: the worker is stopped, serve exits 0
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        print("server stopped")


if __name__ == "__main__":
    sys.exit(main())
