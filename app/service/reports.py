"""A sweep's files: one report build at a time per sweep, from one consistent state of its runs.

`build_reports` writes `analysis_config.json`, `sweep_runs`, the reports, drift and plots and
uploads them to the store; `request_reports` asks a worker for a build (coalescing requests
that come while none has started); `send_reports` sends a build's message, leaving a lost one
to the reaper.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.lifecycle import record_scores, settle_sweep_status
from app.db.models import RunState, Sweep
from app.db.reports import (
    forget_report_request,
    mark_reports_built,
    release_report_lock,
    reports_wanted,
    take_report_lock,
)
from app.db.reports import request_reports as flag_reports_wanted
from app.db.selection import record_selection, selection_record
from app.db.session import session_scope
from app.db.sweeps import folder_config, run_records, sweep_is_done
from app.queue import RunQueue
from app.settings import Settings
from core.compare import Membership, read_mcs_membership
from core.paths import ensure_inside, sweep_dir
from core.rescore import needs_rescore, rescore_records, scoring_key
from core.store import Store
from core.sweep_folder import SweepFolderConfig
from core.sweep_report import drift_dataset, write_sweep_reports

log = logging.getLogger("tftsweep.reports")

# A report build holds its sweep's lock at most this long (a builder that died frees it then).
REPORT_LOCK_SECONDS = 1800.0
# A model version whose upload stopped before its manifest is removed by the sweep's next
# report build after this long (an upload in progress is never that old).
UNPUBLISHED_GRACE_SECONDS = 600.0


@dataclass(frozen=True)
class _Snapshot:
    revision: int
    folder: SweepFolderConfig
    records: list[dict[str, Any]]

    @property
    def done(self) -> bool:
        return not any(r["status"] in (RunState.QUEUED, RunState.RUNNING) for r in self.records)


def _snapshot(factory: sessionmaker[Session], sweep_id: int) -> _Snapshot:
    """The sweep's runs as of one revision: read, then check the revision did not move meanwhile."""
    while True:
        with session_scope(factory) as session:
            sweep = session.get_one(Sweep, sweep_id)
            revision = sweep.revision
            folder = folder_config(sweep)
            records = run_records(session, sweep_id)
            now = session.scalar(select(Sweep.revision).where(Sweep.id == sweep_id))
        if now == revision:
            return _Snapshot(revision, folder, records)


def build_reports(
    factory: sessionmaker[Session],
    store: Store,
    sweep_id: int,
    *,
    builder: str,
    plots: bool = True,
    when_wanted: bool = False,
) -> dict[str, Any] | None:
    """Write the sweep's files (`analysis_config.json`, `sweep_runs`, reports, drift, plots)
    from one consistent state of its runs, one build per sweep at a time.

    `reports_at` is set only by a build that read the sweep's final state (no run queued or
    running) and only while that state is still current. A build that finds another one
    running returns None: the running build writes any newer state, and serves any
    request that came meanwhile (`reports_wanted_at`), before it lets go. `when_wanted` (a
    queued build's message) returns None without building when there is nothing to do: the
    request it was sent for was served by a build that started after it. Returns the
    summary of the last state written.
    """
    summary = None
    while True:
        with session_scope(factory) as session:
            if when_wanted and summary is None and not reports_wanted(session, sweep_id):
                return None
            if not take_report_lock(session, sweep_id, builder, REPORT_LOCK_SECONDS):
                return summary
        try:
            snap = _scored_snapshot(factory, store, sweep_id)
            summary = _write_files(store, snap, plots)
            _record_selection(factory, store, sweep_id, snap, summary)
            if snap.done:
                with session_scope(factory) as session:
                    if mark_reports_built(session, sweep_id, snap.revision):
                        settle_sweep_status(session, session.get_one(Sweep, sweep_id))
        finally:
            with session_scope(factory) as session:
                release_report_lock(session, sweep_id, builder)
        # A change or a request that came while the lock was held found it taken and left the
        # build to us: one more pass serves all of them (the dirty flag of the reports).
        with session_scope(factory) as session:
            sweep = session.get_one(Sweep, sweep_id)
            stale = sweep.reports_at is None and sweep_is_done(session, sweep_id)
            if sweep.reports_wanted_at is None and not stale:
                return summary


def _scored_snapshot(factory: sessionmaker[Session], store: Store, sweep_id: int, passes: int = 3) -> _Snapshot:
    """The snapshot to build from, its runs scored with its own evaluation block: a merge that
    changed the block between the rescoring and the snapshot is caught here and rescored again
    (a few passes; a block changing faster than that, or runs that cannot be rescored here,
    are built as read and logged by the rescoring)."""
    snap = _snapshot(factory, sweep_id)
    for _ in range(passes):
        key = scoring_key(snap.folder.config.evaluation)
        if not any(needs_rescore(record, key) for record in snap.records):
            break
        if not rescore_stale_runs(factory, store, sweep_id):
            break
        snap = _snapshot(factory, sweep_id)
    return snap


def rescore_stale_runs(factory: sessionmaker[Session], store: Store, sweep_id: int) -> int:
    """Score again, from their stored predictions, the succeeded runs scored with another
    evaluation block or metric registry than the sweep's now (core.rescore), and record the
    new scores. Returns how many runs changed (0 when the dataset is not at hand: logged)."""
    with session_scope(factory) as session:
        folder = folder_config(session.get_one(Sweep, sweep_id))
        records = run_records(session, sweep_id, params=False)
    evaluation = folder.config.evaluation
    key = scoring_key(evaluation)
    stale = [record for record in records if needs_rescore(record, key)]
    if not stale:
        return 0
    asset, subdir = folder.asset, folder.config.output_subdir
    store.fetch_versions(asset, subdir)
    store.fetch_dataset(asset)
    frame, problem = drift_dataset(store.root, folder)
    if frame is None:
        log.warning("sweep %s/%s: %d runs not rescored: %s", asset, subdir, len(stale), problem)
        return 0
    folds = {fold.name: fold for fold in folder.config.folds}
    _, changed = rescore_records(stale, sweep_dir(store.root, asset, subdir), frame, folds, evaluation)
    versions = {int(r["run_id"]): str(r["model_version"]) for r in stale}
    with session_scope(factory) as session:
        return record_scores(session, {run_id: (versions[run_id], scores) for run_id, scores in changed.items()})


def _write_files(store: Store, snap: _Snapshot, plots: bool) -> dict[str, Any]:
    root = store.root
    folder = sweep_dir(root, snap.folder.asset, snap.folder.config.output_subdir)
    ensure_inside(root, folder)
    asset, subdir = snap.folder.asset, snap.folder.config.output_subdir
    store.fetch_versions(asset, subdir)  # the model versions other machines published
    store.fetch_dataset(asset)
    dataset, problem = drift_dataset(root, snap.folder)
    if problem is not None:
        log.warning("sweep %s: drift not computed: %s", folder.name, problem)
    reason = f"not computed: {problem}" if problem else None
    summary = write_sweep_reports(folder, snap.records, snap.folder, dataset, drift_reason=reason, plots=plots)
    store.publish_sweep_reports(asset, subdir)
    if snap.done:
        for version in store.drop_unpublished_versions(asset, subdir, UNPUBLISHED_GRACE_SECONDS):
            log.warning("sweep %s: removed %s, a model version whose upload never finished", folder.name, version)
    return summary


def _record_selection(
    factory: sessionmaker[Session], store: Store, sweep_id: int, snap: _Snapshot, summary: dict[str, Any]
) -> None:
    """Keep in the database what the build found of the model confidence set and SPA test
    (summary.json's `selection`, each ranking file's `mcs_pvalue`/`in_mcs`), for the revision it
    read and the rank_by it ranked by: the API ranks from the database and cannot recompute them
    (they need every run's predictions). One small read per ranking file written."""
    config = snap.folder.config
    folder = sweep_dir(store.root, snap.folder.asset, config.output_subdir)
    folds = {
        fold.name: _members(read_mcs_membership(folder / "folds" / fold.name / "config_ranking.csv"))
        for fold in config.folds
    }
    record = selection_record(
        snap.revision,
        config.evaluation.rank_by,
        summary.get("selection"),
        _members(read_mcs_membership(folder / "config_ranking.csv")),
        {name: members for name, members in folds.items() if members is not None},
    )
    with session_scope(factory) as session:
        record_selection(session, sweep_id, record)


def _members(found: Membership) -> dict[str, list[Any]] | None:
    return None if found.configs is None else {c: [p, m] for c, (p, m) in found.configs.items()}


def request_reports(factory: sessionmaker[Session], queue: RunQueue, settings: Settings, sweep_id: int) -> bool:
    """Ask for a build of the sweep's reports. True when this request queued the build; False
    when it joined one already asked for that has not started (requests during a build cost
    at most one more build: `app.db.reports.request_reports`).

    The flag is committed before the message is sent; a message that cannot be sent clears
    it again (the next request sends) and the error propagates.
    """
    with session_scope(factory) as session:
        if not flag_reports_wanted(session, sweep_id, settings.requeue_after_seconds):
            return False
    try:
        queue.enqueue_reports(sweep_id)
    except Exception:
        with session_scope(factory) as session:
            forget_report_request(session, sweep_id)
        raise
    return True


def send_reports(queue: RunQueue, sweep_id: int) -> None:
    """Send a build's message; one that cannot be sent is left to the reaper (it rebuilds a
    finished sweep whose reports are not current)."""
    try:
        queue.enqueue_reports(sweep_id)
    except Exception:
        log.exception("could not enqueue the reports of sweep %s", sweep_id)
