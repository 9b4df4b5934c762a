"""The /sweeps API with a real database and a recording queue: every endpoint and error code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.store import LocalStore
from tests.utils.data import ASSET, tiny_fold, tiny_sweep
from tests.utils.fakes import RecordingQueue
from tests.utils.server import api_client, finish_runs


def submit(client: TestClient, config: dict[str, Any] | None = None, **extra: Any) -> Any:
    return client.post("/sweeps", json={"asset": ASSET, "config": config or tiny_sweep(), **extra})


def factory(client: TestClient) -> Any:
    return client.app.state.session_factory  # type: ignore[attr-defined]


def two_fold_sweep(**overrides: Any) -> dict[str, Any]:
    return tiny_sweep(
        replica_seeds=[1, 2],
        walk_forward={"enabled": True, "folds": [tiny_fold("f1", 2012), tiny_fold("f2", 2013)]},
        **overrides,
    )


def test_submit_creates_the_sweep_and_enqueues_its_runs(client: TestClient, queue: RecordingQueue) -> None:
    response = submit(client)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body | {"id": 0} == {
        "id": 0,
        "asset": "SYN",
        "output_subdir": "tiny",
        "status": "queued",
        "new_runs": 2,
        "total_runs": 2,
        "merged": False,
        "effective_folds": None,
    }
    assert response.headers["location"] == f"/sweeps/{body['id']}"
    assert len(queue.runs) == 2
    sweep = client.get(f"/sweeps/{body['id']}").json()
    assert sweep["runs"] == {"queued": 2, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "skipped": 0}
    assert sweep["config"]["training_config"]["gradient_clip_val"] == 0.1


def test_existing_sweep_without_merge_is_409_and_queues_nothing(client: TestClient, queue: RecordingQueue) -> None:
    submit(client)
    response = submit(client)
    assert response.status_code == 409
    assert "merge_tests" in response.json()["detail"]
    assert len(queue.runs) == 2


def test_merge_queues_only_new_runs(client: TestClient, queue: RecordingQueue) -> None:
    first = submit(client).json()
    response = submit(
        client, tiny_sweep(param_ranges={"hidden_size": [4, 6, 8]}, replica_seeds=[1, 2]), merge_tests=True
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["id"], body["new_runs"], body["total_runs"], body["merged"]) == (first["id"], 4, 6, True)
    assert len(queue.runs) == 6 and len(set(queue.runs)) == 6
    runs = client.get(f"/sweeps/{first['id']}/runs").json()
    assert runs["count"] == 6


def test_refused_merge_lists_every_violation_and_writes_nothing(client: TestClient, queue: RecordingQueue) -> None:
    sweep_id = submit(client).json()["id"]
    bad = tiny_sweep(param_ranges={"hidden_size": [6]}, replica_seeds=[2])
    bad["training_config"] = {**bad["training_config"], "dropout": 0.3}
    response = submit(client, bad, merge_tests=True)
    assert response.status_code == 409
    violations = {v["field"]: v for v in response.json()["violations"]}
    assert set(violations) == {"param_ranges.hidden_size", "replica_seeds", "training_config.dropout"}
    assert (violations["training_config.dropout"]["old"], violations["training_config.dropout"]["new"]) == (0.1, 0.3)
    assert client.get(f"/sweeps/{sweep_id}").json()["config"]["replica_seeds"] == [1]
    assert client.get(f"/sweeps/{sweep_id}/runs").json()["count"] == 2
    assert len(queue.runs) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"asset": ASSET, "config": tiny_sweep(replica_seeds=[1, 1])}, "config.replica_seeds"),
        ({"asset": ASSET, "config": tiny_sweep(bogus=1)}, "config.bogus"),
        ({"asset": ASSET, "config": tiny_sweep(param_ranges={"hidden_sz": [1]})}, "config.param_ranges.hidden_sz"),
        ({"asset": "../etc", "config": tiny_sweep()}, "asset"),
        ({"asset": "NODATA", "config": tiny_sweep()}, "dataset"),
        ({"asset": ASSET, "config": tiny_sweep(features=["rsi_14", "nope"])}, "dataset"),
        ({"asset": ASSET}, "config"),
        ({"asset": ASSET, "config": tiny_sweep(), "extra": 1}, "extra"),
        ({"asset": ASSET, "config": tiny_sweep(param_ranges={"max_encoder_length": [10, 900]})}, "dataset"),
    ],
)
def test_invalid_submissions_are_422_naming_the_field(
    client: TestClient, queue: RecordingQueue, body: dict[str, Any], field: str
) -> None:
    response = client.post("/sweeps", json=body)
    assert response.status_code == 422, response.text
    fields = [d["field"] for d in response.json()["detail"]]
    assert field in fields, fields
    assert queue.runs == []
    assert client.get("/sweeps").json()["count"] == 0


def test_plan_over_the_cap_is_422(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.api.main import create_app
    from tests.utils.server import server_settings

    queue = RecordingQueue()
    with api_client(create_app(server_settings(root, max_runs=3), queue=queue, reaper=False)) as small:
        response = small.post("/sweeps", json={"asset": ASSET, "config": two_fold_sweep()})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "(plan)"
    assert "over the cap of 3" in response.json()["detail"][0]["message"]
    assert queue.runs == []


def test_list_paginates_and_filters(client: TestClient) -> None:
    for name in ("a", "b", "c"):
        submit(client, tiny_sweep(output_subdir=name))
    page = client.get("/sweeps", params={"limit": 2}).json()
    assert page["count"] == 3 and [s["output_subdir"] for s in page["data"]] == ["c", "b"]
    assert [s["output_subdir"] for s in client.get("/sweeps", params={"limit": 2, "offset": 2}).json()["data"]] == ["a"]
    assert client.get("/sweeps", params={"asset": "OTHER"}).json()["count"] == 0
    assert client.get("/sweeps", params={"status": "queued"}).json()["count"] == 3
    assert client.get("/sweeps", params={"limit": 0}).status_code == 422


def test_unknown_sweep_and_fold_are_404(client: TestClient) -> None:
    sweep_id = submit(client).json()["id"]
    assert client.get("/sweeps/999").status_code == 404
    for path in ("runs", "ranking", "param-impact", "drift", "summary", "plots"):
        assert client.get(f"/sweeps/999/{path}").status_code == 404
        assert client.get(f"/sweeps/{sweep_id}/{path}", params={"fold": "nope"}).status_code == 404


def test_reports_from_recorded_results(client: TestClient) -> None:
    sweep_id = submit(client, two_fold_sweep()).json()["id"]
    runs = client.get(f"/sweeps/{sweep_id}/runs", params={"limit": 100}).json()["data"]
    by = {(r["config_id"], r["fold"], r["seed"]): r["run_id"] for r in runs}
    finish_runs(
        factory(client),
        {
            by[("baseline", "f1", 1)]: 0.010,
            by[("baseline", "f1", 2)]: 0.012,
            by[("hidden_size=6", "f1", 1)]: 0.009,
            by[("hidden_size=6", "f1", 2)]: 0.011,
            by[("baseline", "f2", 1)]: 0.020,
            by[("hidden_size=6", "f2", 1)]: None,
        },
    )
    sweep = client.get(f"/sweeps/{sweep_id}").json()
    assert sweep["runs"]["succeeded"] == 5 and sweep["runs"]["failed"] == 1
    assert sweep["best_config"] == "hidden_size=6"

    ranking = client.get(f"/sweeps/{sweep_id}/ranking").json()
    assert [r["config_id"] for r in ranking["data"]] == ["hidden_size=6", "baseline"]
    assert ranking["data"][0]["n_runs"] == 2 and ranking["data"][0]["n_failed"] == 1
    assert ranking["data"][0]["robust_score"] == pytest.approx(0.010 + 0.0014142135, rel=1e-6)
    f2 = client.get(f"/sweeps/{sweep_id}/ranking", params={"fold": "f2"}).json()
    assert f2["fold"] == "f2" and [r["config_id"] for r in f2["data"]] == ["baseline", "hidden_size=6"]

    impact = client.get(f"/sweeps/{sweep_id}/param-impact").json()
    assert [d["delta_rmse_vs_baseline"] for d in impact["detail"]] == pytest.approx([-0.001, -0.001])
    assert impact["summary"][0]["win_rate"] == 1.0

    failed = client.get(f"/sweeps/{sweep_id}/runs", params={"state": "failed"}).json()
    assert failed["count"] == 1 and failed["data"][0]["error"] == "RuntimeError: boom"

    summary = client.get(f"/sweeps/{sweep_id}/summary").json()
    assert summary["best_config"]["config_id"] == "hidden_size=6"
    assert summary["counts"]["runs_by_status"]["queued"] == 2
    assert [r["config_id"] for r in summary["failed_runs"]] == ["hidden_size=6"]
    assert client.get(f"/sweeps/{sweep_id}/summary", params={"fold": "f1"}).json()["counts"]["runs"] == 4


def test_rankings_impact_and_summary_say_whether_a_difference_is_real(
    client: TestClient, queue: RecordingQueue
) -> None:
    sweep_id = submit(client, two_fold_sweep()).json()["id"]
    runs = client.get(f"/sweeps/{sweep_id}/runs", params={"limit": 100}).json()["data"]
    by = {(r["config_id"], r["fold"], r["seed"]): r["run_id"] for r in runs}
    vals = {("f1", 1): (0.010, 0.009), ("f1", 2): (0.012, 0.0115), ("f2", 1): (0.020, 0.018), ("f2", 2): (0.016, 0.0)}
    finish_runs(
        factory(client),
        {
            **{by[("baseline", *k)]: base for k, (base, _) in vals.items()},
            **{by[("hidden_size=6", *k)]: var or None for k, (_, var) in vals.items()},  # f2/2 fails
        },
    )
    ranking = {r["config_id"]: r for r in client.get(f"/sweeps/{sweep_id}/ranking").json()["data"]}
    variant = ranking["hidden_size=6"]
    deltas = [-0.001, -0.0005, -0.002]
    assert variant["n_pairs"] == 3 and variant["delta_vs_baseline"] == pytest.approx(sum(deltas) / 3)
    assert variant["ci95_low"] < variant["delta_vs_baseline"] < variant["ci95_high"]
    assert variant["verdict"] == "insufficient"  # 3 pairs: the exact test cannot go below 0.25
    assert ranking["baseline"]["verdict"] == "baseline" and ranking["baseline"]["holm_pvalue"] is None
    # One variant: the simultaneous interval of its Holm family of 1 is the 95% interval.
    assert variant["holm_family"] == 1 and ranking["baseline"]["holm_family"] is None
    assert variant["simultaneous_ci_low"] == pytest.approx(variant["ci95_low"])
    assert variant["simultaneous_ci_high"] == pytest.approx(variant["ci95_high"])
    # Runs below 0.015 val RMSE beat the naive forecast (tests/utils/server.finish_runs).
    assert ranking["baseline"]["dm_better_share"] == pytest.approx(2 / 4)
    assert variant["dm_better_share"] == pytest.approx(2 / 3)
    assert variant["mean_val_rel_rmse"] == pytest.approx((0.009 + 0.0115 + 0.018) / 3 / 0.02)
    assert variant["mean_fold_rank"] == pytest.approx(1.0)
    impact = client.get(f"/sweeps/{sweep_id}/param-impact").json()["summary"][0]
    assert impact["wilcoxon_pvalue"] == pytest.approx(0.25) and impact["verdict"] == "insufficient"
    assert impact["min_detectable_delta"] == pytest.approx(impact["ci95_high"] - impact["avg_delta_rmse_vs_baseline"])
    significance = client.get(f"/sweeps/{sweep_id}/summary").json()["significance"]
    assert significance["alpha"] == 0.05 and significance["pairs_needed"] == 6
    assert "cannot go below 0.25" in significance["sentence"]

    # Alpha changes no run: a merge may change it, and every answer follows at once.
    merged = submit(client, two_fold_sweep(stats={"alpha": 0.3}), merge_tests=True)
    assert merged.status_code == 202, merged.text
    assert merged.json()["new_runs"] == 0 and len(queue.runs) == 8
    variant = next(r for r in client.get(f"/sweeps/{sweep_id}/ranking").json()["data"] if r["config_id"] != "baseline")
    assert variant["holm_pvalue"] == pytest.approx(0.25) and variant["verdict"] == "better"
    significance = client.get(f"/sweeps/{sweep_id}/summary").json()["significance"]
    assert significance["alpha"] == 0.3 and significance["better"] == ["hidden_size=6"]
    assert client.get(f"/sweeps/{sweep_id}/param-impact").json()["summary"][0]["verdict"] == "better"


def test_drift_needs_no_finished_run(client: TestClient) -> None:
    sweep_id = submit(client, two_fold_sweep()).json()["id"]
    drift = client.get(f"/sweeps/{sweep_id}/drift").json()
    assert len(drift["data"]) == 2 * 4 * 2  # folds x features x (val, test)
    assert {"ks_stat", "ks_pvalue", "psi", "psi_band"} <= set(drift["data"][0])
    assert set(drift["overall"]["features"]) == {"ret_5", "vol_10", "rsi_14", "day_of_week"}
    assert len(client.get(f"/sweeps/{sweep_id}/drift", params={"fold": "f2"}).json()["data"]) == 8


def test_plots_and_artifacts(client: TestClient, root: Path) -> None:
    from app.service.reports import build_reports

    sweep_id = submit(client).json()["id"]
    ids = [r["run_id"] for r in client.get(f"/sweeps/{sweep_id}/runs").json()["data"]]
    finish_runs(factory(client), {ids[0]: 0.01, ids[1]: 0.011})
    build_reports(factory(client), LocalStore(root), sweep_id, builder="test")
    assert client.get(f"/sweeps/{sweep_id}").json()["reports_at"] is not None

    plots = client.get(f"/sweeps/{sweep_id}/plots").json()
    names = {p["name"] for p in plots["data"]}
    assert {"config_ranking.png", "param_impact.png", "response_hidden_size.png"} <= names
    image = client.get(plots["data"][0]["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content[:8] == b"\x89PNG\r\n\x1a\n"
    fold_plots = client.get(f"/sweeps/{sweep_id}/plots", params={"fold": "f1"}).json()
    assert fold_plots["count"] == plots["count"]
    assert client.get(fold_plots["data"][0]["url"]).status_code == 200
    assert client.get(f"/sweeps/{sweep_id}/plots/nope.png").status_code == 404

    csv = client.get(f"/sweeps/{sweep_id}/artifacts/config_ranking.csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv.headers["content-disposition"]
    assert csv.text.startswith("rank,config_id,param_name,param_value,n_runs,n_failed")
    summary = client.get(f"/sweeps/{sweep_id}/artifacts/summary.json")
    assert summary.headers["content-type"] == "application/json" and json.loads(summary.content)["asset"] == "SYN"
    fold_file = client.get(f"/sweeps/{sweep_id}/artifacts/sweep_runs.csv", params={"fold": "f1"})
    assert fold_file.status_code == 200
    assert client.get(f"/sweeps/{sweep_id}/artifacts/summary.json", params={"fold": "f1"}).status_code == 404
    for bad in ("secret.txt", "..%2F..%2Ftftsweep.db", "models"):
        assert client.get(f"/sweeps/{sweep_id}/artifacts/{bad}").status_code == 404


def test_cancel_retry_regenerate(client: TestClient, queue: RecordingQueue) -> None:
    sweep_id = submit(client, two_fold_sweep()).json()["id"]
    ids = [r["run_id"] for r in client.get(f"/sweeps/{sweep_id}/runs").json()["data"]]
    finish_runs(factory(client), {ids[0]: 0.01, ids[1]: None})
    cancelled = client.post(f"/sweeps/{sweep_id}/cancel").json()
    assert cancelled["runs"] == 6
    detail = client.get(f"/sweeps/{sweep_id}").json()
    assert detail["status"] == "cancelled"
    assert detail["runs"] == {"queued": 0, "running": 0, "succeeded": 1, "failed": 1, "cancelled": 6, "skipped": 0}
    assert queue.reports == [sweep_id]

    queue.runs.clear()
    retried = client.post(f"/sweeps/{sweep_id}/retry").json()
    assert retried["runs"] == 7
    assert sorted(queue.runs) == sorted(ids[1:])
    assert client.get(f"/sweeps/{sweep_id}").json()["runs"]["queued"] == 7

    assert client.post(f"/sweeps/{sweep_id}/regenerate").status_code == 202
    assert queue.reports == [sweep_id, sweep_id]
    for action in ("cancel", "retry", "regenerate"):
        assert client.post(f"/sweeps/999/{action}").status_code == 404


# -- folds outside the data (issue 22 item 2) -------------------------------------------------


def outside_sweep(**walk: Any) -> dict[str, Any]:
    """f1 trains from 2005 on data that starts 2010-01-01; f2 tests to 2019 on data that ends 2014-01."""
    early = {**tiny_fold("f1", 2012), "train_start": "20050101"}
    late = {**tiny_fold("f2", 2013), "test_end": "20191231"}
    return tiny_sweep(walk_forward={"enabled": True, "folds": [early, late], **walk})


def test_a_fold_outside_the_dataset_is_refused_and_nothing_is_written(
    client: TestClient, queue: RecordingQueue, root: Path
) -> None:
    response = submit(client, outside_sweep())
    assert response.status_code == 422, response.text
    problems = {p["field"]: p["message"] for p in response.json()["detail"]}
    assert set(problems) == {"config.walk_forward.folds[0].train_start", "config.walk_forward.folds[1].test_end"}
    first = problems["config.walk_forward.folds[0].train_start"]
    assert first.startswith(
        "fold f1: train_start 20050101 is before the dataset's first date (SYN's dataset runs 20100101.."
    )
    assert "after the dataset's last date" in problems["config.walk_forward.folds[1].test_end"]
    assert "walk_forward.clip_to_data: true" in first
    assert client.get("/sweeps").json()["count"] == 0
    assert queue.runs == []
    assert not (root / "models" / ASSET / "sweeps" / "tiny").exists()


def test_the_single_split_outside_the_dataset_is_named_by_its_path(client: TestClient) -> None:
    split = {k: v for k, v in tiny_fold("x", 2012).items() if k != "name"} | {"train_start": "20000101"}
    response = submit(client, tiny_sweep(walk_forward={"enabled": False}, split_config=split))
    assert response.status_code == 422
    assert [p["field"] for p in response.json()["detail"]] == ["config.split_config.train_start"]


def test_clip_to_data_accepts_the_fold_and_reports_the_cut_windows(client: TestClient, root: Path) -> None:
    response = submit(client, outside_sweep(clip_to_data=True))
    assert response.status_code == 201, response.text
    folds = response.json()["effective_folds"]
    dataset = client.get("/datasets").json()["data"][0]
    first, last = (dataset[k].replace("-", "") for k in ("first_date", "last_date"))
    assert [(f["name"], f["train_start"], f["test_end"], f["clipped"]) for f in folds] == [
        ("f1", first, "20121231", ["train_start"]),
        ("f2", "20110101", last, ["test_end"]),
    ]
    analysis = json.loads((root / "models" / ASSET / "sweeps" / "tiny" / "analysis_config.json").read_text())
    assert analysis["effective_folds"] == folds
    assert analysis["walk_forward"]["clip_to_data"] is True
    assert analysis["walk_forward"]["folds"][0]["train_start"] == "20050101"  # the config as given


# -- dry run (issue 22 item 7) ----------------------------------------------------------------


def three_variants_six_pairs(**overrides: Any) -> dict[str, Any]:
    """3 variants of hidden_size, 2 folds x 3 seeds: 6 pairs each."""
    return tiny_sweep(
        replica_seeds=[1, 2, 3],
        walk_forward={"enabled": True, "folds": [tiny_fold("f1", 2012), tiny_fold("f2", 2013)]},
        param_ranges={"hidden_size": [6, 8, 10]},
        **overrides,
    )


def test_a_dry_run_plans_and_writes_nothing(client: TestClient, queue: RecordingQueue, root: Path) -> None:
    response = submit(client, three_variants_six_pairs(), dry_run=True)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dry_run"] is True and body["merged"] is False
    plan = body["plan"]
    assert (plan["runs_new"], plan["runs_total"]) == (24, 24)
    assert [(c["config_id"], c["runs_new"]) for c in plan["configs"]] == [
        ("baseline", 6),
        ("hidden_size=6", 6),
        ("hidden_size=8", 6),
        ("hidden_size=10", 6),
    ]
    assert [(f["fold"], f["runs_total"]) for f in plan["folds"]] == [("f1", 12), ("f2", 12)]
    assert [(s["seed"], s["runs_total"]) for s in plan["seeds"]] == [(1, 8), (2, 8), (3, 8)]
    # 6 pairs, 3 variants: 3 * 2 / 2**6 = 0.094 >= 0.05, so "better" cannot be reached; 7 pairs could.
    d = body["detectability"]
    assert (d["pairs_per_variant"], d["family"]) == (6, 3)
    assert d["smallest_pvalue_after_holm"] == pytest.approx(3 * 2 / 2**6)
    assert d["better_reachable"] is False and d["pairs_needed"] == 7
    assert "no outcome can give 'better'" in d["sentence"]
    assert body["estimate"] is None and body["estimate_reason"].startswith("no estimate")
    assert d["min_detectable_delta"] is None  # no past runs to take a seed spread from
    # Nothing recorded, queued or written.
    assert client.get("/sweeps").json()["count"] == 0
    assert queue.runs == [] and queue.reports == []
    assert not (root / "models").exists()
    # The same body without dry_run is a real submission.
    assert submit(client, three_variants_six_pairs()).status_code == 201


def test_a_dry_run_answers_the_same_refusals_as_a_submission(client: TestClient) -> None:
    assert submit(client, outside_sweep(), dry_run=True).status_code == 422
    assert submit(client, tiny_sweep(param_ranges={"nope": [1]}), dry_run=True).status_code == 422
    assert submit(client, dry_run=True).status_code == 200
    assert submit(client).status_code == 201
    exists = submit(client, dry_run=True)
    assert exists.status_code == 409 and "merge_tests" in exists.json()["detail"]
    fewer = tiny_sweep(param_ranges={"hidden_size": [6]})
    assert submit(client, fewer, merge_tests=True, dry_run=True).status_code == 409  # a value removed
    more = submit(client, tiny_sweep(param_ranges={"hidden_size": [4, 6, 8]}), merge_tests=True, dry_run=True)
    assert more.status_code == 200, more.text
    assert more.json()["merged"] is True
    assert (more.json()["plan"]["runs_new"], more.json()["plan"]["runs_total"]) == (1, 3)
    assert client.get("/sweeps/1").json()["total_runs"] == 2  # the merge was not made


def test_a_dry_run_estimates_from_recorded_runs(client: TestClient, queue: RecordingQueue) -> None:
    from scipy import stats

    first = submit(client, two_fold_sweep()).json()["id"]
    runs = client.get(f"/sweeps/{first}/runs").json()["data"]
    # val RMSE by (config, fold): seed 1 and seed 2 differ by a known spread.
    spread = {1: 0.010, 2: 0.013}
    finish_runs(factory(client), {r["run_id"]: spread[r["seed"]] + 0.001 * (r["fold"] == "f2") for r in runs})
    body = submit(client, three_variants_six_pairs(output_subdir="next"), dry_run=True).json()
    guess = body["estimate"]
    # finish_runs records 0.5 s per run; the baseline (hidden_size 4) has similar runs, 8 and 10 none.
    assert guess["seconds"] == pytest.approx(0.5 * 24)
    bases = {c["config_id"]: (c["basis"], c["from_runs"]) for c in guess["per_config"]}
    assert bases["baseline"] == ("similar", 4) and bases["hidden_size=6"] == ("similar", 4)
    assert bases["hidden_size=10"] == ("any", 8)
    # Every (config, fold) group has the two seeds 0.003 apart: sd = 0.003 / sqrt(2).
    d = body["detectability"]
    sd = 0.003 / 2**0.5
    assert d["seed_sd"] == pytest.approx(sd) and d["seed_sd_runs"] == 8
    assert d["min_detectable_delta"] == pytest.approx(stats.t.ppf(0.975, 5) * 2**0.5 * sd / 6**0.5)
    assert d["min_detectable_delta_simultaneous"] == pytest.approx(stats.t.ppf(1 - 0.05 / 6, 5) * 2**0.5 * sd / 6**0.5)


def test_an_empty_body_and_an_empty_config_list_every_missing_key(client: TestClient) -> None:
    body = client.post("/sweeps", json={})
    assert body.status_code == 422
    assert {p["field"] for p in body.json()["detail"]} == {"asset", "config"}
    config = client.post("/sweeps", json={"asset": ASSET, "config": {}, "dry_run": True})
    assert config.status_code == 422
    assert [p["field"] for p in config.json()["detail"]] == ["config.output_subdir", "config.split_config"]


def test_a_sweep_stored_before_clip_to_data_merges_and_may_turn_it_on(client: TestClient) -> None:
    from app.db.models import Sweep
    from app.db.session import session_scope

    sweep_id = submit(client).json()["id"]
    with session_scope(factory(client)) as session:  # as a sweep recorded before the key existed
        sweep = session.get_one(Sweep, sweep_id)
        stored = json.loads(sweep.config_json)
        del stored["walk_forward"]["clip_to_data"]
        sweep.config_json = json.dumps(stored)
    assert client.get(f"/sweeps/{sweep_id}").json()["config"]["walk_forward"] == {
        "enabled": True,
        "folds": [tiny_fold("f1", 2012)],
    }
    seeds = submit(client, tiny_sweep(replica_seeds=[1, 2]), merge_tests=True)
    assert seeds.status_code == 202, seeds.text
    assert seeds.json()["new_runs"] == 2
    walk = {"enabled": True, "folds": [tiny_fold("f1", 2012)], "clip_to_data": True}
    clipped = submit(client, tiny_sweep(replica_seeds=[1, 2], walk_forward=walk), merge_tests=True)
    assert clipped.status_code == 202, clipped.text
    assert clipped.json()["new_runs"] == 0 and clipped.json()["effective_folds"][0]["clipped"] == []


def test_features_are_resolved_once_at_submission_and_stored_with_the_sweep(client: TestClient) -> None:
    """The run spec reads the features resolved when the sweep was planned; a sweep recorded
    before they were stored resolves them on reading; the API's config stays the submitted one."""
    from sqlalchemy import select

    from app.db.models import Run, Sweep
    from app.db.session import session_scope
    from app.db.sweeps import FEATURES_KEY
    from app.service.runs import run_spec
    from core.feature_sets import resolve_features

    sweep_id = submit(client).json()["id"]
    expected = resolve_features(tiny_sweep()["features"])
    with session_scope(factory(client)) as session:
        sweep = session.get_one(Sweep, sweep_id)
        assert json.loads(sweep.config_json)[FEATURES_KEY] == expected
        run = session.scalars(select(Run).where(Run.sweep_id == sweep_id)).first()
        assert run is not None
        spec = run_spec(session, run, Path("/data"))
        assert spec.features == expected and spec.fold.name == run.fold
        assert spec.training.model_dump(mode="json") == json.loads(run.params_json)
    detail = client.get(f"/sweeps/{sweep_id}").json()["config"]
    assert FEATURES_KEY not in detail and detail["features"] == tiny_sweep()["features"]
    with session_scope(factory(client)) as session:  # as a sweep recorded before the key existed
        sweep = session.get_one(Sweep, sweep_id)
        stored = json.loads(sweep.config_json)
        del stored[FEATURES_KEY]
        sweep.config_json = json.dumps(stored)
    with session_scope(factory(client)) as session:
        run = session.scalars(select(Run).where(Run.sweep_id == sweep_id)).first()
        assert run is not None
        assert run_spec(session, run, Path("/data")).features == expected
