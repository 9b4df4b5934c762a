"""The run engine: a run's life from its spec to its recorded outcome, and a sweep's published files.

One place for each step, whoever drives it: `submit` (adopting a folder the database does
not know, recording the sweep, writing `analysis_config.json`), `dry_run` (the same checks,
nothing written), `train_run` (the one run pipeline: `claim` the run and its spec, keep its
lease with a `LeaseKeeper` while the trainer, passed in, trains it, `record` the outcome and
the stop-after-first-failure rule) and `publish_sweep` (every report, drift file and plot,
one build at a time). The Celery tasks, `tftsweep sweep` (inline and in its worker
processes) and the reaper's re-sent runs are thin callers of these functions.

Files go through the `core.store.Store` they are given: the data root itself, or an object
store of which the data root is this machine's copy. There a run fetches its dataset (once
per fingerprint), trains on the local disk, uploads its model version and removes its local
copy (a worker's disk stays bounded) before it is recorded; a report build fetches the model
versions the workers published and uploads the reports.

Three jobs live here (submission, a run's execution, report publication): the planned
service layer splits them into modules of their own; until then they stay in the one place
every caller already goes through.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.db.lifecycle import (
    acquire_publisher,
    adopt_sweep,
    claim_run,
    fail_sweep,
    finish_run,
    mark_published,
    release_publisher,
    release_run,
    renew_lease,
    reports_wanted,
    settle_sweep_status,
    submit_sweep,
)
from app.db.models import Run, RunState, Sweep
from app.db.session import session_scope
from app.db.sweeps import (
    find_sweep,
    folder_config,
    is_stopped,
    past_runs,
    queued_run_ids,
    run_counts,
    run_records,
    stored_config,
    stored_dataset,
    sweep_is_done,
)
from app.db.workers import lease_owner
from core.config import SweepConfig
from core.datasets import check_dataset_for_sweep, dataset_fingerprint
from core.dry_run import dry_run_report
from core.errors import DatasetError, StoreError, SweepExists, SweepFolderError, UnsafePath
from core.feature_sets import resolve_features
from core.merge import validate_merge
from core.paths import ensure_inside, model_version, sweep_dir
from core.plan import check_plan_size, expand_sweep
from core.runs import RunOutcome, RunSpec, Trainer
from core.store import Store
from core.sweep_folder import (
    ANALYSIS_CONFIG,
    SweepFolderConfig,
    is_sweep_folder,
    read_analysis_config,
    read_run_records,
    write_analysis_config,
)
from core.sweep_report import drift_dataset, write_sweep_reports

log = logging.getLogger("tftsweep.engine")

# A report build holds its sweep's lock at most this long (a builder that died frees it then).
PUBLISH_LOCK_SECONDS = 1800.0
# A model version whose upload stopped before its manifest is removed by the sweep's next
# report build after this long (an upload in progress is never that old).
UNPUBLISHED_GRACE_SECONDS = 600.0


# -- submission ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    sweep_id: int
    asset: str
    output_subdir: str
    status: str
    new_run_ids: list[int]
    total_runs: int
    merged: bool
    # Queued runs that came from an adopted folder (they need messages like new runs).
    adopted_run_ids: list[int]
    # No run is queued or running: the sweep's files can be published now (a merge that added no run).
    done: bool
    # With walk_forward.clip_to_data: the folds' windows cut to the dataset (else None).
    effective_folds: list[dict[str, Any]] | None = None


def submit(
    factory: sessionmaker[Session],
    store: Store,
    asset: str,
    config: SweepConfig,
    *,
    merge: bool,
    continue_on_error: bool,
    resume_identical: bool = False,
    max_runs: int | None = None,
) -> Submitted:
    """Check the dataset, adopt the sweep's folder if the database does not know it, record
    the sweep (or merge, or resume), commit, and write its `analysis_config.json`.

    Raises:
        DatasetError, SweepFolderError, InvalidSweepConfig, SweepExists, MergeRejected:
            nothing of the submission is written (an adopted folder stays adopted).
        StoreError: the object store failed.
    """
    root = store.root
    check_plan_size(config, max_runs)  # arithmetic, before the dataset is fetched or read
    store.fetch_dataset(asset)
    check_dataset_for_sweep(root, asset, config)
    dataset = dataset_fingerprint(root, asset)
    folder_path = sweep_dir(root, asset, config.output_subdir)
    with session_scope(factory) as session:
        known = find_sweep(session, asset, config.output_subdir) is not None
    adopted = None
    if not known:
        store.fetch_sweep_inputs(asset, config.output_subdir)  # a sweep the store holds and the database forgot
        adopted = adopt_folder(factory, folder_path, asset)
    with session_scope(factory) as session:
        result = submit_sweep(
            session,
            asset,
            config,
            dataset=dataset,
            merge=merge,
            continue_on_error=continue_on_error,
            resume_identical=resume_identical,
            max_runs=max_runs,
        )
        sweep = result.sweep
        folder = folder_config(sweep)
        done = sweep_is_done(session, sweep.id)
        submitted = Submitted(
            sweep.id,
            asset,
            config.output_subdir,
            sweep.status,
            result.new_run_ids,
            result.total_runs,
            result.merged,
            adopted.queued_run_ids if adopted else [],
            done,
            folder.effective_folds,
        )
    ensure_inside(root, folder_path)
    write_analysis_config(folder_path, folder)
    store.publish_sweep_file(asset, config.output_subdir, ANALYSIS_CONFIG)
    return submitted


def dry_run(
    factory: sessionmaker[Session],
    store: Store,
    asset: str,
    config: SweepConfig,
    *,
    merge: bool,
    max_runs: int | None = None,
) -> dict[str, Any]:
    """The checks `submit` makes (plan cap, dataset, folds, an existing sweep, the merge rules,
    a changed dataset), and what the plan would be, cost and detect (`core.dry_run`); nothing
    is recorded, queued or written to the sweep's folder. A folder the database does not know
    is read, not adopted. (With an object store the dataset is fetched to this machine, as any
    read of it is.)

    Raises:
        DatasetError, SweepFolderError, InvalidSweepConfig, SweepExists, MergeRejected: as `submit`.
        StoreError: the object store failed.
    """
    root = store.root
    check_plan_size(config, max_runs)
    store.fetch_dataset(asset)
    check_dataset_for_sweep(root, asset, config)
    dataset = dataset_fingerprint(root, asset)
    with session_scope(factory) as session:
        existing = find_sweep(session, asset, config.output_subdir)
        known: tuple[int | None, SweepConfig, dict[str, Any] | None] | None = None
        if existing is not None:
            known = (existing.id, stored_config(existing), stored_dataset(existing))
        past = past_runs(session)
    folder_path = sweep_dir(root, asset, config.output_subdir)
    if known is None and is_sweep_folder(folder_path):  # what `submit` would adopt
        analysis = read_analysis_config(folder_path, asset)
        known = (None, analysis.config, analysis.dataset)
    effective = config
    if known is None:
        plan = expand_sweep(config, max_runs=max_runs)
        new_runs = plan.runs
    else:
        sweep_id, old, recorded = known
        if not merge:
            where = f"id {sweep_id}" if sweep_id is not None else "its folder"
            raise SweepExists(
                f"sweep {asset}/{config.output_subdir} exists ({where}); "
                "submit with merge_tests (--merge-tests) to add runs to it"
            )
        result = validate_merge(old, config, max_runs=max_runs)
        if result.new_runs and recorded and recorded.get("sha256") != dataset.get("sha256"):
            raise DatasetError(
                f"the dataset {dataset.get('file')} changed since sweep {asset}/{config.output_subdir} was recorded: "
                "its runs would not be comparable; restore that dataset or submit under a new output_subdir"
            )
        plan, new_runs, effective = result.plan, result.new_runs, result.config
    report = dry_run_report(asset, plan, new_runs, effective.stats.alpha, past)
    return {
        "dry_run": True,
        "asset": asset,
        "output_subdir": config.output_subdir,
        "merged": known is not None,
        **report,
        "effective_folds": SweepFolderConfig(asset, dataset, effective).effective_folds,
    }


@dataclass(frozen=True)
class Adopted:
    sweep_id: int
    counts: dict[str, int]
    queued_run_ids: list[int]


def adopt_folder(factory: sessionmaker[Session], folder: Path, asset: str | None = None) -> Adopted | None:
    """Record the sweep that `folder` holds when the database does not know it (a deleted
    database, a folder copied from another machine): its config and its runs with their
    states, metrics and model versions. None when there is nothing to adopt.

    Raises:
        SweepFolderError: the folder's files are unreadable, name another asset than
            `asset`, or list runs its config does not plan.
    """
    if not is_sweep_folder(folder):
        return None
    analysis = read_analysis_config(folder, asset)
    if asset is not None and analysis.asset != asset:
        raise SweepFolderError(f"{folder.name}/analysis_config.json is a sweep of {analysis.asset}, not {asset}")
    with session_scope(factory) as session:
        if find_sweep(session, analysis.asset, analysis.config.output_subdir) is not None:
            return None
    records = read_run_records(folder)
    try:
        with session_scope(factory) as session:
            sweep = adopt_sweep(session, analysis, records)
            adopted = Adopted(sweep.id, run_counts(session, sweep.id), queued_run_ids(session, sweep.id))
    except IntegrityError:  # adopted by a concurrent submission
        return None
    log.warning(
        "adopted sweep %s/%s from its folder (id %s): %s",
        analysis.asset,
        analysis.config.output_subdir,
        adopted.sweep_id,
        ", ".join(f"{n} {state}" for state, n in adopted.counts.items() if n),
    )
    return adopted


# -- one run ---------------------------------------------------------------------------------


def run_spec(session: Session, run: Run, root: Path) -> RunSpec:
    """What a trainer needs for `run`, read from the database."""
    sweep = session.get_one(Sweep, run.sweep_id)
    config = stored_config(sweep)
    fold = next(f for f in config.folds if f.name == run.fold)
    dataset = stored_dataset(sweep)
    return RunSpec(
        run_id=run.id,
        run_key=run.run_key,
        asset=sweep.asset,
        config_id=run.config_id,
        fold={"name": fold.name, **fold.window_dict()},
        seed=run.seed,
        params=json.loads(run.params_json),
        features=resolve_features(config.features),
        data_root=str(root),
        sweep_dir=str(sweep_dir(root, sweep.asset, sweep.output_subdir)),
        dataset_sha256=dataset.get("sha256") if dataset else None,
    )


def claim(factory: sessionmaker[Session], run_id: int, owner: str, lease_seconds: float, root: Path) -> RunSpec | str:
    """Take the run for `owner` with a lease and return its spec, or why it was not taken
    (a duplicate message, a run another worker holds, a cancelled or finished run)."""
    with session_scope(factory) as session:
        run = session.get(Run, run_id)
        if run is None:
            return "missing"
        if not claim_run(session, run_id, owner, lease_seconds):
            return f"skipped ({run.state})"
        return run_spec(session, run, root)


class LeaseKeeper(threading.Thread):
    """Renews a run's lease while it trains; sets `lost` when the run is no longer ours."""

    def __init__(self, factory: sessionmaker[Session], run_id: int, owner: str, lease_seconds: float) -> None:
        super().__init__(name=f"lease-{run_id}", daemon=True)
        self.factory = factory
        self.run_id = run_id
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.interval = max(0.5, min(lease_seconds / 4, 5.0))
        self.lost = threading.Event()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                with session_scope(self.factory) as session:
                    if not renew_lease(session, self.run_id, self.owner, self.lease_seconds):
                        self.lost.set()
                        return
            except Exception:  # a transient DB error: keep training, try again next tick
                log.exception("lease renewal of run %s failed", self.run_id)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


@dataclass(frozen=True)
class Recorded:
    """What recording an outcome did."""

    state: str  # succeeded, failed, or discarded (cancelled or lease lost meanwhile)
    sweep_id: int
    sweep_done: bool  # no run of the sweep is queued or running any more
    sweep_stopped: bool  # the sweep was cancelled or failed fast: start none of its runs


def stop_after_failure(session: Session, sweep: Sweep, run: Run) -> bool:
    """The stop-after-first-failure rule: unless the sweep continues on error, a failed run
    cancels every queued run of its sweep. True when it stopped the sweep."""
    if sweep.continue_on_error:
        return False
    fail_sweep(
        session,
        sweep,
        f"cancelled: run {run.id} ({run.config_id}, fold {run.fold}, seed {run.seed}) failed "
        "and continue_on_error is off",
    )
    return True


def record(factory: sessionmaker[Session], outcome: RunOutcome, owner: str) -> Recorded:
    """Record the outcome once (only the lease holder can), apply the failure rule, and settle
    the sweep's status when its last run finished."""
    with session_scope(factory) as session:
        recorded = finish_run(
            session,
            outcome.run_id,
            owner,
            metrics=outcome.metrics,
            model_version=outcome.model_version,
            error=outcome.error,
        )
        run = session.get_one(Run, outcome.run_id)
        sweep = session.get_one(Sweep, run.sweep_id)
        if recorded and outcome.error is not None:
            stop_after_failure(session, sweep, run)
        done = sweep_is_done(session, sweep.id)
        if done:
            settle_sweep_status(session, sweep)
        state = ("failed" if outcome.error else "succeeded") if recorded else "discarded"
        return Recorded(state, sweep.id, done, is_stopped(sweep))


@dataclass(frozen=True)
class Trained:
    """What `train_run` did with a run: `text` for logs; `recorded` unless its outcome was not
    recorded (not taken, or given back to the queue)."""

    text: str
    spec: RunSpec | None = None
    outcome: RunOutcome | None = None
    recorded: Recorded | None = None


def train_run(
    factory: sessionmaker[Session],
    store: Store,
    run_id: int,
    owner: str,
    trainer: Trainer,
    *,
    lease_seconds: float,
    interrupted: Callable[[], bool] = lambda: False,
) -> Trained:
    """Claim, train (renewing the lease) and record one run: the one pipeline of every way a
    run is trained (a Celery task, `tftsweep sweep` inline or in its worker processes, a run
    the reaper sent again).

    The trainer is asked to stop at its next batch once the run is no longer ours (cancelled,
    or its lease lost: the outcome is then discarded) or once `interrupted()` is true (a
    worker shutting down, Ctrl-C): the stopped run goes back to the queue instead of being
    recorded, so a rerun trains it again; a run that completed meanwhile is recorded.
    """
    spec = claim(factory, run_id, owner, lease_seconds, store.root)
    if isinstance(spec, str):
        return Trained(spec)
    keeper = LeaseKeeper(factory, run_id, owner, lease_seconds)
    keeper.start()
    try:
        outcome = _fetch_train_upload(store, spec, trainer, lambda: keeper.lost.is_set() or interrupted())
    except BaseException:
        keeper.stop()
        with session_scope(factory) as session:
            release_run(session, run_id, owner)
        raise
    keeper.stop()
    if interrupted() and outcome.metrics is None and not keeper.lost.is_set():
        with session_scope(factory) as session:
            released = release_run(session, run_id, owner)
        return Trained("released (interrupted)" if released else "discarded", spec, outcome)
    recorded = record(factory, outcome, owner)
    text = "discarded (cancelled or lease lost)" if recorded.state == "discarded" else recorded.state
    return Trained(text, spec, outcome, recorded)


def record_lost_process(factory: sessionmaker[Session], run_id: int, owner: str, root: Path, why: str) -> Trained:
    """Record as failed a run whose process died inside `train_run` (a pool process killed or
    crashed, so nothing else records it), with the failure rule as for any failure."""
    outcome = RunOutcome(run_id, error=f"worker process failed: {why}")
    recorded = record(factory, outcome, owner)
    with session_scope(factory) as session:
        spec = run_spec(session, session.get_one(Run, run_id), root)
    text = "discarded (cancelled or lease lost)" if recorded.state == "discarded" else recorded.state
    return Trained(text, spec, outcome, recorded)


def _fetch_train_upload(
    store: Store, spec: RunSpec, trainer: Trainer, stop_requested: Callable[[], bool]
) -> RunOutcome:
    """Fetch the run's dataset, train, and upload its model version: a run is recorded as
    succeeded only once its version is published."""
    started = time.perf_counter()
    problem = _fetch_inputs(store, spec)
    if problem is not None:
        return problem
    fetched = time.perf_counter() - started
    outcome = trainer(spec, stop_requested=stop_requested)
    if store.remote:
        outcome.timings["fetch_seconds"] = fetched
    return _upload_outputs(store, spec, outcome)


def _fetch_inputs(store: Store, spec: RunSpec) -> RunOutcome | None:
    """Bring the run's dataset to this machine (once per fingerprint); the failed outcome when
    the store fails (the run's error names it; a retry may find the store back)."""
    try:
        store.fetch_dataset(spec.asset)
    except StoreError as exc:
        return RunOutcome(spec.run_id, error=f"StoreError: {exc}")
    return None


def _upload_outputs(store: Store, spec: RunSpec, outcome: RunOutcome) -> RunOutcome:
    """Publish a trained run's model version (objects, then its manifest), then drop this
    machine's copy of it when the store is remote; the outcome, or a failed one when the
    upload failed (the local copy then stays: a retry trains over it)."""
    if outcome.metrics is None or outcome.model_version is None:
        return outcome
    started = time.perf_counter()
    names = (spec.asset, Path(spec.sweep_dir).name, spec.fold["name"], model_version(spec.config_id, spec.seed))
    try:
        store.publish_version(*names)
    except StoreError as exc:
        return RunOutcome(spec.run_id, error=f"StoreError: {exc}", timings=outcome.timings)
    if store.remote:
        outcome.timings["upload_seconds"] = time.perf_counter() - started
    # Dropped before the run is recorded: until then no report build reads the version (the
    # run is not succeeded yet), so a build on this machine never sees its files vanish.
    try:
        store.drop_local_version(*names)
    except (OSError, UnsafePath) as exc:  # the version is published: a leftover copy must not fail the run
        log.warning("run %s: the local copy of %s was not removed: %s", spec.run_id, names[-1], exc)
    return outcome


def local_owner() -> str:
    """A lease owner for a process that trains runs itself (`tftsweep sweep`)."""
    return lease_owner(os.getpid(), f"local-{uuid.uuid4().hex[:8]}")


# -- the sweep's files -----------------------------------------------------------------------


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


def publish_sweep(
    factory: sessionmaker[Session],
    store: Store,
    sweep_id: int,
    *,
    publisher: str,
    plots: bool = True,
    when_wanted: bool = False,
) -> dict[str, Any] | None:
    """Write the sweep's files (`analysis_config.json`, `sweep_runs`, reports, drift, plots)
    from one consistent state of its runs, one build per sweep at a time.

    `reports_at` is set only by a build that read the sweep's final state (no run queued or
    running) and only while that state is still current. A build that finds another one
    running returns None: the running build publishes any newer state, and serves any
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
            if not acquire_publisher(session, sweep_id, publisher, PUBLISH_LOCK_SECONDS):
                return summary
        try:
            snap = _snapshot(factory, sweep_id)
            summary = _write_files(store, snap, plots)
            if snap.done:
                with session_scope(factory) as session:
                    if mark_published(session, sweep_id, snap.revision):
                        settle_sweep_status(session, session.get_one(Sweep, sweep_id))
        finally:
            with session_scope(factory) as session:
                release_publisher(session, sweep_id, publisher)
        # A change or a request that came while the lock was held found it taken and left the
        # build to us: one more pass serves all of them (the dirty flag of the reports).
        with session_scope(factory) as session:
            sweep = session.get_one(Sweep, sweep_id)
            stale = sweep.reports_at is None and sweep_is_done(session, sweep_id)
            if sweep.reports_wanted_at is None and not stale:
                return summary


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
