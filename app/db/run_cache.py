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


def find_cached(session: Session, cache_key: str, run_id: int) -> CachedSource | None:
    """The first succeeded run (by id) other than `run_id` whose key is `cache_key` and that has a
    model version; None when there is none."""
    row = session.execute(
        select(Run, Sweep.asset, Sweep.output_subdir)
        .join(Sweep, Sweep.id == Run.sweep_id)
        .where(
            Run.cache_key == cache_key,
            Run.state == RunState.SUCCEEDED,
            Run.model_version.is_not(None),
            Run.id != run_id,
        )
        .order_by(Run.id)
        .limit(1)
    ).first()
    if row is None:
        return None
    run, asset, output_subdir = row
    metrics: dict[str, Any] = {key: getattr(run, key) for key in METRIC_COLUMNS}
    if run.scores_json:
        metrics.update(json.loads(run.scores_json))
    return CachedSource(run.sweep_id, run.run_key, asset, output_subdir, run.fold, str(run.model_version), metrics)


def cached_count(session: Session, sweep_id: int) -> int:
    """How many of the sweep's runs were recorded from the run cache."""
    return int(session.scalar(select(func.count()).where(Run.sweep_id == sweep_id, Run.cached_from.is_not(None))) or 0)
