"""Machines that share no disk: the API (no embedded worker) and two `tftsweep worker`
processes, each on its own empty data root, sharing only PostgreSQL, Redis and an S3 store
(moto's server on loopback). Real training; one worker is killed mid-run."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.api.routes.sweeps import SWEEP_ARTIFACTS
from app.db.models import Run
from app.db.session import make_engine, make_session_factory, session_scope
from core.datasets import synthetic_dataset
from tests.utils.data import ASSET, tiny_sweep
from tests.utils.processes import ServerProcess, WorkerProcess, create_postgres_database
from tests.utils.services import object_store, s3_env, service_url
from worker.cli import main

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAST = {"TFTSWEEP_HEARTBEAT_SECONDS": "1", "TFTSWEEP_REAPER_INTERVAL_SECONDS": "1"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    redis_url = service_url("TFTSWEEP_TEST_REDIS_URL")
    import redis

    redis.Redis.from_url(redis_url).flushdb()  # nothing an earlier run left reaches these workers
    database_url = create_postgres_database(service_url("TFTSWEEP_TEST_DATABASE_URL"))
    env = {**s3_env(), **FAST, "REDIS_URL": redis_url, "DATABASE_URL": database_url}
    base = tmp_path_factory.mktemp("machines")
    api = ServerProcess(base / "api", env=env, args=["--no-worker"]).start()
    workers = [WorkerProcess(base / f"worker{i}", env).start() for i in (1, 2)]
    yield {"api": api, "workers": workers, "env": env, "database_url": database_url, "base": base}
    for worker in workers:
        worker.stop()
    api.stop()


def slow_sweep() -> dict[str, Any]:
    """Six runs of a few seconds each: long enough to be caught mid-training."""
    data = tiny_sweep(output_subdir="apart", replica_seeds=[1, 2, 3])
    data["training_config"] |= {"max_epochs": 6, "limit_train_batches": None, "early_stopping_patience": 6}
    return data


def test_a_sweep_across_machines_that_share_no_disk(
    cluster: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    api: ServerProcess = cluster["api"]
    first, second = cluster["workers"]
    client = api.client
    assert api.wait(lambda: client.get("/healthz").json()["live_workers"] == 2, 120, "two live workers")

    # The dataset goes through the API into the store; no machine shares a disk with another.
    buffer = io.BytesIO()
    synthetic_dataset(ASSET, n_days=1050).to_parquet(buffer, index=False)
    uploaded = client.post(f"/datasets/{ASSET}", files={"file": ("syn.parquet", buffer.getvalue())})
    assert uploaded.status_code == 201, uploaded.text
    created = client.post("/sweeps", json={"asset": ASSET, "config": slow_sweep()})
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]

    # A machine dies mid-run: everything of its process tree at once.
    def busy() -> Any:
        rows = client.get("/workers").json()["data"]
        return next((w for w in rows if w["live"] and w["runs_in_hand"] > 0), None)

    victim_pid = api.wait(busy, 120, "a worker with a run in hand")["pid"]
    victim = first if victim_pid in first.pids else second
    survivor = second if victim is first else first
    victim.kill()
    sweep = api.wait_sweep(sweep_id, timeout=400)
    assert sweep["status"] == "succeeded" and sweep["runs"]["succeeded"] == 6  # nothing lost

    runs = client.get(f"/sweeps/{sweep_id}/runs").json()["data"]
    assert sorted(r["attempts"] for r in runs)[-1] == 2  # the killed run was trained again, elsewhere
    factory = make_session_factory(make_engine(cluster["database_url"]))
    with session_scope(factory) as session:
        assert all(run.state == "succeeded" for run in session.scalars(select(Run)))

    # Each machine holds only what it is working on: the API no report, a worker no version it
    # uploaded (the store holds them; a worker's disk stays bounded).
    sweep_path = Path("models/SYN/sweeps/apart")
    assert not (api.root / sweep_path / "summary.json").exists()
    assert not list(survivor.root.glob(f"{sweep_path}/folds/*/models/*/model.ckpt"))

    # Every artifact and plot is served over HTTP, from the store.
    served: dict[str, bytes] = {}
    for name, media in SWEEP_ARTIFACTS.items():
        answer = client.get(f"/sweeps/{sweep_id}/artifacts/{name}")
        assert answer.status_code == 200, (name, answer.text)
        assert answer.headers["content-type"].split(";")[0] == media
        served[name] = answer.content
    fold_ranking = client.get(f"/sweeps/{sweep_id}/artifacts/config_ranking.csv", params={"fold": "f1"})
    assert fold_ranking.status_code == 200 and fold_ranking.content.startswith(b"rank,")
    plots = client.get(f"/sweeps/{sweep_id}/plots").json()["data"]
    assert len(plots) >= 5
    for plot in plots:
        answer = client.get(plot["url"])
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        assert answer.content.startswith(b"\x89PNG")

    # Regenerated from the store on a fresh machine: every CSV byte for byte.
    url = f"{cluster['env']['TFTSWEEP_STORE_URL']}/{sweep_path}"
    store = object_store(tmp_path / "reader", cluster["env"]["TFTSWEEP_STORE_URL"])
    for name, value in cluster["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TFTSWEEP_DATA_DIR", str(tmp_path / "regenerate"))
    before = csv_objects(store, sweep_path)
    assert main(["regenerate", "--sweep-dir", url]) == 0
    after = csv_objects(store, sweep_path)
    assert sorted(after) == sorted(before) and len(before) >= 10
    for name, data in before.items():
        assert after[name] == data, name
    assert before["config_ranking.csv"] == served["config_ranking.csv"]


def csv_objects(store: Any, sweep_path: Path) -> dict[str, bytes]:
    """Every CSV object of the sweep in the store (model versions aside), by relative key."""
    base = store.key(store.root / sweep_path)
    keys = [k for k in store.fs.find(base) if k.endswith(".csv") and "/models/" not in k[len(base) :]]
    return {k[len(base) + 1 :]: store.fs.cat_file(k) for k in keys}
