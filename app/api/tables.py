"""A sweep's report tables and run counts for the API, from the app's cache or the database."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

import pandas as pd
from fastapi import HTTPException, Request, Response, status
from sqlalchemy import Row, bindparam, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.api.cache import BuildOnce, json_answer
from app.db.models import RunState, Sweep
from app.db.run_cache import cached_count
from app.db.selection import SelectionView, selection_view, stored_selection
from app.db.session import LoopReader
from app.db.sweeps import run_counts, run_records, stored_config
from core.config import EvaluationConfig
from core.metrics import column_name, describe_column, metric_columns, metric_names
from core.reports import (
    build_config_ranking,
    build_param_impact_detail,
    build_param_impact_summary,
    split_by_fold,
)
from core.rescore import scored_from_counts
from core.summary import best_config
from core.sweep_runs import runs_table

# What changes in a sweep, read with one primary-key lookup:
# id, revision, status, updated_at, reports_at, continue_on_error, selection_at.
SweepHead = Row[int, int, str, datetime, datetime | None, bool, datetime | None]
_columns = Sweep.__table__.c
_HEAD = select(
    _columns.id,
    _columns.revision,
    _columns.status,
    _columns.updated_at,
    _columns.reports_at,
    _columns.continue_on_error,
    _columns.selection_at,
).where(_columns.id == bindparam("sweep_id"))


class SweepTables:
    """Tables of a sweep (or one fold) for one request.

    Each is built from the database once per sweep revision and kept in the app's cache
    (`BuildOnce`): `Sweep.revision` changes with every change to the sweep's runs.
    """

    def __init__(self, session: Session, cache: BuildOnce) -> None:
        self.session = session
        self.cache = cache

    @staticmethod
    def key(what: str, sweep: Sweep | SweepHead, fold: str | None = None) -> tuple[Any, ...]:
        return (what, sweep.id, fold, sweep.revision)

    def head(self, sweep_id: int) -> SweepHead:
        """What changes in a sweep: enough to answer from the cache. 404 if there is no such sweep."""
        # Core on the session's connection: a third of the ORM's cost, and this runs per request.
        head = self.session.connection().execute(_HEAD, {"sweep_id": sweep_id}).one_or_none()
        if head is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"sweep {sweep_id} not found")
        return head

    def folds(self, sweep: Sweep) -> set[str]:
        return self.cache.get(self.key("folds", sweep), lambda: {f.name for f in stored_config(sweep).folds})

    def counts(self, sweep: Sweep) -> dict[str, int]:
        return self.cache.get(self.key("counts", sweep), lambda: run_counts(self.session, sweep.id))

    def cached(self, sweep: Sweep) -> int:
        return self.cache.get(self.key("cached", sweep), lambda: cached_count(self.session, sweep.id))

    def runs(self, sweep: Sweep, fold: str | None) -> pd.DataFrame:
        return self.cache.get(
            self.key("runs", sweep, fold),
            lambda: runs_table(
                run_records(self.session, sweep.id, fold=fold, params=False),
                metric_columns(self.evaluation(sweep).references),
            ),
        )

    def scored_from(self, sweep: Sweep, fold: str | None) -> dict[str, int]:
        """How many succeeded runs were scored from which file (the summary's `scored_from`)."""
        return self.cache.get(
            self.key("scored_from", sweep, fold),
            lambda: scored_from_counts(run_records(self.session, sweep.id, fold=fold, params=False)),
        )

    def alpha(self, sweep: Sweep) -> float:
        return float(self.cache.get(self.key("alpha", sweep), lambda: stored_config(sweep).stats.alpha))

    def evaluation(self, sweep: Sweep) -> EvaluationConfig:
        return self.cache.get(self.key("evaluation", sweep), lambda: stored_config(sweep).evaluation)

    def ranking(self, sweep: Sweep, fold: str | None, metric: str | None = None) -> pd.DataFrame:
        """As `config_ranking.csv` (of the sweep, or of `fold`: without the sweep level's relative
        view), ranked by `metric` (default: the sweep's `evaluation.rank_by`), one table per
        (revision, fold, metric)."""
        evaluation = self.evaluation(sweep)
        rank_by = metric or evaluation.rank_by

        def build() -> pd.DataFrame:
            runs, alpha = self.runs(sweep, fold), self.alpha(sweep)
            ranked_by = {"rank_by": rank_by, "metrics": metric_names(evaluation.references)}
            if fold is None:
                return build_config_ranking(runs, alpha=alpha, **ranked_by)  # type: ignore[arg-type]
            folds = build_config_ranking(runs, per_fold=True, alpha=alpha, **ranked_by)  # type: ignore[arg-type]
            return split_by_fold(folds, [fold])[fold]

        return self.cache.get((*self.key("ranking", sweep, fold), rank_by), build)

    def selection(self, sweep: Sweep, fold: str | None, rank_by: str) -> SelectionView:
        """The model confidence set and SPA test the last report build recorded, for a ranking of
        `fold` (or the sweep) by `rank_by`: available only when computed for this revision and
        this metric (app.db.selection.selection_view)."""
        key = (*self.key("selection", sweep, fold), sweep.selection_at, rank_by)
        return self.cache.get(key, lambda: selection_view(stored_selection(sweep), sweep.revision, rank_by, fold))

    def rankable(self, sweep: Sweep) -> list[str]:
        """The columns the sweep's ranking may be ordered by (`rankable_columns` of its references)."""
        return self.cache.get(self.key("rankable", sweep), lambda: rankable_columns(self.evaluation(sweep).references))

    def detail(self, sweep: Sweep, fold: str | None) -> pd.DataFrame:
        return self.cache.get(
            self.key("detail", sweep, fold), lambda: build_param_impact_detail(self.runs(sweep, fold))
        )

    def impact(self, sweep: Sweep, fold: str | None) -> pd.DataFrame:
        return self.cache.get(
            self.key("impact", sweep, fold),
            lambda: build_param_impact_summary(self.detail(sweep, fold), alpha=self.alpha(sweep)),
        )

    def best_config(self, sweep: Sweep) -> str | None:
        """The config ranked first by `rank_score` (of `evaluation.rank_by`) so far (None before a
        run succeeded)."""
        if not self.counts(sweep)[RunState.SUCCEEDED]:
            return None
        best = best_config(self.ranking(sweep, None))
        return str(best["config_id"]) if best is not None else None

    def answer(self, request: Request, key: tuple[Any, ...], build: Callable[[], bytes]) -> Response:
        """The cached JSON body for `key`, with an ETag (304 on `If-None-Match`)."""
        return json_answer(request, self.cache, key, build)


def rankable_columns(references: Sequence[str]) -> list[str]:
    """The val_ column of each registered metric with a direction, in registry order (each
    per-reference metric once per reference of `references`): what a ranking may be ordered by."""
    columns = [column_name("val", name) for name in metric_names(references)]
    return [column for column in columns if describe_column(column)[1].better is not None]


def head_on_loop(reader: LoopReader | None, sweep_id: int) -> SweepHead | None:
    """`SweepTables.head()` read on the event loop, where that read cannot wait (SQLite:
    `reader`, no busy wait, app.db.session.make_loop_reader); None where it cannot be read
    so (no reader, or the database is locked): then a thread reads it. 404 if there is no
    such sweep."""
    if reader is None:
        return None
    try:
        head = reader.one_or_none(_HEAD, {"sweep_id": sweep_id})
    except OperationalError:  # locked: a thread may wait for it, the loop may not
        return None
    if head is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"sweep {sweep_id} not found")
    return cast(SweepHead, head)  # the columns of _HEAD
