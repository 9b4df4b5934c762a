"""From prediction rows to metric columns: origin days on a small dataset, reference columns
recomputed from the fold's train window, a split missing from the file, and the prediction
files of new and old runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import Fold
from core.evaluation import (
    add_references,
    evaluate,
    origin_targets,
    read_predictions,
    train_target,
    write_predictions,
)
from core.metrics import QUANTILE_COLUMNS, SplitRows, column_name, compute_split, metric_columns
from core.paths import PREDICTIONS_FILE
from core.references import ar1_coefficients

# Ten trading days (a weekend gap: the origin is the row before, not the calendar day before).
DATES = pd.to_datetime(
    [
        "2020-01-01",
        "2020-01-02",
        "2020-01-03",
        "2020-01-06",
        "2020-01-07",
        "2020-01-08",
        "2020-01-09",
        "2020-01-10",
        "2020-01-13",
        "2020-01-14",
    ]
)
TARGET = np.array([0.01, -0.02, 0.015, 0.0, 0.02, -0.01, 0.005, -0.015, 0.01, 0.02])
FRAME = pd.DataFrame({"date": DATES.astype("datetime64[us]"), "target": TARGET, "close": 1.0})
FOLD = Fold(
    name="f1",
    train_start="20200101",
    train_end="20200106",
    val_start="20200107",
    val_end="20200109",
    test_start="20200110",
    test_end="20200114",
)


def predictions(splits: tuple[str, ...] = ("val", "test")) -> pd.DataFrame:
    """Horizon 1 and 2 rows for every val/test day whose origin is in the dataset."""
    window = {"val": DATES[4:7], "test": DATES[7:10]}
    rows = []
    for name in splits:
        for day in window[name]:
            position = DATES.get_loc(day)
            for horizon in (1, 2):
                actual = TARGET[position]
                rows.append((name, day.strftime("%Y-%m-%d"), horizon, actual, 0.5 * actual + 0.001 * horizon))
    return pd.DataFrame(rows, columns=["split", "date", "horizon", "actual", "predicted"])


def test_origin_targets_are_the_day_horizon_rows_before() -> None:
    # 2020-01-06 is row 3: horizon 1 -> row 2 (2020-01-03, over the weekend), horizon 3 -> row 0.
    out = origin_targets(FRAME, ["2020-01-06", "2020-01-06", "2020-01-14"], np.array([1, 3, 2]))
    assert out.tolist() == [0.015, 0.01, -0.015]


def test_origin_targets_refuse_unknown_days_and_origins_before_the_data() -> None:
    with pytest.raises(ValueError, match="2020-01-04"):
        origin_targets(FRAME, ["2020-01-04"], np.array([1]))
    with pytest.raises(ValueError, match="2020-01-20"):
        origin_targets(FRAME, ["2020-01-20"], np.array([1]))
    with pytest.raises(ValueError, match="precedes"):
        origin_targets(FRAME, ["2020-01-02"], np.array([2]))


def test_train_target_is_the_train_window() -> None:
    assert train_target(FRAME, FOLD).tolist() == TARGET[:4].tolist()


def test_add_references_forecasts_each_row_from_its_origin() -> None:
    rows = predictions()
    out = add_references(rows, FRAME, FOLD, ["naive", "mean", "ar1"])
    assert "ref_naive" not in rows.columns  # the input is left alone
    assert (out["ref_naive"] == 0.0).all()
    assert out["ref_mean"].to_numpy() == pytest.approx(np.full(len(rows), TARGET[:4].mean()))
    a, b = ar1_coefficients(TARGET[:4])
    origin = np.array(
        [TARGET[DATES.get_loc(pd.Timestamp(d)) - h] for d, h in zip(rows["date"], rows["horizon"], strict=True)]
    )
    horizon = rows["horizon"].to_numpy()
    expected = np.where(horizon == 1, a + b * origin, a + b * (a + b * origin))
    assert out["ref_ar1"].to_numpy() == pytest.approx(expected)


def test_evaluate_gives_every_column_and_none_for_a_missing_split() -> None:
    rows = predictions(("test",))
    out = evaluate(rows, FRAME, FOLD, ["naive", "ar1"], costs_bps=5.0)
    assert list(out) == metric_columns(["naive", "ar1"])
    assert all(value is None for column, value in out.items() if column.startswith("val_"))
    with_refs = add_references(rows, FRAME, FOLD, ["naive", "ar1"])
    expected = compute_split(SplitRows(with_refs, TARGET[:4], 5.0), ["naive", "ar1"])
    for name, value in expected.items():
        assert out[column_name("test", name)] == value
    assert out["test_naive_rmse"] == pytest.approx(np.sqrt(np.mean(rows["actual"] ** 2)))
    assert out["test_rmse"] == pytest.approx(np.sqrt(np.mean((rows["predicted"] - rows["actual"]) ** 2)))


def test_evaluate_uses_the_stored_reference_columns() -> None:
    # A stored ref_naive of 0.01 is what the file says the reference forecast was: it is used as is.
    rows = predictions().assign(ref_naive=0.01)
    out = evaluate(rows, FRAME, FOLD, ["naive"], costs_bps=0.0)
    assert out["val_naive_rmse"] == pytest.approx(
        np.sqrt(np.mean((rows.query("split == 'val'")["actual"] - 0.01) ** 2))
    )


def test_predictions_round_trip_in_spec_order_as_float64(tmp_path: Path) -> None:
    rows = add_references(predictions(), FRAME, FOLD, ["naive", "ar1"])
    for column, value in zip(QUANTILE_COLUMNS, range(7), strict=True):
        rows[column] = np.float32(value)
    shuffled = rows[
        ["ref_ar1", "q98", "predicted", "split", *QUANTILE_COLUMNS[:-1], "ref_naive", "date", "horizon", "actual"]
    ]
    write_predictions(tmp_path / PREDICTIONS_FILE, shuffled.assign(predicted=rows["predicted"].astype("float32")))
    back = read_predictions(tmp_path)
    assert back is not None
    assert list(back.columns) == [
        "split",
        "date",
        "horizon",
        "actual",
        "predicted",
        *QUANTILE_COLUMNS,
        "ref_ar1",
        "ref_naive",
    ]
    assert all(back[c].dtype == "float64" for c in back.columns if c not in ("split", "date", "horizon"))
    assert back["horizon"].dtype == "int64"
    assert back["date"].tolist() == rows["date"].tolist()
    assert back["ref_ar1"].tolist() == rows["ref_ar1"].tolist()
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda rows: rows.drop(columns=["actual"]), "actual"),
        (lambda rows: rows.assign(q10=0.0), "q02"),
        (lambda rows: rows.assign(naive=0.0), "naive"),
    ],
    ids=["missing column", "some quantiles only", "unknown column"],
)
def test_write_predictions_refuses_other_shapes(tmp_path: Path, change, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_predictions(tmp_path / PREDICTIONS_FILE, change(predictions()))
    assert not (tmp_path / PREDICTIONS_FILE).exists()


def test_read_predictions_of_an_old_run(tmp_path: Path) -> None:
    (tmp_path / "test_predictions.csv").write_text(
        "date,horizon,actual,predicted,naive\n2020-01-10,1,-0.015,-0.007,0.0\n2020-01-13,2,0.01,0.003,0.0\n"
    )
    rows = read_predictions(tmp_path)
    assert rows is not None
    assert rows.to_dict("list") == {
        "split": ["test", "test"],
        "date": ["2020-01-10", "2020-01-13"],
        "horizon": [1, 2],
        "actual": [-0.015, 0.01],
        "predicted": [-0.007, 0.003],
    }
    out = evaluate(rows, FRAME, FOLD, ["naive"], costs_bps=0.0)
    assert out["test_naive_rmse"] == pytest.approx(np.sqrt((0.015**2 + 0.01**2) / 2))
    assert out["val_rmse"] is None


def test_read_predictions_without_a_file(tmp_path: Path) -> None:
    assert read_predictions(tmp_path) is None
