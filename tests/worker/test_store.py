"""The object store (core.store) against a real S3 server on loopback (moto, started by
scripts/services.sh): manifest-last publishing, checked reads, the dataset cache, the
reports' file set, clear errors, and a worker's disk that holds no version it uploaded."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.service.reports import build_reports
from app.service.submission import submit_sweep
from app.settings import Settings
from core.config import validate_sweep_config
from core.datasets import dataset_dir
from core.errors import StoreError
from core.paths import version_dir
from core.runs import RunOutcome, RunSpec
from core.store import MANIFEST, ObjectStore, parse_store_url
from tests.utils.data import ASSET, make_data_root, tiny_sweep
from tests.utils.fakes import RecordingQueue, fake_train
from tests.utils.services import object_store, use_s3
from worker.cli import main
from worker.local_sweep import open_database
from worker.tasks import WorkerContext, handle_train_run

SWEEP = Path("models/SYN/sweeps/tiny")
VERSION = SWEEP / "folds/f1/models/baseline__seed1"
NAMES = (ASSET, "tiny")  # the sweep's asset and output_subdir
VERSION_NAMES = (*NAMES, "f1", "baseline__seed1")


@pytest.fixture
def url(monkeypatch: pytest.MonkeyPatch) -> str:
    return use_s3(monkeypatch)


def machine(tmp_path: Path, name: str, url: str) -> ObjectStore:
    """A machine with its own empty data root and the shared store."""
    return object_store(tmp_path / name, url)


def write_version(root: Path, metrics: str = '{"val_rmse": 0.01}') -> Path:
    folder = root / VERSION
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(metrics)
    (folder / "run.json").write_text('{"run_id": 1}')
    (folder / "model.ckpt").write_bytes(os.urandom(300_000))
    return folder


class Counting:
    """Records the objects a store downloads (the store fetches in batches, with `get`)."""

    def __init__(self, store: ObjectStore) -> None:
        self.gets: list[str] = []
        fs = store.fs
        original = fs.get

        def counted(keys: list[str], *args: Any, **kwargs: Any) -> Any:
            self.gets += [key.rsplit("/", 1)[-1] for key in keys]
            return original(keys, *args, **kwargs)

        fs.get = counted


def test_a_model_version_exists_for_readers_only_once_its_manifest_is_written(tmp_path: Path, url: str) -> None:
    worker, reader = machine(tmp_path, "worker", url), machine(tmp_path, "reader", url)
    folder = write_version(worker.root)
    # An upload that died before its manifest: the objects are there, the version is not.
    worker.fs.put_file(str(folder / "model.ckpt"), worker.key(folder / "model.ckpt"))
    worker.fs.put_file(str(folder / "metrics.json"), worker.key(folder / "metrics.json"))
    assert not reader.fetch_versions(*NAMES)
    assert not (reader.root / VERSION).exists()
    assert reader.open(reader.root / VERSION / "metrics.json") is None
    assert reader.drop_unpublished_versions(*NAMES, older_than=3600) == []  # too young to be dead

    # The dead upload is removed; a published version is read, its small files only.
    assert reader.drop_unpublished_versions(*NAMES, older_than=0) == ["folds/f1/models/baseline__seed1"]
    assert not reader.fs.exists(worker.key(folder / "model.ckpt"))
    worker.publish_version(*VERSION_NAMES)
    manifest = json.loads(worker.fs.cat_file(f"{worker.key(folder)}/{MANIFEST}"))
    assert set(manifest["files"]) == {"metrics.json", "run.json", "model.ckpt"}
    assert reader.fetch_versions(*NAMES)
    assert sorted(p.name for p in (reader.root / VERSION).iterdir()) == [MANIFEST, "metrics.json", "run.json"]
    assert (reader.root / VERSION / "metrics.json").read_text() == '{"val_rmse": 0.01}'
    assert reader.drop_unpublished_versions(*NAMES, older_than=0) == []  # published: kept
    found = reader.open(reader.root / VERSION / "model.ckpt")
    assert found is not None and found.chunks is not None and found.size == 300_000
    assert b"".join(found.chunks) == (folder / "model.ckpt").read_bytes()

    # A version the store no longer has is not the sweep's on the reader either.
    worker.fs.rm(worker.key(folder), recursive=True)
    assert not reader.fetch_versions(*NAMES)
    assert not (reader.root / VERSION / "metrics.json").exists()


def test_a_reader_never_mixes_two_publications_of_a_folder(tmp_path: Path, url: str) -> None:
    worker, reader = machine(tmp_path, "worker", url), machine(tmp_path, "reader", url)
    folder = write_version(worker.root)
    worker.publish_version(*VERSION_NAMES)
    # A new publication under way: its first object is up, its manifest not yet.
    (folder / "metrics.json").write_text('{"val_rmse": 0.02}')
    worker.fs.put_file(str(folder / "metrics.json"), worker.key(folder / "metrics.json"))
    with pytest.raises(StoreError, match="kept changing while it was read"):
        reader.fetch_versions(*NAMES)  # read again, up to three times, then refused
    assert not (reader.root / VERSION / "metrics.json").exists()  # nothing half-read was kept
    worker.publish_version(*VERSION_NAMES)  # the publication completes
    assert reader.fetch_versions(*NAMES)
    assert (reader.root / VERSION / "metrics.json").read_text() == '{"val_rmse": 0.02}'
    worker.fs.pipe_file(f"{worker.key(folder)}/{MANIFEST}", b'{"files": [')  # a manifest damaged in the store
    with pytest.raises(StoreError, match="is not a manifest"):
        reader.fetch_versions(*NAMES)


def test_a_dataset_is_downloaded_once_per_fingerprint(tmp_path: Path, url: str) -> None:
    api = machine(tmp_path, "api", url)
    make_data_root(api.root)
    api.publish_dataset(ASSET)
    worker = machine(tmp_path, "worker", url)
    counted = Counting(worker)
    folder = dataset_dir(worker.root, ASSET)
    assert worker.fetch_dataset(ASSET) and worker.fetch_dataset(ASSET) and worker.fetch_dataset(ASSET)
    assert sorted(counted.gets) == ["dataset_tft_SYN.json", "dataset_tft_SYN.parquet"]  # the first fetch only
    assert (folder / "dataset_tft_SYN.parquet").read_bytes() == (
        api.root / folder.relative_to(worker.root) / "dataset_tft_SYN.parquet"
    ).read_bytes()
    # Replaced in the store (another fingerprint): fetched again, once.
    make_data_root(api.root, seed=7)
    api.publish_dataset(ASSET)
    counted.gets.clear()
    assert worker.fetch_dataset(ASSET) and worker.fetch_dataset(ASSET)
    assert sorted(counted.gets) == ["dataset_tft_SYN.json", "dataset_tft_SYN.parquet"]
    assert worker.datasets() == [ASSET]
    assert not worker.fetch_dataset("NONE")


def test_reports_replace_the_previous_set_and_leave_model_versions_alone(tmp_path: Path, url: str) -> None:
    worker, api = machine(tmp_path, "worker", url), machine(tmp_path, "api", url)
    sweep = worker.root / SWEEP
    write_version(worker.root)
    worker.publish_version(*VERSION_NAMES)
    (sweep / "plots").mkdir(parents=True)
    (sweep / "summary.json").write_text('{"a": 1}')
    (sweep / "drift_ks_psi_by_fold.csv").write_text("x\n1\n")
    (sweep / "plots" / "config_ranking.png").write_bytes(b"\x89PNG one")
    worker.publish_sweep_reports(*NAMES)
    listed = json.loads(worker.fs.cat_file(f"{worker.key(sweep)}/{MANIFEST}"))["files"]
    assert sorted(listed) == ["drift_ks_psi_by_fold.csv", "plots/config_ranking.png", "summary.json"]
    assert api.listing(api.root / SWEEP / "plots", ".png") == ["config_ranking.png"]
    assert api.read_bytes(api.root / SWEEP / "summary.json") == b'{"a": 1}'

    # The next build has no drift file (no dataset) and a new plot: the store follows.
    (sweep / "drift_ks_psi_by_fold.csv").unlink()
    (sweep / "plots" / "response_dropout.png").write_bytes(b"\x89PNG two")
    worker.publish_sweep_reports(*NAMES)
    assert not worker.fs.exists(worker.key(sweep / "drift_ks_psi_by_fold.csv"))
    assert api.read_bytes(api.root / SWEEP / "drift_ks_psi_by_fold.csv") is None
    assert api.listing(api.root / SWEEP / "plots", ".png") == ["config_ranking.png", "response_dropout.png"]
    assert worker.fs.exists(worker.key(worker.root / VERSION / "model.ckpt"))  # versions publish alone

    # A file put alone (the config a merge writes) is readable at once: its manifest follows.
    (sweep / "analysis_config.json").write_text('{"asset": "SYN"}')
    worker.publish_sweep_file(*NAMES, "analysis_config.json")
    assert api.read_bytes(api.root / SWEEP / "analysis_config.json") == b'{"asset": "SYN"}'
    assert api.fetch_sweep_inputs(*NAMES)
    assert (api.root / SWEEP / "analysis_config.json").read_text() == '{"asset": "SYN"}'


def test_the_store_url_is_checked_and_an_unreachable_store_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert parse_store_url("s3://bucket/some/prefix/") == "bucket/some/prefix"
    for bad in ("bucket/prefix", "https://host/bucket", "s3://", "s3://bucket//x"):
        with pytest.raises(ValueError, match="expected s3://bucket or s3://bucket/prefix"):
            parse_store_url(bad)
    monkeypatch.setenv("TFTSWEEP_STORE_URL", "gs://bucket")
    assert main(["dataset", "list"]) == 2
    assert "store_url" in capsys.readouterr().err

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("TFTSWEEP_STORE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("TFTSWEEP_DATA_DIR", str(tmp_path / "data"))
    store = Settings().store()
    with pytest.raises(StoreError, match=r"object store s3://bucket/prefix: reading .* failed"):
        store.fetch_dataset(ASSET)
    assert main(["dataset", "list"]) == 1
    assert "error: object store s3://bucket/prefix" in capsys.readouterr().err


def test_regenerate_from_the_store_needs_the_store(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TFTSWEEP_DATA_DIR", str(tmp_path / "data"))
    assert main(["regenerate", "--sweep-dir", "s3://elsewhere/models/SYN/sweeps/tiny"]) == 2
    assert "is not under the store" in capsys.readouterr().err
    assert main(["regenerate", "--sweep-dir", f"{url}/models/SYN/sweeps/none"]) == 2
    assert "holds no published sweep folder" in capsys.readouterr().err
    monkeypatch.delenv("TFTSWEEP_STORE_URL")
    assert main(["compare", "--sweep-dir", f"{url}/a", "--sweep-dir", f"{url}/b"]) == 2
    assert "set TFTSWEEP_STORE_URL" in capsys.readouterr().err


def heavy_train(spec: RunSpec, stop_requested: Callable[[], bool] | None = None) -> RunOutcome:
    """The fake trainer plus a checkpoint the size of a real tiny TFT's (~300 kB)."""
    outcome = fake_train(spec, stop_requested)
    (version_dir(Path(spec.sweep_dir), spec.fold.name, spec.config_id, spec.seed) / "model.ckpt").write_bytes(
        os.urandom(300_000)
    )
    return outcome


def bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("remote", [True, False], ids=["store", "local"])
def test_a_worker_keeps_no_model_version_it_uploaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, remote: bool
) -> None:
    """With an object store a worker's disk is scratch: once a run's version is uploaded its
    local copy goes, and a report build reads the versions from the store. Without one the
    data root is the store: every version stays."""
    url = use_s3(monkeypatch) if remote else None
    root = tmp_path / "worker"
    if url:
        staging = make_data_root(tmp_path / "staging")
        object_store(staging, url).publish_dataset(ASSET)  # `tftsweep dataset import` elsewhere
    else:
        make_data_root(root)
    settings = Settings(data_dir=root, database_url=None, redis_url=None, store_url=url)
    factory = open_database(root)
    queue = RecordingQueue()
    config = validate_sweep_config(tiny_sweep(replica_seeds=[1, 2, 3, 4, 5]))
    submitted = submit_sweep(factory, queue, settings, ASSET, config, merge=False, continue_on_error=False)
    ctx = WorkerContext(0, 0, factory, queue, settings, heavy_train)
    started = time.perf_counter()
    for run_id in list(queue.runs):
        assert handle_train_run(ctx, run_id, f"task-{run_id}") == "succeeded"
    elapsed = time.perf_counter() - started
    runs = len(queue.runs)
    folds = root / "models" / ASSET / "sweeps" / "tiny" / "folds"
    assert runs == 10 and elapsed < 60, f"{runs} runs took {elapsed:.1f}s"
    if url:
        store = settings.store()
        assert isinstance(store, ObjectStore)
        manifests = store.fs.glob(f"{store.key(folds)}/*/models/*/{MANIFEST}")
        assert len(manifests) == runs  # the store holds every version, checkpoint included
        assert all("model.ckpt" in json.loads(store.fs.cat_file(key))["files"] for key in manifests)
        assert bytes_under(folds) == 0  # 10 x 300 kB trained here, none kept
    else:
        assert len(list(folds.glob("*/models/*/model.ckpt"))) == runs
        assert bytes_under(folds) > runs * 300_000

    # The report build (here, on the worker's own disk) reads what it needs of each version.
    summary = build_reports(factory, settings.store(), submitted.sweep_id, builder="reports")
    assert summary is not None and summary["counts"]["runs_by_status"]["succeeded"] == runs
    kept = list(folds.glob("*/models/*/model.ckpt"))
    assert len(kept) == (0 if url else runs)  # a build fetches the small files, never a checkpoint
    if url:  # rebuilt from the store on a fresh machine: the same ranking, and the new set published
        store = settings.store()
        sweep = store.root / SWEEP
        ranking = store.read_bytes(sweep / "config_ranking.csv")
        assert ranking is not None and store.listing(sweep / "plots", ".png") != []
        monkeypatch.setenv("TFTSWEEP_DATA_DIR", str(tmp_path / "rebuild"))
        assert main(["regenerate", "--sweep-dir", f"{url}/{SWEEP}", "--no-plots"]) == 0
        assert (tmp_path / "rebuild" / SWEEP / "config_ranking.csv").read_bytes() == ranking
        assert store.read_bytes(sweep / "config_ranking.csv") == ranking
        assert store.listing(sweep / "plots", ".png") == []  # this build made none


class HeavyKnownTrainer:
    """`heavy_train` with an identity, so its runs are cached; remembers what it trained."""

    def __init__(self) -> None:
        self.trained: list[str] = []

    def identity(self) -> Any:
        from core.run_cache import trainer_identity

        return trainer_identity(None, "cpu")

    def __call__(self, spec: RunSpec, stop_requested: Callable[[], bool] | None = None) -> RunOutcome:
        self.trained.append(spec.config_id)
        return heavy_train(spec, stop_requested)


def test_a_cache_hit_in_store_mode_copies_through_the_store_on_a_worker_with_an_empty_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker A trains a sweep; worker B, on a machine with an empty disk and the same database
    and store, records a second sweep's repeated runs from A's versions in the store: nothing
    trained, every file of the versions (checkpoint included) published under the new sweep,
    and B's disk empty again."""
    url = use_s3(monkeypatch)
    staging = make_data_root(tmp_path / "staging")
    object_store(staging, url).publish_dataset(ASSET)
    factory = open_database(tmp_path / "db")
    trained: dict[str, HeavyKnownTrainer] = {}
    for worker, name in (("a", "first"), ("b", "second")):
        root = tmp_path / worker
        settings = Settings(data_dir=root, database_url=None, redis_url=None, store_url=url)
        queue = RecordingQueue()
        config = validate_sweep_config(tiny_sweep(output_subdir=name, replica_seeds=[1, 2]))
        submit_sweep(factory, queue, settings, ASSET, config, merge=False, continue_on_error=False)
        trainer = trained[worker] = HeavyKnownTrainer()
        ctx = WorkerContext(0, 0, factory, queue, settings, trainer)
        for run_id in list(queue.runs):
            assert handle_train_run(ctx, run_id, f"{worker}-{run_id}") == "succeeded"
    assert len(trained["a"].trained) == 4 and trained["b"].trained == []
    store = Settings(data_dir=tmp_path / "b", database_url=None, redis_url=None, store_url=url).store()
    assert isinstance(store, ObjectStore)
    second = store.key(tmp_path / "b" / "models" / ASSET / "sweeps" / "second" / "folds")
    manifests = store.fs.glob(f"{second}/*/models/*/{MANIFEST}")
    assert len(manifests) == 4
    assert all({"model.ckpt", "run.json"} <= set(json.loads(store.fs.cat_file(k))["files"]) for k in manifests)
    # Only what submission wrote (analysis_config.json): no model version of either sweep stays.
    assert [p.name for p in (tmp_path / "b" / "models").rglob("*") if p.is_file()] == ["analysis_config.json"]
