"""Report plots, drawn with matplotlib's object API (`Figure`), never pyplot: safe in servers and threads.

One function per figure, each a pure function of a table, over shared sizing helpers (wrapped
labels, figures sized to their rows): past 450 lines by the count of figures, not by what any
one does. A split by report (sweep, study, compare) would share the helpers across modules.
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display anywhere this runs

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from core import significance as sig
from core.files import write_bytes_atomic

BETTER = "#2a9d8f"
WORSE = "#e76f51"
NEUTRAL = "#457b9d"
BASELINE = "#6c757d"
UNSURE = "#b8c1cc"
# A config's colour says its verdict against the baseline (core.significance).
VERDICT_COLORS = {
    sig.BASELINE: BASELINE,
    sig.BETTER: BETTER,
    sig.WORSE: WORSE,
    sig.INDISTINGUISHABLE: NEUTRAL,
    sig.INSUFFICIENT: UNSURE,
}


def verdict_color(verdict: str) -> str:
    """A verdict's colour; `worse (raced out after n pairs)` is a worse one (core.racing)."""
    return VERDICT_COLORS.get(str(verdict).split(" (")[0], NEUTRAL)


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save_figure(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    # No timestamps in the metadata: the same data draws the same file. A tight box keeps any
    # text the layout could not place inside the image rather than cut at its edge.
    fig.savefig(buffer, format="png", metadata={"Software": None}, bbox_inches="tight", pad_inches=0.08)
    write_bytes_atomic(path, buffer.getvalue())


# Tick labels are wrapped at this many characters a line, and the figure sized to the longest line
# and to the number of lines, so that no count of configs or length of name runs labels together.
LABEL_CHARS = 36
_INCH_PER_CHAR = 0.075  # at the tick labels' 9 pt
_INCH_PER_LINE = 0.19


def _wrapped(text: str, width: int = LABEL_CHARS) -> str:
    """`text` broken into lines of at most `width` characters (at spaces, commas or `=` where it
    can, mid-word where it must); its own line breaks are kept."""
    lines: list[str] = []
    for part in text.split("\n"):
        words = re.split(r"(?<=[ ,=_])", part) if len(part) > width else [part]
        line = ""
        for word in words:
            while len(word) > width:  # a word longer than a line: cut it
                if line:
                    lines.append(line.rstrip())
                    line = ""
                lines.append(word[:width])
                word = word[width:]
            if len(line) + len(word) > width and line:
                lines.append(line.rstrip())
                line = ""
            line += word
        lines.append(line.rstrip())
    return "\n".join(lines)


def _label_block(labels: list[str]) -> tuple[float, float]:
    """(width, height) in inches of a column of wrapped tick labels."""
    lines = [line for label in labels for line in label.split("\n")]
    longest = max((len(line) for line in lines), default=0)
    return longest * _INCH_PER_CHAR + 0.3, len(lines) * _INCH_PER_LINE + 0.12 * len(labels)


def _bar_figure(labels: list[str], plot_width: float = 6.0, extra_height: float = 1.9) -> tuple[Figure, Any]:
    """A figure for horizontal bars with these y tick labels: as wide as the labels plus the
    plot, as tall as their lines."""
    width, height = _label_block(labels)
    return _figure(plot_width + width, max(3.0, height + extra_height))


def _few_ticks(axis: Any, bins: int = 5) -> None:
    """At most `bins` ticks on a numeric axis, numbers short (a common power of ten aside)."""
    axis.set_major_locator(MaxNLocator(nbins=bins))
    formatter = ScalarFormatter(useMathText=True)
    formatter.set_powerlimits((-3, 4))
    axis.set_major_formatter(formatter)


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color=BASELINE)
    ax.set_xticks([])
    ax.set_yticks([])


def _interval_columns(table: pd.DataFrame) -> tuple[str, str]:
    """The interval that agrees with the verdict (simultaneous over the Holm family), or the
    unadjusted one for a table written before it existed."""
    if "simultaneous_ci_low" in table.columns:
        return "simultaneous_ci_low", "simultaneous_ci_high"
    return "ci95_low", "ci95_high"


def plot_config_ranking(ranking: pd.DataFrame, title: str, top: int = 25, rank_by: str = "val_rmse") -> Figure:
    """Robust score of `rank_by` per config (best at the top), coloured by its verdict against
    the baseline, with mean ± std of `rank_by` and, for val RMSE, the naive forecast's."""
    data = ranking[ranking["n_runs"] > 0].head(top)
    labels = [_wrapped(f"{c}  (n={n})") for c, n in zip(data["config_id"], data["n_runs"], strict=True)]
    fig, ax = _bar_figure(labels)
    if data.empty:
        _note(ax, "no succeeded runs yet")
        ax.set_title(title)
        return fig
    mean, std = data[f"mean_{rank_by}"], data[f"std_{rank_by}"]
    # rank_score where the table has it (tables written before it existed: val RMSE's robust score).
    score = data["rank_score"] if "rank_score" in data else data["robust_score"]
    name = "val RMSE" if rank_by == "val_rmse" else rank_by
    y = np.arange(len(data))[::-1]
    colors = [verdict_color(v) for v in data["verdict"]]
    ax.barh(y, score, color=colors, alpha=0.55)
    ax.errorbar(mean, y, xerr=std, fmt="o", color="black", capsize=3, label=f"mean {name} ± std")
    naive = data["mean_val_naive_rmse"].mean() if rank_by == "val_rmse" else math.nan
    if math.isfinite(naive):
        ax.axvline(naive, color=WORSE, linestyle="--", linewidth=1, label=f"naive (zero return) {naive:.4g}")
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_ylim(-0.6, len(data) - 0.4)
    low = float(np.nanmin(np.r_[(mean - std).to_numpy(), score.to_numpy()]))
    high = float(np.nanmax(np.r_[(mean + std).to_numpy(), score.to_numpy(), [naive if math.isfinite(naive) else low]]))
    pad = (high - low) * 0.15 or abs(high) * 0.05 or 1e-6
    ax.set_xlim(low - pad, high + pad)
    _few_ticks(ax.xaxis)
    sign = "+" if "rank_score" not in data or rank_by == "val_rmse" else "±"
    ax.set_xlabel(
        "validation RMSE (bar: robust score = mean + std)"
        if rank_by == "val_rmse"
        else f"{name} (bar: rank score = mean {sign} std, in the metric's direction)"
    )
    ax.set_title(_wrapped(title, 70))
    verdicts = [
        Patch(color=verdict_color(v), alpha=0.55, label=f"robust score: {v}") for v in dict.fromkeys(data["verdict"])
    ]
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=[*verdicts, *handles], loc="best", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_param_impact(summary: pd.DataFrame, title: str, alpha: float = sig.DEFAULT_ALPHA) -> Figure:
    """Average val-RMSE change vs baseline per parameter value (negative is better), with the
    simultaneous interval that agrees with its verdict; the values whose difference is
    significant (Holm-adjusted Wilcoxon) are solid and starred."""
    significant = summary["verdict"].isin([sig.BETTER, sig.WORSE]).to_numpy()
    labels = [
        _wrapped(f"{'* ' if s else ''}{c}") + f"\n(win {w:.0%}, n={n}, {v})"
        for c, w, n, v, s in zip(
            summary["config_id"], summary["win_rate"], summary["n_pairs"], summary["verdict"], significant, strict=True
        )
    ]
    fig, ax = _bar_figure(labels, extra_height=2.2)
    if summary.empty:
        _note(ax, "no variant/baseline pairs yet")
        ax.set_title(title)
        return fig
    y = np.arange(len(summary))[::-1]
    delta = summary["avg_delta_rmse_vs_baseline"].to_numpy(dtype="float64")
    low_column, high_column = _interval_columns(summary)
    low = np.nan_to_num(delta - summary[low_column].to_numpy(dtype="float64"), nan=0.0)
    high = np.nan_to_num(summary[high_column].to_numpy(dtype="float64") - delta, nan=0.0)
    ax.barh(
        y,
        delta,
        xerr=np.vstack([low, high]),
        color=[BETTER if d < 0 else WORSE for d in delta],
        capsize=3,
        alpha=0.35,
        error_kw={"ecolor": "black", "elinewidth": 1},
    )
    if significant.any():
        ax.barh(y[significant], delta[significant], color=[BETTER if d < 0 else WORSE for d in delta[significant]])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_ylim(-0.6, len(summary) - 0.4)
    _few_ticks(ax.xaxis)
    interval = "simultaneous" if low_column.startswith("simultaneous") else "unadjusted"
    ax.set_xlabel(
        "val RMSE − baseline val RMSE (same fold and seed)\n"
        f"mean with its {interval} {1 - alpha:.0%} interval; * significant (Holm-adjusted Wilcoxon)"
    )
    ax.set_title(_wrapped(title, 70))
    ax.grid(axis="x", alpha=0.3)
    return fig


def _spelled(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def plot_response_curve(
    detail: pd.DataFrame,
    summary: pd.DataFrame,
    param: str,
    baseline_value: Any,
    title: str,
    alpha: float = sig.DEFAULT_ALPHA,
) -> Figure:
    """The paired effect of each value of `param`: every variant run's val RMSE minus the baseline
    run's of the same fold and seed (a point, coloured by fold), each value's mean with the
    simultaneous interval that agrees with its verdict (coloured by it), and the baseline at 0.
    Values are ordered (by size when numeric) and evenly spaced."""
    pairs = detail[detail["param_name"] == param] if len(detail) else detail
    rows = summary[summary["param_name"] == param] if len(summary) else summary
    count = len(set(map(_spelled, pairs["param_value"]))) + 1 if len(pairs) else 1
    fig, ax = _figure(max(8.0, 0.28 * count + 3), 4.8 + (0.6 if count > 8 else 0))
    if pairs.empty:
        _note(ax, "no variant run paired with a baseline run yet")
        ax.set_title(_wrapped(title, 70))
        return fig
    values = [baseline_value, *pairs["param_value"].tolist()]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    distinct = {_spelled(v): v for v in values}
    order = sorted(distinct, key=(lambda k: float(distinct[k])) if numeric else None)
    position = {k: float(i) for i, k in enumerate(order)}
    folds = list(dict.fromkeys(pairs["fold"]))
    colors = matplotlib.colormaps["tab10"]
    spread = min(0.3, 0.6 / max(len(folds), 1))  # each fold's points a little apart
    x = np.array([position[_spelled(v)] for v in pairs["param_value"]])
    deltas = pairs["delta_rmse_vs_baseline"].to_numpy(dtype="float64")
    for i, fold in enumerate(folds):
        mask = (pairs["fold"] == fold).to_numpy()
        offset = (i - (len(folds) - 1) / 2) * spread / max(len(folds) - 1, 1)
        label = fold if len(folds) <= 8 else ("pair (colour: fold)" if i == 0 else None)
        ax.scatter(x[mask] + offset, deltas[mask], color=colors(i % 10), s=20, alpha=0.75, label=label)
    low_column, high_column = _interval_columns(rows) if len(rows) else ("ci95_low", "ci95_high")
    interval = "simultaneous" if low_column.startswith("simultaneous") else "unadjusted"
    for i, (_, row) in enumerate(rows.iterrows()):
        at, mean = position[_spelled(row["param_value"])], float(row["avg_delta_rmse_vs_baseline"])
        low, high = float(row[low_column]), float(row[high_column])
        err = [[mean - low], [high - mean]] if math.isfinite(low) and math.isfinite(high) else None
        ax.errorbar(
            [at],
            [mean],
            yerr=err,
            fmt="D",
            markersize=7,
            color=verdict_color(row["verdict"]),
            ecolor="black",
            capsize=5,
            linewidth=1.5,
            zorder=3,
            label=f"mean, {interval} {1 - alpha:.0%} interval (colour: verdict)" if i == 0 else None,
        )
    base = position[_spelled(baseline_value)]
    ax.axhline(0, color=BASELINE, linewidth=1)
    ax.scatter([base], [0], marker="s", s=60, color=BASELINE, zorder=3, label=f"baseline {param}={baseline_value}")
    ticks = [_wrapped(k, 14) for k in order]
    turned = len(order) > 8  # upright they would touch
    ax.set_xticks(list(position.values()), ticks, rotation=90 if turned else 0)
    ax.set_xlim(-0.6, len(order) - 0.4)
    _few_ticks(ax.yaxis, 6)
    ax.set_xlabel(param)
    ax.set_ylabel("val RMSE − baseline's\n(same fold and seed)")
    ax.set_title(_wrapped(title, 70))
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return fig


def plot_drift_heatmap(drift: pd.DataFrame, title: str) -> Figure:
    """PSI per feature (rows) and fold/window (columns); bands at 0.1 and 0.25."""
    fig, ax = _figure(
        max(6.0, 1.1 * drift[["fold", "compared"]].drop_duplicates().shape[0] + 4),
        max(3.5, 0.4 * drift["feature"].nunique() + 1.8),
    )
    if drift.empty:
        _note(ax, "no drift data")
        ax.set_title(title)
        return fig
    table = drift.pivot_table(index="feature", columns=["fold", "compared"], values="psi", sort=False)
    values = table.to_numpy()
    image = ax.imshow(np.clip(values, 0, 0.5), cmap="YlOrRd", vmin=0, vmax=0.5, aspect="auto")
    ax.set_yticks(range(len(table.index)), table.index)
    many = len(table.columns) > 8  # side by side they would touch: turned
    ax.set_xticks(
        range(len(table.columns)),
        [f"{f} {c}" if many else f"{f}\n{c}" for f, c in table.columns],
        rotation=45 if many else 0,
        ha="right" if many else "center",
    )
    for (i, j), v in np.ndenumerate(values):
        if math.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="black" if v < 0.3 else "white")
    bar = fig.colorbar(image, ax=ax)
    bar.set_label("PSI (train → window); 0.1 moderate, 0.25 significant")
    ax.set_title(title)
    return fig


def plot_predictions(predictions: pd.DataFrame, title: str) -> Figure:
    """Test-window forecasts against actual returns, one panel, dates on x."""
    fig, ax = _figure(10, 4.5)
    if predictions.empty:
        _note(ax, "no predictions stored")
        ax.set_title(title)
        return fig
    dates = pd.to_datetime(predictions["date"])
    ax.plot(dates, predictions["actual"], color=BASELINE, linewidth=0.8, alpha=0.8, label="actual")
    ax.plot(dates, predictions["predicted"], color=NEUTRAL, linewidth=1.4, label="predicted")
    ax.axhline(0, color=WORSE, linestyle="--", linewidth=0.8, label="naive (zero return)")
    ax.set_ylabel("daily log return")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_strategy_returns(
    configs: dict[str, pd.DataFrame], references: dict[str, pd.DataFrame], title: str, costs_bps: float = 0.0
) -> Figure:
    """Cumulative log return of the sign strategy over the test windows (`core.metrics.strategy_returns`):
    each config's (solid: the best config and the baseline) against each reference forecast's own
    sign strategy (dotted), after `costs_bps` per unit of position change.

    `configs`, `references`: label -> frame with `date` and `r` (one day's strategy return), in date order."""
    fig, ax = _figure(10, 4.5)
    shown = [(label, c, False) for label, c in configs.items() if len(c)]
    shown += [(f"reference {label}", c, True) for label, c in references.items() if len(c)]
    if not shown:
        _note(ax, "no test predictions stored")
        ax.set_title(_wrapped(title, 90))
        return fig
    colors = matplotlib.colormaps["tab10"]
    for i, (label, curve, reference) in enumerate(shown):
        ax.plot(
            pd.to_datetime(curve["date"]),
            curve["r"].cumsum(),
            color=colors(i % 10),
            linestyle=":" if reference else "-",
            linewidth=1.2 if reference else 1.8,
            label=_wrapped(label, 50),
        )
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("cumulative log return\n" + (f"after {costs_bps:g} bps costs" if costs_bps else "without costs"))
    ax.set_xlabel("test day (folds in date order; mean over seeds)")
    ax.set_title(_wrapped(title, 90))
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return fig


def plot_direction_accuracy(ranking: pd.DataFrame, title: str, top: int = 25) -> Figure:
    """Share of test days whose sign each config got right (mean over its runs), with the
    coin's 50% line; configs in ranking order."""
    column = "mean_test_dir_acc"
    data = ranking[ranking["n_runs"] > 0].head(top) if column in ranking else ranking.iloc[0:0]
    labels = [_wrapped(str(c)) for c in data["config_id"]] if len(data) else []
    fig, ax = _bar_figure(labels)
    if data.empty or data[column].isna().all():
        _note(ax, "no directional accuracy recorded")
        ax.set_title(title)
        return fig
    y = np.arange(len(data))[::-1]
    verdicts = data["verdict"] if "verdict" in data else pd.Series([None] * len(data))
    # Bars from the coin's 50%, so that a bar's side and length are its edge over a coin.
    colors = [verdict_color(v) for v in verdicts]
    ax.barh(y, data[column] * 100 - 50, left=50, color=colors, alpha=0.7)
    line = ax.axvline(50, color=WORSE, linestyle="--", linewidth=1, label="coin (50%)")
    legend = [
        Patch(
            color=verdict_color(v),
            alpha=0.7,
            label="the baseline" if v == sig.BASELINE else f"verdict vs baseline: {v}",
        )
        for v in dict.fromkeys(verdicts)
        if isinstance(v, str)
    ]
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_ylim(-0.6, len(data) - 0.4)
    values = data[column].dropna() * 100
    spread = max(float((values - 50).abs().max()), 1.0)
    ax.set_xlim(50 - spread * 1.3, 50 + spread * 1.3)
    ax.set_xlabel("test directional accuracy (%): days whose sign the forecast got right, mean over runs")
    ax.set_title(_wrapped(title, 70))
    ax.legend(handles=[*legend, line], fontsize=8, loc="best")
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_selection_mcs(block: dict[str, Any] | None, title: str, top: int = 25) -> Figure:
    """Each config's mean daily validation loss on the days the model confidence set compared
    them on (`core.selection`), lowest first, with its MCS p-value: members of the set filled,
    the others hollow; at most `top` configs (those with the lowest mean loss)."""
    available = block is not None and block.get("available")
    means: dict[str, float] = block["mcs"]["mean_loss"] if available and block is not None else {}
    order = sorted(means, key=lambda c: means[c])[:top]
    labels = [_wrapped(c) for c in order]
    fig, ax = _bar_figure(labels)
    if block is None or not available:
        reason = block.get("reason") if block is not None else None
        _note(ax, _wrapped(f"not computed: {reason}" if reason else "not computed", 60))
        ax.set_title(_wrapped(title, 70))
        return fig
    members = set(block["mcs"]["members"])
    pvalues = block["mcs"]["pvalues"]
    y = np.arange(len(order))[::-1]
    values = np.array([means[c] for c in order])
    inside = np.array([c in members for c in order])
    # Dots, not bars: the losses differ in their last digits, and a bar from 0 would hide it.
    ax.scatter(values[inside], y[inside], color=BETTER, s=36, zorder=3)
    ax.scatter(values[~inside], y[~inside], facecolors="none", edgecolors=BASELINE, s=36, zorder=3)
    for yi, config_id, value in zip(y, order, values, strict=True):
        ax.text(value, yi + 0.2, f"MCS p={pvalues[config_id]:.2g}", ha="center", fontsize=7, color=BASELINE)
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_ylim(-0.6, len(order) - 0.4)
    low, high = float(values.min()), float(values.max())
    pad = max(high - low, abs(high) * 1e-3, 1e-12)
    ax.set_xlim(low - 0.15 * pad, high + 0.15 * pad)
    _few_ticks(ax.xaxis)
    level = f"{block['level']:.0%}"
    ax.set_xlabel(
        f"mean daily {block['loss'].split(' (')[0]} (the loss of {block['metric']}) over "
        f"{block['days_used']} validation days"
    )
    more = len(means) - len(order)
    suffix = f" ({more} more not shown)" if more > 0 else ""
    ax.set_title(_wrapped(f"{title}{suffix}", 70))
    legend = [
        Patch(color=BETTER, label=f"in the {level} model confidence set ({len(members)})"),
        Patch(facecolor="none", edgecolor=BASELINE, label=f"outside it ({len(means) - len(members)})"),
    ]
    ax.legend(handles=legend, fontsize=8, loc="best")
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_coverage(observed: dict[str, dict[float, float]], title: str) -> Figure:
    """Nominal against observed coverage of the quantile intervals (80%: q10-q90, 96%: q02-q98),
    per config; a calibrated model sits on the diagonal."""
    fig, ax = _figure(5.5, 5)
    shown = {label: points for label, points in observed.items() if points}
    if not shown:
        _note(ax, "no quantile forecasts stored (loss is not quantile)")
        ax.set_title(title)
        return fig
    ax.plot([0.5, 1], [0.5, 1], color=BASELINE, linestyle="--", linewidth=1, label="calibrated")
    colors = matplotlib.colormaps["tab10"]
    for i, (label, points) in enumerate(shown.items()):
        nominal = sorted(points)
        ax.plot(nominal, [points[n] for n in nominal], marker="o", color=colors(i % 10), label=_wrapped(label, 40))
    ax.set_xlim(0.5, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("observed coverage (test)")
    ax.set_title(_wrapped(title, 60))
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return fig


def plot_loss_curves(histories: dict[str, list[dict[str, float]]], title: str) -> Figure:
    """Train and validation loss per epoch, one colour per run."""
    fig, ax = _figure(8, 4.5)
    if not histories:
        _note(ax, "no training history stored")
        ax.set_title(title)
        return fig
    colors = matplotlib.colormaps["tab10"]
    for i, (label, history) in enumerate(histories.items()):
        epochs = [h["epoch"] for h in history]
        ax.plot(epochs, [h["train_loss"] for h in history], color=colors(i % 10), linestyle="--", alpha=0.8)
        ax.plot(epochs, [h["val_loss"] for h in history], color=colors(i % 10), marker="o", label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.plot([], [], color="black", linestyle="--", label="train loss (dashed)")
    ax.plot([], [], color="black", marker="o", label="val loss (solid)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_compare(table: pd.DataFrame, title: str) -> Figure:
    """Robust score per config, one bar per sweep, on the sweeps' common folds and seeds."""
    configs = list(dict.fromkeys(table.sort_values("robust_score")["config_id"])) if len(table) else []
    labels = [_wrapped(str(c)) for c in configs]
    sweeps = list(dict.fromkeys(table["sweep"])) if len(table) else []
    fig, ax = _bar_figure(labels, extra_height=1.9 + 0.1 * len(configs) * max(len(sweeps) - 1, 0))
    if table.empty:
        _note(ax, "nothing in common")
        ax.set_title(title)
        return fig
    height = 0.8 / len(sweeps)
    colors = matplotlib.colormaps["tab10"]
    for i, sweep in enumerate(sweeps):
        part = table[table["sweep"] == sweep].set_index("config_id").reindex(configs)
        y = np.arange(len(configs))[::-1] + (i - (len(sweeps) - 1) / 2) * height
        ax.barh(y, part["robust_score"], height=height, color=colors(i % 10), label=_wrapped(sweep, 50))
    ax.set_yticks(np.arange(len(configs))[::-1], labels, fontsize=9)
    _few_ticks(ax.xaxis)
    ax.set_xlabel("robust score (mean + std of val RMSE)\non common folds and seeds")
    ax.set_title(_wrapped(title, 70))
    ax.legend(fontsize=8, loc="best")
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_optuna_history(trials: pd.DataFrame, title: str) -> Figure:
    """Objective per trial (complete: dots, pruned: crosses) and the best so far."""
    fig, ax = _figure(9, 4.5)
    done = trials[trials["state"] == "complete"] if len(trials) else trials
    if done.empty:
        _note(ax, "no complete trial yet")
        ax.set_title(title)
        return fig
    ax.scatter(done["number"], done["value"], color=NEUTRAL, s=28, label="complete trial", zorder=3)
    best = done.sort_values("number")["value"].cummin()
    ax.step(done.sort_values("number")["number"], best, where="post", color=BETTER, linewidth=2, label="best so far")
    pruned = trials[trials["state"] == "pruned"]
    if len(pruned):
        ax.scatter(pruned["number"], [best.max()] * len(pruned), marker="x", color=WORSE, label="pruned (not scored)")
    naive = done["mean_val_naive_rmse"].dropna().mean() if "mean_val_naive_rmse" in done else math.nan
    if math.isfinite(naive):
        ax.axhline(naive, color=BASELINE, linestyle="--", linewidth=1, label=f"naive val RMSE {naive:.4g}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("objective (lower is better)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_param_importances(importances: dict[str, float], title: str, note: str | None = None) -> Figure:
    """Share of the objective's variance each parameter explains (Optuna's fANOVA); with no
    importances, `note` says why (default: too few trials that differ)."""
    fig, ax = _figure(8, max(3.0, 0.45 * len(importances) + 1.6))
    if not importances:
        _note(ax, note or "needs at least two complete trials that differ")
        ax.set_title(title)
        return fig
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color=NEUTRAL)
    ax.set_xlim(0, 1)
    ax.set_xlabel("importance (share of objective variance)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_parallel_coordinates(trials: pd.DataFrame, params: list[str], title: str) -> Figure:
    """Each complete trial a line across normalised parameter axes, coloured by its objective."""
    fig, ax = _figure(max(7.0, 1.8 * (len(params) + 1)), 4.8)
    done = trials[trials["state"] == "complete"] if len(trials) else trials
    columns = [f"params_{p}" for p in params]
    if done.empty or not all(c in done for c in columns):
        _note(ax, "no complete trial yet")
        ax.set_title(title)
        return fig
    axes_values = []
    labels = []
    for param, col in zip(params, columns, strict=True):
        raw = done[col]
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            values = raw.astype(float)
            low, high = float(values.min()), float(values.max())
            axes_values.append(((values - low) / (high - low)) if high > low else values * 0 + 0.5)
            labels.append(f"{param}\n{low:.3g}..{high:.3g}")
        else:
            cats = sorted(raw.astype(str).unique())
            codes = raw.astype(str).map({c: i for i, c in enumerate(cats)}).astype(float)
            axes_values.append(codes / max(1, len(cats) - 1))
            labels.append(f"{param}\n{', '.join(cats)}")
    objective = done["value"].astype(float)
    low, high = float(objective.min()), float(objective.max())
    axes_values.append(((objective - low) / (high - low)) if high > low else objective * 0 + 0.5)
    labels.append(f"objective\n{low:.4g}..{high:.4g}")
    cmap = matplotlib.colormaps["viridis_r"]
    x = np.arange(len(labels))
    for i in range(len(done)):
        ys = [float(v.iloc[i]) for v in axes_values]
        shade = float(axes_values[-1].iloc[i])
        ax.plot(x, ys, color=cmap(shade), alpha=0.8, linewidth=1.5)
    for xi in x:
        ax.axvline(xi, color="black", linewidth=0.6)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_yticks([])
    ax.set_title(f"{title} (yellow: best)")
    return fig
