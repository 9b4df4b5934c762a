"""/hpo with a recording queue: submit, continue, refuse, read artifacts, top-k into a sweep."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from tests.unit.test_hpo_config import hpo_dict
from tests.utils.data import ASSET, tiny_sweep
from tests.utils.fakes import RecordingQueue
from tests.utils.processes import create_postgres_database
from tests.utils.server import api_client, server_settings
from tests.utils.services import service_url


def post(client: TestClient, config: dict[str, Any]) -> Any:
    return client.post("/hpo", json={"asset": ASSET, "config": config})


def test_submit_queues_one_task_for_a_sqlite_study(client: TestClient, queue: RecordingQueue) -> None:
    response = post(client, hpo_dict())
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["status"], body["tasks"], body["summary"]) == ("queued", 1, None)
    assert queue.studies == [body["id"]]
    assert client.get("/hpo").json()["count"] == 1
    assert client.get(f"/hpo/{body['id']}").json()["output_subdir"] == "study"


def test_a_study_on_a_configured_server_storage_gets_parallel_tasks(root: Path, queue: RecordingQueue) -> None:
    storages = {"shared": "postgresql+psycopg://u@localhost/optuna"}
    with api_client(create_app(server_settings(root, hpo_storages=storages), queue=queue, reaper=False)) as client:
        response = post(client, hpo_dict(storage="shared", n_trials=3))
        assert response.status_code == 201, response.text
        assert response.json()["tasks"] == 3 and len(queue.studies) == 3


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("sqlite:////some/where/else.db", "must not contain path separators"),  # a URL is never a storage name
        ("postgresql+psycopg://x@any-host/db", "must not contain path separators"),
        ("elsewhere", "no study storage named 'elsewhere'; configured: none"),
    ],
)
def test_a_client_cannot_choose_where_a_study_is_stored(
    client: TestClient, queue: RecordingQueue, root: Path, storage: str, message: str
) -> None:
    response = post(client, hpo_dict(storage=storage))
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["field"] == "config.storage" and message in problem["message"]
    assert queue.studies == [] and client.get("/hpo").json()["count"] == 0
    assert sorted(p.name for p in root.rglob("*.db")) == ["tftsweep.db"]  # only the server's own database


def test_resubmitting_continues_or_refuses(client: TestClient, queue: RecordingQueue) -> None:
    study_id = post(client, hpo_dict()).json()["id"]
    more = post(client, hpo_dict(n_trials=10))
    assert more.status_code == 202 and more.json()["id"] == study_id
    assert queue.studies == [study_id, study_id]
    changed = post(client, hpo_dict(objective="robust_score"))
    assert changed.status_code == 409 and "objective" in changed.json()["detail"]
    assert len(queue.studies) == 2


def test_a_study_stored_before_the_baseline_rules_continues(client: TestClient, queue: RecordingQueue) -> None:
    """Its stored config has the old default pruner and no `walk_forward.clip_to_data`: the same
    submission again continues it (202, its pruner kept) instead of 409."""
    from sqlalchemy import update

    from app.db.models import Study
    from app.db.session import session_scope
    from core.hpo_config import LEGACY_DEFAULT_PRUNER

    study_id = post(client, hpo_dict()).json()["id"]
    stored = client.get(f"/hpo/{study_id}").json()["config"]
    stored["pruner"] = dict(LEGACY_DEFAULT_PRUNER)
    stored["walk_forward"].pop("clip_to_data")
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    with session_scope(factory) as session:
        session.execute(update(Study).where(Study.id == study_id).values(config_json=json.dumps(stored)))
    again = post(client, hpo_dict(n_trials=6))
    assert again.status_code == 202, again.text
    assert again.json()["config"]["pruner"] == LEGACY_DEFAULT_PRUNER and again.json()["config"]["n_trials"] == 6


def at_once(client: TestClient, configs: list[dict[str, Any]]) -> list[int]:
    """POST every config to /hpo at the same moment (a thread each, released together); the statuses."""
    start = threading.Barrier(len(configs))
    codes: list[int] = []

    def send(config: dict[str, Any]) -> None:
        start.wait(timeout=30)
        codes.append(post(client, config).status_code)

    threads = [threading.Thread(target=send, args=(config,)) for config in configs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(codes)


def check_concurrent_submissions(settings: Any) -> None:
    """Rounds of 6 identical submissions at once: one creates the study (201), the others
    continue it (202); then 6 at once with another config, refused (409). Never a 500."""
    queue = RecordingQueue()
    app = create_app(settings, queue=queue, reaper=False)
    with api_client(app, raise_server_exceptions=False) as client:
        started = time.perf_counter()
        for name in ("s1", "s2", "s3"):
            assert at_once(client, [hpo_dict(output_subdir=name)] * 6) == [201] + [202] * 5
        assert at_once(client, [hpo_dict(output_subdir="s1", objective="robust_score")] * 6) == [409] * 6
        elapsed = time.perf_counter() - started
        listed = client.get("/hpo")
        assert listed.status_code == 200, listed.text
        studies = listed.json()
    assert sorted(s["output_subdir"] for s in studies["data"]) == ["s1", "s2", "s3"]
    assert len(queue.studies) == 18  # each accepted submission queued its task, after its commit
    assert elapsed < 30, f"24 submissions took {elapsed:.1f}s"


def test_concurrent_submissions_of_one_study_are_serialised(root: Path) -> None:
    check_concurrent_submissions(server_settings(root))


def test_concurrent_submissions_of_one_study_are_serialised_on_postgres(root: Path) -> None:
    url = create_postgres_database(service_url("TFTSWEEP_TEST_DATABASE_URL"))
    check_concurrent_submissions(server_settings(root, database_url=url))


def test_invalid_studies_are_422(client: TestClient, queue: RecordingQueue) -> None:
    bad = post(client, hpo_dict(search_space={"hidden_sz": {"type": "int", "low": 1, "high": 3}}))
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["field"] == "config.search_space.hidden_sz"
    assert post(client, hpo_dict(features=["nope"])).json()["detail"][0]["field"] == "dataset"
    assert queue.studies == []


def test_a_study_answers_its_effective_config_for_the_top_k_form(client: TestClient) -> None:
    """GET /hpo/{id} (and the list, and the submission's own answer) carry the study's config with
    its defaults filled in: the folds, seeds, features and baseline a top-k sweep starts from. A
    continued study answers the config it continues with."""
    from core.hpo_config import validate_hpo_config

    config = hpo_dict(replica_seeds=[3, 4])
    created = post(client, config)
    assert created.status_code == 201, created.text
    study_id = created.json()["id"]
    effective = validate_hpo_config(config).to_json_dict()
    answered = client.get(f"/hpo/{study_id}").json()["config"]
    assert answered == effective == created.json()["config"]
    assert answered["replica_seeds"] == [3, 4]
    assert answered["walk_forward"]["folds"] == config["walk_forward"]["folds"]
    assert answered["training_config"]["learning_rate"] == config["training_config"]["learning_rate"]
    assert "max_encoder_length" in answered["training_config"]  # defaults filled in
    assert client.get("/hpo").json()["data"][0]["config"] == effective

    continued = post(client, {**config, "n_trials": config["n_trials"] + 5})
    assert continued.status_code == 202, continued.text
    assert client.get(f"/hpo/{study_id}").json()["config"]["n_trials"] == config["n_trials"] + 5
    described = client.get("/openapi.json").json()["components"]["schemas"]["StudyPublic"]["properties"]["config"]
    assert "top-k sweep" in described["description"]


def test_artifacts_and_top_k_into_a_sweep(client: TestClient, queue: RecordingQueue, root: Path) -> None:
    study_id = post(client, hpo_dict()).json()["id"]
    assert client.get(f"/hpo/{study_id}/trials").json() == {"data": [], "count": 0}
    assert client.get(f"/hpo/{study_id}/best").status_code == 404
    sweep_body = {"config": tiny_sweep(output_subdir="topk", param_ranges={})}
    assert client.post(f"/hpo/{study_id}/sweep", json=sweep_body).status_code == 409

    out = root / "models/SYN/optuna/study"
    out.mkdir(parents=True)
    top = [
        {
            "name": "optuna_t003",
            "params": {"hidden_size": 6, "learning_rate": 0.02},
            "source": {"trial": 3, "value": 0.01},
        }
    ]
    (out / "optuna_top_k_configs.json").write_text(json.dumps(top))
    (out / "optuna_trials.json").write_text(json.dumps([{"number": 3, "state": "complete", "value": 0.01}]))
    assert client.get(f"/hpo/{study_id}/top-k").json()["data"] == top
    assert client.get(f"/hpo/{study_id}/trials").json()["count"] == 1
    assert client.get(f"/hpo/{study_id}/plots").json()["count"] == 0
    # Traversal names that survive the HTTP client (it would normalise a plain `..` away) reach
    # the handler, which serves only the study's known plot names.
    for raw, name in (("%2E%2E", ".."), ("..%5C..%5Ctftsweep.db", "..\\..\\tftsweep.db")):
        response = client.get(f"/hpo/{study_id}/plots/{raw}")
        assert response.url.raw_path.endswith(raw.encode())  # sent as written
        assert (response.status_code, response.json()["detail"]) == (404, f"no plot {name!r}")
    assert client.get(f"/hpo/{study_id}/plots/hpo_config.json").status_code == 404

    created = client.post(f"/hpo/{study_id}/sweep", json=sweep_body)
    assert created.status_code == 201, created.text
    sweep = client.get(f"/sweeps/{created.json()['id']}").json()
    assert [c["name"] for c in sweep["config"]["configs"]] == ["optuna_t003"]
    assert sweep["total_runs"] == 2  # baseline and the candidate, one fold, one seed
    with_configs = {"config": tiny_sweep(output_subdir="x", configs=top)}
    assert client.post(f"/hpo/{study_id}/sweep", json=with_configs).status_code == 422
    for path in ("", "/trials", "/top-k", "/plots", "/best"):
        assert client.get(f"/hpo/999{path}").status_code == 404


def test_a_studys_top_k_joins_the_ofat_sweep_that_holds_the_baseline(
    client: TestClient, queue: RecordingQueue, root: Path
) -> None:
    """An OFAT sweep first; then the study's top-k merged into it: only the new configs' runs."""
    ofat = tiny_sweep(output_subdir="ofat")  # baseline and hidden_size=6, one fold, one seed
    first = client.post("/sweeps", json={"asset": ASSET, "config": ofat})
    assert first.status_code == 201, first.text
    study_id = post(client, hpo_dict()).json()["id"]
    out = root / "models/SYN/optuna/study"
    out.mkdir(parents=True)
    top = [
        {"name": "optuna_t003", "params": {"hidden_size": 8, "learning_rate": 0.02}, "source": {"trial": 3}},
        {"name": "optuna_t001", "params": {"learning_rate": 0.05}, "source": {"trial": 1}},
    ]
    (out / "optuna_top_k_configs.json").write_text(json.dumps(top))
    merged = client.post(f"/hpo/{study_id}/sweep", json={"config": ofat, "merge_tests": True})
    assert merged.status_code == 202, merged.text  # a merge answers 202 (a new sweep 201)
    body = merged.json()
    assert (body["id"], body["merged"], body["new_runs"], body["total_runs"]) == (first.json()["id"], True, 2, 4)
    sweep = client.get(f"/sweeps/{body['id']}").json()
    assert [c["name"] for c in sweep["config"]["configs"]] == ["optuna_t003", "optuna_t001"]
    # The same top-k again adds nothing; a study whose top-k lost a config is refused by its path.
    again = client.post(f"/hpo/{study_id}/sweep", json={"config": ofat, "merge_tests": True})
    assert (again.status_code, again.json()["new_runs"]) == (202, 0)
    (out / "optuna_top_k_configs.json").write_text(json.dumps(top[:1]))
    refused = client.post(f"/hpo/{study_id}/sweep", json={"config": ofat, "merge_tests": True})
    assert refused.status_code == 409
    assert "configs[1]" in refused.text and "'optuna_t001' may not be removed" in refused.text


def test_the_study_answer_says_whether_the_best_beats_the_baseline(client: TestClient, root: Path) -> None:
    import optuna
    from optuna.distributions import BaseDistribution, FloatDistribution
    from optuna.trial import create_trial

    from core.hpo_config import validate_hpo_config
    from core.hpo_report import write_hpo_artifacts

    config = hpo_dict(search_space={"learning_rate": {"type": "float", "low": 0.001, "high": 0.1, "log": True}})
    study_id = post(client, config).json()["id"]
    study = optuna.create_study(direction="minimize")
    for lr, rmse, attrs in ((0.01, 1.0, {"baseline": True}), (0.02, 0.9, {})):
        runs = [{"fold": "f1", "seed": 1, "val_rmse": rmse, "val_naive_rmse": 1.2, "test_rmse": rmse}]
        distributions: dict[str, BaseDistribution] = {"learning_rate": FloatDistribution(0.001, 0.1, log=True)}
        study.add_trial(
            create_trial(
                params={"learning_rate": lr},
                distributions=distributions,
                value=rmse,
                user_attrs={**attrs, "runs": runs},
            )
        )
    write_hpo_artifacts(study, validate_hpo_config(config), root / "models/SYN/optuna/study", asset=ASSET, plots=False)
    summary = client.get(f"/hpo/{study_id}").json()["summary"]
    comparison = summary["comparison"]
    assert (comparison["baseline_trial"], comparison["best_trial"], comparison["below_baseline"]) == (0, 1, True)
    assert comparison["test"]["verdict"] == "insufficient"  # one pair: lower, but not shown to be
    assert comparison["beats_baseline"] is False and comparison["below_naive"] is True
    assert comparison["beats_naive"] is False
    assert "insufficient" in comparison["sentence"]
    assert summary["importances"] == {"status": "not enough trials", "complete": 2, "needed": 5}
