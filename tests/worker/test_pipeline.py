"""The service layer end to end: one set of files whichever way a sweep runs, folders that describe themselves,
history kept in the folder, and reports built only from a sweep's final state."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select, update

from app.db.models import Run, Sweep
from app.db.reports import release_report_lock, take_report_lock
from app.db.session import session_scope
from app.service.reports import build_reports
from app.service.submission import submit_sweep
from core.config import validate_sweep_config
from core.datasets import dataset_fingerprint
from core.store import LocalStore, ObjectStore
from tests.utils.data import ASSET, make_data_root, tiny_fold, tiny_sweep
from tests.utils.fakes import FailingTrainer, RecordingQueue, fake_train
from tests.utils.server import api_client, server_settings
from worker.cli import main
from worker.local_sweep import open_database, run_local_sweep
from worker.tasks import WorkerContext, handle_train_run

TIMESTAMPS = ("started_at", "finished_at")


def two_fold_sweep(**overrides: Any) -> dict[str, Any]:
    return tiny_sweep(
        replica_seeds=[1, 2],
        walk_forward={"enabled": True, "folds": [tiny_fold("f1", 2012), tiny_fold("f2", 2013)]},
        param_ranges={"hidden_size": [4, 6], "dropout": [0.2]},
        **overrides,
    )


def through_the_server(root: Path, data: dict[str, Any]) -> Path:
    """What `tftsweep serve` does, minus the broker: submit, one task per run, then the reports task."""
    settings = server_settings(root)
    factory = open_database(root)
    queue = RecordingQueue()
    submitted = submit_sweep(
        factory, queue, settings, ASSET, validate_sweep_config(data), merge=False, continue_on_error=False
    )
    ctx = WorkerContext(0, 0, factory, queue, settings, fake_train)
    for run_id in list(queue.runs):
        handle_train_run(ctx, run_id, f"task-{run_id}")
    assert queue.reports == [submitted.sweep_id]
    assert build_reports(factory, LocalStore(root), submitted.sweep_id, builder="reports-task") is not None
    return root / "models" / ASSET / "sweeps" / data["output_subdir"]


def through_the_cli(workers: int) -> Callable[[Path, dict[str, Any]], Path]:
    def run(root: Path, data: dict[str, Any]) -> Path:
        return run_local_sweep(root, ASSET, validate_sweep_config(data), trainer=fake_train, workers=workers).sweep_dir

    return run


def sweep_files(folder: Path) -> dict[str, bytes]:
    """Every file of a sweep folder by relative path, with the timestamps a run or a build records blanked."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = str(path.relative_to(folder))
        data = path.read_bytes()
        if path.name == "sweep_runs.csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            data = frame.drop(columns=list(TIMESTAMPS)).to_csv(index=False).encode()
        elif path.name == "sweep_runs.json":
            data = json.dumps([{k: v for k, v in r.items() if k not in TIMESTAMPS} for r in json.loads(data)]).encode()
        elif path.name == "summary.json":
            summary = json.loads(data)
            summary.pop("generated_at")
            data = json.dumps(summary).encode()
        files[rel] = data
    return files


@pytest.mark.parametrize("run", [through_the_cli(1), through_the_cli(2)], ids=["cli-inline", "cli-workers-2"])
def test_the_server_and_the_cli_write_the_same_files(
    tmp_path: Path, run: Callable[[Path, dict[str, Any]], Path]
) -> None:
    server_dir = through_the_server(make_data_root(tmp_path / "server"), two_fold_sweep())
    cli_dir = run(make_data_root(tmp_path / "cli"), two_fold_sweep())
    server_files, cli_files = sweep_files(server_dir), sweep_files(cli_dir)
    assert sorted(server_files) == sorted(cli_files)  # the same file set
    assert "analysis_config.json" in server_files and "drift_ks_psi_by_fold.csv" in server_files
    for name in server_files:
        if name.endswith(".csv") or name.endswith(".json"):
            assert server_files[name] == cli_files[name], name  # byte-identical (timestamps aside)
    for root in (tmp_path / "server", tmp_path / "cli"):
        with session_scope(open_database(root)) as session:
            sweep = session.scalars(select(Sweep)).one()
            assert sweep.status == "succeeded" and sweep.reports_at is not None  # both paths leave the same state


def test_a_sweep_folder_describes_itself(tmp_path: Path) -> None:
    root = make_data_root(tmp_path / "data")
    folder = through_the_server(root, tiny_sweep())
    analysis = json.loads((folder / "analysis_config.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    fingerprint = dataset_fingerprint(root, ASSET)
    assert analysis["asset"] == summary["asset"] == ASSET
    assert analysis["dataset"] == summary["dataset"] == fingerprint
    assert fingerprint["file"] == "processed/dataset_tft/SYN/dataset_tft_SYN.parquet"
    parquet = root / fingerprint["file"]
    dates = pd.read_parquet(parquet)["date"]
    assert (fingerprint["rows"], fingerprint["first_date"], fingerprint["last_date"]) == (
        len(dates),
        str(dates.iloc[0].date()),
        str(dates.iloc[-1].date()),
    )
    assert fingerprint["sha256"] == hashlib.sha256(parquet.read_bytes()).hexdigest()


def test_regenerate_a_copied_folder_anywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_data_root(tmp_path / "data")
    folder = through_the_server(root, two_fold_sweep())
    before = sweep_files(folder)
    copy = tmp_path / "elsewhere" / "my copy"
    shutil.copytree(folder, copy)
    for path in copy.rglob("*.csv"):
        if "models" not in path.relative_to(copy).parts:
            path.unlink()  # the reports go: regenerate rebuilds them from what the folder keeps
    assert main(["regenerate", "--sweep-dir", str(copy), "--data-dir", str(root)]) == 0
    after = sweep_files(copy)
    assert sorted(after) == sorted(before)
    for name, data in before.items():
        if name.endswith(".csv") or name.endswith(".json"):
            assert after[name] == data, name  # every CSV byte for byte, drift included

    # Without the dataset: a clear error naming the file, exit 2, nothing rewritten.
    elsewhere = tmp_path / "empty-root"
    elsewhere.mkdir()
    assert main(["regenerate", "--sweep-dir", str(copy), "--data-dir", str(elsewhere)]) == 2
    assert "dataset processed/dataset_tft/SYN/dataset_tft_SYN.parquet is missing" in capsys.readouterr().err
    assert (copy / "drift_ks_psi_by_fold.csv").read_bytes() == before["drift_ks_psi_by_fold.csv"]

    # --no-drift: the reports are rebuilt, stale drift files go, the summary says why.
    assert main(["regenerate", "--sweep-dir", str(copy), "--data-dir", str(elsewhere), "--no-drift"]) == 0
    assert not (copy / "drift_ks_psi_by_fold.csv").exists()
    assert not (copy / "drift_ks_psi_overall_summary.json").exists()
    assert not (copy / "plots" / "drift_psi_heatmap.png").exists()
    drift = json.loads((copy / "summary.json").read_text())["drift"]
    assert drift["available"] is False and "--no-drift" in drift["reason"] and "is missing" in drift["reason"]
    assert (copy / "config_ranking.csv").read_bytes() == before["config_ranking.csv"]


def test_regenerate_refuses_another_dataset_under_the_same_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_data_root(tmp_path / "data")
    folder = through_the_server(root, tiny_sweep())
    make_data_root(root, seed=9)  # SYN rebuilt from other prices
    assert main(["regenerate", "--sweep-dir", str(folder), "--data-dir", str(root)]) == 2
    assert "is not the one the sweep was trained on" in capsys.readouterr().err


def test_a_folder_whose_database_is_gone_keeps_its_history(tmp_path: Path) -> None:
    """Finish a sweep, delete the database, merge one more seed: the old runs keep their
    metrics and model versions and are not retrained."""
    root = make_data_root(tmp_path / "data")
    first = run_local_sweep(root, ASSET, validate_sweep_config(tiny_sweep()), trainer=fake_train)
    old_rows = {r["run_key"]: r for r in json.loads((first.sweep_dir / "sweep_runs.json").read_text())}
    checkpoints = {p: p.stat().st_mtime_ns for p in first.sweep_dir.rglob("metrics.json")}
    (root / "tftsweep.db").unlink()

    spy = FailingTrainer(set())
    merged = run_local_sweep(
        root, ASSET, validate_sweep_config(tiny_sweep(replica_seeds=[1, 2])), merge=True, trainer=spy
    )
    assert sorted(spy.calls) == ["baseline", "hidden_size=6"]  # only seed 2's runs trained
    assert merged.counts["succeeded"] == 4 and merged.new_runs == 2
    rows = {r["run_key"]: r for r in json.loads((merged.sweep_dir / "sweep_runs.json").read_text())}
    for key, old in old_rows.items():
        assert {k: rows[key][k] for k in ("val_rmse", "test_rmse", "model_version", "status")} == {
            k: old[k] for k in ("val_rmse", "test_rmse", "model_version", "status")
        }
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in checkpoints.items())  # old versions untouched


def test_the_api_adopts_a_folder_before_it_validates_a_merge(tmp_path: Path) -> None:

    from app.api.main import create_app

    root = make_data_root(tmp_path / "data")
    run_local_sweep(root, ASSET, validate_sweep_config(tiny_sweep()), trainer=fake_train)
    (root / "tftsweep.db").unlink()
    queue = RecordingQueue()
    with api_client(create_app(server_settings(root), queue=queue, reaper=False)) as client:
        refused = client.post(
            "/sweeps", json={"asset": ASSET, "config": tiny_sweep(replica_seeds=[2]), "merge_tests": True}
        )
        assert refused.status_code == 409  # validated against the adopted history: seed 1 may not go
        assert [v["field"] for v in refused.json()["violations"]] == ["replica_seeds"]
        sweeps = client.get("/sweeps").json()["data"]
        assert [(s["output_subdir"], s["runs"]["succeeded"]) for s in sweeps] == [("tiny", 2)]
        merged = client.post(
            "/sweeps", json={"asset": ASSET, "config": tiny_sweep(replica_seeds=[1, 2]), "merge_tests": True}
        )
        assert merged.status_code == 202, merged.text
        assert (merged.json()["new_runs"], merged.json()["total_runs"]) == (2, 4)
    assert len(queue.runs) == 2


def test_adopt_command_copies_a_folder_into_the_data_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source_root = make_data_root(tmp_path / "a")
    folder = run_local_sweep(source_root, ASSET, validate_sweep_config(tiny_sweep()), trainer=fake_train).sweep_dir
    target_root = make_data_root(tmp_path / "b")
    monkeypatch.setenv("TFTSWEEP_DATA_DIR", str(target_root))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["adopt", "--sweep-dir", str(folder)]) == 0
    assert "adopted sweep SYN/tiny" in capsys.readouterr().out
    assert (target_root / "models/SYN/sweeps/tiny/sweep_runs.json").is_file()
    with session_scope(open_database(target_root)) as session:
        assert [r.state for r in session.scalars(select(Run))] == ["succeeded", "succeeded"]
    assert main(["adopt", "--sweep-dir", str(target_root / "models/SYN/sweeps/tiny")]) == 0
    assert "already in the database" in capsys.readouterr().out


def test_reports_of_an_unfinished_state_are_written_but_not_published(tmp_path: Path) -> None:
    """A build that read the sweep before its last run was recorded (a leftover message, a
    regenerate mid-sweep) writes files but never sets `reports_at`; the final build does."""
    root = make_data_root(tmp_path / "data")
    settings = server_settings(root)
    factory = open_database(root)
    queue = RecordingQueue()
    submitted = submit_sweep(
        factory, queue, settings, ASSET, validate_sweep_config(tiny_sweep()), merge=False, continue_on_error=False
    )
    ctx = WorkerContext(0, 0, factory, queue, settings, fake_train)
    first, second = queue.runs
    handle_train_run(ctx, first, "t1")
    partial = build_reports(factory, LocalStore(root), submitted.sweep_id, builder="early")
    assert partial is not None and partial["counts"]["runs_by_status"]["succeeded"] == 1
    with session_scope(factory) as session:
        assert session.get_one(Sweep, submitted.sweep_id).reports_at is None

    handle_train_run(ctx, second, "t2")
    final = build_reports(factory, LocalStore(root), submitted.sweep_id, builder="last")
    assert final is not None and final["counts"]["runs_by_status"]["succeeded"] == 2
    with session_scope(factory) as session:
        assert session.get_one(Sweep, submitted.sweep_id).reports_at is not None
        # Any later change to the runs makes the published reports stale again.
        session.execute(update(Run).where(Run.id == first).values(state="queued"))
        from app.db.revisions import touch_sweeps

        touch_sweeps(session, [submitted.sweep_id])
    with session_scope(factory) as session:
        assert session.get_one(Sweep, submitted.sweep_id).reports_at is None


def test_one_report_build_at_a_time(tmp_path: Path) -> None:
    root = make_data_root(tmp_path / "data")
    folder = through_the_server(root, tiny_sweep())
    factory = open_database(root)
    (folder / "summary.json").unlink()
    with session_scope(factory) as session:
        sweep_id = session.scalars(select(Sweep.id)).one()
        assert take_report_lock(session, sweep_id, "other-builder", 60)
    assert build_reports(factory, LocalStore(root), sweep_id, builder="me") is None  # the other build publishes
    assert not (folder / "summary.json").exists()
    with session_scope(factory) as session:
        release_report_lock(session, sweep_id, "other-builder")
    assert build_reports(factory, LocalStore(root), sweep_id, builder="me") is not None
    assert (folder / "summary.json").is_file()


def test_machines_that_share_only_the_database_and_the_object_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An API and two workers, each with its own empty disk: the store ends up holding what the
    local disk holds when one machine does everything, and the API serves it from there."""
    from app.api.main import create_app
    from app.settings import Settings
    from tests.utils.services import object_store, use_s3

    url = use_s3(monkeypatch)
    staging = make_data_root(tmp_path / "staging")
    object_store(staging, url).publish_dataset(ASSET)  # `tftsweep dataset import` elsewhere
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    machines = {
        name: Settings(data_dir=tmp_path / name, database_url=database, redis_url=None, store_url=url)
        for name in ("api", "w1", "w2")
    }
    factory = open_database(tmp_path, database)
    queue = RecordingQueue()
    submitted = submit_sweep(
        factory,
        queue,
        machines["api"],
        ASSET,
        validate_sweep_config(two_fold_sweep()),
        merge=False,
        continue_on_error=False,
    )
    for i, run_id in enumerate(list(queue.runs)):
        ctx = WorkerContext(0, 0, factory, queue, machines[f"w{1 + i % 2}"], fake_train)
        assert handle_train_run(ctx, run_id, f"task-{run_id}") == "succeeded"
    # Nothing is shared but the database and the store: the store holds every version, and a
    # worker keeps none of those it uploaded (its disk is scratch).
    store = machines["api"].store()
    assert isinstance(store, ObjectStore)
    published = store.fs.glob(f"{store.key(store.root / 'models/SYN/sweeps/tiny')}/folds/*/models/*/_manifest.json")
    assert len(published) == 12
    for name in ("w1", "w2"):
        assert not list((tmp_path / name).glob("models/SYN/sweeps/tiny/folds/*/models/*"))
    assert queue.reports == [submitted.sweep_id]
    assert build_reports(factory, machines["w2"].store(), submitted.sweep_id, builder="reports") is not None
    assert not (tmp_path / "api" / "models/SYN/sweeps/tiny/summary.json").exists()

    # What the store holds is what one machine writes on its own disk (timestamps aside): every
    # published folder read whole, below the named calls (which fetch what a reader needs).
    reader = object_store(tmp_path / "reader", url)
    folder = reader.root / "models/SYN/sweeps/tiny"
    assert reader._fetch_folder(folder)
    for manifest in reader.fs.glob(f"{reader.key(folder)}/folds/*/models/*/_manifest.json"):
        reader._fetch_folder(reader.root / Path(manifest).relative_to(Path(reader.base)).parent)
    stored = {k: v for k, v in sweep_files(folder).items() if not k.endswith("_manifest.json")}
    local = sweep_files(through_the_server(make_data_root(tmp_path / "local"), two_fold_sweep()))
    assert sorted(stored) == sorted(local)
    for name in local:
        if name.endswith(".csv") or name.endswith(".json"):
            assert stored[name] == local[name], name

    # The API serves every plot and artifact from the store, with no local copy.
    with api_client(create_app(machines["api"], queue=RecordingQueue(), reaper=False)) as client:
        plots = client.get(f"/sweeps/{submitted.sweep_id}/plots").json()["data"]
        assert len(plots) == len([n for n in stored if n.startswith("plots/")])
        for plot in plots:
            answer = client.get(plot["url"])
            assert answer.headers["content-type"] == "image/png"
            assert answer.content == stored[f"plots/{plot['name']}"]
        csv = client.get(f"/sweeps/{submitted.sweep_id}/artifacts/config_ranking.csv")
        assert csv.headers["content-type"].startswith("text/csv") and csv.content == stored["config_ranking.csv"]
        assert "attachment" in csv.headers["content-disposition"]
        fold_csv = client.get(f"/sweeps/{submitted.sweep_id}/artifacts/config_ranking.csv", params={"fold": "f2"})
        assert fold_csv.content == stored["folds/f2/config_ranking.csv"]
        assert client.get(f"/sweeps/{submitted.sweep_id}/summary").json()["drift"]["available"] is True
        assert client.get(f"/sweeps/{submitted.sweep_id}/drift").json()["available"] is True
        assert [d["asset"] for d in client.get("/datasets").json()["data"]] == [ASSET]
    assert not list((tmp_path / "api").glob("models/SYN/sweeps/tiny/plots/*"))
