"""`GET /sweeps/{id}/ranking` serves what `config_ranking.csv` holds, at sweep level and per
fold, after a real (tiny) sweep: the API computes its ranking from the database, the files
are written from the runs the worker recorded, and a reader of either must see the same
rows, in the same order, with the same numbers."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from core.config import validate_sweep_config
from core.runs import RunOutcome, RunSpec
from tests.utils.data import ASSET, make_data_root, tiny_fold, tiny_sweep
from tests.utils.fakes import RecordingQueue
from tests.utils.server import api_client, server_settings
from worker.local_sweep import run_local_sweep
from worker.trainer import train_tft

pytestmark = pytest.mark.slow

FOLDS = ("f1", "f2")


def fail_dropout_in_f2(spec: RunSpec, stop_requested: Any = None) -> RunOutcome:
    """The real trainer, except that `dropout=0.3` fails on fold f2 (both seeds): that fold's
    ranking then holds a config with no succeeded run, whose statistics are empty."""
    if spec.config_id == "dropout=0.3" and spec.fold.name == "f2":
        return RunOutcome(spec.run_id, error="RuntimeError: injected failure")
    return train_tft(spec, stop_requested)


@dataclass(frozen=True)
class Finished:
    sweep_id: int
    folder: Path
    client: TestClient
    ranking: list[dict[str, Any]]  # what `tftsweep sweep` prints, from the recorded runs


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    """A 2-fold, 2-seed, 3-config sweep trained for real (two runs failed, continue-on-error),
    and an API over the same data root and database."""
    root = make_data_root(tmp_path_factory.mktemp("data"))
    data = tiny_sweep(
        replica_seeds=[1, 2],
        walk_forward={"enabled": True, "folds": [tiny_fold(name, 2012 + i) for i, name in enumerate(FOLDS)]},
        param_ranges={"hidden_size": [4, 6], "dropout": [0.3]},
    )
    config = validate_sweep_config(data)
    outcome = run_local_sweep(root, ASSET, config, continue_on_error=True, trainer=fail_dropout_in_f2)
    assert outcome.status == "partial"
    app = create_app(server_settings(root), queue=RecordingQueue(), reaper=False)
    with api_client(app) as client:
        (sweep,) = client.get("/sweeps").json()["data"]
        assert sweep["reports_at"] is not None  # the files are of the sweep's final state
        assert outcome.ranking is not None
        yield Finished(sweep["id"], outcome.sweep_dir, client, outcome.ranking)


def same_cell(served: Any, stored: Any) -> bool:
    """One cell of the API's row against the CSV's: floats within a relative 1e-9 (the CSV
    spells them in text), an empty cell against null, anything else equal as text (the CSV
    does not say whether `4` was an int or a string)."""
    if stored is None or (isinstance(stored, float) and math.isnan(stored)):
        return served is None
    if isinstance(served, bool) or isinstance(stored, bool):
        return str(served).lower() == str(stored).lower()
    if isinstance(served, int | float) and isinstance(stored, int | float):
        return math.isclose(served, stored, rel_tol=1e-9, abs_tol=1e-12)
    return str(served) == str(stored)


def assert_served_as_stored(answer: dict[str, Any], csv: Path, *, extra: tuple[str, ...] = ()) -> None:
    """The API's rows are the CSV's rows, in its order, with its columns in its order; `extra`
    names the columns the API may serve beyond the file's, always empty."""
    stored = pd.read_csv(csv, keep_default_na=False, na_values=[""])
    rows = answer["data"]
    assert answer["count"] == len(rows) == len(stored), csv
    assert [r["config_id"] for r in rows] == stored["config_id"].tolist(), f"{csv}: rows in another order"
    columns = list(stored.columns)
    for row in rows:
        served = list(row)
        assert [c for c in served if c in columns] == columns, f"{csv}: columns in another order"
        beyond = [c for c in served if c not in columns]
        assert set(beyond) <= set(extra) and all(row[c] is None for c in beyond), f"{csv}: served {beyond}"
    for i, (row, (_, line)) in enumerate(zip(rows, stored.iterrows(), strict=True)):
        for column in columns:
            value = line[column]
            stored_value = value.item() if hasattr(value, "item") else value
            assert same_cell(row[column], stored_value), (
                f"{csv} row {i} ({row['config_id']}) {column}: API {row[column]!r}, file {stored_value!r}"
            )


def test_the_sweep_ranking_is_config_ranking_csv(finished: Finished) -> None:
    answer = finished.client.get(f"/sweeps/{finished.sweep_id}/ranking")
    assert answer.status_code == 200
    assert answer.json()["fold"] is None
    assert_served_as_stored(answer.json(), finished.folder / "config_ranking.csv")


def test_the_command_line_prints_the_ranking_the_file_holds(finished: Finished) -> None:
    """`tftsweep sweep` prints the table it built from the runs, not the CSV read back: the same rows."""
    assert_served_as_stored(
        {"data": finished.ranking, "count": len(finished.ranking)}, finished.folder / "config_ranking.csv"
    )


@pytest.mark.parametrize("fold", FOLDS)
def test_each_fold_ranking_is_its_config_ranking_csv(finished: Finished, fold: str) -> None:
    answer = finished.client.get(f"/sweeps/{finished.sweep_id}/ranking", params={"fold": fold})
    assert answer.status_code == 200
    assert answer.json()["fold"] == fold
    # The relative view (error relative to the naive forecast, rank within folds) is sweep-level
    # only: the fold's file has no such columns, and the API's rows leave them empty.
    relative = ("mean_val_rel_rmse", "std_val_rel_rmse", "robust_rel_score", "mean_fold_rank")
    assert_served_as_stored(answer.json(), finished.folder / "folds" / fold / "config_ranking.csv", extra=relative)


def test_a_fold_whose_config_never_succeeded_ranks_it_without_statistics(finished: Finished) -> None:
    """The comparison above covers an empty row too: on f2 `dropout=0.3` has 2 runs, both failed
    (`n_runs` counts the succeeded ones)."""
    rows = finished.client.get(f"/sweeps/{finished.sweep_id}/ranking", params={"fold": "f2"}).json()["data"]
    failed = next(r for r in rows if r["config_id"] == "dropout=0.3")
    assert (failed["n_total"], failed["n_runs"], failed["n_failed"], failed["mean_val_rmse"]) == (2, 0, 2, None)
