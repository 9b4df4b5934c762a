"""One contract for both stores (core.store): what a caller may rely on whichever store its
machine was given, the local disk (`LocalStore`) or an S3 bucket (`ObjectStore`, against
moto's server on loopback). Every test runs once per implementation, as optuna's storage
tests do; what only one store does (manifest-last uploads, the dataset cache, unfinished
uploads) is tested in tests/worker/test_store.py."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.errors import DatasetError
from core.paths import PREDICTIONS_FILE, dataset_dir, hpo_dir, sweep_dir, version_folder
from core.store import MANIFEST, LocalStore, ObjectStore, Store
from tests.utils.services import use_s3

ASSET = "SYN"
SWEEP = (ASSET, "tiny")
VERSION = ("f1", "baseline__seed1")

Machines = Callable[[], Store]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """The test S3 server: scripts/services.sh's when it runs, else moto's in this process."""
    running = os.environ.get("TFTSWEEP_TEST_S3_ENDPOINT")
    if running:
        yield running
        return
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["local", "s3"])
def machines(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Machines:
    """Machines sharing one store: each call gives another machine's view of it. On the local
    disk the data root is the store, so every machine has the same one; with S3 each machine
    has its own empty data root and a new bucket is shared."""
    if request.param == "local":
        root = (tmp_path / "data").resolve()
        return lambda: LocalStore(root)
    monkeypatch.setenv("TFTSWEEP_TEST_S3_ENDPOINT", request.getfixturevalue("s3_endpoint"))
    url = use_s3(monkeypatch)
    numbers = itertools.count()
    return lambda: ObjectStore((tmp_path / f"machine{next(numbers)}").resolve(), url)


def write(path: Path, data: bytes) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def served(store: Store, path: Path, inside: Path | None = None) -> bytes | None:
    """The bytes `open` serves (from a local path or an object's chunks), or None."""
    found = store.open(path, inside)
    if found is None:
        return None
    data = found.path.read_bytes() if found.path is not None else b"".join(found.chunks or [])
    assert len(data) == found.size
    return data


def test_a_published_dataset_is_fetched_on_another_machine(machines: Machines) -> None:
    writer = machines()
    folder = dataset_dir(writer.root, ASSET)
    parquet = write(folder / f"dataset_tft_{ASSET}.parquet", os.urandom(20_000))
    sidecar = write(folder / f"dataset_tft_{ASSET}.json", b'{"asset": "SYN"}')
    writer.publish_dataset(ASSET)

    reader = machines()
    assert reader.datasets() == [ASSET]
    assert not reader.fetch_dataset("NONE")
    assert reader.fetch_dataset(ASSET)
    local = dataset_dir(reader.root, ASSET)
    assert (local / f"dataset_tft_{ASSET}.parquet").read_bytes() == parquet
    assert (local / f"dataset_tft_{ASSET}.json").read_bytes() == sidecar
    with pytest.raises(DatasetError, match=r"asset '\.\./x'") as caught:
        reader.fetch_dataset("../x")
    assert caught.value.field == "asset"

    # Replaced (another fingerprint): the next fetch brings the new one.
    replaced = write(folder / f"dataset_tft_{ASSET}.parquet", os.urandom(20_000))
    writer.publish_dataset(ASSET)
    assert reader.fetch_dataset(ASSET)
    assert (local / f"dataset_tft_{ASSET}.parquet").read_bytes() == replaced

    third = machines()
    assert third.fetch_datasets() == [ASSET]
    assert (dataset_dir(third.root, ASSET) / f"dataset_tft_{ASSET}.parquet").read_bytes() == replaced


def test_a_model_version_reaches_a_report_build_and_outlives_its_local_copy(machines: Machines) -> None:
    worker = machines()
    folder = version_folder(sweep_dir(worker.root, *SWEEP), *VERSION)
    metrics = write(folder / "metrics.json", b'{"val_rmse": 0.01}')
    run = write(folder / "run.json", b'{"run_id": 1}')
    predictions = write(folder / PREDICTIONS_FILE, os.urandom(5_000))  # what a rescoring build reads
    checkpoint = write(folder / "model.ckpt", os.urandom(50_000))
    worker.publish_version(*SWEEP, *VERSION)

    reader = machines()
    assert not reader.fetch_versions(ASSET, "none")
    assert reader.fetch_versions(*SWEEP)
    local = version_folder(sweep_dir(reader.root, *SWEEP), *VERSION)
    assert (local / "metrics.json").read_bytes() == metrics
    assert (local / "run.json").read_bytes() == run
    assert (local / PREDICTIONS_FILE).read_bytes() == predictions
    assert reader.drop_unpublished_versions(*SWEEP, older_than=0) == []  # published: kept

    # The worker forgets its copy where the store keeps one; every machine still reads it.
    assert worker.drop_local_version(*SWEEP, *VERSION) == worker.remote
    assert (folder / "model.ckpt").exists() != worker.remote
    assert served(worker, folder / "model.ckpt") == checkpoint
    api = machines()
    assert served(api, version_folder(sweep_dir(api.root, *SWEEP), *VERSION) / "model.ckpt") == checkpoint
    assert not worker.drop_local_version(*SWEEP, "f1", "other__seed1")  # never published here


def test_a_sweeps_files_replace_the_previous_set_and_leave_its_versions_alone(machines: Machines) -> None:
    worker = machines()
    sweep = sweep_dir(worker.root, *SWEEP)
    version = version_folder(sweep, *VERSION)
    checkpoint = write(version / "model.ckpt", os.urandom(10_000))
    worker.publish_version(*SWEEP, *VERSION)
    write(sweep / "summary.json", b'{"a": 1}')
    write(sweep / "drift_ks_psi_by_fold.csv", b"x\n1\n")
    write(sweep / "plots" / "config_ranking.png", b"\x89PNG one")
    worker.publish_sweep_reports(*SWEEP)

    api = machines()
    remote = sweep_dir(api.root, *SWEEP)
    assert api.read_bytes(remote / "summary.json") == b'{"a": 1}'
    assert api.listing(remote / "plots", ".png") == ["config_ranking.png"]
    assert api.listing(remote, ".json") == ["summary.json"]  # the manifest is never served
    assert api.read_bytes(remote / MANIFEST) is None

    # The next build has no drift file and a new plot: readers follow.
    (sweep / "drift_ks_psi_by_fold.csv").unlink()
    write(sweep / "plots" / "response_dropout.png", b"\x89PNG two")
    worker.publish_sweep_reports(*SWEEP)
    assert api.read_bytes(remote / "drift_ks_psi_by_fold.csv") is None
    assert api.listing(remote / "plots", ".png") == ["config_ranking.png", "response_dropout.png"]
    assert served(api, version_folder(remote, *VERSION) / "model.ckpt") == checkpoint

    # One file uploaded alone (the config a merge writes) is readable at once, and is one of
    # the inputs another machine fetches to rebuild or adopt the sweep.
    config = write(sweep / "analysis_config.json", b'{"asset": "SYN"}')
    worker.publish_sweep_file(*SWEEP, "analysis_config.json")
    assert api.read_bytes(remote / "analysis_config.json") == config
    rebuilder = machines()
    assert not rebuilder.fetch_sweep_inputs(ASSET, "none")
    assert rebuilder.fetch_sweep_inputs(*SWEEP)
    assert (sweep_dir(rebuilder.root, *SWEEP) / "analysis_config.json").read_bytes() == config


def test_files_missing_or_outside_their_folder_are_not_served(machines: Machines, tmp_path: Path) -> None:
    worker = machines()
    for subdir in ("a", "b"):
        write(sweep_dir(worker.root, ASSET, subdir) / "summary.json", subdir.encode())
        worker.publish_sweep_reports(ASSET, subdir)

    api = machines()
    a, b = sweep_dir(api.root, ASSET, "a"), sweep_dir(api.root, ASSET, "b")
    assert served(api, a / "summary.json", inside=a) == b"a"
    assert api.read_bytes(a / "summary.json", inside=a) == b"a"
    assert api.listing(a, ".json", inside=a) == ["summary.json"]
    # Another sweep's folder is no way in.
    assert api.open(a / "summary.json", inside=b) is None
    assert api.read_bytes(a / "summary.json", inside=b) is None
    assert api.listing(a, ".json", inside=b) == []
    # Missing files and folders, and paths outside the data root.
    for missing in (a / "nothing.json", a / "plots" / "x.png", sweep_dir(api.root, ASSET, "c") / "summary.json"):
        assert api.open(missing) is None and api.read_bytes(missing) is None
    assert api.listing(a / "plots", ".png") == [] and api.listing(sweep_dir(api.root, ASSET, "c"), ".json") == []
    outside = tmp_path / "elsewhere" / "secret.json"
    write(outside, b"{}")
    assert api.open(outside) is None and api.read_bytes(outside) is None


def test_a_study_folder_continues_on_another_machine(machines: Machines) -> None:
    first = machines()
    study = hpo_dir(first.root, ASSET, "study")
    storage = write(study / "optuna_study.db", os.urandom(8_000))
    summary = write(study / "optuna_summary.json", b'{"best": null}')
    first.publish_study(ASSET, "study")

    second = machines()
    assert not second.fetch_study(ASSET, "none")
    assert second.fetch_study(ASSET, "study")
    local = hpo_dir(second.root, ASSET, "study")
    assert (local / "optuna_study.db").read_bytes() == storage
    assert second.read_bytes(local / "optuna_summary.json", inside=local) == summary

    # The second machine runs more trials: the first reads its storage next time.
    more = write(local / "optuna_study.db", os.urandom(9_000))
    second.publish_study(ASSET, "study")
    assert first.fetch_study(ASSET, "study")
    assert (study / "optuna_study.db").read_bytes() == more
