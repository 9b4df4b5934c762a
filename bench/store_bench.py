"""Benchmark 7: what the object store costs per run.

The example sweep (12 real runs) in this process twice, on the local disk and with
`TFTSWEEP_STORE_URL` pointing at an S3 server on loopback (moto's, started here): per run,
the dataset fetch (a manifest read once the dataset is cached) and the model version upload;
per sweep, the reports' upload, and what a fresh machine pays to download the dataset and to
read the sweep's published versions.

    .venv/bin/python -m bench.store_bench
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import median, save
from bench.sweep_bench import CONFIG, example_root
from tests.utils.processes import free_port
from tests.utils.services import S3_CREDENTIALS


def start_s3() -> tuple[subprocess.Popen[bytes], str]:
    import boto3

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update({**S3_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint})
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    for _ in range(100):
        try:
            boto3.client("s3").create_bucket(Bucket=bucket)
            break
        except Exception:  # not up yet
            time.sleep(0.1)
    return proc, f"s3://{bucket}/data"


def example_sweep_timings(root: Path, store_url: str | None = None) -> tuple[float, list[dict[str, float]]]:
    """The example sweep in this process (`tftsweep sweep`'s path, 2 torch threads): its wall
    time and each succeeded run's timings as the pipeline and the trainer record them."""
    from core.config import load_sweep_config
    from core.runs import RunOutcome
    from worker.local_sweep import LocalSetup, run_local_sweep

    outcomes: list[RunOutcome] = []
    started = time.perf_counter()
    run_local_sweep(
        root,
        "MSFT",
        load_sweep_config(CONFIG.read_text()),
        setup=LocalSetup(database_url=f"sqlite:///{root / 'tftsweep.db'}", store_url=store_url, threads=2),
        on_run_finished=outcomes.append,
    )
    return time.perf_counter() - started, [o.timings for o in outcomes if o.error is None]


def sweep(root: Path, store_url: str | None) -> dict[str, Any]:
    wall, trained = example_sweep_timings(root, store_url)
    return {
        "wall_s": wall,
        "runs": len(trained),
        "train_s": median([t["total_seconds"] for t in trained]),
        "fetch_ms": [1000 * t["fetch_seconds"] for t in trained if "fetch_seconds" in t],
        "upload_ms": [1000 * t["upload_seconds"] for t in trained if "upload_seconds" in t],
    }


def fresh_machine(base: Path, url: str, writer_root: Path, sweep: Path) -> dict[str, float]:
    """A machine with an empty disk: the dataset's first download, a cached fetch, the sweep's
    versions (what a report build reads), and re-uploading the reports."""
    from core.store import ObjectStore

    store = ObjectStore((base / "fresh").resolve(), url)
    asset, subdir = sweep.parts[1], sweep.parts[3]  # models/{asset}/sweeps/{output_subdir}
    first = time.perf_counter()
    store.fetch_dataset(asset)
    cold = time.perf_counter() - first
    cached = []
    for _ in range(20):
        started = time.perf_counter()
        store.fetch_dataset(asset)
        cached.append(time.perf_counter() - started)
    started = time.perf_counter()
    store.fetch_versions(asset, subdir)
    store.fetch_sweep_inputs(asset, subdir)
    versions = time.perf_counter() - started
    writer = ObjectStore(writer_root, url)
    started = time.perf_counter()
    writer.publish_sweep_reports(asset, subdir)
    reports = time.perf_counter() - started
    return {
        "dataset_first_download_ms": 1000 * cold,
        "dataset_cached_fetch_ms": 1000 * median(cached),
        "sweep_versions_fetch_s": versions,
        "reports_upload_s": reports,
    }


def main() -> None:
    proc, url = start_s3()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            local = sweep(example_root(base / "local"), None)
            store_root = example_root(base / "s3").resolve()
            from core.store import ObjectStore

            ObjectStore(store_root, url).publish_dataset("MSFT")
            remote = sweep(store_root, url)
            sweep_rel = Path("models/MSFT/sweeps/example_msft")
            version = next((store_root / sweep_rel).glob("folds/*/models/*"))
            size = sum(p.stat().st_size for p in version.iterdir() if p.name != "_manifest.json")
            machine = fresh_machine(base, url, store_root, sweep_rel)
    finally:
        proc.terminate()
        proc.wait()
    runs = remote["runs"]
    save(
        "store",
        "python -m bench.store_bench",
        {
            "runs": runs,
            "local_wall_s": local["wall_s"],
            "store_wall_s": remote["wall_s"],
            "overhead_per_run_ms": 1000 * (remote["wall_s"] - local["wall_s"]) / runs,
            "train_per_run_s": local["train_s"],
            "fetch_per_run_ms": median(remote["fetch_ms"]),
            "upload_per_run_ms": median(remote["upload_ms"]),
            "upload_per_run_ms_all": [round(v, 1) for v in remote["upload_ms"]],
            "version_bytes": size,
            **machine,
            "note": "moto's S3 server on loopback in a second process, so no network latency: a run makes one GET "
            "(its dataset's manifest, once the dataset is cached) and seven PUTs: its six files in concurrent "
            "requests, then the manifest; on a real store each is a round trip",
        },
    )


if __name__ == "__main__":
    main()
