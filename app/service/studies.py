"""An HPO study's life, as a sweep's: submit it (or continue the stored one), commit, queue its
trial tasks; run its trials in a task; cancel it. State changes are the conditional updates
of `app.db.studies`.

The trials themselves are run by the runner a worker passes in (`core.hpo.run_stored_study`):
the app package never imports Optuna.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Study, StudyStatus
from app.db.run_cache import find_cached
from app.db.session import session_scope
from app.db.studies import cancel_study as cancel_study_row
from app.db.studies import end_study, find_study, is_cancelled, lock_study_name, queue_study, start_study
from app.queue import RunQueue
from app.settings import Settings
from core.config import EvaluationConfig
from core.dataset_folds import check_dataset_shapes
from core.errors import Conflict, StudyExists
from core.hpo_config import HpoConfig, continued_config, parallel_trials_ok, stored_hpo_config, study_shapes
from core.paths import hpo_dir
from core.rescore import scoring_key
from core.runs import SCORED_WITH
from core.store import Store

STUDY_CONTINUABLE = ("n_trials", "timeout_s")


def submit_study(
    factory: sessionmaker[Session], queue: RunQueue, settings: Settings, asset: str, config: HpoConfig
) -> tuple[Study, bool]:
    """Record an HPO study (or continue the stored one) and queue its trial tasks.

    A study with the same (asset, output_subdir) continues when only `n_trials` or
    `timeout_s` changed; anything else is refused (nothing written).

    Raises:
        DatasetError, StudyExists: nothing is written.
    """
    settings.store().fetch_dataset(asset)
    check_dataset_shapes(settings.data_root, asset, config, study_shapes(config))
    parallel = parallel_trials_ok(settings.hpo_storage_url(config.storage))
    tasks = min(config.n_trials, settings.hpo_parallel_tasks) if parallel else 1
    try:
        study_id, continued = _record_study(factory, asset, config, tasks)
    except IntegrityError as exc:  # the name lock makes this unreachable; should it not, a 409, never a 500
        raise StudyExists(
            f"study {asset}/{config.output_subdir} was created by a concurrent submission: submit again to continue it"
        ) from exc
    queue.enqueue_study(study_id, tasks)
    with session_scope(factory) as session:
        return session.get_one(Study, study_id), continued


def _record_study(factory: sessionmaker[Session], asset: str, config: HpoConfig, tasks: int) -> tuple[int, bool]:
    """Create the study row, or continue the stored one; its id, and whether it continued.

    Raises:
        StudyExists: the stored study has another config (nothing is written).
    """
    with session_scope(factory) as session:
        # Concurrent identical submissions: one creates, the others wait here and continue it.
        lock_study_name(session, asset, config.output_subdir)
        study = find_study(session, asset, config.output_subdir)
        if study is not None:
            config, changed = continued_config(json.loads(study.config_json), config, STUDY_CONTINUABLE)
            if changed:
                raise StudyExists(
                    f"study {asset}/{config.output_subdir} exists with another config (differs in {changed}); "
                    "only n_trials and timeout_s may change to continue it"
                )
        text = json.dumps(config.to_json_dict())
        return queue_study(session, study, asset, config.output_subdir, text, tasks), study is not None


def cancel_study(factory: sessionmaker[Session], study_id: int) -> Study:
    """Mark the study cancelled: its workers start no new trial, and a running trial ends at
    its next pruning check (`StudyCancelCheck`).

    Raises:
        Conflict: the study already finished.
    """
    with session_scope(factory) as session:
        if not cancel_study_row(session, study_id):
            status = session.get_one(Study, study_id).status
            raise Conflict(f"study {study_id} is {status}: there is nothing to cancel")
    with session_scope(factory) as session:
        return session.get_one(Study, study_id)


class ReusedRuns:
    """A study's way into the run cache: the metrics of a sweep's succeeded run with a cache
    key, when it was scored as a study scores (the default evaluation block: every reference,
    no costs), so reusing it gives the trial the values training would have."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory
        self.scored_with = scoring_key(EvaluationConfig())

    def __call__(self, key: str) -> dict[str, Any] | None:
        with session_scope(self.factory) as session:
            source = find_cached(session, key, run_id=-1)
        if source is None or source.metrics.get(SCORED_WITH) != self.scored_with:
            return None
        return {**source.metrics, "cached_from": source.name}


class StudyRunner(Protocol):
    """Runs a stored study's trials to its end and returns its summary (`core.hpo.run_stored_study`)."""

    def __call__(
        self,
        store: Store,
        asset: str,
        config: HpoConfig,
        out_dir: Path,
        *,
        storage_url: str | None,
        cancelled: Callable[[], bool],
        reuse: Callable[[str], dict[str, Any] | None] | None,
    ) -> dict[str, Any]: ...


def run_study(factory: sessionmaker[Session], settings: Settings, study_id: int, runner: StudyRunner) -> str:
    """Run trials of a study until it holds `n_trials` finished ones (or it is cancelled);
    record its status. A runner that raises fails the study, and the error propagates."""
    with session_scope(factory) as session:
        study = session.get(Study, study_id)
        if study is None:
            return "missing"
        if not start_study(session, study_id):
            return "cancelled"
        config = stored_hpo_config(json.loads(study.config_json))
        asset = study.asset
    try:
        summary = runner(
            settings.store(),
            asset,
            config,
            hpo_dir(settings.data_root, asset, config.output_subdir),
            storage_url=settings.hpo_storage_url(config.storage),
            cancelled=StudyCancelCheck(factory, study_id),
            reuse=ReusedRuns(factory),
        )
    except Exception as exc:
        with session_scope(factory) as session:
            end_study(session, study_id, StudyStatus.FAILED, f"{type(exc).__name__}: {exc}")
        raise
    status, error = None, None
    if summary["complete"]:
        status = StudyStatus.SUCCEEDED
    elif summary["best"] is None and summary["n_trials"]["fail"]:
        status, error = StudyStatus.FAILED, "every trial failed"
    with session_scope(factory) as session:
        end_study(session, study_id, status, error)
    return f"study {study_id}: {summary['n_trials']}"


class StudyCancelCheck:
    """Whether the study was cancelled, read from the database at most every `every` seconds
    (it is asked at every pruning check)."""

    def __init__(self, factory: sessionmaker[Session], study_id: int, every: float = 2.0) -> None:
        self.factory = factory
        self.study_id = study_id
        self.every = every
        self._checked = -every
        self._cancelled = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._checked >= self.every:
            self._checked = now
            with session_scope(self.factory) as session:
                self._cancelled = is_cancelled(session, self.study_id)
        return self._cancelled
