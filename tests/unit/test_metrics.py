"""Metrics from prediction rows: each built-in against numbers worked out by hand or by an
independent numpy/scipy expression on tiny splits, the cases where a metric is undefined, the
legacy column names, and a metric added by registration."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from core.metrics import (
    METRICS,
    QUANTILE_COLUMNS,
    QUANTILES,
    Metric,
    SplitRows,
    column_name,
    compute_split,
    describe_column,
    metric_columns,
    metric_names,
    register_metric,
)

TRAIN = np.array([1.0, 2.0, 4.0, 3.0])  # |diffs| 1, 2, 1: s = 4/3
# Horizon-1 rows given out of date order (the strategy must sort them), and two horizon-2 rows.
ROWS = pd.DataFrame(
    {
        "date": ["2020-01-06", "2020-01-02", "2020-01-07", "2020-01-03", "2020-01-06", "2020-01-07"],
        "horizon": [1, 1, 1, 1, 2, 2],
        "actual": [0.03, 0.01, 0.00, -0.02, 0.03, 0.00],
        "predicted": [0.00, 0.02, -0.01, 0.01, -0.01, 0.02],
        "ref_naive": 0.0,
        "ref_mean": 0.005,
    }
)
ERRORS = ROWS["predicted"].to_numpy() - ROWS["actual"].to_numpy()


def split(rows: pd.DataFrame = ROWS, costs_bps: float = 0.0, train: np.ndarray = TRAIN) -> SplitRows:
    return SplitRows(rows, train, costs_bps)


def compute(rows: pd.DataFrame = ROWS, costs_bps: float = 0.0, train: np.ndarray = TRAIN) -> dict[str, float | None]:
    return compute_split(split(rows, costs_bps, train), ["naive", "mean"])


def test_point_errors() -> None:
    out = compute()
    assert out["rmse"] == pytest.approx(math.sqrt(sum(e * e for e in ERRORS) / 6))
    mae = sum(abs(e) for e in ERRORS) / 6
    assert out["mae"] == pytest.approx(mae)
    assert out["mase"] == pytest.approx(mae / (4 / 3))


def test_direction() -> None:
    # actual != 0 on 4 rows: 0.03 vs 0.00 (a zero forecast misses), 0.01 vs 0.02 (hit),
    # -0.02 vs 0.01 (miss), 0.03 vs -0.01 (miss): 1 hit of 4.
    out = compute()
    assert out["dir_acc"] == 0.25
    # P(X >= 1) for X ~ Binomial(4, 0.5) = 1 - 1/16
    assert out["dir_pvalue"] == pytest.approx(15 / 16)


@pytest.mark.parametrize("costs_bps", [0.0, 10.0])
def test_sign_strategy(costs_bps: float) -> None:
    # Horizon-1 rows in date order: actual 0.01, -0.02, 0.03, 0.00; predicted 0.02, 0.01, 0.00, -0.01.
    # pos 1, 1, 0, -1 (flat before): changes 1, 0, 1, 1.
    c = costs_bps / 10_000
    r = np.array([0.01 - c, -0.02, 0.0 - c, 0.0 - c])
    out = compute(costs_bps=costs_bps)
    assert out["total_return"] == pytest.approx(-0.01 - 3 * c)
    assert out["turnover"] == pytest.approx(0.75)
    assert out["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252))


def test_references_skill_and_diebold_mariano() -> None:
    out = compute()
    actual = ROWS["actual"].to_numpy()
    naive_rmse = math.sqrt(np.mean(actual**2))
    mean_rmse = math.sqrt(np.mean((0.005 - actual) ** 2))
    assert out["naive_rmse"] == pytest.approx(naive_rmse)
    assert out["mean_rmse"] == pytest.approx(mean_rmse)
    rmse = math.sqrt(np.mean(ERRORS**2))
    assert out["skill_naive"] == pytest.approx(1 - rmse / naive_rmse)
    assert out["skill_mean"] == pytest.approx(1 - rmse / mean_rmse)
    # HLN-corrected DM on the four horizon-1 rows, recomputed from its definition.
    first = ROWS[ROWS["horizon"] == 1]
    loss = (first["actual"] - first["predicted"]) ** 2 - first["actual"] ** 2
    n = 4
    dm = loss.mean() / math.sqrt(loss.var(ddof=0) / n) * math.sqrt((n - 1) / n)
    assert out["dm_naive_stat"] == pytest.approx(dm)
    assert out["dm_naive_pvalue"] == pytest.approx(2 * stats.t.sf(abs(dm), n - 1))


def quantile_rows() -> pd.DataFrame:
    rows = pd.DataFrame(
        {
            "date": ["2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07"],
            "horizon": 1,
            "actual": [0.0, 0.5, 2.5, -3.0],
            "predicted": 0.0,
        }
    )
    # Every row's quantiles: -2, -1, -0.5, 0, 0.5, 1, 2.
    for column, value in zip(QUANTILE_COLUMNS, [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], strict=True):
        rows[column] = value
    return rows


def test_quantile_metrics() -> None:
    rows = quantile_rows()
    out = compute(rows.assign(ref_naive=0.0, ref_mean=0.0))
    expected = np.mean(
        [
            max(q * (y - rows.at[i, c]), (q - 1) * (y - rows.at[i, c]))
            for i, y in enumerate(rows["actual"])
            for q, c in zip(QUANTILES, QUANTILE_COLUMNS, strict=True)
        ]
    )
    assert out["pinball"] == pytest.approx(expected)
    # Inside [-1, 1]: 0.0 and 0.5; inside [-2, 2]: the same two (2.5 and -3 are outside both).
    assert out["coverage_80"] == 0.5
    assert out["coverage_96"] == 0.5
    # On the edges: q10 <= actual <= q90 counts them.
    edges = rows.assign(actual=[-1.0, 1.0, 2.0, -2.0], ref_naive=0.0, ref_mean=0.0)
    assert compute(edges)["coverage_80"] == 0.5
    assert compute(edges)["coverage_96"] == 1.0


def test_pinball_by_hand() -> None:
    # One row, actual 1, every quantile forecast 0: the mean of q over the 7 levels.
    rows = quantile_rows().iloc[:1].assign(actual=1.0, ref_naive=0.0, ref_mean=0.0)
    for column in QUANTILE_COLUMNS:
        rows[column] = 0.0
    assert compute(rows)["pinball"] == pytest.approx((0.02 + 0.1 + 0.25 + 0.5 + 0.75 + 0.9 + 0.98) / 7)


def test_quantile_metrics_are_none_without_quantile_columns() -> None:
    out = compute()
    assert out["pinball"] is None
    assert out["coverage_80"] is None
    assert out["coverage_96"] is None


def test_undefined_values_are_none() -> None:
    still = ROWS.assign(actual=0.0)
    out = compute(still, train=np.array([2.0, 2.0, 2.0]))
    assert out["dir_acc"] is None
    assert out["dir_pvalue"] is None
    assert out["mase"] is None  # s = 0
    assert out["skill_naive"] is None  # the naive forecast is exact
    assert compute(train=np.array([1.0]))["mase"] is None
    # One horizon-1 row: no Sharpe, no Diebold-Mariano.
    one = compute(ROWS.iloc[:1])
    assert one["sharpe"] is None
    assert one["dm_naive_stat"] is None
    assert one["dm_naive_pvalue"] is None
    assert one["total_return"] == 0.0  # the position 0 (forecast 0.00): no return, no cost
    # Equal daily returns (0.1 a day, long throughout, no costs): std 0, so no Sharpe.
    flat = ROWS[ROWS["horizon"] == 1].assign(actual=0.1, predicted=1.0)
    assert compute(flat)["sharpe"] is None
    assert all(value is None or math.isfinite(value) for value in compute(still).values())


def test_empty_split_is_all_none() -> None:
    out = compute(ROWS.iloc[:0])
    assert set(out) == set(metric_names(["naive", "mean"]))
    assert all(value is None for value in out.values())


def test_a_missing_reference_column_is_refused() -> None:
    with pytest.raises(KeyError, match="ar1"):
        compute_split(split(), ["naive", "ar1"])


def test_legacy_columns_keep_their_names() -> None:
    columns = metric_columns(["naive"])
    for legacy in (
        "val_rmse",
        "test_rmse",
        "val_mae",
        "test_mae",
        "val_naive_rmse",
        "test_naive_rmse",
        "test_skill",
        "test_dm_stat",
        "test_dm_pvalue",
    ):
        assert legacy in columns
    assert column_name("test", "skill_naive") == "test_skill"
    assert column_name("test", "skill_mean") == "test_skill_mean"
    assert column_name("val", "dm_naive_pvalue") == "val_dm_pvalue"
    assert len(columns) == len(set(columns)) == 2 * len(metric_names(["naive"]))


def test_metric_names_expand_templates_in_registry_order() -> None:
    names = metric_names(["naive", "ar1"])
    assert names[:4] == ["rmse", "mae", "mase", "dir_acc"]
    assert names.index("naive_rmse") + 1 == names.index("ar1_rmse")
    assert names.index("ar1_rmse") < names.index("skill_naive") < names.index("dm_ar1_pvalue") < names.index("pinball")


def test_describe_column_inverts_column_name() -> None:
    for column in metric_columns(["naive", "mean", "ar1"]):
        split_name, metric, ref = describe_column(column)
        name = metric.name if ref is None else metric.name.replace("{ref}", ref)
        assert column_name(split_name, name) == column
    assert describe_column("test_skill")[1:] == (METRICS["skill_{ref}"], "naive")
    assert describe_column("val_mean_rmse")[1:] == (METRICS["{ref}_rmse"], "mean")
    assert describe_column("test_coverage_80")[1].better is None


@pytest.mark.parametrize("column", ["test_skill_naive", "train_rmse", "test_nope_rmse", "rmse", "test_"])
def test_describe_column_refuses_other_names(column: str) -> None:
    with pytest.raises(KeyError):
        describe_column(column)


@pytest.fixture
def max_error() -> Iterator[Metric]:
    metric = register_metric(
        Metric(
            "max_error",
            "max(|predicted - actual|)",
            "lower",
            lambda rows, ref: float(np.max(np.abs(rows.rows["predicted"] - rows.rows["actual"]))),
        )
    )
    yield metric
    del METRICS[metric.name]


def test_a_registered_metric_is_a_column_and_is_computed(max_error: Metric) -> None:
    columns = metric_columns(["naive"])
    assert columns[len(columns) // 2 - 1] == "val_max_error"
    assert columns[-1] == "test_max_error"
    assert describe_column("test_max_error") == ("test", max_error, None)
    assert compute()["max_error"] == pytest.approx(0.04)  # 0.03 vs -0.01


def test_a_metric_that_raises_costs_only_its_own_column() -> None:
    def broken(rows: SplitRows, ref: str | None) -> float:
        raise IndexError("a researcher's bug")

    register_metric(Metric("broken", "raises", "lower", broken))
    try:
        values = compute()
    finally:
        del METRICS["broken"]
    assert values["broken"] is None
    assert values["rmse"] == compute()["rmse"] is not None


@pytest.mark.parametrize(
    ("name", "better"),
    [("rmse", "lower"), ("skill", "higher"), ("Bad", "lower"), ("{ref}_{ref}", "lower"), ("fine", "up")],
)
def test_register_refuses_bad_metrics(name: str, better: str) -> None:
    with pytest.raises(ValueError):
        register_metric(Metric(name, "x", better, lambda rows, ref: 0.0))
    assert "fine" not in METRICS
