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
    runs: dict[str, int] = Field(
        description="Runs per state: queued, running, succeeded, failed, cancelled, skipped (racing dropped the "
        'variant: docs/reports.md, "Racing").'
    )
    total_runs: int
    cached_runs: int = Field(
        0, description="Succeeded runs recorded from the run cache (a run with the same key in any sweep), not trained."
    )
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
# The last two columns of config_ranking.csv, from the report build's model confidence set
# (app.db.selection): null where the answer's `selection` is not available.
MCS_COLUMN_DOCS: dict[str, tuple[Any, str]] = {
    "mcs_pvalue": (
        float,
        "The config's MCS p-value (Hansen, Lunde and Nason): it is in the model confidence set at level L when "
        "mcs_pvalue >= 1 - L. Null when `selection.available` is false.",
    ),
    "in_mcs": (
        bool,
        "Whether the config is in the model confidence set (at `selection.level`) of the metric the ranking is by. "
        "Null when `selection.available` is false.",
    ),
}
_RANKING_FIELDS: dict[str, Any] = {
    c: (ranking_column_doc(c)[0] | None, Field(None, description=ranking_column_doc(c)[1]))
    for c in (*RANKING_ROW_COLUMNS, *ranking_metric_columns(metric_names(list(REFERENCES))), RANK_SCORE)
}
_RANKING_FIELDS |= {c: (kind | None, Field(None, description=text)) for c, (kind, text) in MCS_COLUMN_DOCS.items()}
RankingRow = create_model(
    "RankingRow",
    __doc__="A row of config_ranking.csv, its columns in the file's order: the seed's (the relative view only at "
    "sweep level), then `mean_val_{m}`, `std_val_{m}` and `mean_test_{m}` for each metric of the sweep's "
    "evaluation.references (those of a metric registered later too), `rank_score`, the robust score of the metric "
    "the rows are ranked by, and last `mcs_pvalue` and `in_mcs`, the model confidence set of the report build.",
    __config__=ConfigDict(extra="allow"),
    **_RANKING_FIELDS,
)


def ranking_rows(
    table: pd.DataFrame, members: dict[str, tuple[float | None, bool | None]] | None = None
) -> list[dict[str, Any]]:
    """A ranking table as `RankingRow`s, in the table's column order (as config_ranking.csv),
    each seed column present, and last `mcs_pvalue`, `in_mcs` from `members` (null where a
    config has none). Plain dicts: a model would move the columns of a metric it does not name
    after `rank_score`."""
    found = members or {}
    rows = []
    for row in table_rows(table):
        pvalue, member = found.get(str(row["config_id"]), (None, None))
        rows.append({**dict.fromkeys(RANKING_ROW_COLUMNS), **row, "mcs_pvalue": pvalue, "in_mcs": member})
    return rows


class SelectionPublic(BaseModel):
    """The model confidence set and SPA test of the sweep's last report build (summary.json's
    `selection`), shown with a ranking only when computed for it: the same revision of the sweep and
    the metric the ranking is by. Otherwise `available` is false and `reason` says why."""

    model_config = ConfigDict(extra="allow")

    available: bool
    reason: str | None = Field(None, description="Why it is not available (stale, another metric, not computed).")
    computed_for: str | None = Field(None, description="The rank_by metric the report build computed it for.")
    revision: int | None = Field(None, description="The sweep revision it was computed at.")
    level: float | None = Field(None, description="The confidence level of the set (evaluation.selection.level).")
    mcs: dict[str, Any] | None = Field(None, description="`members` (config ids), `size`, `pvalues` per config.")
    spa: dict[str, Any] | None = Field(
        None, description="Hansen's SPA p-values (`lower`, `consistent`, `upper`) of the best config vs the baseline."
    )


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
    selection: SelectionPublic
    data: list[RankingRow]
    count: int


def ranking_json(
    fold: str | None,
    metric: str,
    metrics: list[str],
    table: pd.DataFrame,
    selection: dict[str, Any],
    members: dict[str, tuple[float | None, bool | None]],
) -> bytes:
    """A `RankingPublic` answer's JSON, its rows as `ranking_rows` gives them."""
    rows = ranking_rows(table, members)
    answer = {"fold": fold, "metric": metric, "metrics": metrics, "selection": selection, "data": rows}
    return orjson.dumps({**answer, "count": len(rows)})


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


class ComparedSweepPublic(BaseModel):
    id: int
    asset: str
    output_subdir: str
    label: str = Field(description="`{asset}/{output_subdir}`: how the comparison names the sweep.")


class ComparePublic(BaseModel):
    """Two sweeps compared (core.compare): on one asset on their common folds, seeds and configs
    (as `tftsweep compare`); on different assets by transfer, never by their error levels."""

    a: ComparedSweepPublic
    b: ComparedSweepPublic
    kind: str = Field(description="`same asset` or `transfer` (the sweeps are on different assets).")
    sentence: str = Field(description="The answer in words; across assets it leads with the transfer.")
    sweeps: list[str]
    assets: list[str]
    common: dict[str, Any] = Field(description="The `folds` (same name and dates), `seeds` and `configs` compared.")
    left_out: dict[str, Any] = Field(description="Per sweep what was left out (folds, seeds, configs, runs).")
    alpha: float
    metric: str | None = Field(
        None, description="Across assets: the transfer metric (a's evaluation.rank_by, else val_rmse)."
    )
    transfer: list[dict[str, Any]] = Field(
        description="Across assets (empty on one asset): `n_variants`, `n_same_sign`, `sign_agreement` and its "
        "one-sided binomial `sign_agreement_pvalue`, `correlation` (`spearman`, `kendall` of the two rankings' "
        "rank_score over the shared configs, with p-values; null with `reason` below 3 configs), `chosen` (a's "
        "best shared config and its `rank_b` on b, `in_mcs_b`), `sentence`, and `rows`: per shared variant "
        "`delta_a/b` (mean paired variant - own baseline), `rel_delta_a/b` (over |mean baseline|), `vs_naive_a/b` "
        "(mean val_rmse / val_naive_rmse - 1), `same_sign`, `rank_a/b`, `in_mcs_a/b`, `mcs_pvalue_a/b`."
    )
    significance: list[dict[str, Any]] = Field(
        description="On one asset: b against a per common config on the same config, fold and seed (as "
        "compare_significance.csv); empty across assets, where RMSE levels follow each asset's volatility."
    )
    mcs: dict[str, Any] = Field(
        description="Each sweep's model confidence set for the shared configs: `sweeps` (`available`, `reason` "
        "per sweep) and `rows` (`sweep`, `config_id`, `in_mcs`, `mcs_pvalue`)."
    )
    table: list[dict[str, Any]] = Field(description="compare.csv: each sweep's ranking of the configs compared.")
    note: str
