"""The run cache with the real trainer, through `tftsweep sweep`: a second sweep that repeats
runs of a first trains only its new run; `--no-reuse` trains every run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db.models import Run, Sweep
from app.db.session import session_scope
from core.paths import version_folder
from core.runs import METRIC_COLUMNS
from tests.utils.data import ASSET, make_data_root, tiny_sweep
from worker.cli import main
from worker.local_sweep import open_database

pytestmark = pytest.mark.slow


def test_a_second_sweep_trains_only_the_new_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_data_root(tmp_path / "data")
    monkeypatch.setenv("TFTSWEEP_DATA_DIR", str(root))
    monkeypatch.delenv("DATABASE_URL", raising=False)

    def sweep(name: str, values: list[int], *flags: str, **overrides: object) -> str:
        config = tmp_path / f"{name}.json"
        data = tiny_sweep(output_subdir=name, param_ranges={"hidden_size": values} if values else {}, **overrides)
        config.write_text(json.dumps(data))
        assert main(["sweep", "--asset", ASSET, "--config-json", str(config), *flags]) == 0
        return capsys.readouterr().out

    assert "trained here: 2; recorded from the run cache: 0" in sweep("first", [6])
    out = sweep("second", [6, 8])
    assert "trained here: 1; recorded from the run cache: 2" in out
    assert "trained here: 3; recorded from the run cache: 0" in sweep("third", [6, 8], "--no-reuse")
    # Another evaluation block (costs) changes no run: cached, its scores computed for its own block.
    assert "trained here: 0; recorded from the run cache: 1" in sweep("costly", [], evaluation={"costs_bps": 25.0})

    with session_scope(open_database(root)) as session:
        ids = {s.output_subdir: s.id for s in session.scalars(select(Sweep))}
        runs = {(r.sweep_id, r.config_id): r for r in session.scalars(select(Run))}
        for config_id in ("baseline", "hidden_size=6"):
            source, copy = runs[(ids["first"], config_id)], runs[(ids["second"], config_id)]
            assert copy.cached_from == f"{ids['first']}/{source.run_key}"
            assert [getattr(copy, c) for c in METRIC_COLUMNS] == [getattr(source, c) for c in METRIC_COLUMNS]
            assert copy.scores_json == source.scores_json
            folders = [
                version_folder(root / "models" / ASSET / "sweeps" / name, run.fold, str(run.model_version))
                for name, run in (("first", source), ("second", copy))
            ]
            # The predictions come with it: a report build rescores the copy as the source.
            assert (folders[1] / "predictions.parquet").read_bytes() == (
                folders[0] / "predictions.parquet"
            ).read_bytes()
            assert (folders[1] / "model.ckpt").is_file()
        assert runs[(ids["second"], "hidden_size=8")].cached_from is None
        source, costly = runs[(ids["first"], "baseline")], runs[(ids["costly"], "baseline")]
        assert costly.cached_from is not None and costly.val_rmse == source.val_rmse
        before, after = json.loads(source.scores_json or "{}"), json.loads(costly.scores_json or "{}")
        assert after["_scored_with"] != before["_scored_with"] and after["_scored_from"] == "predictions.parquet"
        assert after["val_turnover"] == before["val_turnover"] and after["val_sharpe"] != before["val_sharpe"]
        assert all(r.cached_from is None for (sweep_id, _), r in runs.items() if sweep_id == ids["third"])
