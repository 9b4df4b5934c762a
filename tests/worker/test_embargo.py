"""An embargo (`walk_forward.embargo_days`) really leaves rows out of what a run trains on, is
stopped by and is scored on: the datasets, the predictions and the metrics follow it."""

from __future__ import annotations

import pandas as pd
import pytest

from core.dataset_folds import fold_rows
from core.datasets import synthetic_dataset
from core.training import DatasetCache, build_fold_data, train_and_evaluate
from tests.utils.data import tiny_fold_model, tiny_training

pytestmark = pytest.mark.slow

FEATURES = ["ret_5", "vol_10", "rsi_14", "day_of_week"]
EMBARGO = 7


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_dataset(n_days=900)


def test_an_embargoed_run_trains_and_validates_short_of_the_next_window(frame: pd.DataFrame) -> None:
    plain, embargoed = tiny_fold_model(), tiny_fold_model().with_embargo(EMBARGO)
    training = tiny_training()
    whole = fold_rows(frame, plain)
    data = build_fold_data(frame, embargoed, training, FEATURES)
    # The train set ends EMBARGO rows before the train window does.
    samples = data.training.index  # each sample covers time_idx `time` .. time + sequence_length - 1
    last_train_idx = int((samples["time"] + samples["sequence_length"] - 1).max())
    assert pd.Timestamp(data.dates[last_train_idx]) == whole["train"]["date"].iloc[-1 - EMBARGO]
    # The target normaliser never saw an embargoed row.
    kept = whole["train"]["target"].iloc[:-EMBARGO]
    assert float(data.training.target_normalizer.center_) == pytest.approx(kept.mean(), rel=1e-5)

    result = train_and_evaluate(data, training)
    predicted = result.predictions
    val = predicted[predicted["split"] == "val"]
    test = predicted[predicted["split"] == "test"]
    assert pd.Timestamp(val["date"].max()) == whole["val"]["date"].iloc[-1 - EMBARGO]
    assert result.n_val == len(whole["val"]) - EMBARGO
    assert result.n_test == len(whole["test"])  # the test window stays whole
    assert pd.Timestamp(test["date"].min()) == whole["test"]["date"].iloc[0]

    # Changing the embargoed rows' targets changes no validation score: they are neither trained
    # on (their target feeds later encoders only as the past) nor scored.
    changed = frame.copy()
    cut = changed["date"].isin(whole["val"]["date"].iloc[-EMBARGO:])
    changed.loc[cut, "target"] = changed.loc[cut, "target"] * 5
    again = train_and_evaluate(build_fold_data(changed, embargoed, training, FEATURES), training)
    assert again.scores["val_rmse"] == result.scores["val_rmse"]
    # Without the embargo the same change is scored.
    before = train_and_evaluate(build_fold_data(frame, plain, training, FEATURES), training)
    after = train_and_evaluate(build_fold_data(changed, plain, training, FEATURES), training)
    assert after.scores["val_rmse"] != before.scores["val_rmse"]


def test_the_dataset_cache_keeps_embargoed_folds_apart(frame: pd.DataFrame) -> None:
    cache = DatasetCache()
    training = tiny_training()
    plain = cache.get("syn", frame, tiny_fold_model(), training, FEATURES)
    embargoed = cache.get("syn", frame, tiny_fold_model().with_embargo(EMBARGO), training, FEATURES)
    assert cache.misses == 2 and plain is not embargoed
    assert len(embargoed.training) < len(plain.training)
