"""Report plots, drawn with matplotlib's object API (`Figure`), never pyplot: safe in servers and threads."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display anywhere this runs

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from core import significance as sig
from core.files import write_bytes_atomic
from core.significance import paired_intervals

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


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save_figure(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    # No timestamps in the metadata: the same data draws the same file.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    write_bytes_atomic(path, buffer.getvalue())


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color=BASELINE)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_config_ranking(ranking: pd.DataFrame, title: str, top: int = 25) -> Figure:
    """Robust score per config (best at the top), coloured by its verdict against the baseline,
    with mean ± std of val RMSE and the naive forecast."""
    data = ranking[ranking["n_runs"] > 0].head(top)
    fig, ax = _figure(9, max(3.0, 0.38 * len(data) + 1.6))
    if data.empty:
        _note(ax, "no succeeded runs yet")
        ax.set_title(title)
        return fig
    y = np.arange(len(data))[::-1]
    colors = [VERDICT_COLORS.get(v, NEUTRAL) for v in data["verdict"]]
    ax.barh(y, data["robust_score"], color=colors, alpha=0.55)
    ax.errorbar(
        data["mean_val_rmse"],
        y,
        xerr=data["std_val_rmse"],
        fmt="o",
        color="black",
        capsize=3,
        label="mean val RMSE ± std",
    )
    naive = data["mean_val_naive_rmse"].mean()
    if math.isfinite(naive):
        ax.axvline(naive, color=WORSE, linestyle="--", linewidth=1, label=f"naive (zero return) {naive:.4g}")
    ax.set_yticks(y, [f"{c}  (n={n})" for c, n in zip(data["config_id"], data["n_runs"], strict=True)])
    low = float(np.nanmin(data["mean_val_rmse"] - data["std_val_rmse"]))
    high = float(np.nanmax(np.r_[data["robust_score"].to_numpy(), [naive if math.isfinite(naive) else 0]]))
    pad = (high - low) * 0.15 or abs(high) * 0.05 or 1e-6
    ax.set_xlim(low - pad, high + pad)
    ax.set_xlabel("validation RMSE")
    ax.set_title(title)
    verdicts = [
        Patch(color=VERDICT_COLORS.get(v, NEUTRAL), alpha=0.55, label=f"robust score: {v}")
        for v in dict.fromkeys(data["verdict"])
    ]
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=[*verdicts, *handles], loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_param_impact(summary: pd.DataFrame, title: str) -> Figure:
    """Average val-RMSE change vs baseline per parameter value (negative is better), with its 95%
    interval; the values whose difference is significant (Holm) are solid and starred."""
    fig, ax = _figure(9, max(3.0, 0.38 * len(summary) + 1.6))
    if summary.empty:
        _note(ax, "no variant/baseline pairs yet")
        ax.set_title(title)
        return fig
    y = np.arange(len(summary))[::-1]
    delta = summary["avg_delta_rmse_vs_baseline"].to_numpy()
    significant = summary["verdict"].isin([sig.BETTER, sig.WORSE]).to_numpy()
    low = np.nan_to_num(delta - summary["ci95_low"].to_numpy(), nan=0.0)
    high = np.nan_to_num(summary["ci95_high"].to_numpy() - delta, nan=0.0)
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
    labels = [
        f"{'* ' if s else ''}{c}  (win {w:.0%}, n={n}, {v})"
        for c, w, n, v, s in zip(
            summary["config_id"], summary["win_rate"], summary["n_pairs"], summary["verdict"], significant, strict=True
        )
    ]
    ax.set_yticks(y, labels)
    ax.set_xlabel("val RMSE − baseline val RMSE (same fold and seed), mean and 95% CI; * significant (Holm)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_response_curve(runs: pd.DataFrame, param: str, baseline_value: Any, title: str) -> Figure:
    """Val RMSE against the swept value: each run a point (coloured by fold), the mean a line with
    its 95% interval as a band, and the naive forecast's level."""
    ok = runs[(runs["status"] == "succeeded") & ((runs["param_name"] == param) | (runs["config_id"] == "baseline"))]
    fig, ax = _figure(8, 4.5)
    if ok.empty:
        _note(ax, "no succeeded runs yet")
        ax.set_title(title)
        return fig
    values = [baseline_value if c == "baseline" else v for c, v in zip(ok["config_id"], ok["param_raw"], strict=True)]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numeric:
        x = np.asarray(values, dtype="float64")
        order = sorted(set(values))
        positions = {v: float(v) for v in order}
    else:
        order = sorted({json.dumps(v) for v in values})
        positions = {v: float(i) for i, v in enumerate(order)}
        x = np.asarray([positions[json.dumps(v)] for v in values])
    colors = matplotlib.colormaps["tab10"]
    for i, fold in enumerate(dict.fromkeys(ok["fold"])):
        mask = (ok["fold"] == fold).to_numpy()
        ax.scatter(x[mask], ok["val_rmse"].to_numpy()[mask], color=colors(i % 10), s=22, alpha=0.8, label=fold)
    grouped = pd.DataFrame({"x": x, "val_rmse": ok["val_rmse"].to_numpy()}).groupby("x")["val_rmse"]
    mean, std, count = grouped.mean(), grouped.std(), grouped.count()
    low, high = paired_intervals(mean.to_numpy(), std.fillna(0.0).to_numpy(), count.to_numpy())
    ax.fill_between(mean.index, low, high, color="black", alpha=0.12, label="mean's 95% interval")
    ax.plot(mean.index, mean.to_numpy(), color="black", linewidth=2, marker="D", label="mean")
    naive = float(ok["val_naive_rmse"].mean())
    if math.isfinite(naive):
        ax.axhline(naive, color=WORSE, linestyle="--", linewidth=1, label=f"naive (zero return) {naive:.4g}")
    base_x = float(baseline_value) if numeric else positions[json.dumps(baseline_value)]
    ax.axvline(base_x, color=BASELINE, linestyle=":", label=f"baseline {param}={baseline_value}")
    if not numeric:
        ax.set_xticks(list(positions.values()), [json.loads(v) if isinstance(json.loads(v), str) else v for v in order])
    ax.set_xlabel(param)
    ax.set_ylabel("validation RMSE")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=2)
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
    ax.set_xticks(range(len(table.columns)), [f"{f}\n{c}" for f, c in table.columns])
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
    fig, ax = _figure(9, max(3.0, 0.45 * table["config_id"].nunique() + 1.6))
    if table.empty:
        _note(ax, "nothing in common")
        ax.set_title(title)
        return fig
    configs = list(dict.fromkeys(table.sort_values("robust_score")["config_id"]))
    sweeps = list(dict.fromkeys(table["sweep"]))
    height = 0.8 / len(sweeps)
    colors = matplotlib.colormaps["tab10"]
    for i, sweep in enumerate(sweeps):
        part = table[table["sweep"] == sweep].set_index("config_id").reindex(configs)
        y = np.arange(len(configs))[::-1] + (i - (len(sweeps) - 1) / 2) * height
        ax.barh(y, part["robust_score"], height=height, color=colors(i), label=sweep)
    ax.set_yticks(np.arange(len(configs))[::-1], configs)
    ax.set_xlabel("robust score (mean + std of val RMSE) on common folds and seeds")
    ax.set_title(title)
    ax.legend(fontsize=8)
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


def plot_param_importances(importances: dict[str, float], title: str) -> Figure:
    """Share of the objective's variance each parameter explains (Optuna's fANOVA)."""
    fig, ax = _figure(8, max(3.0, 0.45 * len(importances) + 1.6))
    if not importances:
        _note(ax, "needs at least two complete trials that differ")
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
