"""Request and response models of the HTTP API (`XCreate`, `XPublic`, `XsPublic(data, count)`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from core.metrics import metric_names
from core.names import SafeName
from core.references import REFERENCES
from core.report_files import table_rows
from core.reports import (
    IMPACT_SIGNIFICANCE_COLUMNS,
    IMPACT_SUMMARY_COLUMNS,
    RANK_SCORE,
    RANKING_COLUMNS,
    RANKING_FAMILY_COLUMNS,
    RANKING_RELATIVE_COLUMNS,
    RANKING_SIGNIFICANCE_COLUMNS,
    ranking_column_doc,
    ranking_metric_columns,
)
from core.runs import RUN_FIELDS

EXAMPLE_CONFIG: dict[str, Any] = {
    "output_subdir": "example_msft",
    "features": "BASELINE_FEATURES",
    "replica_seeds": [7, 11],
    "walk_forward": {
        "enabled": True,
        "folds": [
            {
                "name": "wf_1",
                "train_start": "20080101",
                "train_end": "20131231",
                "val_start": "20140101",
                "val_end": "20141231",
                "test_start": "20150101",
                "test_end": "20151231",
            }
        ],
    },
    "training_config": {"max_encoder_length": 30, "hidden_size": 16, "max_epochs": 3, "limit_train_batches": 8},
    "param_ranges": {"hidden_size": [16, 32], "dropout": [0.1, 0.2]},
}


class FieldProblem(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. `config.walk_forward.folds[0].val_end`.")
    message: str


class ErrorPublic(BaseModel):
    detail: str | list[FieldProblem]


# The 404 answer of the routes that read a sweep or a study by id.
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorPublic, "description": "No such sweep, fold or file."}
}


class ViolationPublic(BaseModel):
    field: str
    old: Any
    new: Any
    rule: str


class MergeRefusedPublic(BaseModel):
    detail: str
    violations: list[ViolationPublic]


class SweepCreate(BaseModel):
    """A sweep submission. `config` follows the sweep config schema (docs/config.md); with
    `dry_run` it is checked and planned, and nothing is recorded."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"asset": "MSFT", "config": EXAMPLE_CONFIG}]}
    )

    asset: SafeName = Field(description="Asset symbol; its dataset must exist (see /datasets).", examples=["MSFT"])
    config: dict[str, Any] = Field(description="The sweep config (docs/config.md).")
    merge_tests: bool = Field(
        False, description="Add this config's new runs to the existing sweep (merge rules apply)."
    )
    continue_on_error: bool = Field(False, description="Keep going after a failed run instead of cancelling the rest.")
    dry_run: bool = Field(
        False,
        description="Validate and plan only: the same 4xx answers as a real submission, nothing recorded, queued or "
        "written; 200 with the plan, a training-time estimate from runs recorded on this server, and what the "
        "design can detect.",
    )


class SweepSubmitted(BaseModel):
    id: int
    asset: str
    output_subdir: str
    status: str
    new_runs: int = Field(description="Runs queued by this request.")
    total_runs: int = Field(description="Runs of the whole (merged) plan.")
    merged: bool
    effective_folds: list[dict[str, Any]] | None = Field(
        None,
        description="With `walk_forward.clip_to_data`: each fold's windows cut to the dataset's dates (YYYYMMDD), "
        "`clipped` naming the keys that changed (as in analysis_config.json); null otherwise.",
    )


class DryRunPublic(BaseModel):
    """The answer to a dry run (`POST /sweeps` with `dry_run: true`): nothing was recorded."""

    dry_run: bool = True
    asset: str
    output_subdir: str
    merged: bool = Field(description="The sweep exists and this config would merge into it.")
    plan: dict[str, Any] = Field(
        description="`runs_new`, `runs_total`, and the same per config (`config_id`, `kind`, `param_name`, "
        "`param_value`), per fold and per seed."
    )
    estimate: dict[str, Any] | None = Field(
        description="`seconds` of training for the new runs one after another, and `per_config` (`seconds_per_run`, "
        "`basis`: `similar` = median of succeeded runs of this asset with the same max_epochs, max_encoder_length "
        "and hidden_size, `any` = median of every succeeded run, `from_runs`); null when no run has a duration."
    )
    estimate_reason: str | None = Field(description="Why there is no estimate (`no estimate: ...`).")
    detectability: dict[str, Any] = Field(
        description="`pairs_per_variant` (folds x seeds), `family` (configs compared with the baseline), "
        "`smallest_pvalue_after_holm` = min(1, family * 2 / 2**pairs), `better_reachable`, `pairs_needed`, "
        "`seed_sd` (pooled std of val_rmse across seeds in past runs of the asset), `min_detectable_delta` = "
        "t.ppf(0.975, n-1) * sqrt(2) * seed_sd / sqrt(n) and its simultaneous (Bonferroni) version, `sentence`."
    )
    effective_folds: list[dict[str, Any]] | None = Field(
        None, description="With `walk_forward.clip_to_data`: the windows cut to the dataset's dates."
    )


class SweepPublic(BaseModel):
    id: int
    asset: str
    output_subdir: str
    status: str
    continue_on_error: bool
    created_at: datetime
    updated_at: datetime
    reports_at: datetime | None
    runs: dict[str, int] = Field(description="Runs per state: queued, running, succeeded, failed, cancelled.")
    total_runs: int
    best_config: str | None = Field(
        None, description="Config ranked first by rank_score (of evaluation.rank_by) so far."
    )


class SweepDetail(SweepPublic):
    config: dict[str, Any] = Field(description="The effective (merged) config.")


class SweepsPublic(BaseModel):
    data: list[SweepPublic]
    count: int


_RUN_FIELDS: dict[str, Any] = {f.name: (f.annotation, Field(description=f.description)) for f in RUN_FIELDS}
_RUN_FIELDS["params"] = (dict[str, Any], Field(description="The run's training_config, every key."))
RunPublic = create_model(
    "RunPublic",
    __doc__="A run: the columns of `sweep_runs.csv` (core.runs.RUN_FIELDS), its whole training config, and "
    "then the other registered metric columns of the sweep's evaluation.references (`{split}_{metric}`, "
    "core.metrics.metric_columns; null where the run lacks one), metrics registered later included.",
    __config__=ConfigDict(extra="allow"),
    **_RUN_FIELDS,
)


class RunsPublic(BaseModel):
    data: list[RunPublic]
    count: int


def _row_model(name: str, doc: str, columns: tuple[str, ...], extra: bool = False) -> Any:
    """A table row's model, documented from core.reports.COLUMN_DOCS (every column nullable:
    a config without succeeded runs has no statistics); `extra`: rows may carry columns
    beyond those named (a metric registered after the API started)."""
    fields: dict[str, Any] = {
        c: (ranking_column_doc(c)[0] | None, Field(None, description=ranking_column_doc(c)[1])) for c in columns
    }
    config = ConfigDict(extra="allow") if extra else None
    return create_model(name, __doc__=doc, __config__=config, **fields)


# The columns every ranking row carries, null where its table has none (a fold's has no relative view).
RANKING_ROW_COLUMNS = (
    *RANKING_COLUMNS,
    *RANKING_SIGNIFICANCE_COLUMNS,
    *RANKING_RELATIVE_COLUMNS,
    *RANKING_FAMILY_COLUMNS,
)
RankingRow = _row_model(
    "RankingRow",
    "A row of config_ranking.csv, its columns in the file's order: the seed's (the relative view only at sweep "
    "level), then `mean_val_{m}`, `std_val_{m}` and `mean_test_{m}` for each metric of the sweep's "
    "evaluation.references (those of a metric registered later too) and last `rank_score`, the robust score "
    "of the metric the rows are ranked by.",
    (*RANKING_ROW_COLUMNS, *ranking_metric_columns(metric_names(list(REFERENCES))), RANK_SCORE),
    extra=True,
)


def ranking_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """A ranking table as `RankingRow`s, in the table's column order (as config_ranking.csv),
    each seed column present. Plain dicts: a model would move the columns of a metric it does
    not name after `rank_score`."""
    return [{**dict.fromkeys(RANKING_ROW_COLUMNS), **row} for row in table_rows(table)]


ImpactRow = _row_model(
    "ImpactRow", "A row of param_impact_summary.csv.", (*IMPACT_SUMMARY_COLUMNS, *IMPACT_SIGNIFICANCE_COLUMNS)
)


class RankingPublic(BaseModel):
    """`config_ranking.csv` as JSON: configs by the robust score of `metric`, each with its verdict
    against the baseline (on `metric`)."""

    fold: str | None
    metric: str = Field(
        description="The column the rows are ranked by: `?metric=`, by default the sweep's evaluation.rank_by."
    )
    metrics: list[str] = Field(
        description="What `?metric=` may name: the val_ column of each registered metric with a direction, for "
        "the sweep's evaluation.references."
    )
    data: list[RankingRow]  # type: ignore[valid-type]
    count: int


def ranking_json(fold: str | None, metric: str, metrics: list[str], table: pd.DataFrame) -> bytes:
    """A `RankingPublic` answer's JSON, its rows as `ranking_rows` gives them."""
    rows = ranking_rows(table)
    return orjson.dumps({"fold": fold, "metric": metric, "metrics": metrics, "data": rows, "count": len(rows)})


class ParamImpactPublic(BaseModel):
    fold: str | None
    summary: list[ImpactRow]  # type: ignore[valid-type]
    detail: list[dict[str, Any]]


class DriftPublic(BaseModel):
    fold: str | None
    available: bool = Field(
        True, description="False when the sweep's dataset is missing or is not the one it trained on."
    )
    reason: str | None = Field(None, description="Why drift is not available.")
    data: list[dict[str, Any]]
    overall: dict[str, Any]


class PlotPublic(BaseModel):
    name: str
    fold: str | None
    url: str


class PlotsPublic(BaseModel):
    data: list[PlotPublic]
    count: int


class ActionPublic(BaseModel):
    id: int
    status: str
    detail: str
    runs: int = 0


class DatasetPublic(BaseModel):
    asset: str
    rows: int
    first_date: str
    last_date: str
    columns: list[str]


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int


class HealthPublic(BaseModel):
    status: str = Field(
        description="`ok`; `degraded` when the database or broker fails, or runs are queued and no worker is live."
    )
    database: str
    broker: str
    live_workers: int = Field(description="Workers whose heartbeat is younger than two heartbeat intervals.")
    queued_runs: int
    detail: str | None = Field(None, description="Why the status is degraded.")


class WorkerPublic(BaseModel):
    id: str = Field(description="`{host}:{pid}` of the worker's main process.")
    host: str
    pid: int
    name: str
    queues: list[str]
    gpu: str | None
    concurrency: int
    runs_in_hand: int = Field(description="Runs this worker holds a lease on, as of its last heartbeat.")
    started_at: datetime
    last_seen: datetime
    stopped_at: datetime | None = Field(description="Set when the worker shut down cleanly.")
    live: bool = Field(description="Seen within two heartbeat intervals and not stopped.")


class WorkersPublic(BaseModel):
    data: list[WorkerPublic]
    count: int
    live: int
    heartbeat_seconds: float
