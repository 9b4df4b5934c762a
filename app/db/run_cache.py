"""The run cache's lookups (core.run_cache): a succeeded run with a planned run's key, in any sweep."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import Run, RunState, Sweep
from core.runs import METRIC_COLUMNS


@dataclass(frozen=True)
class CachedSource:
    """A succeeded run a planned run can be recorded from: where its model version is, and its
    metrics as the database holds them (the seed's columns and the extra scores)."""

    sweep_id: int
    run_key: str
    asset: str
    output_subdir: str
    fold: str
    model_version: str
    metrics: dict[str, Any]

    @property
    def name(self) -> str:
        """`{sweep id}/{run_key}`: how `cached_from` names the source."""
        return f"{self.sweep_id}/{self.run_key}"


# How many sources a lookup offers, oldest first: one whose version went missing is skipped.
MAX_SOURCES = 3


def find_sources(session: Session, cache_key: str, run_id: int) -> list[CachedSource]:
    """Up to `MAX_SOURCES` succeeded runs (oldest first) other than `run_id` whose key is
    `cache_key` and that have a model version."""
    rows = session.execute(
        select(Run, Sweep.asset, Sweep.output_subdir)
        .join(Sweep, Sweep.id == Run.sweep_id)
        .where(
            Run.cache_key == cache_key,
            Run.state == RunState.SUCCEEDED,
            Run.model_version.is_not(None),
            Run.id != run_id,
        )
        .order_by(Run.id)
        .limit(MAX_SOURCES)
    ).all()
    out = []
    for run, asset, output_subdir in rows:
        metrics: dict[str, Any] = {key: getattr(run, key) for key in METRIC_COLUMNS}
        if run.scores_json:
            metrics.update(json.loads(run.scores_json))
        out.append(
            CachedSource(run.sweep_id, run.run_key, asset, output_subdir, run.fold, str(run.model_version), metrics)
        )
    return out


def find_cached(session: Session, cache_key: str, run_id: int) -> CachedSource | None:
    """The oldest of `find_sources`, or None."""
    sources = find_sources(session, cache_key, run_id)
    return sources[0] if sources else None


def cached_count(session: Session, sweep_id: int) -> int:
    """How many of the sweep's runs were recorded from the run cache."""
    return int(session.scalar(select(func.count()).where(Run.sweep_id == sweep_id, Run.cached_from.is_not(None))) or 0)
