"""Reads of sweeps and runs: lookups, counts, run records for reports and exports.

Writes live in `app.db.lifecycle` (the run state machine), `app.db.recording` (a submission's
rows) and `app.db.reports` (the report build's lock).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import Run, RunState, Sweep, SweepStatus
from core.config import SweepConfig, validate_sweep_config
from core.dry_run import PastRun
from core.feature_sets import resolve_features
from core.runs import RUN_COLUMNS
from core.sweep_folder import SweepFolderConfig


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """Stored times are UTC; SQLite hands them back without a zone, so put it back."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


# The features a sweep trains on, resolved once when it was planned, are kept beside its
# config in `config_json` under this key (sweeps recorded before it resolve them on reading).
FEATURES_KEY = "resolved_features"


def config_json(config: SweepConfig, features: list[str]) -> str:
    """The text `sweeps.config_json` holds: the effective config and its resolved features."""
    return json.dumps({**config.to_json_dict(), FEATURES_KEY: features})


def stored_config(sweep: Sweep) -> SweepConfig:
    return _parse_config(sweep.config_json)


def stored_config_dict(sweep: Sweep) -> dict[str, Any]:
    """The stored config as JSON data, as it was submitted (without its resolved features)."""
    data = json.loads(sweep.config_json)
    data.pop(FEATURES_KEY, None)
    return dict(data)


def stored_features(sweep: Sweep) -> list[str]:
    """The features the sweep's runs train on, as resolved at planning."""
    return list(_parse_features(sweep.config_json))


@lru_cache(maxsize=64)
def _parse_config(text: str) -> SweepConfig:
    """Configs are frozen, so one parse of each stored text serves every run of its sweep."""
    data = json.loads(text)
    data.pop(FEATURES_KEY, None)
    return validate_sweep_config(data)


@lru_cache(maxsize=64)
def _parse_features(text: str) -> tuple[str, ...]:
    features = json.loads(text).get(FEATURES_KEY)
    if features is None:
        return tuple(resolve_features(_parse_config(text).features))
    return tuple(features)


def stored_dataset(sweep: Sweep) -> dict[str, Any] | None:
    """The fingerprint of the dataset the sweep trains on (None for sweeps recorded before fingerprints)."""
    return json.loads(sweep.dataset_json) if sweep.dataset_json else None


def folder_config(sweep: Sweep) -> SweepFolderConfig:
    """What the sweep's `analysis_config.json` holds."""
    return SweepFolderConfig(sweep.asset, stored_dataset(sweep), stored_config(sweep))


def find_sweep(session: Session, asset: str, output_subdir: str) -> Sweep | None:
    return session.scalars(select(Sweep).where(Sweep.asset == asset, Sweep.output_subdir == output_subdir)).first()


def run_counts(session: Session, sweep_id: int) -> dict[str, int]:
    rows = session.execute(select(Run.state, func.count()).where(Run.sweep_id == sweep_id).group_by(Run.state)).all()
    counts = Counter({str(state): 0 for state in RunState})
    counts.update({state: int(n) for state, n in rows})
    return dict(counts)


def sweep_is_done(session: Session, sweep_id: int) -> bool:
    """No run of the sweep is queued or running."""
    counts = run_counts(session, sweep_id)
    return counts[RunState.QUEUED] + counts[RunState.RUNNING] == 0


def is_stopped(sweep: Sweep) -> bool:
    """The sweep was cancelled or failed fast: nothing more of it should start."""
    return sweep.status in (SweepStatus.CANCELLED, SweepStatus.FAILED)


def queued_run_ids(session: Session, sweep_id: int) -> list[int]:
    return list(
        session.scalars(
            select(Run.id).where(Run.sweep_id == sweep_id, Run.state == RunState.QUEUED).order_by(Run.ordinal)
        )
    )


# The `runs` column behind each run-record field whose name differs (core.runs.RUN_FIELDS).
_COLUMN_OF = {"run_id": "id", "status": "state", "param_value": "param_value_json"}
RECORD_COLUMNS = tuple(getattr(Run, _COLUMN_OF.get(name, name)).label(name) for name in RUN_COLUMNS)


def _record(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A `runs` row (selected with `RECORD_COLUMNS`) as a run record: JSON values decoded, times in ISO 8601."""
    record = dict(row)
    raw = record["param_value"]
    record["param_value"] = None if raw is None else json.loads(raw)
    for key in ("started_at", "finished_at"):
        moment = as_utc(record[key])
        record[key] = moment.isoformat() if moment else None
    if "params_json" in record:
        record["params"] = json.loads(record.pop("params_json"))
    scores = record.pop("scores_json", None)
    if scores:
        record.update(json.loads(scores))
    return record


def run_records(
    session: Session,
    sweep_id: int,
    *,
    fold: str | None = None,
    state: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    params: bool = True,
) -> list[dict[str, Any]]:
    """The sweep's run records in plan order (what `sweep_runs` holds; `params`: each run's
    whole training config too), optionally one fold's or one state's, a page at a time."""
    query = select(*RECORD_COLUMNS, Run.scores_json, *([Run.params_json] if params else [])).where(
        Run.sweep_id == sweep_id
    )
    if fold is not None:
        query = query.where(Run.fold == fold)
    if state is not None:
        query = query.where(Run.state == state)
    query = query.order_by(Run.ordinal).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return [_record(row._mapping) for row in session.execute(query)]


# The most past runs a dry run reads (newest first): enough for medians and a pooled spread,
# and a bound on what one request reads whatever the server holds.
PAST_RUNS_LIMIT = 20_000


def past_runs(session: Session, limit: int = PAST_RUNS_LIMIT) -> list[PastRun]:
    """Succeeded runs recorded on this server, newest first: what a dry run estimates from."""
    query = (
        select(
            Sweep.asset,
            Run.sweep_id,
            Run.config_id,
            Run.fold,
            Run.seed,
            Run.params_json,
            Run.train_seconds,
            Run.val_rmse,
        )
        .join(Sweep, Sweep.id == Run.sweep_id)
        .where(Run.state == RunState.SUCCEEDED)
        .order_by(Run.id.desc())
        .limit(limit)
    )
    return [
        PastRun(asset, sweep_id, config_id, fold, seed, json.loads(params), seconds, rmse)
        for asset, sweep_id, config_id, fold, seed, params, seconds, rmse in session.execute(query)
    ]
