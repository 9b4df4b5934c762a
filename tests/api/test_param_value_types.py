"""`param_value` keeps the parameter's type in every JSON answer; CSV files spell it as config
ids do (issue 22, item 9)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.utils.data import ASSET, tiny_sweep
from tests.utils.fakes import RecordingQueue
from tests.utils.server import finish_runs


def test_ranking_impact_and_summary_keep_integer_and_float_values(client: TestClient, queue: RecordingQueue) -> None:
    config = tiny_sweep(param_ranges={"max_encoder_length": [60], "dropout": [0.2]})
    created = client.post("/sweeps", json={"asset": ASSET, "config": config})
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]
    runs = client.get(f"/sweeps/{sweep_id}/runs").json()["data"]
    factory: Any = client.app.state.session_factory  # type: ignore[attr-defined]
    values = {"baseline": 0.012, "max_encoder_length=60": 0.011, "dropout=0.2": 0.013}
    finish_runs(factory, {r["run_id"]: values[r["config_id"]] for r in runs})

    ranking = {r["config_id"]: r for r in client.get(f"/sweeps/{sweep_id}/ranking").json()["data"]}
    assert ranking["max_encoder_length=60"]["param_value"] == 60
    assert type(ranking["max_encoder_length=60"]["param_value"]) is int
    assert type(ranking["dropout=0.2"]["param_value"]) is float and ranking["dropout=0.2"]["param_value"] == 0.2
    assert ranking["baseline"]["param_value"] is None

    impact = client.get(f"/sweeps/{sweep_id}/param-impact").json()
    by_config = {r["config_id"]: r for r in impact["summary"]}
    assert type(by_config["max_encoder_length=60"]["param_value"]) is int
    assert {type(d["param_value"]) for d in impact["detail"]} == {int, float}

    summary = client.get(f"/sweeps/{sweep_id}/summary").json()
    top = {r["config_id"]: r for r in summary["top5"]}
    assert type(top["max_encoder_length=60"]["param_value"]) is int
    assert type(summary["best_config"]["param_value"]) is int  # 0.011: the best

    runs = client.get(f"/sweeps/{sweep_id}/runs").json()["data"]
    assert {r["config_id"]: r["param_value"] for r in runs}["max_encoder_length=60"] == 60
