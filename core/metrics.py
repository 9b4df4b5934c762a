"""The run metrics: each a pure function of one split's prediction rows and the fold's train
window, so a run's metrics are recomputed from its `predictions.parquet` at any time.

A metric's name is either plain (`rmse`) or a template with `{ref}` (`skill_{ref}`), expanded
once per reference forecast (`core.references`). Its column is `{split}_{name}`, except the
names in `LEGACY`, which keep the columns runs had before the registry (`test_skill`,
`test_dm_stat`, `test_dm_pvalue`). Registration order is column order; adding a metric is one
`register_metric` call. Every value is float64 or None (undefined), never NaN.

Each metric also names its loss family (`LOSSES`): the per-day loss that the model confidence
set and the SPA test (`core.selection`) compare configs on when the sweep is ranked by it.

One job, the registry of run metrics and the metrics in it: past 500 lines by the count of
metrics (errors, direction, the sign strategy after costs, skill and Diebold-Mariano against
each reference, pinball loss and coverage), each a few lines beside its registration.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from core.references import NAME_PATTERN, REFERENCES, add_named
from core.significance import diebold_mariano, skill

log = logging.getLogger("tftsweep.metrics")

QUANTILES = (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98)
QUANTILE_COLUMNS = ("q02", "q10", "q25", "q50", "q75", "q90", "q98")
SPLITS = ("val", "test")
BETTER = ("lower", "higher")
REF = "{ref}"
LEGACY = {"skill_naive": "skill", "dm_naive_stat": "dm_stat", "dm_naive_pvalue": "dm_pvalue"}
TRADING_DAYS = 252


@dataclass(frozen=True)
class SplitRows:
    """One split's prediction rows (`date, horizon, actual, predicted`, the q columns with a
    quantile loss, `ref_{name}` per reference; any order), the fold's train-window target in
    date order, and the cost of one unit of position change in basis points."""

    rows: pd.DataFrame
    train_target: np.ndarray
    costs_bps: float = 0.0


@dataclass(frozen=True)
class Metric:
    """A metric.

    Attributes:
        name: `[a-z][a-z0-9_]*`, or a template with one `{ref}` for a per-reference metric.
        description: the exact formula in one or two lines (docs and API column docs quote it).
        better: "lower", "higher", or None where a value is not rankable (a coverage).
        compute: compute(rows, ref) -> value or None; `ref` is the reference's name for a
            template, None for a plain metric.
        needs_quantiles: None without the q columns (a point-loss run).
        loss: the name of its loss family in `LOSSES`: the per-day loss `core.selection`
            compares configs on when the sweep is ranked by this metric.
    """

    name: str
    description: str
    better: str | None
    compute: Callable[[SplitRows, str | None], float | None]
    needs_quantiles: bool = False
    loss: str = "squared"

    @property
    def per_reference(self) -> bool:
        return REF in self.name


@dataclass(frozen=True)
class Loss:
    """A loss family: one loss per forecast day, lower is better.

    Attributes:
        name: `[a-z][a-z0-9_]*`, what `Metric.loss` names.
        description: what it is, in words (summary.json's `selection.loss` and the docs quote it).
        per_day: per_day(rows, costs_bps) -> one loss per row of `rows`, a run's horizon-1 rows of
            one split in date order (float64; NaN where the loss is undefined that day).
    """

    name: str
    description: str
    per_day: Callable[[pd.DataFrame, float], np.ndarray]


METRICS: dict[str, Metric] = {}
LOSSES: dict[str, Loss] = {}


def register_loss(loss: Loss) -> Loss:
    """Add `loss` to `LOSSES` and return it (a metric registered after it may name it).

    Raises:
        ValueError: the name is taken or is not `[a-z][a-z0-9_]*`.
    """
    return add_named(LOSSES, loss.name, loss, "loss")


def column_loss(column: str) -> Loss:
    """The loss family of the metric column `column` (`val_rmse`: squared error).

    Raises:
        KeyError: not a metric column of a registered metric.
    """
    return LOSSES[describe_column(column)[1].loss]


def register_metric(metric: Metric) -> Metric:
    """Add `metric` to `METRICS` (its columns come after those registered before) and return it.

    Raises:
        ValueError: the name is taken, is not `[a-z][a-z0-9_]*` with at most one `{ref}`, or is
            a column name `LEGACY` keeps for another metric; `better` is not lower, higher or None.
    """
    if metric.name.count(REF) > 1 or not NAME_PATTERN.fullmatch(metric.name.replace(REF, "x")):
        raise ValueError(f"metric name {metric.name!r} must match [a-z][a-z0-9_]* with at most one {REF}")
    if metric.name in METRICS or metric.name in LEGACY.values():
        raise ValueError(f"metric {metric.name!r} is already registered")
    if metric.better is not None and metric.better not in BETTER:
        raise ValueError(f"metric {metric.name!r}: better must be 'lower', 'higher' or None, not {metric.better!r}")
    if metric.loss not in LOSSES:
        raise ValueError(f"metric {metric.name!r}: loss {metric.loss!r} is not a registered loss ({sorted(LOSSES)})")
    METRICS[metric.name] = metric
    return metric


def metric_names(references: Sequence[str]) -> list[str]:
    """Every metric's name in registry order, each template once per reference (in the given order)."""
    out: list[str] = []
    for metric in METRICS.values():
        if metric.per_reference:
            out.extend(metric.name.replace(REF, ref) for ref in references)
        else:
            out.append(metric.name)
    return out


def column_name(split: str, name: str) -> str:
    """The column of metric `name` (expanded) on `split`: `{split}_{name}`, or its `LEGACY` name."""
    return f"{split}_{LEGACY.get(name, name)}"


def metric_columns(references: Sequence[str]) -> list[str]:
    """Every metric column: for each split (val, test), each of `metric_names(references)`."""
    names = metric_names(references)
    return [column_name(split, name) for split in SPLITS for name in names]


def describe_column(column: str) -> tuple[str, Metric, str | None]:
    """(split, metric, reference or None) of a metric column, the inverse of `column_name`.

    Raises:
        KeyError: not a metric column of a registered metric and reference.
    """
    split, _, rest = column.partition("_")
    if split in SPLITS and rest:
        name = {legacy: name for name, legacy in LEGACY.items()}.get(rest, rest)
        for metric, ref in _parse_name(name):
            if column_name(split, name) == column:
                return split, metric, ref
    raise KeyError(f"{column!r} is not a metric column")


def _parse_name(name: str) -> list[tuple[Metric, str | None]]:
    """The (metric, reference) pairs whose expanded name is `name`: a plain metric first."""
    found: list[tuple[Metric, str | None]] = []
    if name in METRICS and not METRICS[name].per_reference:
        found.append((METRICS[name], None))
    for metric in METRICS.values():
        if metric.per_reference:
            head, tail = metric.name.split(REF)
            match = re.fullmatch(re.escape(head) + "(.+)" + re.escape(tail), name)
            if match and match.group(1) in REFERENCES:
                found.append((metric, match.group(1)))
    return found


def compute_split(rows: SplitRows, references: Sequence[str]) -> dict[str, float | None]:
    """Every metric on one split, by name (`metric_names(references)` order).

    Raises:
        KeyError: a reference's column `ref_{name}` is not among the rows.
    """
    missing = [ref for ref in references if f"ref_{ref}" not in rows.rows.columns]
    if missing:
        raise KeyError(f"no forecast column for references {missing} (add them with core.evaluation.add_references)")
    has_quantiles = all(column in rows.rows.columns for column in QUANTILE_COLUMNS)
    out: dict[str, float | None] = {}
    for metric in METRICS.values():
        refs: Sequence[str | None] = references if metric.per_reference else [None]
        for ref in refs:
            name = metric.name if ref is None else metric.name.replace(REF, ref)
            out[name] = None if metric.needs_quantiles and not has_quantiles else _computed(metric, name, rows, ref)
    return out


def _computed(metric: Metric, name: str, rows: SplitRows, ref: str | None) -> float | None:
    """The metric's value, None where it is undefined or where its function fails: a
    registered metric that raises costs its own column, never a run's record or a report build."""
    try:
        return _finite(metric.compute(rows, ref))
    except Exception as exc:  # a researcher's function may raise anything
        log.warning("metric %s not computed: %s: %s", name, type(exc).__name__, exc)
        return None


def _finite(value: float | None) -> float | None:
    """The value as a float, None where it is undefined (None, NaN or infinite)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# --- the built-in metrics -------------------------------------------------------------------------


def _column(rows: pd.DataFrame, name: str) -> np.ndarray:
    values: np.ndarray = rows[name].to_numpy(dtype="float64")
    return values


def _rmse(actual: np.ndarray, forecast: np.ndarray) -> float | None:
    return float(np.sqrt(np.mean(np.square(forecast - actual)))) if len(actual) else None


def _horizon_one(rows: SplitRows) -> pd.DataFrame:
    """The horizon-1 rows in date order: one forecast per day, the series a strategy trades."""
    first = rows.rows[rows.rows["horizon"] == 1]
    return first.sort_values("date", kind="stable")


def _rmse_metric(rows: SplitRows, ref: str | None) -> float | None:
    return _rmse(_column(rows.rows, "actual"), _column(rows.rows, "predicted"))


def _mae(rows: SplitRows, ref: str | None) -> float | None:
    error = _column(rows.rows, "predicted") - _column(rows.rows, "actual")
    return float(np.mean(np.abs(error))) if len(error) else None


def _mase(rows: SplitRows, ref: str | None) -> float | None:
    train = np.asarray(rows.train_target, dtype="float64")
    mae = _mae(rows, None)
    if len(train) < 2 or mae is None:
        return None
    scale = float(np.mean(np.abs(np.diff(train))))
    return mae / scale if scale != 0 else None


def _direction_hits(rows: SplitRows) -> tuple[int, int]:
    """(hits, n): over rows whose actual is not 0, those whose forecast has its sign (0 misses)."""
    actual = _column(rows.rows, "actual")
    predicted = _column(rows.rows, "predicted")
    moved = actual != 0
    hits = int(np.sum(np.sign(predicted[moved]) == np.sign(actual[moved])))
    return hits, int(moved.sum())


def _dir_acc(rows: SplitRows, ref: str | None) -> float | None:
    hits, n = _direction_hits(rows)
    return hits / n if n else None


def _dir_pvalue(rows: SplitRows, ref: str | None) -> float | None:
    hits, n = _direction_hits(rows)
    return float(stats.binomtest(hits, n, 0.5, alternative="greater").pvalue) if n else None


def _position_changes(position: np.ndarray) -> np.ndarray:
    """|pos[d] - pos[d-1]| per day, flat (0) before the first day."""
    change: np.ndarray = np.abs(np.diff(position, prepend=0.0))
    return change


def strategy_returns(rows: pd.DataFrame, costs_bps: float, column: str = "predicted") -> pd.DataFrame:
    """The sign strategy's daily log returns (`date`, `r`), in date order: on the horizon-1 rows
    of `rows` (prediction rows of one split), hold `pos[d] = sign(column[d])` and earn
    `r[d] = pos[d] * actual[d] - c * |pos[d] - pos[d-1]|`, flat before the first day,
    `c = costs_bps / 10000`. The sharpe, total_return and turnover metrics trade it on
    `predicted`; the plots trade each reference's own forecast (`ref_{name}`) the same way."""
    first = rows[rows["horizon"] == 1].sort_values("date", kind="stable")
    position = np.sign(_column(first, column))
    returns = position * _column(first, "actual") - costs_bps / 10_000 * _position_changes(position)
    return pd.DataFrame({"date": first["date"].to_numpy(), "r": returns})


def _strategy(rows: SplitRows) -> np.ndarray:
    """The daily log returns of `strategy_returns` on the model's forecast."""
    returns: np.ndarray = strategy_returns(rows.rows, rows.costs_bps)["r"].to_numpy(dtype="float64")
    return returns


def _sharpe(rows: SplitRows, ref: str | None) -> float | None:
    returns = _strategy(rows)
    # ptp, not std: equal returns can give a std of 1e-18 from rounding, and a huge Sharpe.
    if len(returns) < 2 or np.ptp(returns) == 0:
        return None
    return float(np.mean(returns)) / float(np.std(returns, ddof=1)) * math.sqrt(TRADING_DAYS)


def _sharpe_pvalue(rows: SplitRows, ref: str | None) -> float | None:
    returns = _strategy(rows)
    if len(returns) < 2 or np.ptp(returns) == 0:
        return None
    t = float(np.mean(returns)) / (float(np.std(returns, ddof=1)) / math.sqrt(len(returns)))
    return float(stats.t.sf(t, len(returns) - 1))


def _total_return(rows: SplitRows, ref: str | None) -> float | None:
    returns = _strategy(rows)
    return float(np.sum(returns)) if len(returns) else None


def _turnover(rows: SplitRows, ref: str | None) -> float | None:
    change = _position_changes(np.sign(_column(_horizon_one(rows), "predicted")))
    return float(np.mean(change)) if len(change) else None


def _reference(ref: str | None) -> str:
    if ref is None:
        raise ValueError("a per-reference metric needs a reference")
    return f"ref_{ref}"


def _ref_rmse(rows: SplitRows, ref: str | None) -> float | None:
    return _rmse(_column(rows.rows, "actual"), _column(rows.rows, _reference(ref)))


def _skill(rows: SplitRows, ref: str | None) -> float | None:
    rmse, ref_rmse = _rmse_metric(rows, None), _ref_rmse(rows, ref)
    if rmse is None or ref_rmse is None or ref_rmse == 0:
        return None
    return float(skill(rmse, ref_rmse))


def _diebold_mariano(rows: SplitRows, ref: str | None) -> tuple[float, float]:
    first = _horizon_one(rows)
    return diebold_mariano(_column(first, "actual"), _column(first, "predicted"), _column(first, _reference(ref)))


def _pinball(rows: SplitRows, ref: str | None) -> float | None:
    if rows.rows.empty:
        return None
    actual = _column(rows.rows, "actual")[:, None]
    quantiles = rows.rows[list(QUANTILE_COLUMNS)].to_numpy(dtype="float64")
    levels = np.asarray(QUANTILES)
    error = actual - quantiles
    return float(np.mean(np.maximum(levels * error, (levels - 1) * error)))


def _coverage(low: str, high: str) -> Callable[[SplitRows, str | None], float | None]:
    def coverage(rows: SplitRows, ref: str | None) -> float | None:
        if rows.rows.empty:
            return None
        actual = _column(rows.rows, "actual")
        inside = (_column(rows.rows, low) <= actual) & (actual <= _column(rows.rows, high))
        return float(np.mean(inside))

    return coverage


def _squared_loss(rows: pd.DataFrame, costs_bps: float) -> np.ndarray:
    loss: np.ndarray = np.square(_column(rows, "predicted") - _column(rows, "actual"))
    return loss


def _absolute_loss(rows: pd.DataFrame, costs_bps: float) -> np.ndarray:
    loss: np.ndarray = np.abs(_column(rows, "predicted") - _column(rows, "actual"))
    return loss


def _miss_loss(rows: pd.DataFrame, costs_bps: float) -> np.ndarray:
    """1 where the forecast's sign is not the actual's (a zero forecast misses), as dir_acc
    counts; undefined (NaN) on a day the actual is 0, which dir_acc leaves out too."""
    actual, predicted = _column(rows, "actual"), _column(rows, "predicted")
    miss = (np.sign(predicted) != np.sign(actual)).astype("float64")
    return np.where(actual != 0, miss, np.nan)


def _strategy_loss(rows: pd.DataFrame, costs_bps: float) -> np.ndarray:
    """-r[d]: the sign strategy's daily log return after costs, negated (a loss)."""
    loss: np.ndarray = -strategy_returns(rows, costs_bps)["r"].to_numpy(dtype="float64")
    return loss


def _turnover_loss(rows: pd.DataFrame, costs_bps: float) -> np.ndarray:
    return _position_changes(np.sign(_column(rows, "predicted")))


def _pinball_loss(rows: pd.DataFrame, costs_bps: float) -> np.ndarray:
    """The day's pinball loss, the mean over the 7 quantiles; NaN without the q columns."""
    if not all(c in rows.columns for c in QUANTILE_COLUMNS):
        return np.full(len(rows), np.nan)
    error = _column(rows, "actual")[:, None] - rows[list(QUANTILE_COLUMNS)].to_numpy(dtype="float64")
    levels = np.asarray(QUANTILES)
    loss: np.ndarray = np.mean(np.maximum(levels * error, (levels - 1) * error), axis=1)
    return loss


register_loss(Loss("squared", "squared error (predicted - actual)^2", _squared_loss))
register_loss(Loss("absolute", "absolute error |predicted - actual|", _absolute_loss))
register_loss(
    Loss(
        "miss", "a miss: 1 when sign(predicted) != sign(actual), 0 otherwise (days with actual 0 left out)", _miss_loss
    )
)
register_loss(
    Loss(
        "strategy",
        "the sign strategy's negated daily return -r[d] = -(pos[d]*actual[d] - c*|pos[d] - pos[d-1]|)",
        _strategy_loss,
    )
)
register_loss(Loss("turnover", "the sign strategy's position change |pos[d] - pos[d-1]|", _turnover_loss))
register_loss(
    Loss(
        "pinball",
        "the pinball loss, mean over the 7 quantiles of max(q*(actual - y_q), (q - 1)*(actual - y_q))",
        _pinball_loss,
    )
)

register_metric(Metric("rmse", "sqrt(mean((predicted - actual)^2)) over the split's rows", "lower", _rmse_metric))
register_metric(Metric("mae", "mean(|predicted - actual|) over the split's rows", "lower", _mae, loss="absolute"))
register_metric(
    Metric(
        "mase",
        "mae / s, s = mean(|target[d] - target[d-1]|) over consecutive train-window days "
        "(None when s is 0 or the window has fewer than 2 days)",
        "lower",
        _mase,
        loss="absolute",
    )
)
register_metric(
    Metric(
        "dir_acc",
        "over rows with actual != 0: the share with sign(predicted) == sign(actual) (a zero forecast misses)",
        "higher",
        _dir_acc,
        loss="miss",
    )
)
register_metric(
    Metric(
        "dir_pvalue",
        "one-sided binomial test of dir_acc's hits against 0.5: binomtest(hits, n, 0.5, alternative='greater')",
        "lower",
        _dir_pvalue,
        loss="miss",
    )
)
_STRATEGY = (
    "of r[d] = pos[d]*actual[d] - c*|pos[d] - pos[d-1]|, pos = sign(predicted) on horizon-1 rows in date order, "
    "flat before the first day, c = costs_bps / 10000"
)
register_metric(
    Metric("sharpe", f"mean(r) / std(r, ddof=1) * sqrt(252) {_STRATEGY}", "higher", _sharpe, loss="strategy")
)
register_metric(
    Metric(
        "sharpe_pvalue",
        f"one-sided t-test that mean(r) > 0: t.sf(mean(r) / (std(r, ddof=1) / sqrt(n)), n - 1) {_STRATEGY}",
        "lower",
        _sharpe_pvalue,
        loss="strategy",
    )
)
register_metric(Metric("total_return", f"sum(r) (a log return) {_STRATEGY}", "higher", _total_return, loss="strategy"))
register_metric(
    Metric("turnover", "mean(|pos[d] - pos[d-1]|) of the sharpe strategy", "lower", _turnover, loss="turnover")
)
register_metric(
    Metric("{ref}_rmse", "sqrt(mean((ref - actual)^2)): the reference's RMSE on the same rows", "lower", _ref_rmse)
)
register_metric(Metric("skill_{ref}", "1 - rmse / {ref}_rmse (above 0: better than the reference)", "higher", _skill))
register_metric(
    Metric(
        "dm_{ref}_stat",
        "HLN-corrected Diebold-Mariano statistic of squared errors, model minus reference, on horizon-1 rows "
        "in date order (negative: the model's errors are smaller)",
        "lower",
        lambda rows, ref: _diebold_mariano(rows, ref)[0],
    )
)
register_metric(
    Metric(
        "dm_{ref}_pvalue",
        "two-sided p-value of dm_{ref}_stat: 2 * t.sf(|stat|, n - 1)",
        "lower",
        lambda rows, ref: _diebold_mariano(rows, ref)[1],
    )
)
register_metric(
    Metric(
        "pinball",
        "mean over rows and the 7 quantiles q of max(q*(actual - y_q), (q - 1)*(actual - y_q))",
        "lower",
        _pinball,
        needs_quantiles=True,
        loss="pinball",
    )
)
register_metric(
    Metric(
        "coverage_80", "share of rows with q10 <= actual <= q90", None, _coverage("q10", "q90"), needs_quantiles=True
    )
)
register_metric(
    Metric(
        "coverage_96", "share of rows with q02 <= actual <= q98", None, _coverage("q02", "q98"), needs_quantiles=True
    )
)
