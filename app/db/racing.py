"""Racing's persistence (core.racing): after a run is recorded, drop the variants shown worse
than the baseline and skip their queued runs, in the transaction that recorded the run."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from app.db.models import Run, RunState, Sweep, SweepStatus
from app.db.revisions import touch_sweeps
from app.db.sweeps import stored_config, utcnow
from core.plan import BASELINE_ID
from core.racing import RaceDecision, RacedRun, race
from core.reports import rank_direction

log = logging.getLogger("tftsweep.racing")


def racing_decisions(sweep: Sweep) -> dict[str, RaceDecision]:
    """The sweep's racing decisions so far (`racing_json`), by config."""
    if not sweep.racing_json:
        return {}
    return {name: RaceDecision(**data) for name, data in json.loads(sweep.racing_json).items()}


def race_sweep(session: Session, sweep: Sweep) -> list[RaceDecision]:
    """Race the sweep's variants on the runs recorded so far (when its config races) and skip
    the queued runs of each variant newly found worse; returns those variants' decisions.

    Called in the transaction that recorded a run: on SQLite that transaction holds the write
    lock already, on PostgreSQL a transaction-scoped advisory lock on the sweep serialises it,
    so every decision sees the decisions made before it."""
    config = stored_config(sweep)
    if not config.racing.enabled:
        return []
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"tftsweep.racing:{sweep.id}"})
        session.refresh(sweep)
    rank_by = config.evaluation.rank_by
    runs = [_raced(row, rank_by) for row in session.execute(_runs_query(sweep.id, rank_by))]
    blocks = [(fold.name, seed) for fold in config.folds for seed in config.seeds]
    before = {name: d for name, d in racing_decisions(sweep).items() if d.dropped}
    decisions = race(
        runs,
        blocks,
        BASELINE_ID,
        alpha=config.racing.alpha,
        min_pairs=config.racing.min_pairs,
        better=rank_direction(rank_by),
        dropped=before,
    )
    sweep.racing_json = json.dumps({name: asdict(d) for name, d in decisions.items()}, sort_keys=True)
    raced = [d for name, d in decisions.items() if d.dropped and name not in before]
    for decision in raced:
        skip_runs(session, sweep.id, decision)
    if raced:
        touch_sweeps(session, [sweep.id])
    return raced


def skip_runs(session: Session, sweep_id: int, decision: RaceDecision) -> int:
    """Set the variant's queued runs to `skipped`, with the decision's reason; how many."""
    result = session.execute(
        update(Run)
        .where(Run.sweep_id == sweep_id, Run.config_id == decision.config_id, Run.state == RunState.QUEUED)
        .values(state=RunState.SKIPPED, skip_reason=decision.reason(), finished_at=utcnow())
    )
    skipped = int(result.rowcount)  # type: ignore[attr-defined]
    log.info("sweep %s: %s %s (%d queued runs skipped)", sweep_id, decision.config_id, decision.reason(), skipped)
    return skipped


def resume_skipped(session: Session, sweep: Sweep) -> list[int]:
    """Queue the sweep's skipped runs again (a merge with racing off) and forget the racing
    decisions; the ids of the runs queued, in plan order."""
    ids = list(
        session.scalars(
            select(Run.id).where(Run.sweep_id == sweep.id, Run.state == RunState.SKIPPED).order_by(Run.ordinal)
        )
    )
    if ids:
        session.execute(
            update(Run)
            .where(Run.id.in_(ids))
            .values(state=RunState.QUEUED, skip_reason=None, finished_at=None, queued_at=utcnow(), enqueued_at=None)
        )
        sweep.status = SweepStatus.QUEUED
        touch_sweeps(session, [sweep.id])
    sweep.racing_json = None
    return ids


def _runs_query(sweep_id: int, rank_by: str) -> Any:
    value = getattr(Run, rank_by, None)
    columns = [Run.config_id, Run.fold, Run.seed, Run.state]
    return select(*columns, value if value is not None else Run.scores_json).where(Run.sweep_id == sweep_id)


def _raced(row: Any, rank_by: str) -> RacedRun:
    config_id, fold, seed, state, raw = row
    if isinstance(raw, str):  # the metric is one of the extra scores (runs.scores_json)
        raw = json.loads(raw).get(rank_by)
    value = None if raw is None else float(raw)
    return RacedRun(str(config_id), str(fold), int(seed), str(state), value)
