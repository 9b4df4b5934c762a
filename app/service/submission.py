"""A sweep's submission: check its dataset, plan it (or merge it into the stored sweep), record
it, commit, write its `analysis_config.json`, then send its runs' messages.

The decisions are made here, over core: the plan (`core.plan.expand_sweep`), the merge rules
(`core.merge.validate_merge`), whether a stored sweep may take new runs on this dataset; the
database layer (`app.db.recording`) only writes the rows it is handed. `plan_sweep` is the
one planning step of a submission, a dry run and `tftsweep plan`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.db.lifecycle import mark_enqueued
from app.db.models import Sweep
from app.db.racing import resume_skipped, skip_dropped
from app.db.recording import AdoptedRun, add_runs, adopt_sweep, insert_sweep, lock_sweep_name, record_dataset
from app.db.session import session_scope
from app.db.sweeps import (
    find_sweep,
    folder_config,
    past_runs,
    queued_run_ids,
    run_counts,
    stored_config,
    stored_dataset,
    sweep_is_done,
)
from app.queue import RunQueue
from app.service.reports import send_reports
from app.settings import Settings
from core.config import SweepConfig
from core.dataset_folds import check_dataset_for_sweep
from core.datasets import dataset_fingerprint
from core.dry_run import dry_run_report
from core.errors import DatasetError, SweepExists, SweepFolderError
from core.merge import validate_merge
from core.paths import ensure_inside, sweep_dir
from core.plan import PlannedRun, SweepPlan, check_plan_size, expand_sweep
from core.store import Store
from core.sweep_folder import (
    ANALYSIS_CONFIG,
    SweepFolderConfig,
    is_sweep_folder,
    read_analysis_config,
    read_run_records,
    write_analysis_config,
)

log = logging.getLogger("tftsweep.submission")


@dataclass(frozen=True)
class SweepPlanned:
    """A submission's plan: the whole plan of the effective config, and the runs it adds
    (all of them for a new sweep, the new ones for a merge)."""

    plan: SweepPlan
    new_runs: list[PlannedRun]
    config: SweepConfig  # the effective config (a merge's is the merged one)
    merged: bool


def plan_sweep(config: SweepConfig, stored: SweepConfig | None, *, max_runs: int | None) -> SweepPlanned:
    """Plan `config` as a new sweep, or as a merge into the stored config `stored`.

    Raises:
        InvalidSweepConfig: the plan is invalid or over the cap.
        MergeRejected: the merge breaks a rule (every violation listed).
    """
    if stored is None:
        plan = expand_sweep(config, max_runs=max_runs)
        return SweepPlanned(plan, plan.runs, config, merged=False)
    result = validate_merge(stored, config, max_runs=max_runs)
    return SweepPlanned(result.plan, result.new_runs, result.config, merged=True)


def check_same_dataset(
    asset: str, output_subdir: str, recorded: dict[str, Any] | None, dataset: dict[str, Any] | None
) -> None:
    """A stored sweep takes new runs only on the dataset it recorded (a sweep recorded before
    fingerprints takes today's).

    Raises:
        DatasetError: the dataset changed since the sweep was recorded.
    """
    if dataset is None or recorded is None or recorded.get("sha256") == dataset.get("sha256"):
        return
    raise DatasetError(
        f"the dataset {dataset.get('file')} changed since sweep {asset}/{output_subdir} was recorded "
        f"(sha256 {str(recorded.get('sha256'))[:12]}... then, {str(dataset.get('sha256'))[:12]}... now): its runs "
        "would not be comparable; restore that dataset or submit under a new output_subdir"
    )


def _exists(asset: str, output_subdir: str, where: str) -> SweepExists:
    return SweepExists(
        f"sweep {asset}/{output_subdir} exists ({where}); submit with merge_tests (--merge-tests) to add runs to it"
    )


@dataclass(frozen=True)
class Submitted:
    """What a submission recorded: the one result of `record_sweep` and `submit_sweep`."""

    sweep_id: int
    asset: str
    output_subdir: str
    status: str
    new_run_ids: list[int]
    total_runs: int
    merged: bool
    # Queued runs that came from an adopted folder (they need messages like new runs).
    adopted_run_ids: list[int]
    # No run is queued or running: the sweep's files can be built now (a merge that added no run).
    done: bool
    # With walk_forward.clip_to_data: the folds' windows cut to the dataset (else None).
    effective_folds: list[dict[str, Any]] | None = None


def submit_sweep(
    factory: sessionmaker[Session],
    queue: RunQueue,
    settings: Settings,
    asset: str,
    config: SweepConfig,
    *,
    merge: bool,
    continue_on_error: bool,
    send: bool = True,
) -> Submitted:
    """Record the sweep (`record_sweep`), then enqueue its new runs; a merge that added no run
    gets its reports rebuilt.

    With `send=False` the caller enqueues (`send_submitted`), e.g. after answering the
    request; runs whose message is never sent are sent by the reaper.

    Raises:
        DatasetError, SweepFolderError, InvalidSweepConfig, SweepExists, MergeRejected:
            nothing of the submission is written.
    """
    submitted = record_sweep(
        factory,
        settings.store(),
        asset,
        config,
        merge=merge,
        continue_on_error=continue_on_error,
        max_runs=settings.max_runs,
    )
    if send:
        send_submitted(factory, queue, submitted)
    return submitted


def record_sweep(
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
    the sweep (or merge, or resume), commit, and write its `analysis_config.json`; send nothing.

    `resume_identical` (the CLI's behaviour) accepts an existing sweep whose stored config
    equals `config` without `merge`, adding no runs.

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
        submitted = record_submission(
            session,
            asset,
            config,
            dataset=dataset,
            merge=merge,
            continue_on_error=continue_on_error,
            resume_identical=resume_identical,
            max_runs=max_runs,
        )
        if adopted is not None:
            submitted = replace(submitted, adopted_run_ids=adopted.queued_run_ids)
        folder = folder_config(session.get_one(Sweep, submitted.sweep_id))
    ensure_inside(root, folder_path)
    write_analysis_config(folder_path, folder)
    store.publish_sweep_file(asset, config.output_subdir, ANALYSIS_CONFIG)
    return submitted


def record_submission(
    session: Session,
    asset: str,
    config: SweepConfig,
    *,
    dataset: dict[str, Any] | None = None,
    merge: bool = False,
    continue_on_error: bool = False,
    resume_identical: bool = False,
    max_runs: int | None = None,
) -> Submitted:
    """Record a sweep and its runs (or merge into the stored one, or resume it) in `session`'s
    transaction, under the sweep's name lock; the caller commits, then enqueues.

    `dataset` is the fingerprint of the dataset the runs will train on; a stored sweep
    recorded with another one cannot take new runs. `resume_identical` accepts an existing
    sweep whose stored config equals `config` without `merge`, adding no runs.

    Raises:
        SweepExists: the sweep exists and neither `merge` nor an identical resume applies.
        MergeRejected: the merge breaks a rule.
        InvalidSweepConfig: the plan is invalid or over the cap.
        DatasetError: the stored sweep trained on another dataset.
    """
    lock_sweep_name(session, asset, config.output_subdir)
    sweep = find_sweep(session, asset, config.output_subdir)
    if sweep is None:
        planned = plan_sweep(config, None, max_runs=max_runs)
        folder = SweepFolderConfig(asset, dataset, config)
        sweep, new_ids = insert_sweep(session, folder, planned.plan.features, planned.new_runs, continue_on_error)
        total, merged = len(planned.plan.runs), False
    else:
        old = stored_config(sweep)
        if not merge and not (resume_identical and old == config):
            raise _exists(asset, config.output_subdir, f"id {sweep.id}")
        merging = plan_sweep(config, old, max_runs=max_runs) if merge else None
        if dataset is not None and (merging is None or merging.new_runs):
            check_same_dataset(asset, config.output_subdir, stored_dataset(sweep), dataset)
            if stored_dataset(sweep) is None:
                record_dataset(sweep, dataset)
        if merging is None:  # an identical resume adds no run
            sweep.continue_on_error = continue_on_error
            new_ids, total = [], sum(run_counts(session, sweep.id).values())
        else:
            new_ids = add_runs(
                session, sweep, merging.config, merging.plan.features, merging.new_runs, continue_on_error
            )
            if not merging.config.racing.enabled:  # racing off: the runs it skipped train now
                new_ids += resume_skipped(session, sweep)
            elif skip_dropped(session, sweep):  # a dropped variant's new runs are skipped at once
                queued = set(queued_run_ids(session, sweep.id))
                new_ids = [run_id for run_id in new_ids if run_id in queued]
            total = len(merging.plan.runs)
        merged = merging is not None
    return Submitted(
        sweep.id,
        asset,
        config.output_subdir,
        sweep.status,
        new_ids,
        total,
        merged,
        [],
        sweep_is_done(session, sweep.id),
        folder_config(sweep).effective_folds,
    )


def send_submitted(factory: sessionmaker[Session], queue: RunQueue, submitted: Submitted) -> None:
    """The messages a submission needs: its new (and adopted queued) runs, or its reports."""
    send_runs(factory, queue, submitted.adopted_run_ids + submitted.new_run_ids)
    if submitted.done:
        send_reports(queue, submitted.sweep_id)


def send_runs(factory: sessionmaker[Session], queue: RunQueue, run_ids: list[int]) -> None:
    """Enqueue committed runs; if the broker is down they stay queued and the reaper sends them later."""
    if not run_ids:
        return
    try:
        queue.enqueue_runs(run_ids)
    except Exception:
        log.exception("could not enqueue %d runs; the reaper will send them", len(run_ids))
        return
    with session_scope(factory) as session:
        mark_enqueued(session, run_ids)


def dry_run_sweep(
    factory: sessionmaker[Session],
    store: Store,
    asset: str,
    config: SweepConfig,
    *,
    merge: bool,
    max_runs: int | None = None,
) -> dict[str, Any]:
    """The checks `record_sweep` makes (plan cap, dataset, folds, an existing sweep, the merge
    rules, a changed dataset), and what the plan would be, cost and detect (`core.dry_run`);
    nothing is recorded, queued or written to the sweep's folder. A folder the database does
    not know is read, not adopted. (With an object store the dataset is fetched to this
    machine, as any read of it is.)

    Raises:
        DatasetError, SweepFolderError, InvalidSweepConfig, SweepExists, MergeRejected: as `record_sweep`.
        StoreError: the object store failed.
    """
    root = store.root
    check_plan_size(config, max_runs)
    store.fetch_dataset(asset)
    check_dataset_for_sweep(root, asset, config)
    dataset = dataset_fingerprint(root, asset)
    with session_scope(factory) as session:
        existing = find_sweep(session, asset, config.output_subdir)
        known: tuple[str, SweepConfig, dict[str, Any] | None] | None = None
        if existing is not None:
            known = (f"id {existing.id}", stored_config(existing), stored_dataset(existing))
        past = past_runs(session)
    folder_path = sweep_dir(root, asset, config.output_subdir)
    if known is None and is_sweep_folder(folder_path):  # what `record_sweep` would adopt
        analysis = read_analysis_config(folder_path, asset)
        known = ("its folder", analysis.config, analysis.dataset)
    if known is not None and not merge:
        raise _exists(asset, config.output_subdir, known[0])
    planned = plan_sweep(config, known[1] if known else None, max_runs=max_runs)
    if known is not None and planned.new_runs:
        check_same_dataset(asset, config.output_subdir, known[2], dataset)
    report = dry_run_report(asset, planned.plan, planned.new_runs, planned.config.stats.alpha, past)
    return {
        "dry_run": True,
        "asset": asset,
        "output_subdir": config.output_subdir,
        "merged": planned.merged,
        **report,
        "effective_folds": SweepFolderConfig(asset, dataset, planned.config).effective_folds,
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
    plan = expand_sweep(analysis.config, max_runs=sys.maxsize)  # history has no cap
    runs = _adopted_runs(plan, read_run_records(folder))
    try:
        with session_scope(factory) as session:
            sweep = adopt_sweep(session, analysis, plan.features, runs)
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


def _adopted_runs(plan: SweepPlan, records: list[dict[str, Any]]) -> list[AdoptedRun]:
    """The folder's recorded runs matched to its plan, in the order recorded, then the planned
    runs it never recorded.

    Raises:
        SweepFolderError: a run of `sweep_runs.json` is not one the folder's config plans.
    """
    planned = {p.run_key: p for p in plan.runs}
    runs: list[AdoptedRun] = []
    for record in records:
        run = planned.pop(str(record.get("run_key")), None)
        if run is None:
            raise SweepFolderError(
                f"sweep_runs.json lists run {record.get('run_key')} ({record.get('config_id')}, fold "
                f"{record.get('fold')}, seed {record.get('seed')}) that analysis_config.json does not plan"
            )
        runs.append(AdoptedRun(run, record))
    return runs + [AdoptedRun(run) for run in planned.values()]
