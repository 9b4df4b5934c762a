"""End to end: `tftsweep serve` (API + embedded Celery worker + reaper) with real training.

One server is shared by the tests of this module; each test uses its own sweep.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.utils.data import ASSET, make_data_root, tiny_fold, tiny_study, tiny_sweep
from tests.utils.processes import ServerProcess, check_full_sweep_and_merge
from worker.cli import main as cli_main

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = make_data_root(tmp_path_factory.mktemp("e2e") / "data")
    proc = ServerProcess(root).start()
    yield proc
    proc.stop()


def submit(server: ServerProcess, config: dict[str, Any], **extra: Any) -> Any:
    return server.client.post("/sweeps", json={"asset": ASSET, "config": config, **extra})


def two_folds(name: str, **overrides: Any) -> dict[str, Any]:
    return tiny_sweep(
        output_subdir=name,
        walk_forward={"enabled": True, "folds": [tiny_fold("f1", 2012), tiny_fold("f2", 2013)]},
        **overrides,
    )


def block_fold(server: ServerProcess, name: str, fold: str) -> Path:
    """Make publishing a fold's model versions fail: a file where its models/ folder must go."""
    blocker = server.root / "models" / ASSET / "sweeps" / name / "folds" / fold / "models"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    return blocker


def test_full_sweep_then_a_merge_that_trains_only_new_runs(server: ServerProcess) -> None:
    check_full_sweep_and_merge(server)


def test_malformed_broker_files_are_set_aside_and_runs_still_train(server: ServerProcess) -> None:
    queue = server.root / "broker" / "queue"
    (queue / "00000000000000000001_planted-empty.gpu.msg").write_bytes(b"")
    (queue / "00000000000000000002_planted-garbage.gpu.msg").write_bytes(b"\x00\xffnot a message")
    sweep_id = submit(server, tiny_sweep(output_subdir="after_garbage", param_ranges={})).json()["id"]
    assert server.wait_sweep(sweep_id, timeout=120)["status"] == "succeeded"
    bad = sorted(p.name for p in (server.root / "broker" / "bad").iterdir())
    assert bad == ["00000000000000000001_planted-empty.gpu.msg", "00000000000000000002_planted-garbage.gpu.msg"]
    log = server.log.read_text()
    assert all(f"malformed message file {name}" in log for name in bad)
    assert server.client.get("/healthz").json()["live_workers"] == 1


def test_a_server_sweep_regenerates_from_a_copy_of_its_folder(server: ServerProcess, tmp_path: Path) -> None:
    sweep_id = submit(server, two_folds("copied", replica_seeds=[1, 2])).json()["id"]
    assert server.wait_sweep(sweep_id)["status"] == "succeeded"
    folder = server.root / "models" / ASSET / "sweeps" / "copied"
    assert server.client.get(f"/sweeps/{sweep_id}/artifacts/analysis_config.json").json()["asset"] == ASSET
    reports = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*.csv")}
    reports = {rel: data for rel, data in reports.items() if "models" not in rel.parts}
    assert Path("drift_ks_psi_by_fold.csv") in reports and len(reports) == 6 + 2 * 4  # sweep level, and 4 per fold
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    for rel in reports:
        (copy / rel).unlink()
    assert cli_main(["regenerate", "--sweep-dir", str(copy), "--data-dir", str(server.root), "--no-plots"]) == 0
    for rel, data in reports.items():
        assert (copy / rel).read_bytes() == data, rel


def test_refused_merge_changes_nothing(server: ServerProcess) -> None:
    sweep_id = submit(server, tiny_sweep(output_subdir="refused")).json()["id"]
    server.wait_sweep(sweep_id)
    response = submit(server, tiny_sweep(output_subdir="refused", replica_seeds=[9]), merge_tests=True)
    assert response.status_code == 409
    assert [v["field"] for v in response.json()["violations"]] == ["replica_seeds"]
    assert submit(server, tiny_sweep(output_subdir="refused")).status_code == 409
    assert server.sweep(sweep_id)["total_runs"] == 2


def test_first_failure_cancels_the_rest_then_retry_completes(server: ServerProcess) -> None:
    blocker = block_fold(server, "failfast", "f1")
    sweep_id = submit(server, two_folds("failfast")).json()["id"]
    sweep = server.wait_sweep(sweep_id)
    assert sweep["status"] == "failed"
    # Whatever ran before the failure stays; everything still queued was cancelled.
    assert sweep["runs"]["failed"] == 1 and sweep["runs"]["cancelled"] >= 1
    assert sweep["runs"]["succeeded"] + sweep["runs"]["cancelled"] == 3
    failed = server.client.get(f"/sweeps/{sweep_id}/runs", params={"state": "failed"}).json()["data"][0]
    assert "FileExistsError" in failed["error"] or "NotADirectoryError" in failed["error"]

    blocker.unlink()
    retried = server.client.post(f"/sweeps/{sweep_id}/retry").json()
    assert retried["runs"] == 1 + sweep["runs"]["cancelled"]
    time.sleep(0.5)
    assert server.wait_sweep(sweep_id)["status"] == "succeeded"


def test_continue_on_error_goes_on(server: ServerProcess) -> None:
    block_fold(server, "goeson", "f1")
    sweep_id = submit(server, two_folds("goeson"), continue_on_error=True).json()["id"]
    sweep = server.wait_sweep(sweep_id)
    assert sweep["status"] == "partial"
    assert (sweep["runs"]["failed"], sweep["runs"]["succeeded"], sweep["runs"]["cancelled"]) == (2, 2, 0)
    summary = server.client.get(f"/sweeps/{sweep_id}/summary").json()
    assert {r["fold"] for r in summary["failed_runs"]} == {"f1"}


def test_cancel_stops_a_running_run(server: ServerProcess) -> None:
    long = tiny_sweep(output_subdir="cancelme")
    long["training_config"] |= {"max_epochs": 500, "limit_train_batches": None, "early_stopping_patience": 500}
    sweep_id = submit(server, long).json()["id"]
    server.wait(lambda: server.sweep(sweep_id)["runs"]["running"] == 1, 60, "a run to start")
    time.sleep(1)
    started = time.monotonic()
    assert server.client.post(f"/sweeps/{sweep_id}/cancel").json()["runs"] == 2
    # The worker lets go within seconds: the next sweep's run gets trained.
    follow = submit(server, tiny_sweep(output_subdir="after_cancel", param_ranges={})).json()["id"]
    assert server.wait_sweep(follow, timeout=60)["status"] == "succeeded"
    assert time.monotonic() - started < 45
    sweep = server.sweep(sweep_id)
    assert sweep["status"] == "cancelled" and sweep["runs"]["cancelled"] == 2


def test_reaper_recovers_a_run_whose_message_was_lost(server: ServerProcess) -> None:
    """Runs recorded in the database with no broker message get sent by the reaper."""
    from app.service.submission import submit_sweep
    from app.settings import Settings
    from core.config import validate_sweep_config
    from tests.utils.fakes import RecordingQueue
    from worker.local_sweep import open_database

    settings = Settings(data_dir=server.root, database_url=None, redis_url=None)
    lost = RecordingQueue()  # the "broker" that loses every message
    submitted = submit_sweep(
        open_database(server.root),
        lost,
        settings,
        ASSET,
        validate_sweep_config(tiny_sweep(output_subdir="lost")),
        merge=False,
        continue_on_error=False,
    )
    assert len(lost.runs) == 2
    sweep = server.wait_sweep(submitted.sweep_id, timeout=90)
    assert sweep["status"] == "succeeded" and sweep["runs"]["succeeded"] == 2


def test_hpo_study_then_its_top_k_as_a_sweep(server: ServerProcess) -> None:
    created = server.client.post(
        "/hpo", json={"asset": ASSET, "config": tiny_study(output_subdir="e2e_study", n_trials=3)}
    )
    assert created.status_code == 201, created.text
    study_id = created.json()["id"]
    study = server.wait(
        lambda: (s := server.client.get(f"/hpo/{study_id}").json())["status"] in ("succeeded", "failed") and s,
        180,
        "the study to finish",
    )
    assert study["status"] == "succeeded", study
    assert study["summary"]["n_trials"]["complete"] + study["summary"]["n_trials"]["pruned"] == 3
    top = server.client.get(f"/hpo/{study_id}/top-k").json()["data"]
    assert top and top[0]["source"]["rank"] == 1
    plots = server.client.get(f"/hpo/{study_id}/plots").json()["data"]
    assert server.client.get(plots[0]["url"]).headers["content-type"] == "image/png"

    sweep = server.client.post(
        f"/hpo/{study_id}/sweep", json={"config": tiny_sweep(output_subdir="e2e_topk", param_ranges={})}
    )
    assert sweep.status_code == 201, sweep.text
    finished = server.wait_sweep(sweep.json()["id"])
    assert finished["status"] == "succeeded"
    ranking = server.client.get(f"/sweeps/{sweep.json()['id']}/ranking").json()["data"]
    assert {r["config_id"] for r in ranking} == {"baseline", *(t["name"] for t in top)}
