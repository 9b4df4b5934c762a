"""Real (tiny) TFT training: metrics, published files, determinism and no leakage."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from core.datasets import synthetic_dataset
from core.training import DatasetCache, build_fold_data, load_dataset_parameters, load_model, train_and_evaluate
from tests.utils.data import tiny_fold_model, tiny_training

pytestmark = pytest.mark.slow

FEATURES = ["ret_5", "vol_10", "rsi_14", "day_of_week"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_dataset(n_days=900)


def test_a_run_trains_and_publishes_its_model_version(frame: pd.DataFrame, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    fold = tiny_fold_model()
    training = tiny_training()
    data = build_fold_data(frame, fold, training, FEATURES)
    out = tmp_path / "sweep/folds/f1/models/baseline__seed42"
    result = train_and_evaluate(data, training, out)
    scores = result.metrics()

    assert 0 < scores["val_rmse"] < 1 and 0 < scores["test_rmse"] < 1
    assert 0 < scores["val_mae"] <= scores["val_rmse"]
    assert scores["val_naive_rmse"] > 0 and scores["test_naive_rmse"] > 0
    assert 1 <= result.best_epoch <= result.epochs_trained <= training.max_epochs
    assert len(result.history) == result.epochs_trained
    assert result.train_seconds > 0
    assert sorted(os.listdir(out)) == [
        "config.json",
        "dataset_parameters.pkl",
        "metrics.json",
        "model.ckpt",
        "predictions.parquet",
        "test_predictions.csv",
    ]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_rmse"] == scores["val_rmse"]
    assert json.loads((out / "config.json").read_text())["hidden_size"] == training.hidden_size
    preds = pd.read_csv(out / "test_predictions.csv")
    assert list(preds.columns) == ["date", "horizon", "actual", "predicted", "naive"]
    assert len(preds) == result.n_test
    # predictions.parquet: both windows, every reference; its test rows are the CSV's.
    kept = pd.read_parquet(out / "predictions.parquet")
    assert list(kept.columns) == ["split", "date", "horizon", "actual", "predicted", "ref_naive", "ref_mean", "ref_ar1"]
    assert (kept["split"] == "val").sum() == result.n_val and (kept["split"] == "test").sum() == result.n_test
    kept_test = kept[kept["split"] == "test"].reset_index(drop=True)
    assert list(kept_test["date"]) == list(preds["date"])
    np.testing.assert_allclose(kept_test["predicted"], preds["predicted"], rtol=1e-7)
    # The Diebold-Mariano statistic against the naive forecast, by hand from the published rows.
    first = preds[preds["horizon"] == 1]
    dl = (first["actual"] - first["predicted"]) ** 2 - (first["actual"] - first["naive"]) ** 2
    n = len(dl)
    dm = dl.mean() / np.sqrt(dl.var(ddof=0) / n) * np.sqrt((n - 1) / n)
    assert scores["test_dm_stat"] == pytest.approx(dm, rel=1e-5)
    assert scores["test_dm_pvalue"] == pytest.approx(2 * stats.t.sf(abs(dm), n - 1), rel=1e-4, abs=1e-9)
    assert metrics["test_skill"] == pytest.approx(1 - scores["test_rmse"] / scores["test_naive_rmse"])
    assert preds["date"].min() >= "2012-07-01" and preds["date"].max() <= "2012-12-31"
    # The window RMSE is recomputable from the published predictions.
    assert np.sqrt(np.mean((preds["predicted"] - preds["actual"]) ** 2)) == pytest.approx(scores["test_rmse"], rel=1e-6)
    # Nothing was written into the working directory (no stray lightning_logs).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]
    # The checkpoint and dataset parameters reload for inference.
    model = load_model(out)
    assert model.hparams.hidden_size == training.hidden_size
    assert load_dataset_parameters(out)["max_encoder_length"] == training.max_encoder_length


def test_same_config_and_seed_give_identical_metrics(frame: pd.DataFrame) -> None:
    fold = tiny_fold_model()
    training = tiny_training(seed=3)
    data = build_fold_data(frame, fold, training, FEATURES)
    first = train_and_evaluate(data, training)
    again = train_and_evaluate(build_fold_data(frame, fold, training, FEATURES), training)
    assert first.metrics() | {"train_seconds": 0} == again.metrics() | {"train_seconds": 0}
    other_seed = train_and_evaluate(data, tiny_training(seed=4))
    assert other_seed.scores["val_rmse"] != first.scores["val_rmse"]


def test_scalers_are_fitted_on_the_train_window_only(frame: pd.DataFrame) -> None:
    fold = tiny_fold_model()
    training = tiny_training()
    data = build_fold_data(frame, fold, training, FEATURES)
    train_rows = frame[(frame["date"] >= "2010-01-01") & (frame["date"] <= "2011-12-31")]
    normalizer = data.training.target_normalizer
    assert float(normalizer.center_) == pytest.approx(train_rows["target"].mean(), rel=1e-5)
    scaler = data.training.get_parameters()["scalers"]["rsi_14"]
    assert scaler.mean_[0] == pytest.approx(train_rows["rsi_14"].mean(), rel=1e-6)
    # Changing every value after the train window changes no fitted transform.
    changed = frame.copy()
    later = changed["date"] > "2011-12-31"
    changed.loc[later, ["target", "rsi_14"]] *= 10
    again = build_fold_data(changed, fold, training, FEATURES)
    assert float(again.training.target_normalizer.center_) == float(normalizer.center_)
    assert again.training.get_parameters()["scalers"]["rsi_14"].mean_[0] == scaler.mean_[0]


def test_validation_never_sees_the_future(frame: pd.DataFrame) -> None:
    """Val metrics depend on nothing after the val window; val predicts only val dates."""
    fold = tiny_fold_model()
    training = tiny_training()
    data = build_fold_data(frame, fold, training, FEATURES)
    index = data.validation.x_to_index(next(iter(data.validation.to_dataloader(train=False, batch_size=10_000)))[0])
    dates = pd.to_datetime(data.dates[index["time_idx"].to_numpy()])
    assert dates.min() >= pd.Timestamp("2012-01-01") and dates.max() <= pd.Timestamp("2012-06-30")

    changed = frame.copy()
    after_val = changed["date"] > "2012-06-30"
    changed.loc[after_val, ["target", *FEATURES]] = changed.loc[after_val, ["target", *FEATURES]] * -3 + 1
    base = train_and_evaluate(data, training)
    perturbed = train_and_evaluate(build_fold_data(changed, fold, training, FEATURES), training)
    assert perturbed.scores["val_rmse"] == base.scores["val_rmse"]
    assert perturbed.scores["test_rmse"] != base.scores["test_rmse"]


def test_dataset_cache_reuses_fold_datasets(frame: pd.DataFrame) -> None:
    cache = DatasetCache()
    fold = tiny_fold_model()
    a = cache.get("syn", frame, fold, tiny_training(), FEATURES)
    b = cache.get("syn", frame, fold, tiny_training(hidden_size=8, dropout=0.2), FEATURES)
    c = cache.get("syn", frame, fold, tiny_training(max_encoder_length=12), FEATURES)
    assert a is b and c is not a
    assert (cache.hits, cache.misses) == (1, 2)
