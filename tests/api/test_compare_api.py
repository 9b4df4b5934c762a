"""The ranking answers carry the model confidence set the report build recorded (only for the
ranking it was computed for), and `GET /compare` answers two sweeps: on one asset as `tftsweep
compare` does, across assets by transfer, never by volatility.

Runs are recorded through the service with a trainer whose scores are chosen here; the report
build is the real one (app.service.reports.build_reports) with its selection filled by hand,
since fake runs keep no predictions to compute it from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.service.reports import build_reports
from app.service.runs import train_run
from core.paths import sweep_dir
from core.runs import RunOutcome, RunSpec
from core.sweep_report import write_sweep_reports
from tests.utils.data import ASSET, make_data_root, tiny_fold, tiny_sweep
from tests.utils.fakes import fake_train

OTHER_ASSET = "SYN2"
FOLDS = ("f1", "f2")
# Val RMSE of seed 1 per asset and config (seed 2 adds 10%); the second asset is twice as volatile.
# Against their own baseline: hidden_size=6 is 10% better on both, hidden_size=8 5% better on the
# first and 5% worse on the second, dropout=0.2 10% worse on both.
SCORES = {
    ASSET: {"baseline": 0.010, "hidden_size=6": 0.009, "hidden_size=8": 0.0095, "dropout=0.2": 0.011},
    OTHER_ASSET: {"baseline": 0.020, "hidden_size=6": 0.018, "hidden_size=8": 0.021, "dropout=0.2": 0.022},
}
NAIVE = {ASSET: 0.0105, OTHER_ASSET: 0.021}
# What the report build's model confidence set is made to say (p-values per config; in at 0.1).
MCS_PVALUES = {
    ASSET: {"hidden_size=6": 1.0, "hidden_size=8": 0.35, "baseline": 0.12, "dropout=0.2": 0.02},
    OTHER_ASSET: {"hidden_size=6": 1.0, "baseline": 0.4, "hidden_size=8": 0.05, "dropout=0.2": 0.01},
}


def chosen_trainer(spec: RunSpec, stop_requested: Callable[[], bool] | None = None) -> RunOutcome:
    outcome = fake_train(spec, stop_requested)
    assert outcome.metrics is not None
    scale = 1 + 0.1 * (spec.seed - 1)
    rmse = SCORES[spec.asset][spec.config_id] * scale
    outcome.metrics |= {"val_rmse": rmse, "val_mae": rmse * 0.8, "val_naive_rmse": NAIVE[spec.asset]}
    return outcome


def compare_config(subdir: str) -> dict[str, Any]:
    return tiny_sweep(
        output_subdir=subdir,
        replica_seeds=[1, 2],
        walk_forward={"enabled": True, "folds": [tiny_fold(name, 2012) for name in FOLDS]},
        param_ranges={"hidden_size": [6, 8], "dropout": [0.2]},
    )


def mcs_block(pvalues: dict[str, float], level: float = 0.9) -> dict[str, Any]:
    """A selection block as core.selection writes it (summary.json `selection`)."""
    members = [c for c, p in pvalues.items() if p >= 1 - level]
    return {
        "available": True,
        "reason": None,
        "metric": "val_rmse",
        "loss": "squared error",
        "level": level,
        "reps": 1000,
        "block_size": 5,
        "seed": 0,
        "days_used": 120,
        "days_dropped": 0,
        "configs_tried": len(pvalues) - 1,
        "mcs": {"members": members, "size": len(members), "pvalues": pvalues},
        "spa": {"lower": 0.2, "consistent": 0.3, "upper": 0.4},
    }


def fill_ranking_csv(path: Path, pvalues: dict[str, float], level: float = 0.9) -> None:
    table = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"config_id": str})
    table["mcs_pvalue"] = table["config_id"].map(pvalues)
    table["in_mcs"] = ["true" if pvalues[c] >= 1 - level else "false" for c in table["config_id"]]
    table.to_csv(path, index=False)


def hand_filled_reports(
    sweep: Path, records: list[dict[str, Any]], analysis: Any, *args: Any, **kwargs: Any
) -> dict[str, Any]:
    """The real report build's files, then its selection filled from `MCS_PVALUES` (the same set
    for the sweep and each fold, p-values halved on f2), in the files and in the summary it returns."""
    summary = write_sweep_reports(sweep, records, analysis, *args, **kwargs)
    pvalues = MCS_PVALUES[analysis.asset]
    fill_ranking_csv(sweep / "config_ranking.csv", pvalues)
    folds = {}
    for fold in FOLDS:
        found = pvalues if fold == "f1" else {c: p / 2 for c, p in pvalues.items()}
        fill_ranking_csv(sweep / "folds" / fold / "config_ranking.csv", found)
        folds[fold] = mcs_block(found)
    return {**summary, "selection": {**mcs_block(pvalues), "folds": folds}}


# Where the report build calls it (app.service.reports imports it by name).
REPORT_WRITER = "app.service.reports.write_sweep_reports"


@pytest.fixture
def hand_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(REPORT_WRITER, hand_filled_reports)


def record_sweep(client: TestClient, asset: str, subdir: str, build: bool = True) -> int:
    """A sweep of four configs, two folds and two seeds, every run trained by `chosen_trainer`
    through the service, then (with `build`) its reports built."""
    answer = client.post("/sweeps", json={"asset": asset, "config": compare_config(subdir)})
    assert answer.status_code == 201, answer.text
    sweep_id: int = answer.json()["id"]
    state = client.app.state  # type: ignore[attr-defined]
    runs = client.get(f"/sweeps/{sweep_id}/runs").json()["data"]
    assert len(runs) == 16
    for run in runs:
        trained = train_run(
            state.session_factory, state.settings.store(), run["run_id"], "test", chosen_trainer, lease_seconds=60
        )
        assert trained.text == "succeeded", trained.text
    if build:
        assert build_reports(state.session_factory, state.settings.store(), sweep_id, builder="test") is not None
    return sweep_id


@pytest.fixture
def other_asset(root: Path) -> Path:
    make_data_root(root, asset=OTHER_ASSET, seed=1)
    return root


def folder(root: Path, asset: str, subdir: str) -> Path:
    return sweep_dir(root, asset, subdir)


def test_the_ranking_shows_the_mcs_the_report_build_recorded_as_its_csv_holds(
    client: TestClient, root: Path, hand_selection: None
) -> None:
    sweep_id = record_sweep(client, ASSET, "spx", build=False)
    before = client.get(f"/sweeps/{sweep_id}/ranking").json()
    assert before["selection"]["available"] is False and "not computed yet" in before["selection"]["reason"]
    assert all(r["mcs_pvalue"] is None and r["in_mcs"] is None for r in before["data"])

    state = client.app.state  # type: ignore[attr-defined]
    assert build_reports(state.session_factory, state.settings.store(), sweep_id, builder="test") is not None
    answer = client.get(f"/sweeps/{sweep_id}/ranking").json()  # the cached answer gave way to the record
    selection = answer["selection"]
    assert selection["available"] is True and selection["reason"] is None
    assert selection["computed_for"] == "val_rmse" and selection["level"] == 0.9
    assert selection["mcs"]["members"] == ["hidden_size=6", "hidden_size=8", "baseline"]
    assert selection["spa"] == {"lower": 0.2, "consistent": 0.3, "upper": 0.4}
    assert "folds" not in selection  # each fold's answer has its own block
    stored = pd.read_csv(folder(root, ASSET, "spx") / "config_ranking.csv", dtype={"config_id": str})
    assert [r["config_id"] for r in answer["data"]] == stored["config_id"].tolist()
    for row, (_, line) in zip(answer["data"], stored.iterrows(), strict=True):
        assert list(row)[-2:] == ["mcs_pvalue", "in_mcs"]  # the file's last two columns, last
        assert row["mcs_pvalue"] == pytest.approx(line["mcs_pvalue"])
        assert row["in_mcs"] is bool(line["in_mcs"])
        assert row["in_mcs"] is (MCS_PVALUES[ASSET][row["config_id"]] >= 0.1)

    fold = client.get(f"/sweeps/{sweep_id}/ranking", params={"fold": "f2"}).json()
    assert fold["selection"]["available"] is True and fold["selection"]["fold"] == "f2"
    halved = {r["config_id"]: r["mcs_pvalue"] for r in fold["data"]}
    assert halved == pytest.approx({c: p / 2 for c, p in MCS_PVALUES[ASSET].items()})
    assert {r["config_id"] for r in fold["data"] if r["in_mcs"]} == {"hidden_size=6", "hidden_size=8"}


def test_another_metric_or_a_changed_sweep_shows_no_mcs_and_says_why(client: TestClient, hand_selection: None) -> None:
    sweep_id = record_sweep(client, ASSET, "spx")
    by_mae = client.get(f"/sweeps/{sweep_id}/ranking", params={"metric": "val_mae"}).json()
    assert by_mae["selection"]["available"] is False
    assert "computed for val_rmse" in by_mae["selection"]["reason"]
    assert all(r["mcs_pvalue"] is None and r["in_mcs"] is None for r in by_mae["data"])

    summary = client.get(f"/sweeps/{sweep_id}/summary").json()
    assert summary["selection"]["available"] is True
    assert summary["selection"]["mcs"]["size"] == 3

    # A merge that changes the selection's level adds no run but changes the sweep: stale.
    config = compare_config("spx") | {"evaluation": {"selection": {"level": 0.8}}}
    merged = client.post("/sweeps", json={"asset": ASSET, "config": config, "merge_tests": True})
    assert merged.status_code == 202, merged.text
    stale = client.get(f"/sweeps/{sweep_id}/ranking").json()["selection"]
    assert stale["available"] is False and stale["reason"].startswith("stale")
    assert client.get(f"/sweeps/{sweep_id}/summary").json()["selection"]["available"] is False


def test_compare_across_assets_answers_with_transfer_not_volatility(
    client: TestClient, other_asset: Path, hand_selection: None
) -> None:
    a, b = record_sweep(client, ASSET, "spx"), record_sweep(client, OTHER_ASSET, "ndx")
    answer = client.get("/compare", params={"a": a, "b": b})
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["kind"] == "transfer" and found["assets"] == [ASSET, OTHER_ASSET]
    assert found["a"]["label"] == "SYN/spx" and found["b"]["label"] == "SYN2/ndx"
    # It leads with the transfer; raw RMSE levels (twice as high on the second asset) are not compared.
    assert found["sentence"].startswith("Transfer from SYN/spx to SYN2/ndx")
    assert "the config chosen on SYN/spx, hidden_size=6, ranks 1 of 4 on SYN2/ndx" in found["sentence"]
    assert found["significance"] == []
    (transfer,) = found["transfer"]
    assert (transfer["n_variants"], transfer["n_same_sign"]) == (3, 2)
    assert transfer["sign_agreement"] == pytest.approx(2 / 3)
    rows = {r["config_id"]: r for r in transfer["rows"]}
    assert set(rows) == {"hidden_size=6", "hidden_size=8", "dropout=0.2"}
    assert rows["hidden_size=6"]["rel_delta_a"] == pytest.approx(-0.10)
    assert rows["hidden_size=6"]["rel_delta_b"] == pytest.approx(-0.10)
    assert rows["hidden_size=8"]["same_sign"] is False
    assert rows["hidden_size=8"]["rel_delta_b"] == pytest.approx(0.05)
    assert rows["dropout=0.2"]["n_pairs_a"] == rows["dropout=0.2"]["n_pairs_b"] == 4
    # Relative to its own naive forecast: mean of val_rmse / val_naive_rmse - 1 over the paired runs.
    assert rows["hidden_size=6"]["vs_naive_b"] == pytest.approx(0.018 * 1.05 / 0.021 - 1)
    assert (rows["hidden_size=8"]["in_mcs_a"], rows["hidden_size=8"]["in_mcs_b"]) == (True, False)
    corr = transfer["correlation"]
    assert corr["n_configs"] == 4
    assert corr["spearman"] == pytest.approx(0.8) and corr["kendall"] == pytest.approx(2 / 3)
    assert 0 < corr["spearman_pvalue"] < 1 and 0 < corr["kendall_pvalue"] < 1
    assert transfer["chosen"] == {
        "config_id": "hidden_size=6",
        "rank_b": 1,
        "of": 4,
        "in_mcs_b": True,
        "mcs_pvalue_b": 1.0,
    }
    mcs = {(r["sweep"], r["config_id"]): r["in_mcs"] for r in found["mcs"]["rows"]}
    assert mcs[("SYN/spx", "baseline")] is True and mcs[("SYN2/ndx", "hidden_size=8")] is False
    assert found["mcs"]["sweeps"]["SYN2/ndx"] == {"available": True, "reason": None}
    # The table ranks each sweep on its own runs: never one list pooled over both assets.
    table = pd.DataFrame(found["table"])
    assert table.groupby("sweep", sort=False)["rank"].apply(list).to_dict() == {
        "SYN/spx": [1, 2, 3, 4],
        "SYN2/ndx": [1, 2, 3, 4],
    }


def test_compare_on_one_asset_keeps_the_paired_significance_and_adds_the_mcs(
    client: TestClient, hand_selection: None
) -> None:
    a, b = record_sweep(client, ASSET, "first"), record_sweep(client, ASSET, "second")
    found = client.get("/compare", params={"a": a, "b": b}).json()
    assert found["kind"] == "same asset" and found["transfer"] == []
    assert found["common"] == {"folds": list(FOLDS), "seeds": [1, 2], "configs": found["common"]["configs"]}
    assert len(found["significance"]) == 4
    # The same scores in both: every paired delta is 0.
    assert {row["mean_delta"] for row in found["significance"]} == {0.0}
    assert all(row["in_mcs"] is not None for row in found["mcs"]["rows"])
    assert "model confidence set" in found["sentence"]


def test_compare_without_a_recorded_mcs_says_why(client: TestClient, other_asset: Path) -> None:
    a, b = record_sweep(client, ASSET, "spx", build=False), record_sweep(client, OTHER_ASSET, "ndx", build=False)
    found = client.get("/compare", params={"a": a, "b": b}).json()
    assert found["mcs"]["sweeps"]["SYN/spx"]["available"] is False
    assert "not computed yet" in found["mcs"]["sweeps"]["SYN/spx"]["reason"]
    assert all(r["in_mcs"] is None for r in found["mcs"]["rows"])
    assert found["transfer"][0]["n_variants"] == 3


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"a": 999, "b": 1}, 404, "a"),
        ({"a": 1, "b": 999}, 404, "b"),
        ({"a": 1, "b": "x"}, 422, "b"),
        ({"a": 0, "b": 1}, 422, "a"),
        ({"a": 1}, 422, "b"),
        ({"a": 1, "b": 1}, 422, "b"),
    ],
)
def test_bad_ids_name_the_parameter(client: TestClient, params: dict[str, Any], code: int, field: str) -> None:
    record_sweep(client, ASSET, "spx", build=False)
    answer = client.get("/compare", params=params)
    assert answer.status_code == code, answer.text
    (problem,) = answer.json()["detail"]
    assert problem["field"] == field


def test_nothing_shared_is_409_in_words(client: TestClient, other_asset: Path) -> None:
    a = record_sweep(client, ASSET, "spx", build=False)
    config = tiny_sweep(output_subdir="lonely", param_ranges={"learning_rate": [0.05]})
    created = client.post("/sweeps", json={"asset": OTHER_ASSET, "config": config})
    assert created.status_code == 201
    answer = client.get("/compare", params={"a": a, "b": created.json()["id"]})  # no run succeeded there
    assert answer.status_code == 409 and "nothing to compare" in answer.json()["detail"]


def test_the_openapi_documents_compare_and_the_mcs_columns(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    route = spec["paths"]["/compare"]["get"]
    assert {p["name"] for p in route["parameters"]} == {"a", "b"}
    assert {"404", "409", "422"} <= set(route["responses"])
    assert "transfer" in spec["components"]["schemas"]["ComparePublic"]["properties"]
    row = spec["components"]["schemas"]["RankingRow"]["properties"]
    assert {"mcs_pvalue", "in_mcs"} <= set(row)
    assert "selection" in spec["components"]["schemas"]["RankingPublic"]["properties"]
