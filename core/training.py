"""Train one run: a pytorch_forecasting TemporalFusionTransformer on one fold with one seed.

This module (with `core.hpo`) is where the ML stack lives; the API never imports it, and
worker processes import it once and keep it (about 5 s per import).

Windows: the training set holds the train window only, and fits every scaler and the
target normaliser. Validation and test sets reuse those fitted transforms
(`TimeSeriesDataSet.from_dataset`) and predict only dates inside their window, with
encoder history that may reach back before it (earlier rows are past, not future).

Every forecast is kept (`predictions.parquet`) and scored by the metric registry
(`core.evaluation`), so nothing about metrics lives here. The module is one run from
datasets to published files, a little over 450 lines; the ML imports it holds are the
reason not to spread it over several.

A change to what this module does with the same inputs (the model, the loss, the cut of a
fold, the predictions written) must bump `core.run_cache.TRAINER_VERSION`, or runs trained
before it are reused by the run cache as if trained by it.
"""

from __future__ import annotations

import copy
import logging
import math
import pickle
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from pytorch_forecasting import TemporalFusionTransformer, TimeSeriesDataSet
from pytorch_forecasting.data import TorchNormalizer
from pytorch_forecasting.metrics import MAE, RMSE, QuantileLoss

from core.config import EvaluationConfig, Fold, TrainingConfig
from core.dataset_folds import check_fold_fits, fold_rows
from core.errors import DatasetError, RunCancelled, RunFailed
from core.evaluation import add_references, evaluate, write_predictions
from core.feature_sets import KNOWN_FEATURES
from core.files import dumps_json, publish_dir_atomic
from core.metrics import QUANTILE_COLUMNS
from core.paths import LEGACY_PREDICTIONS_FILE, PREDICTIONS_FILE
from core.rescore import FROM_PREDICTIONS, scoring_key
from core.runs import SCORED_FROM, SCORED_WITH

TIME_IDX = "time_idx"


@dataclass
class RunResult:
    """What a run measured: every registered metric of both windows (`core.metrics`, computed
    from `predictions` by `core.evaluation.evaluate`) and how the training went."""

    scores: dict[str, Any]  # metric columns, and the marks of what they were computed with
    best_epoch: int
    epochs_trained: int
    train_seconds: float
    n_val: int
    n_test: int
    predictions: pd.DataFrame
    history: list[dict[str, float]] = field(default_factory=list)
    # Where the run's time went: train, predict (both windows), evaluate (references and
    # metrics), publish (checkpoint, predictions, files).
    timings: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """The run's record: metric columns (`val_rmse`, `test_dir_acc`, ...) and training facts."""
        return {
            **self.scores,
            "best_epoch": self.best_epoch,
            "epochs_trained": self.epochs_trained,
            "train_seconds": self.train_seconds,
            "n_val": self.n_val,
            "n_test": self.n_test,
        }


@dataclass(frozen=True)
class FoldData:
    """The three datasets of one fold, built once and shared by runs with the same shape."""

    training: TimeSeriesDataSet
    validation: TimeSeriesDataSet
    test: TimeSeriesDataSet
    dates: np.ndarray  # time_idx -> date, for labelling predictions
    # The dataset (date, target, features) and the fold: reference forecasts and metrics are fitted
    # on its train window (`core.evaluation`).
    frame: pd.DataFrame
    fold: Fold


class DatasetCache:
    """Per-process cache of fold datasets keyed by (fold, encoder/prediction length, features).

    Building a fold's TimeSeriesDataSet (fitting scalers, indexing samples) is the same
    work for every config that only changes model hyperparameters.
    """

    def __init__(self, max_entries: int = 16) -> None:
        self._entries: dict[tuple[Any, ...], FoldData] = {}
        self._max = max_entries
        self.hits = 0
        self.misses = 0
        self.build_seconds = 0.0

    def get(
        self, frame_id: str, frame: pd.DataFrame, fold: Fold, training: TrainingConfig, features: list[str]
    ) -> FoldData:
        key = (
            frame_id,
            fold.name,
            tuple(fold.window_dict().values()),
            fold.embargo_days,
            training.max_encoder_length,
            training.max_prediction_length,
            tuple(features),
        )
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        started = time.perf_counter()
        built = build_fold_data(frame, fold, training, features)
        self.build_seconds += time.perf_counter() - started
        if len(self._entries) >= self._max:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = built
        return built


def quiet_lightning() -> None:
    """Silence Lightning's per-run banners and known-harmless warnings (once per process)."""
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_forecasting"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (
        ".*is an instance of `nn.Module` and is already saved during checkpointing.*",
        ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
        ".*does not have many workers which may be a bottleneck.*",
        ".*LitLogger.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


def set_torch_threads(threads: int) -> None:
    """Set torch's intra-op threads for this process."""
    torch.set_num_threads(threads)


def device_kind() -> str:
    """The device kind Lightning's `accelerator="auto"` trains on here: cuda, mps or cpu (part
    of a run's cache key, core.run_cache)."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def build_fold_data(frame: pd.DataFrame, fold: Fold, training: TrainingConfig, features: list[str]) -> FoldData:
    """Datasets for one fold; scalers and the target normaliser see the train window only.

    The windows are `fold_rows`' (the fold's embargo left out at the end of train and val):
    the train set, the validation targets and the references all stop short of the next window."""
    check_fold_fits(frame, fold, training)
    data = frame[["date", "asset", "target", *features]].copy()
    data["asset"] = data["asset"].astype(str).astype("category")
    data[TIME_IDX] = np.arange(len(data), dtype="int64")
    windows = fold_rows(data, fold)
    known = [f for f in features if f in KNOWN_FEATURES]
    observed = [f for f in features if f not in KNOWN_FEATURES]
    enc, pred = training.max_encoder_length, training.max_prediction_length
    training_set = TimeSeriesDataSet(
        windows["train"],
        time_idx=TIME_IDX,
        target="target",
        group_ids=["asset"],
        min_encoder_length=enc,
        max_encoder_length=enc,
        min_prediction_length=pred,
        max_prediction_length=pred,
        static_categoricals=[],
        time_varying_known_reals=known,
        time_varying_unknown_reals=["target", *observed],
        target_normalizer=TorchNormalizer(method="standard"),
        add_relative_time_idx=False,
        add_target_scales=False,
        add_encoder_length=False,
        allow_missing_timesteps=False,
    )
    sets = {}
    for part in ("val", "test"):
        rows = windows[part]
        first, last = int(rows[TIME_IDX].iloc[0]), int(rows[TIME_IDX].iloc[-1])
        # History before the window feeds the encoder; nothing after the window is present.
        span = data[(data[TIME_IDX] >= first - enc) & (data[TIME_IDX] <= last)]
        sets[part] = TimeSeriesDataSet.from_dataset(
            training_set, span, min_prediction_idx=first, predict=False, stop_randomization=True
        )
    return FoldData(training_set, sets["val"], sets["test"], data["date"].to_numpy(), data, fold)


class _History(Callback):
    """Per-epoch train/val loss, and the weights of the best validation epoch (kept in memory)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self.best_loss = math.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        val = float(trainer.callback_metrics.get("val_loss", math.nan))
        if math.isfinite(val) and val < self.best_loss:
            self.best_loss = val
            self.best_epoch = trainer.current_epoch + 1
            self.best_state = copy.deepcopy(pl_module.state_dict())
        self._val = val

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        train = trainer.callback_metrics.get("train_loss_epoch", trainer.callback_metrics.get("train_loss"))
        self.epochs.append(
            {
                "epoch": trainer.current_epoch + 1,
                "train_loss": float(train) if train is not None else math.nan,
                "val_loss": getattr(self, "_val", math.nan),
            }
        )


class _StopWhenAsked(Callback):
    """Abort training at the next batch once `stop_requested()` is true (cancel, lost lease)."""

    def __init__(self, stop_requested: Callable[[], bool]) -> None:
        self._stop_requested = stop_requested

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._stop_requested():
            raise RunCancelled("training stopped on request (run cancelled or lease lost)")

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self.on_train_batch_start(trainer, pl_module, batch, batch_idx)


def _loss(name: str) -> Any:
    return {"rmse": RMSE, "mae": MAE, "quantile": QuantileLoss}[name]()


def _predict(model: TemporalFusionTransformer, dataset: TimeSeriesDataSet, batch_size: int) -> dict[str, np.ndarray]:
    """Point forecasts, actuals, their time indices and (quantile loss) the quantiles over a window."""
    loader = dataset.to_dataloader(train=False, batch_size=max(batch_size, 256), num_workers=0)
    parts: dict[str, list[np.ndarray]] = {"predicted": [], "actual": [], "time_idx": [], "quantiles": []}
    quantile = isinstance(model.loss, QuantileLoss)
    model.eval()
    with torch.no_grad():
        for x, (y, _weight) in loader:
            x = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in x.items()}
            out = model(x)
            parts["predicted"].append(model.to_prediction(out).detach().cpu().numpy())
            parts["actual"].append(y.detach().cpu().numpy())
            parts["time_idx"].append(x["decoder_time_idx"].detach().cpu().numpy())
            if quantile:
                parts["quantiles"].append(model.to_quantiles(out).detach().cpu().numpy())
    return {key: np.concatenate(values) for key, values in parts.items() if values}


def _prediction_rows(split: str, window: dict[str, np.ndarray], dates: np.ndarray) -> pd.DataFrame:
    """One row per (sample, horizon) of a window: the columns of `predictions.parquet`."""
    idx = window["time_idx"]
    horizons = idx.shape[1]
    columns: dict[str, Any] = {
        "split": split,
        "date": pd.to_datetime(dates[idx.reshape(-1)]).strftime("%Y-%m-%d"),
        "horizon": np.tile(np.arange(1, horizons + 1, dtype="int64"), len(idx)),
        "actual": window["actual"].reshape(-1).astype("float64"),
        "predicted": window["predicted"].reshape(-1).astype("float64"),
    }
    if "quantiles" in window:
        flat = window["quantiles"].reshape(-1, len(QUANTILE_COLUMNS)).astype("float64")
        columns.update({name: flat[:, i] for i, name in enumerate(QUANTILE_COLUMNS)})
    return pd.DataFrame(columns)


def train_and_evaluate(
    fold_data: FoldData,
    training: TrainingConfig,
    out_dir: Path | None = None,
    *,
    extra_files: dict[str, Any] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    callbacks: list[Callback] | None = None,
    precision: str | None = None,
    evaluation: EvaluationConfig | None = None,
) -> RunResult:
    """Train and evaluate one run; publish its model version to `out_dir` if given.

    `out_dir` (a `folds/{fold}/models/{version}` folder) receives, in one atomic rename:
    `model.ckpt` (best epoch), `dataset_parameters.pkl` (to rebuild the datasets for
    inference with `TimeSeriesDataSet.from_parameters`), `metrics.json`, `config.json`,
    `predictions.parquet` (both windows, quantiles, reference forecasts: the record every
    metric is computed from) and `test_predictions.csv` (`date, horizon, actual, predicted, naive`).

    Raises:
        RunFailed: training diverged (no finite validation loss).
    """
    quiet_lightning()
    started = time.perf_counter()
    pl.seed_everything(training.seed, workers=True, verbose=False)
    model = TemporalFusionTransformer.from_dataset(
        fold_data.training,
        learning_rate=training.learning_rate,
        hidden_size=training.hidden_size,
        attention_head_size=training.attention_head_size,
        dropout=training.dropout,
        hidden_continuous_size=training.hidden_continuous_size,
        lstm_layers=training.lstm_layers,
        loss=_loss(training.loss),
        optimizer="adam",
        weight_decay=training.weight_decay,
        reduce_on_plateau_patience=training.reduce_on_plateau_patience,
        logging_metrics=torch.nn.ModuleList([]),
        log_interval=-1,
    )
    history = _History()
    extra_callbacks = [*(callbacks or []), *([_StopWhenAsked(stop_requested)] if stop_requested else [])]
    trainer = pl.Trainer(
        max_epochs=training.max_epochs,
        accelerator="auto",
        devices=1,
        gradient_clip_val=training.gradient_clip_val or None,
        limit_train_batches=training.limit_train_batches or 1.0,
        callbacks=[
            EarlyStopping(
                monitor="val_loss",
                patience=training.early_stopping_patience,
                min_delta=training.early_stopping_min_delta,
                mode="min",
            ),
            history,
            *extra_callbacks,
        ],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(out_dir.parent if out_dir is not None else tempfile.gettempdir()),
        # "16-mixed"/"bf16-mixed" on GPUs (a worker's TFTSWEEP_PRECISION).
        precision=precision or "32-true",  # type: ignore[arg-type]
        deterministic=False,
    )
    train_loader = fold_data.training.to_dataloader(train=True, batch_size=training.batch_size, num_workers=0)
    val_loader = fold_data.validation.to_dataloader(
        train=False, batch_size=max(training.batch_size, 256), num_workers=0
    )
    trainer.fit(model, train_dataloaders=train_loader, val_dataloaders=val_loader)
    if history.best_state is None:
        raise RunFailed("training produced no finite validation loss (diverged?)")
    model.load_state_dict(history.best_state)
    train_seconds = time.perf_counter() - started

    evaluation = evaluation or EvaluationConfig()
    timings = {"train_seconds": train_seconds}
    mark = time.perf_counter()
    predictions = pd.concat(
        [
            _prediction_rows("val", _predict(model, fold_data.validation, training.batch_size), fold_data.dates),
            _prediction_rows("test", _predict(model, fold_data.test, training.batch_size), fold_data.dates),
        ],
        ignore_index=True,
    )
    timings["predict_seconds"] = time.perf_counter() - mark
    mark = time.perf_counter()
    references = evaluation.references
    predictions = add_references(predictions, fold_data.frame, fold_data.fold, references)
    scores: dict[str, Any] = evaluate(predictions, fold_data.frame, fold_data.fold, references, evaluation.costs_bps)
    scores |= {SCORED_WITH: scoring_key(evaluation), SCORED_FROM: FROM_PREDICTIONS}
    if not all(math.isfinite(scores[key] or math.nan) for key in ("val_rmse", "test_rmse")):
        raise RunFailed("predictions are not finite")
    timings["evaluate_seconds"] = time.perf_counter() - mark
    split_rows = predictions["split"].value_counts()
    result = RunResult(
        scores=scores,
        best_epoch=history.best_epoch,
        epochs_trained=len(history.epochs),
        train_seconds=round(train_seconds, 3),
        n_val=int(split_rows.get("val", 0)),
        n_test=int(split_rows.get("test", 0)),
        predictions=predictions,
        history=history.epochs,
        timings=timings,
    )
    if out_dir is not None:
        mark = time.perf_counter()
        _publish(out_dir, trainer, fold_data, training, result, extra_files or {})
        timings["publish_seconds"] = time.perf_counter() - mark
    return result


def _publish(
    out_dir: Path,
    trainer: pl.Trainer,
    fold_data: FoldData,
    training: TrainingConfig,
    result: RunResult,
    extra_files: dict[str, Any],
) -> None:
    test = result.predictions[result.predictions["split"] == "test"]
    # The seed's file, as it always was: today's plots and readers use it.
    test_predictions = pd.DataFrame(
        {
            "date": test["date"].to_numpy(),
            "horizon": test["horizon"].to_numpy(),
            "actual": test["actual"].to_numpy(),
            "predicted": test["predicted"].to_numpy(),
            "naive": 0.0,  # the naive forecast: a zero log return
        }
    )
    with publish_dir_atomic(out_dir) as tmp:
        trainer.save_checkpoint(str(tmp / "model.ckpt"), weights_only=True)
        with (tmp / "dataset_parameters.pkl").open("wb") as fh:
            pickle.dump(fold_data.training.get_parameters(), fh)
        (tmp / "metrics.json").write_text(dumps_json({**result.metrics(), "history": result.history}))
        (tmp / "config.json").write_text(dumps_json(training.model_dump(mode="json")))
        mark = time.perf_counter()
        write_predictions(tmp / PREDICTIONS_FILE, result.predictions)
        result.timings["write_predictions_seconds"] = time.perf_counter() - mark
        test_predictions.to_csv(tmp / LEGACY_PREDICTIONS_FILE, index=False, float_format="%.8g")
        for name, payload in extra_files.items():
            (tmp / name).write_text(dumps_json(payload) if not isinstance(payload, str) else payload)


def load_model(version_dir: Path) -> TemporalFusionTransformer:
    """The best-epoch model of a published run."""
    return TemporalFusionTransformer.load_from_checkpoint(str(version_dir / "model.ckpt"), map_location="cpu")


def load_dataset_parameters(version_dir: Path) -> dict[str, Any]:
    """Parameters to rebuild the run's training dataset (`TimeSeriesDataSet.from_parameters`)."""
    with (version_dir / "dataset_parameters.pkl").open("rb") as fh:
        params: dict[str, Any] = pickle.load(fh)
    return params


def describe_error(exc: BaseException) -> str:
    """A one-line error for the run record."""
    if isinstance(exc, DatasetError | RunFailed | RunCancelled):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".strip()


__all__ = [
    "DatasetCache",
    "FoldData",
    "RunResult",
    "build_fold_data",
    "describe_error",
    "load_dataset_parameters",
    "load_model",
    "quiet_lightning",
    "set_torch_threads",
    "train_and_evaluate",
]
