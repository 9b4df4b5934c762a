"""Which runs a report build scores again, and what a run whose predictions cannot be read keeps."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.config import EvaluationConfig
from core.datasets import synthetic_dataset
from core.rescore import (
    FROM_TEST_PREDICTIONS,
    FROM_UNREADABLE,
    needs_rescore,
    rescore_records,
    scored_from_counts,
    scoring_key,
)
from core.runs import SCORED_FROM, SCORED_WITH
from tests.utils.data import tiny_fold_model
from tests.utils.metrics import toy_metric_registered
from tests.utils.runs import record


def test_the_key_changes_with_costs_references_and_registrations() -> None:
    base = scoring_key(EvaluationConfig())
    assert scoring_key(EvaluationConfig()) == base
    assert scoring_key(EvaluationConfig(costs_bps=5)) != base
    assert scoring_key(EvaluationConfig.model_validate({"references": ["ar1"]})) != base
    with toy_metric_registered():
        assert scoring_key(EvaluationConfig()) != base
    assert scoring_key(EvaluationConfig()) == base


def test_only_succeeded_runs_scored_with_another_key_are_stale() -> None:
    key = scoring_key(EvaluationConfig())
    done = record("baseline", "f1", 1, 0.5)
    assert needs_rescore(done, key)
    assert not needs_rescore({**done, SCORED_WITH: key}, key)
    assert not needs_rescore(record("baseline", "f1", 2, None), key)  # failed: no model version


def _version(sweep: Path, run: dict, predictions: pd.DataFrame) -> None:
    folder = sweep / "folds" / run["fold"] / "models" / run["model_version"]
    folder.mkdir(parents=True)
    predictions.to_csv(folder / "test_predictions.csv", index=False)


def test_old_runs_are_scored_from_test_predictions_and_an_unfitting_file_is_marked(tmp_path: Path) -> None:
    frame = synthetic_dataset(n_days=900)
    fold = tiny_fold_model()
    test_days = frame[(frame["date"] >= "2012-07-01") & (frame["date"] <= "2012-12-31")]
    good, bad = record("baseline", "f1", 1, 0.5, run_id=1), record("baseline", "f1", 2, 0.6, run_id=2)
    rows = pd.DataFrame(
        {
            "date": test_days["date"].dt.strftime("%Y-%m-%d"),
            "horizon": 1,
            "actual": test_days["target"],
            "predicted": test_days["target"] * 0.5,
            "naive": 0.0,
        }
    )
    # A run whose parquet a machine lacks keeps the validation scores it has: test rows say nothing of them.
    kept = {**record("baseline", "f1", 3, 0.7, run_id=3), "val_dir_acc": 0.61}
    _version(tmp_path, good, rows)
    _version(tmp_path, bad, rows.assign(date="2012-07-07"))  # a Saturday: not a dataset day
    _version(tmp_path, kept, rows)
    out, changed = rescore_records([good, bad, kept], tmp_path, frame, {"f1": fold}, EvaluationConfig())
    scored, marked, still = out
    assert still["val_dir_acc"] == 0.61 and still["test_dir_acc"] == 1.0
    assert scored[SCORED_FROM] == FROM_TEST_PREDICTIONS and scored["test_dir_acc"] == 1.0
    assert scored["val_dir_acc"] is None and scored["val_rmse"] == good["val_rmse"]  # the seed's column kept
    assert marked[SCORED_FROM] == FROM_UNREADABLE and "test_dir_acc" not in marked
    assert set(changed) == {1, 2, 3}
    counts = scored_from_counts(out)
    assert counts[FROM_TEST_PREDICTIONS] == 2 and counts[FROM_UNREADABLE] == 1
