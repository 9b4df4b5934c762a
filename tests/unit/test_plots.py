"""Plots that read at any count of configs: no text outside the figure, no tick labels run
together, and the response plot shows the paired effect the verdict is about."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from core import plots
from core.reports import build_config_ranking, build_param_impact_detail, build_param_impact_summary
from core.sweep_runs import runs_table
from tests.utils.runs import record

LONG = "learning_rate_with_a_rather_long_name_for_testing"
FOLDS = ("2016-01-04_to_2016-12-30", "2017-01-03_to_2017-12-29")
SEEDS = (1, 2, 3)


def sweep_runs(variants: int) -> pd.DataFrame:
    """A baseline and `variants` dropout values, each config with a long candidate-like name
    spelled into its config id, over 2 folds and 3 seeds."""
    rng = np.random.default_rng(variants)
    rows = []
    for f in FOLDS:
        for s in SEEDS:
            base = 1.0 + 0.1 * s + (0.5 if f == FOLDS[1] else 0.0)
            rows.append(record("baseline", f, s, base))
            for i in range(variants):
                value = round(0.01 * (i + 1), 2)
                rows.append(record(f"dropout={value}", f, s, base + rng.normal(-0.01 * (i % 3), 0.01)))
    for i, row in enumerate(rows, start=1):
        row["run_id"] = i
        row["config_id"] = row["config_id"].replace("dropout=", f"{LONG}_dropout=")
    return runs_table(rows)


def drawn_tick_labels(axis: Any) -> list[Any]:
    """The tick labels an axis draws: those of ticks inside its view interval."""
    low, high = sorted(axis.get_view_interval())
    span = (high - low) * 1e-9
    return [
        tick.label1
        for tick in axis.get_major_ticks()
        if low - span <= tick.get_loc() <= high + span and tick.label1.get_visible() and tick.label1.get_text()
    ]


def text_inside_and_apart(fig: Figure) -> None:
    """Everything drawn lies inside the figure (its tight box, which holds every drawn text, is
    within the figure's box), and the tick labels of an axis do not overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    tight, box = fig.get_tightbbox(renderer), fig.bbox_inches
    assert tight.x0 >= box.x0 - 0.01 and tight.x1 <= box.x1 + 0.01, (tight, box)
    assert tight.y0 >= box.y0 - 0.01 and tight.y1 <= box.y1 + 0.01, (tight, box)
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            shown = [t.get_window_extent(renderer) for t in drawn_tick_labels(axis)]
            assert shown or not axis.get_major_ticks()
            for a, b in itertools.pairwise(shown):
                assert not a.overlaps(b), [t.get_text() for t in drawn_tick_labels(axis)]
        for text in (t for t in (ax.xaxis.label, ax.yaxis.label, ax.title) if t.get_text()):  # whole
            extent = text.get_window_extent(renderer)
            assert extent.x0 >= fig.bbox.x0 - 1 and extent.x1 <= fig.bbox.x1 + 1, text.get_text()


@pytest.mark.parametrize("variants", [3, 40])
def test_labels_are_readable_at_any_count_of_configs(variants: int, tmp_path: Path) -> None:
    runs = sweep_runs(variants)
    ranking = build_config_ranking(runs)
    detail = build_param_impact_detail(runs)
    impact = build_param_impact_summary(detail)
    figures: dict[str, Any] = {
        "config_ranking": plots.plot_config_ranking(ranking, "configs ranked by robust score", top=variants + 1),
        "param_impact": plots.plot_param_impact(impact, "parameter impact vs baseline"),
        "response": plots.plot_response_curve(detail, impact, "dropout", 0.1, "paired effect of dropout"),
    }
    for name, fig in figures.items():
        text_inside_and_apart(fig)
        plots.save_figure(fig, tmp_path / f"{name}_{variants}.png")
        assert (tmp_path / f"{name}_{variants}.png").stat().st_size > 0
    # The figure grows with the configs it lists, so each keeps room for its label.
    impact_height = figures["param_impact"].get_size_inches()[1]
    assert impact_height > (0.3 * variants if variants > 10 else 3.0)


def test_the_response_plot_shows_the_paired_deltas_and_the_verdicts_interval() -> None:
    runs = sweep_runs(3)
    detail = build_param_impact_detail(runs)
    impact = build_param_impact_summary(detail)
    fig = plots.plot_response_curve(detail, impact, "dropout", 0.1, "paired effect of dropout")
    ax = fig.axes[0]
    # one point per pair (variant run minus the baseline run of the same fold and seed)
    offsets = [np.asarray(c.get_offsets()) for c in ax.collections]
    points = np.concatenate([o[:, 1] for o in offsets if len(o) > 1])
    assert sorted(points) == pytest.approx(sorted(detail["delta_rmse_vs_baseline"]))
    # each value's mean with its simultaneous interval: the error bars span exactly that
    spans = sorted(
        (round(float(seg[0][1]), 12), round(float(seg[1][1]), 12))
        for c in ax.collections
        if hasattr(c, "get_segments")
        for seg in c.get_segments()
    )
    want = sorted(
        (round(float(lo), 12), round(float(hi), 12))
        for lo, hi in zip(impact["simultaneous_ci_low"], impact["simultaneous_ci_high"], strict=True)
    )
    assert spans == want
    assert "baseline" in ax.get_ylabel() and "same fold and seed" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.01", "0.02", "0.03", "0.1"]


def test_wrapping_keeps_every_character() -> None:
    text = f"{LONG}_dropout=0.25  (win 50%, n=6, insufficient)"
    wrapped = plots._wrapped(text, 20)
    assert all(len(line) <= 20 for line in wrapped.split("\n"))
    assert wrapped.replace("\n", "").replace(" ", "") == text.replace(" ", "")


def returns_curve(start: str, days: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=days).strftime("%Y-%m-%d")
    return pd.DataFrame({"date": dates, "r": rng.normal(0.0002, 0.01, days)})


def metric_ranking(variants: int, quantiles: bool = False) -> pd.DataFrame:
    """A ranking of `sweep_runs(variants)` whose configs carry directional accuracy (and coverage)."""
    ranking = build_config_ranking(sweep_runs(variants))
    rng = np.random.default_rng(variants)
    ranking["mean_test_dir_acc"] = rng.uniform(0.45, 0.56, len(ranking))
    if quantiles:
        ranking["mean_test_coverage_80"] = rng.uniform(0.6, 0.9, len(ranking))
        ranking["mean_test_coverage_96"] = rng.uniform(0.85, 0.99, len(ranking))
    return ranking


def saved(fig: Figure, path: Path) -> int:
    text_inside_and_apart(fig)
    plots.save_figure(fig, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path.stat().st_size


def test_the_strategy_plot_draws_each_cumulative_return(tmp_path: Path) -> None:
    configs = {
        "best config dropout=0.2": returns_curve("2016-01-04", 250, 1),
        "baseline": returns_curve("2016-01-04", 250, 2),
    }
    references = {"naive": configs["baseline"].assign(r=0.0), "mean": returns_curve("2016-01-04", 250, 3)}
    fig = plots.plot_strategy_returns(configs, references, "sign strategy", costs_bps=5)
    ax = fig.axes[0]
    lines = {str(line.get_label()): line for line in ax.get_lines() if not str(line.get_label()).startswith("_")}
    assert list(lines) == ["best config dropout=0.2", "baseline", "reference naive", "reference mean"]
    assert np.asarray(lines["baseline"].get_ydata())[-1] == pytest.approx(configs["baseline"]["r"].sum())
    assert lines["reference mean"].get_linestyle() == ":" and lines["baseline"].get_linestyle() == "-"
    assert "5 bps" in ax.get_ylabel()
    assert saved(fig, tmp_path / "strategy.png") > 8_000
    empty = plots.plot_strategy_returns({"baseline": configs["baseline"][:0]}, {}, "sign strategy")
    assert saved(empty, tmp_path / "strategy_empty.png") > 0
    assert [t.get_text() for t in empty.axes[0].texts] == ["no test predictions stored"]


@pytest.mark.parametrize("variants", [3, 40])
def test_the_direction_plot_draws_each_config_against_the_coin(variants: int, tmp_path: Path) -> None:
    ranking = metric_ranking(variants)
    fig = plots.plot_direction_accuracy(ranking, "test directional accuracy per config", top=variants + 1)
    ax = fig.axes[0]
    bars = [patch for patch in ax.patches if isinstance(patch, Rectangle)]
    assert len(bars) == variants + 1
    # Each bar runs from the coin's 50% to the config's accuracy, in ranking order (best at the top).
    ends = sorted(((b.get_y(), b.get_x() + b.get_width()) for b in bars), reverse=True)
    assert [e for _, e in ends] == pytest.approx(list(ranking["mean_test_dir_acc"] * 100))
    assert all(b.get_x() == pytest.approx(50) for b in bars)
    assert any(line.get_label() == "coin (50%)" for line in ax.get_lines())
    assert saved(fig, tmp_path / f"direction_{variants}.png") > 8_000


def test_the_direction_plot_without_the_metric_says_so(tmp_path: Path) -> None:
    fig = plots.plot_direction_accuracy(build_config_ranking(sweep_runs(3)), "test directional accuracy")
    assert [t.get_text() for t in fig.axes[0].texts] == ["no directional accuracy recorded"]
    assert saved(fig, tmp_path / "direction_empty.png") > 0


def test_the_coverage_plot_draws_nominal_against_observed(tmp_path: Path) -> None:
    observed = {"baseline": {0.8: 0.72, 0.96: 0.9}, f"{LONG}_dropout=0.2": {0.8: 0.81, 0.96: 0.95}}
    fig = plots.plot_coverage(observed, "quantile intervals: nominal vs observed")
    ax = fig.axes[0]
    drawn = {str(line.get_label()): line for line in ax.get_lines()}
    assert np.asarray(drawn["baseline"].get_xdata()).tolist() == [0.8, 0.96]
    assert np.asarray(drawn["baseline"].get_ydata()).tolist() == [0.72, 0.9]
    assert "calibrated" in drawn
    assert saved(fig, tmp_path / "coverage.png") > 8_000
    empty = plots.plot_coverage({}, "quantile intervals")
    assert saved(empty, tmp_path / "coverage_empty.png") > 0
    assert "not quantile" in empty.axes[0].texts[0].get_text()
