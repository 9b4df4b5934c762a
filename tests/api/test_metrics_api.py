"""A registered metric reaches the API with no other change: `/runs` carries its columns, and
`/ranking?metric=` re-ranks the configs by it, from the database, without a rebuild."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.service.runs import train_run
from core.metrics import metric_columns
from core.references import REFERENCES
from core.runs import RUN_COLUMNS, SCORED_FROM, SCORED_WITH, RunOutcome, RunSpec
from tests.utils.data import ASSET, tiny_sweep
from tests.utils.fakes import fake_train
from tests.utils.metrics import toy_metric_registered

# Per config (val RMSE, toy bias) of seed 1; seed 2 adds 10% to each. The baseline has the lower
# RMSE, the variant the lower bias: the two metrics rank the configs in opposite orders.
SCORES = {"baseline": (0.010, 0.5), "hidden_size=6": (0.012, 0.1)}


def toy_trainer(spec: RunSpec, stop_requested: Callable[[], bool] | None = None) -> RunOutcome:
    """`fake_train`, with `SCORES`' val RMSE and the toy metric on both splits, and the scoring
    marks the real trainer adds."""
    outcome = fake_train(spec, stop_requested)
    rmse, bias = (value * (1 + 0.1 * (spec.seed - 1)) for value in SCORES[spec.config_id])
    assert outcome.metrics is not None
    outcome.metrics |= {
        "val_rmse": rmse,
        "val_toy_abs_bias": bias,
        "test_toy_abs_bias": bias / 2,
        SCORED_WITH: "a scoring key",
        SCORED_FROM: "training",
    }
    return outcome


def finished_sweep(client: TestClient) -> int:
    """A sweep of two configs and two seeds, every run trained by `toy_trainer` through the
    service (claim, train, record)."""
    answer = client.post("/sweeps", json={"asset": ASSET, "config": tiny_sweep(replica_seeds=[1, 2])})
    assert answer.status_code == 201, answer.text
    sweep_id: int = answer.json()["id"]
    state = client.app.state  # type: ignore[attr-defined]
    for run in client.get(f"/sweeps/{sweep_id}/runs").json()["data"]:
        trained = train_run(
            state.session_factory, state.settings.store(), run["run_id"], "test-worker", toy_trainer, lease_seconds=60
        )
        assert trained.text == "succeeded", trained.text
    return sweep_id


@pytest.fixture
def toy() -> Any:
    with toy_metric_registered() as name:
        yield name


def test_runs_carry_every_registered_metric_column_and_no_scoring_mark(client: TestClient, toy: str) -> None:
    sweep_id = finished_sweep(client)
    runs = client.get(f"/sweeps/{sweep_id}/runs").json()["data"]
    assert len(runs) == 4
    columns = metric_columns(list(REFERENCES))
    assert f"val_{toy}" in columns
    for run in runs:
        assert set(columns) <= set(run), set(columns) - set(run)
        assert SCORED_WITH not in run and SCORED_FROM not in run
        rmse, bias = (value * (1 + 0.1 * (run["seed"] - 1)) for value in SCORES[run["config_id"]])
        assert run[f"val_{toy}"] == pytest.approx(bias) and run[f"test_{toy}"] == pytest.approx(bias / 2)
        assert run["val_rmse"] == pytest.approx(rmse)
        # The fake trainer computes none of the other registered metrics: null, not missing.
        assert run["val_dir_acc"] is None
        assert all(run[c] is None for c in columns if c not in RUN_COLUMNS and "toy" not in c)


def test_the_ranking_follows_the_metric_asked_for(client: TestClient, toy: str) -> None:
    sweep_id = finished_sweep(client)
    default = client.get(f"/sweeps/{sweep_id}/ranking").json()
    assert default["metric"] == "val_rmse"
    assert [r["config_id"] for r in default["data"]] == ["baseline", "hidden_size=6"]
    assert f"val_{toy}" in default["metrics"] and "val_rmse" in default["metrics"]
    assert "val_coverage_80" not in default["metrics"]  # no direction: it cannot rank

    by_toy = client.get(f"/sweeps/{sweep_id}/ranking", params={"metric": f"val_{toy}"})
    assert by_toy.status_code == 200, by_toy.text
    answer = by_toy.json()
    assert answer["metric"] == f"val_{toy}" and answer["metrics"] == default["metrics"]
    assert [r["config_id"] for r in answer["data"]] == ["hidden_size=6", "baseline"]
    assert [r["rank"] for r in answer["data"]] == [1, 2]
    variant = answer["data"][0]
    biases = [0.1, 0.11]
    mean, std = sum(biases) / 2, abs(biases[1] - biases[0]) / 2**0.5
    assert variant[f"mean_val_{toy}"] == pytest.approx(mean)
    assert variant[f"std_val_{toy}"] == pytest.approx(std)
    assert variant[f"mean_test_{toy}"] == pytest.approx(mean / 2)
    assert variant["rank_score"] == pytest.approx(mean + std)  # lower is better: mean + std
    # The seed's columns keep their meaning: robust_score is still that of val RMSE.
    assert variant["robust_score"] == default["data"][1]["robust_score"]
    # The columns in config_ranking.csv's order: the metrics' after the seed's, then rank_score
    # and the model confidence set's two.
    names = list(variant)
    assert names[-3:] == ["rank_score", "mcs_pvalue", "in_mcs"]
    assert names.index(f"mean_val_{toy}") > names.index("holm_family")
    assert default["data"][0][f"mean_val_{toy}"] == pytest.approx(0.525)  # the default ranking has them too

    fold = client.get(f"/sweeps/{sweep_id}/ranking", params={"metric": f"val_{toy}", "fold": "f1"}).json()
    assert fold["fold"] == "f1" and fold["metric"] == f"val_{toy}"
    assert [r["config_id"] for r in fold["data"]] == ["hidden_size=6", "baseline"]
    # The default answer is still cached as it was: another metric is another answer.
    assert [r["config_id"] for r in client.get(f"/sweeps/{sweep_id}/ranking").json()["data"]] == [
        "baseline",
        "hidden_size=6",
    ]


def test_a_metric_no_run_carries_ranks_every_config_without_a_score(client: TestClient) -> None:
    sweep_id = finished_sweep(client)
    answer = client.get(f"/sweeps/{sweep_id}/ranking", params={"metric": "val_skill"}).json()
    assert answer["metric"] == "val_skill"
    # No run carries val_skill: every config's score is null, and the order is the plan's.
    assert [r["rank_score"] for r in answer["data"]] == [None, None]


@pytest.mark.parametrize("metric", ["val_nope", "test_rmse", "val_coverage_80", "rmse"])
def test_a_metric_that_cannot_rank_is_422_naming_it_and_the_choices(client: TestClient, metric: str) -> None:
    sweep_id = finished_sweep(client)
    answer = client.get(f"/sweeps/{sweep_id}/ranking", params={"metric": metric})
    assert answer.status_code == 422, answer.text
    (problem,) = answer.json()["detail"]
    assert problem["field"] == "metric"
    assert repr(metric) in problem["message"] and "val_rmse" in problem["message"]
    assert len(problem["message"]) < 1000  # a bounded list, not every choice
    # A refused name leaves the sweep's answers as they were.
    assert client.get(f"/sweeps/{sweep_id}/ranking").status_code == 200


def test_the_openapi_documents_the_metric_and_its_choices(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    route = spec["paths"]["/sweeps/{sweep_id}/ranking"]["get"]
    assert "rank_by" in route["summary"] and "metric" in route["summary"]
    assert "metric" in [p["name"] for p in route["parameters"]]
    assert "422" in route["responses"]
    ranking = spec["components"]["schemas"]["RankingPublic"]["properties"]
    assert {"metric", "metrics"} <= set(ranking)
    row = spec["components"]["schemas"]["RankingRow"]
    assert row.get("additionalProperties") is True and "rank_score" in row["properties"]
    assert spec["components"]["schemas"]["RunPublic"].get("additionalProperties") is True


def test_a_merged_evaluation_block_reranks_the_sweep_and_trains_nothing(client: TestClient, toy: str) -> None:
    """`evaluation` merges freely: a new rank_by adds no run, and the API's ranking follows it at once."""
    sweep_id = finished_sweep(client)
    before = client.get(f"/sweeps/{sweep_id}/ranking").json()
    assert before["metric"] == "val_rmse" and before["data"][0]["config_id"] == "baseline"
    config = tiny_sweep(replica_seeds=[1, 2], evaluation={"rank_by": f"val_{toy}"})
    merged = client.post("/sweeps", json={"asset": ASSET, "config": config, "merge_tests": True})
    assert merged.status_code == 202, merged.text  # accepted: a report build, no run
    assert merged.json()["new_runs"] == 0
    after = client.get(f"/sweeps/{sweep_id}/ranking").json()
    assert after["metric"] == f"val_{toy}" and after["data"][0]["config_id"] == "hidden_size=6"
    assert client.get(f"/sweeps/{sweep_id}").json()["runs"]["queued"] == 0
