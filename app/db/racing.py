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
from core.config import SweepConfig
from core.plan import BASELINE_ID
from core.racing import RaceDecision, RacedRun, RacingDesign, race, racing_design
from core.reports import rank_direction

log = logging.getLogger("tftsweep.racing")


def _stored(sweep: Sweep) -> dict[str, Any]:
    return dict(json.loads(sweep.racing_json)) if sweep.racing_json else {}


def racing_decisions(sweep: Sweep) -> dict[str, RaceDecision]:
    """The sweep's racing decisions so far (`racing_json`), by config."""
    return {name: RaceDecision(**data) for name, data in _stored(sweep).get("decisions", {}).items()}


def sweep_design(sweep: Sweep, config: SweepConfig) -> RacingDesign:
    """The design the sweep races by: the one its first decision stored (a merge that adds
    folds or seeds does not change it), else the one its config gives now."""
    stored = _stored(sweep).get("design")
    if stored is not None:
        return RacingDesign.from_dict(stored)
    blocks = [(fold.name, seed) for fold in config.folds for seed in config.seeds]
    return racing_design(blocks, config.racing.min_pairs, config.racing.alpha)


def race_sweep(session: Session, sweep: Sweep) -> list[RaceDecision]:
    """Race the sweep's variants on the runs recorded so far (when its config races), skip the
    queued runs of every dropped variant, and return the variants newly dropped.

    Called in the transaction that recorded a run: on SQLite that transaction holds the write
    lock already, on PostgreSQL a transaction-scoped advisory lock on the sweep serialises it,
    so every decision sees the decisions made before it. The runs are updated before the sweep
    row (its `racing_json`), which is written last: a worker claiming a run locks the run, then
    the sweep, and the other order would deadlock with it."""
    config = stored_config(sweep)
    if not config.racing.enabled:
        return []
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"tftsweep.racing:{sweep.id}"})
        session.refresh(sweep)
    rank_by = config.evaluation.rank_by
    runs = [_raced(row, rank_by) for row in session.execute(_runs_query(sweep.id, rank_by))]
    design = sweep_design(sweep, config)
    before = {name: d for name, d in racing_decisions(sweep).items() if d.dropped}
    decisions = race(
        runs, design, BASELINE_ID, min_pairs=config.racing.min_pairs, better=rank_direction(rank_by), dropped=before
    )
    skipped = sum(skip_runs(session, sweep.id, d) for d in decisions.values() if d.dropped)
    if skipped:
        touch_sweeps(session, [sweep.id])
    stored = {"design": design.as_dict(), "decisions": {name: asdict(d) for name, d in decisions.items()}}
    sweep.racing_json = json.dumps(stored, sort_keys=True)
    return [d for name, d in decisions.items() if d.dropped and name not in before]


def skip_dropped(session: Session, sweep: Sweep) -> int:
    """Skip the queued runs of every variant racing dropped before (runs a merge added, or a
    resume queued again): a drop is final while the sweep races. How many were skipped."""
    if not stored_config(sweep).racing.enabled:
        return 0
    skipped = sum(skip_runs(session, sweep.id, d) for d in racing_decisions(sweep).values() if d.dropped)
    if skipped:
        touch_sweeps(session, [sweep.id])
    return skipped


def skip_runs(session: Session, sweep_id: int, decision: RaceDecision) -> int:
    """Set the variant's queued runs to `skipped`, with the decision's reason; how many."""
    result = session.execute(
        update(Run)
        .where(Run.sweep_id == sweep_id, Run.config_id == decision.config_id, Run.state == RunState.QUEUED)
        .values(state=RunState.SKIPPED, skip_reason=decision.reason(), finished_at=utcnow())
    )
    skipped = int(result.rowcount)  # type: ignore[attr-defined]
    if skipped:
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
