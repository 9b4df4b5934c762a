"""Server settings in one pydantic-settings class, read at the entry points (API, worker, CLI)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, PrivateAttr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.config import DEFAULT_MAX_RUNS
from core.errors import FieldError, InvalidSweepConfig
from core.store import Store, open_store, parse_store_url


class Settings(BaseSettings):
    """Every knob of the server; environment variables override the defaults."""

    model_config = SettingsConfigDict(env_prefix="TFTSWEEP_", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(
        Path("data"),
        description="Data root (TFTSWEEP_DATA_DIR); with an object store, this machine's working copy and cache.",
    )
    store_url: str | None = Field(
        None,
        description="Object store of datasets, model versions, sweep and study folders (TFTSWEEP_STORE_URL, "
        "s3://bucket/prefix; credentials and AWS_ENDPOINT_URL from the usual AWS variables). Unset: the data "
        "root on the local disk.",
    )
    database_url: str | None = Field(
        None, validation_alias="DATABASE_URL", description="SQLAlchemy URL; default SQLite under the data root."
    )
    redis_url: str | None = Field(
        None, validation_alias="REDIS_URL", description="Redis broker; default the embedded filesystem broker."
    )
    broker_poll_seconds: float = Field(0.1, gt=0, description="Polling interval of the embedded broker.")
    redis_visibility_timeout: int = Field(
        12 * 3600, ge=60, description="Seconds before Redis re-delivers an unacked message; longer than any run."
    )
    lease_seconds: float = Field(60.0, gt=1, description="A running run's lease; renewed every lease/4 seconds.")
    max_attempts: int = Field(3, ge=1, description="Lease expiries (dead workers) before a run is failed.")
    reaper_interval_seconds: float = Field(10.0, gt=0, description="How often expired leases are reaped.")
    requeue_after_seconds: float = Field(
        600.0, gt=0, description="A queued run whose message is this old is enqueued again (lost messages)."
    )
    max_runs: int = Field(DEFAULT_MAX_RUNS, ge=1, description="Largest plan a sweep may have.")
    worker_concurrency: int = Field(1, ge=1, description="Concurrent runs per worker process (runs per GPU).")
    worker_processes: int = Field(
        1,
        ge=1,
        description="Worker processes side by side on this machine (set by `tftsweep worker --gpus`, one per GPU); "
        "the default torch threads split the cores between all their runs.",
    )
    gpu: str | None = Field(
        None,
        validation_alias="CUDA_VISIBLE_DEVICES",
        description="The GPU a worker process sees (set per worker by `tftsweep worker --gpus`).",
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="Torch threads per training process; default: the machine's cores split evenly between "
        "every run training at once (worker processes x concurrency).",
    )
    precision: str = Field(
        "32-true", description='Lightning precision of training ("16-mixed" or "bf16-mixed" on GPUs).'
    )
    heartbeat_seconds: float = Field(
        5.0, gt=0, description="How often a worker writes its heartbeat; stale after two intervals."
    )
    worker_stale_seconds: float = Field(
        60.0,
        gt=0,
        description="`tftsweep serve` restarts its embedded worker after this long without a heartbeat "
        "(generous: a busy database can delay a beat).",
    )
    worker_start_seconds: float = Field(
        120.0, gt=0, description="How long a new embedded worker may take to send its first heartbeat."
    )
    worker_max_restarts: int = Field(
        5, ge=1, description="`tftsweep serve` exits (code 1) when its worker needs more restarts than this..."
    )
    worker_restart_window_seconds: float = Field(300.0, gt=0, description="...within this many seconds.")
    api_keys: str | None = Field(
        None, description="read:KEY,write:KEY,... (TFTSWEEP_API_KEYS); none: loopback-only, no auth."
    )
    allowed_hosts: str | None = Field(
        None,
        description="Host names the API answers (comma-separated; TFTSWEEP_ALLOWED_HOSTS); default the loopback "
        "names. Other Host headers get 400 (DNS rebinding).",
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest JSON request body (413 above).")
    max_upload_bytes: int = Field(200 * 1_048_576, ge=1024, description="Largest dataset upload (413 above).")
    max_dataset_rows: int = Field(
        1_000_000,
        ge=100,
        description="Most rows an uploaded dataset may have (413 above; a parquet's are counted from its "
        "metadata, a CSV's by reading one more). A million rows is 2,700 years of daily data.",
    )
    max_dataset_columns: int = Field(
        256, ge=8, description="Most columns an uploaded dataset may have (413 above, from its header or metadata)."
    )
    max_dataset_bytes: int = Field(
        256 * 1_048_576,
        ge=1_048_576,
        description="Most bytes an uploaded parquet may take once decoded (413 above; from its metadata, "
        "then its text columns measured as dictionaries): compressed size bounds nothing.",
    )
    max_json_depth: int = Field(32, ge=4, description="Deepest JSON nesting accepted (422 above).")
    api_threads: int = Field(
        8,
        ge=1,
        le=256,
        description="Threads that run the API's blocking handlers (database reads, report builds). Fewer "
        "threads contend less for the GIL: cached answers came back at ~1,000/s with 8 against ~800/s with "
        "anyio's default 40 (docs/benchmarks.md).",
    )
    db_wait_seconds: float = Field(
        10.0,
        gt=0,
        le=600,
        description="How long a request waits for a database session (or a pool connection) when every one "
        "is in use (TFTSWEEP_DB_WAIT_SECONDS); then 503 with Retry-After. The pool holds two sessions per API "
        "thread, so only a sustained overload waits this long.",
    )
    health_timeout_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Deadline of the database and broker checks of /healthz and /metrics "
        "(TFTSWEEP_HEALTH_TIMEOUT_SECONDS); a check that misses it reports an error (healthz: 503).",
    )
    max_connections: int = Field(
        256,
        ge=2,
        le=100_000,
        description="`tftsweep serve`: open connections and requests in progress beyond which uvicorn answers "
        "503 with Retry-After and closes the connection (TFTSWEEP_MAX_CONNECTIONS; uvicorn's limit_concurrency).",
    )
    request_read_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="`tftsweep serve`: a client has this long after connecting (or after starting a request) "
        "to send the request's line and headers, and this long between two pieces of a body; then 408 "
        "and the connection is closed (TFTSWEEP_REQUEST_READ_TIMEOUT_SECONDS).",
    )
    keep_alive_seconds: int = Field(
        5,
        ge=1,
        le=3600,
        description="`tftsweep serve`: an idle keep-alive connection is closed after this many seconds "
        "(TFTSWEEP_KEEP_ALIVE_SECONDS; uvicorn's timeout_keep_alive).",
    )
    hpo_storages: dict[str, str] = Field(
        default_factory=dict,
        description="Study storages a config may name in `storage` (TFTSWEEP_HPO_STORAGES, a JSON object: "
        '{"shared": "postgresql+psycopg://user:pass@db/optuna"}); configs never carry a URL.',
    )
    hpo_parallel_tasks: int = Field(
        4, ge=1, description="Trial tasks queued per study on a server database (SQLite studies: one)."
    )

    _store: Store | None = PrivateAttr(None)

    @field_validator("store_url")
    @classmethod
    def _check_store_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parse_store_url(value)  # a ValueError names what is expected
        return value

    @property
    def data_root(self) -> Path:
        return self.data_dir.resolve()

    def store(self) -> Store:
        """Where datasets, model versions and sweep folders live (one per settings object, so
        one object store client per process)."""
        if self._store is None:
            self._store = open_store(self.data_root, self.store_url)
        return self._store

    @property
    def db_url(self) -> str:
        return database_url(self.data_root, self.database_url)

    @property
    def broker_dir(self) -> Path:
        return self.data_root / "broker"

    def hpo_storage_url(self, name: str | None) -> str | None:
        """The URL of the study storage `name` (None: SQLite in the study's folder).

        Raises:
            InvalidSweepConfig: no storage of that name is configured (field `storage`).
        """
        if name is None:
            return None
        if name not in self.hpo_storages:
            offered = ", ".join(sorted(self.hpo_storages)) or "none (TFTSWEEP_HPO_STORAGES is not set)"
            raise InvalidSweepConfig([FieldError("storage", f"no study storage named {name!r}; configured: {offered}")])
        return self.hpo_storages[name]

    def threads_per_process(self, processes: int) -> int:
        """Torch threads for each of `processes` training side by side in each of this machine's
        `worker_processes` worker processes."""
        return threads_per_process(processes * self.worker_processes, self.torch_threads)


def database_url(root: Path, url: str | None = None) -> str:
    """The server's database: `url`, or SQLite under the data root `root`."""
    return url or f"sqlite:///{root / 'tftsweep.db'}"


def threads_per_process(processes: int, configured: int | None = None) -> int:
    """`configured`, else this machine's cores shared between `processes` training side by side."""
    return configured or max(1, (os.cpu_count() or 1) // max(1, processes))


@lru_cache
def get_settings() -> Settings:
    """Settings read once per process from the environment (the API and worker processes;
    each CLI command reads its own)."""
    return Settings()
