"""One validation for every entry point: the API, `plan`, `sweep` and `hpo` report the same
complete list of problems for the same config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.utils.configs import sweep_dict
from tests.utils.data import tiny_study
from worker.cli import main

BAD_SWEEPS = [
    # schema problems and cross-field problems together: all of them, from every entry point
    sweep_dict(param_ranges={"seed": [1], "hidden_size": ["x", 8, 8]}, replica_seeds=[1, 1], output_subdir="a/b"),
    sweep_dict(features=5, training_config={"hidden_size": 1.5}, param_ranges={"nope": [1], "dropout": []}),
    sweep_dict(configs=[{"name": "baseline", "params": {"seed": 3}}, {"name": "c1", "params": {"dropout": 2}}]),
    sweep_dict(walk_forward={"enabled": True, "folds": [{"name": "f\n", "train_start": 20100101}]}, extra=1),
]


def cli_problems(argv: list[str], capsys: pytest.CaptureFixture[str]) -> set[str]:
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("error: invalid config (")
    return {line.strip() for line in lines[1:]}


def api_problems(client: TestClient, path: str, config: dict[str, Any]) -> set[str]:
    response = client.post(path, json={"asset": "SYN", "config": config})
    assert response.status_code == 422, response.text
    return {f"{p['field'].removeprefix('config.')}: {p['message']}" for p in response.json()["detail"]}


@pytest.mark.parametrize("config", BAD_SWEEPS, ids=["ranges-and-seeds", "types", "candidates", "folds"])
def test_every_entry_point_reports_the_same_problems(
    config: dict[str, Any], client: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    from_api = api_problems(client, "/sweeps", config)
    from_plan = cli_problems(["plan", "--config-json", str(path)], capsys)
    from_sweep = cli_problems(["sweep", "--asset", "SYN", "--config-json", str(path)], capsys)
    assert from_api == from_plan == from_sweep
    assert len(from_api) >= 3


def test_hpo_entry_points_report_the_same_problems(
    client: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_study(
        replica_seeds=[2, 2],
        search_space={
            "seed": {"type": "int", "low": 1, "high": 3},
            "hidden_size": {"type": "int", "low": "a", "high": 8},
        },
        n_trials=0,
    )
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    from_api = api_problems(client, "/hpo", config)
    from_cli = cli_problems(["hpo", "--asset", "SYN", "--config-json", str(path)], capsys)
    assert from_api == from_cli
    assert {p.split(":")[0] for p in from_api} == {
        "replica_seeds",
        "search_space.seed",
        "search_space.hidden_size.low",
        "n_trials",
    }
