"""SQLAlchemy models: sweeps and their runs. The database is the source of truth for run state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class RunState(StrEnum):
    """A run's state: `queued -> running -> succeeded | failed | cancelled`, or `queued ->
    skipped` (racing showed its variant worse than the baseline; a merge with racing off
    queues it again)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class SweepStatus(StrEnum):
    """A sweep's status, derived from its runs (app.db.lifecycle.settle_sweep_status)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # finished, some runs failed (continue_on_error)
    FAILED = "failed"
    CANCELLED = "cancelled"


class Sweep(Base):
    __tablename__ = "sweeps"
    __table_args__ = (UniqueConstraint("asset", "output_subdir", name="uq_sweeps_asset_subdir"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset: Mapped[str] = mapped_column(String(64))
    output_subdir: Mapped[str] = mapped_column(String(64))
    config_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=SweepStatus.QUEUED)
    continue_on_error: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reports_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Bumped in the transaction of every change to the sweep's runs (app.db.sweeps.touch_sweeps):
    # the API's cached rankings and counts are keyed on it, so a cache check is one row read.
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The fingerprint of the dataset the sweep trains on (core.datasets.dataset_fingerprint), as JSON.
    dataset_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Who is writing the sweep's reports, until when: one build at a time (app.service.reports.build_reports).
    publisher: Mapped[str | None] = mapped_column(String(200), nullable=True)
    publisher_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # When a build of the reports was asked for that no build has taken yet (POST /regenerate):
    # further requests join it instead of queueing builds of their own (app.db.lifecycle.request_reports).
    reports_wanted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    # What the last report build found of the model confidence set and the SPA test, as JSON
    # (app.db.selection): computed from the runs' predictions, which only the report build reads,
    # with the revision and rank_by it was computed for. `selection_at` (when it was recorded)
    # keys the API's cached answers that carry it, since recording it changes no run.
    selection_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    selection_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    # Racing's decisions so far ({config_id: core.racing.RaceDecision as a dict}); a drop is final.
    racing_json: Mapped[str | None] = mapped_column(Text, nullable=True)

    runs: Mapped[list[Run]] = relationship(back_populates="sweep", order_by="Run.ordinal")


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("sweep_id", "run_key", name="uq_runs_sweep_run_key"),
        Index("ix_runs_sweep_state", "sweep_id", "state"),
        Index("ix_runs_sweep_ordinal", "sweep_id", "ordinal"),  # reports and run pages in plan order
        Index("ix_runs_state_lease", "state", "lease_expires_at"),
        Index("ix_runs_cache_key", "cache_key"),  # the run cache looks runs up by it in every sweep
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    run_key: Mapped[str] = mapped_column(String(64))
    config_id: Mapped[str] = mapped_column(String(200))
    param_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    param_value_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    fold: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    params_json: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=RunState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When a broker message was last sent for this run; null: never (or the send failed).
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    val_rmse: Mapped[float | None] = mapped_column(Float, nullable=True)
    test_rmse: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_mae: Mapped[float | None] = mapped_column(Float, nullable=True)
    test_mae: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_naive_rmse: Mapped[float | None] = mapped_column(Float, nullable=True)
    test_naive_rmse: Mapped[float | None] = mapped_column(Float, nullable=True)
    best_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    epochs_trained: Mapped[int | None] = mapped_column(Integer, nullable=True)
    train_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    test_skill: Mapped[float | None] = mapped_column(Float, nullable=True)
    test_dm_stat: Mapped[float | None] = mapped_column(Float, nullable=True)
    test_dm_pvalue: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Every other registered metric column (`core.metrics`), as a JSON object: a new metric is a
    # new key, never a migration.
    scores_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(300), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The run cache (core.run_cache): the key the run was trained or looked up with, and for a
    # run recorded from another one, that run (`{sweep id}/{run_key}`).
    cache_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cached_from: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # Why a `skipped` run was not trained (racing: after how many pairs, at which p-value).
    skip_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    sweep: Mapped[Sweep] = relationship(back_populates="runs")


class StudyStatus(StrEnum):
    """An HPO study's status."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Study(Base):
    """An Optuna HPO study run through the server; its trials live in Optuna's own storage."""

    __tablename__ = "studies"
    __table_args__ = (UniqueConstraint("asset", "output_subdir", name="uq_studies_asset_subdir"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset: Mapped[str] = mapped_column(String(64))
    output_subdir: Mapped[str] = mapped_column(String(64))
    config_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=StudyStatus.QUEUED)
    tasks: Mapped[int] = mapped_column(Integer, default=1)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Worker(Base):
    """A worker process's heartbeat: who it is, what it consumes, what it holds, when last seen."""

    __tablename__ = "workers"
    __table_args__ = (Index("ix_workers_last_seen", "last_seen"),)

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # "{host}:{pid}"
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    queues: Mapped[str] = mapped_column(String(200))
    gpu: Mapped[str | None] = mapped_column(String(64), nullable=True)
    concurrency: Mapped[int] = mapped_column(Integer)
    runs_in_hand: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
