"""The reference for benchmark 1: the example sweep's runs trained by a plain script.

What a hand-rolled pipeline does: one process, pytorch_forecasting and Lightning called
directly, a fresh TimeSeriesDataSet per run, no database, no queue, no reports. Prints
the wall time (imports included) as JSON on its last line.

    .venv/bin/python -m bench.plain_reference DATASET.parquet CONFIG.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()

import lightning.pytorch as pl  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import EarlyStopping  # noqa: E402
from pytorch_forecasting import TemporalFusionTransformer, TimeSeriesDataSet  # noqa: E402
from pytorch_forecasting.data import TorchNormalizer  # noqa: E402
from pytorch_forecasting.metrics import RMSE  # noqa: E402

from core.config import load_sweep_config  # noqa: E402
from core.feature_sets import KNOWN_FEATURES, resolve_features  # noqa: E402
from core.plan import expand_sweep  # noqa: E402


def main() -> None:
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    frame = pd.read_parquet(sys.argv[1])
    config = load_sweep_config(Path(sys.argv[2]).read_text())
    features = resolve_features(config.features)
    frame = frame[["date", "asset", "target", *features]].copy()
    frame["asset"] = frame["asset"].astype(str).astype("category")
    frame["time_idx"] = np.arange(len(frame))
    folds = {f.name: f for f in config.folds}
    rmses = []
    dates = pd.to_datetime(frame["date"])

    def window(start: str, end: str) -> pd.DataFrame:
        return frame[(dates >= pd.Timestamp(start)) & (dates <= pd.Timestamp(end))]

    for run in expand_sweep(config).runs:
        t = run.training
        fold = folds[run.fold]

        train = window(fold.train_start, fold.train_end)
        training = TimeSeriesDataSet(
            train,
            time_idx="time_idx",
            target="target",
            group_ids=["asset"],
            min_encoder_length=t.max_encoder_length,
            max_encoder_length=t.max_encoder_length,
            min_prediction_length=t.max_prediction_length,
            max_prediction_length=t.max_prediction_length,
            time_varying_known_reals=[f for f in features if f in KNOWN_FEATURES],
            time_varying_unknown_reals=["target", *[f for f in features if f not in KNOWN_FEATURES]],
            target_normalizer=TorchNormalizer(method="standard"),
        )
        sets = {}
        for part, (start, end) in {
            "val": (fold.val_start, fold.val_end),
            "test": (fold.test_start, fold.test_end),
        }.items():
            rows = window(start, end)
            first, last = int(rows["time_idx"].iloc[0]), int(rows["time_idx"].iloc[-1])
            span = frame[(frame["time_idx"] >= first - t.max_encoder_length) & (frame["time_idx"] <= last)]
            sets[part] = TimeSeriesDataSet.from_dataset(
                training, span, min_prediction_idx=first, stop_randomization=True
            )
        pl.seed_everything(run.seed, workers=True, verbose=False)
        model = TemporalFusionTransformer.from_dataset(
            training,
            learning_rate=t.learning_rate,
            hidden_size=t.hidden_size,
            attention_head_size=t.attention_head_size,
            dropout=t.dropout,
            hidden_continuous_size=t.hidden_continuous_size,
            loss=RMSE(),
            log_interval=-1,
        )
        trainer = pl.Trainer(
            max_epochs=t.max_epochs,
            accelerator="auto",
            gradient_clip_val=t.gradient_clip_val,
            limit_train_batches=t.limit_train_batches or 1.0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[EarlyStopping(monitor="val_loss", patience=t.early_stopping_patience)],
        )
        trainer.fit(
            model,
            training.to_dataloader(train=True, batch_size=t.batch_size, num_workers=0),
            sets["val"].to_dataloader(train=False, batch_size=256, num_workers=0),
        )
        for part in ("val", "test"):
            with torch.no_grad():
                out = [
                    (model.to_prediction(model(x)), y[0])
                    for x, y in sets[part].to_dataloader(train=False, batch_size=256)
                ]
            pred = torch.cat([o[0] for o in out])
            actual = torch.cat([o[1] for o in out])
            rmses.append(float(torch.sqrt(torch.mean((pred - actual) ** 2))))
    print(json.dumps({"runs": len(rmses) // 2, "wall_s": time.perf_counter() - STARTED}))


if __name__ == "__main__":
    main()
