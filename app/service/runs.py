"""One run's life, whoever drives it: claim it with its spec, keep its lease while the trainer
(passed in) trains it, publish its model version to the store, record the outcome.

`train_run` is the one pipeline: the Celery task, `tftsweep sweep` (inline and in its worker
processes) and the runs the reaper sends again all train through it. A run fetches its
dataset (once per fingerprint), trains on the local disk, uploads its model version and drops
its local copy (a worker's disk stays bounded) before it is recorded.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.db.lifecycle import claim_run, fail_sweep, finish_run, release_run, renew_lease, settle_sweep_status
from app.db.models import Run, Sweep
from app.db.racing import race_sweep
from app.db.run_cache import CachedSource, find_sources
from app.db.session import session_scope
from app.db.sweeps import is_stopped, stored_config, stored_dataset, stored_features, sweep_is_done
from app.db.workers import lease_owner
from core.config import TrainingConfig
from core.datasets import load_dataset
from core.errors import DatasetError, StoreError, UnsafePath
from core.files import dumps_json, publish_dir_atomic
from core.paths import ensure_inside, model_version, sweep_dir, version_folder
from core.racing import RaceDecision
from core.rescore import rescore_record, scoring_key
from core.run_cache import cache_key
from core.runs import RUN_FILE, SCORED_WITH, RunOutcome, RunSpec, Trainer, extra_scores, run_file, trainer_identity_of
from core.store import Store

log = logging.getLogger("tftsweep.runs")


def run_spec(session: Session, run: Run, root: Path) -> RunSpec:
    """What a trainer needs for `run`, read from the database: validated here, once."""
    sweep = session.get_one(Sweep, run.sweep_id)
    config = stored_config(sweep)
    fold = next(f for f in config.folds if f.name == run.fold)
    dataset = stored_dataset(sweep)
    return RunSpec(
        run_id=run.id,
        run_key=run.run_key,
        asset=sweep.asset,
        config_id=run.config_id,
        fold=fold,
        seed=run.seed,
        training=TrainingConfig.model_validate(json.loads(run.params_json)),
        features=stored_features(sweep),
        data_root=str(root),
        sweep_dir=str(sweep_dir(root, sweep.asset, sweep.output_subdir)),
        dataset_sha256=dataset.get("sha256") if dataset else None,
        evaluation=config.evaluation,
        reuse=config.reuse_runs,
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
    # Variants racing dropped after this outcome (their queued runs are now skipped).
    raced_out: tuple[RaceDecision, ...] = ()


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
            cache_key=outcome.cache_key,
            cached_from=outcome.cached_from,
        )
        run = session.get_one(Run, outcome.run_id)
        sweep = session.get_one(Sweep, run.sweep_id)
        if recorded and outcome.error is not None:
            stop_after_failure(session, sweep, run)
        # In the transaction that recorded the run (it holds the write lock on SQLite; race_sweep
        # takes the sweep's lock on PostgreSQL), so two runs finishing together race in turn.
        raced = race_sweep(session, sweep) if recorded and not is_stopped(sweep) else []
        done = sweep_is_done(session, sweep.id)
        if done:
            settle_sweep_status(session, sweep)
        state = ("failed" if outcome.error else "succeeded") if recorded else "discarded"
        return Recorded(state, sweep.id, done, is_stopped(sweep), tuple(raced))


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
    spec = keyed(spec, trainer)
    sources = find_sources_for(factory, spec)
    keeper = LeaseKeeper(factory, run_id, owner, lease_seconds)
    keeper.start()
    try:
        stop = lambda: keeper.lost.is_set() or interrupted()  # noqa: E731
        outcome = next((o for s in sources if (o := _copy_cached(store, spec, s)) is not None), None)
        if outcome is None:  # no source, or none of their versions could be copied: train
            outcome = _fetch_train_upload(store, spec, trainer, stop)
        else:
            outcome = _upload_outputs(store, spec, outcome)
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


def keyed(spec: RunSpec, trainer: Trainer) -> RunSpec:
    """`spec` with its run-cache key, when the trainer says who it is (`identity`) and the sweep
    recorded its dataset's fingerprint; else as it is (such a run is neither cached nor a source)."""
    identity = trainer_identity_of(trainer)
    if identity is None or spec.dataset_sha256 is None:
        return spec
    key = cache_key(
        dataset_sha256=spec.dataset_sha256,
        fold=spec.fold,
        features=spec.features,
        training=spec.training,
        seed=spec.seed,
        trainer=identity,
    )
    return replace(spec, cache_key=key)


def find_sources_for(factory: sessionmaker[Session], spec: RunSpec) -> list[CachedSource]:
    """The succeeded runs `spec` can be recorded from, oldest first (`reuse_runs` on and a
    key), or none."""
    if not spec.reuse or spec.cache_key is None:
        return []
    with session_scope(factory) as session:
        return find_sources(session, spec.cache_key, spec.run_id)


def _copy_cached(store: Store, spec: RunSpec, source: CachedSource) -> RunOutcome | None:
    """The run recorded from `source`: its model version's files copied from the store into
    the run's own version (never through the source's local folder, which a report build may
    be reading), `run.json` naming this run and its source, and the source's metrics as the
    database holds them, rescored from the copied predictions when the source was scored with
    another evaluation block (references, costs). None when the source's version cannot be
    had: the run trains."""
    started = time.perf_counter()
    target = version_folder(Path(spec.sweep_dir), spec.fold.name, spec.version)
    try:
        ensure_inside(store.root, target.parent)
        with publish_dir_atomic(target) as tmp:
            if not store.copy_version(source.asset, source.output_subdir, source.fold, source.model_version, tmp):
                raise LookupError(f"the store has no model version for {source.name}")
            (tmp / RUN_FILE).write_text(dumps_json(run_file(spec, cached_from=source.name)))
        metrics = _scored_for(store, spec, dict(source.metrics))
    except (LookupError, OSError, StoreError, UnsafePath, DatasetError) as exc:
        log.warning("%s: cached source %s not copied (%s); training it", spec.label, source.name, exc)
        return None
    outcome = RunOutcome(
        spec.run_id, metrics=metrics, model_version=spec.version, cache_key=spec.cache_key, cached_from=source.name
    )
    outcome.timings["cache_copy_seconds"] = time.perf_counter() - started
    return outcome


def _scored_for(store: Store, spec: RunSpec, metrics: dict[str, Any]) -> dict[str, Any]:
    """`metrics` of a cached source, its extra scores computed again from the run's copied
    predictions when the source's sweep scored them with another evaluation block: racing and
    the API read this run's scores before any report build rescores it."""
    key = scoring_key(spec.evaluation)
    if metrics.get(SCORED_WITH) in (key, None):  # the same block, or unknown: the report build rescores
        return metrics
    store.fetch_dataset(spec.asset)
    frame = load_dataset(store.root, spec.asset, spec.features)
    record = {**metrics, "status": "succeeded", "model_version": spec.version, "fold": spec.fold.name}
    scores = rescore_record(record, Path(spec.sweep_dir), frame, spec.fold, spec.evaluation, key)
    return {**{k: v for k, v in metrics.items() if k not in extra_scores(metrics)}, **scores}


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
    outcome.cache_key = spec.cache_key
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
    names = (spec.asset, Path(spec.sweep_dir).name, spec.fold.name, model_version(spec.config_id, spec.seed))
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
