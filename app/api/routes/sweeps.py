"""/sweeps: submit (with merge), list, inspect, reports, plots, artifacts, cancel, retry, regenerate.

About 490 lines because it is the one resource with fourteen routes; each is a few lines
over `app.service` and `app.api.tables`, and splitting the router would split one URL space
(and its shared path and query parameters) over files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import func, select

from app.api.deps import FactoryDep, Limit, Offset, QueueDep, SessionDep, SettingsDep, TablesDep, cached_json
from app.api.files import file_response, listing, read_json
from app.api.models import (
    NOT_FOUND,
    ActionPublic,
    DriftPublic,
    DryRunPublic,
    ErrorPublic,
    MergeRefusedPublic,
    ParamImpactPublic,
    PlotPublic,
    PlotsPublic,
    RankingPublic,
    RunPublic,
    RunsPublic,
    SweepCreate,
    SweepDetail,
    SweepPublic,
    SweepsPublic,
    SweepSubmitted,
    ranking_json,
)
from app.api.submitted import submit_sweep_response
from app.api.tables import SweepHead, SweepTables
from app.db.models import Run, RunState, Sweep
from app.db.sweeps import (
    as_utc,
    folder_config,
    run_records,
    stored_config,
    stored_config_dict,
    stored_dataset,
    stored_features,
)
from app.service.reports import request_reports
from app.service.submission import dry_run_sweep
from app.service.sweeps import cancel_runs, retry_runs
from core.config import validate_sweep_config
from core.drift import drift_by_fold, drift_overall_summary
from core.metrics import metric_columns
from core.names import SafeName
from core.paths import ensure_inside, sweep_dir
from core.report_files import (
    json_safe,
    table_rows,
)
from core.sweep_report import check_report_folders, drift_dataset

router = APIRouter(prefix="/sweeps", tags=["sweeps"])

SweepId = Annotated[int, PathParam(ge=1, le=2**62, description="Sweep id.")]
FoldQuery = Annotated[SafeName | None, Query(description="Restrict to one fold (its name).")]

SWEEP_ARTIFACTS = {
    "analysis_config.json": "application/json",
    "sweep_runs.csv": "text/csv",
    "sweep_runs.json": "application/json",
    "summary.json": "application/json",
    "config_ranking.csv": "text/csv",
    "param_impact_detail.csv": "text/csv",
    "param_impact_summary.csv": "text/csv",
    "drift_ks_psi_by_fold.csv": "text/csv",
    "drift_ks_psi_overall_summary.json": "application/json",
    "all_models_ranked.csv": "text/csv",
}
FOLD_ARTIFACTS = (
    "sweep_runs.csv",
    "config_ranking.csv",
    "param_impact_detail.csv",
    "param_impact_summary.csv",
)
REBUILD = "rebuild the sweep's files with POST /sweeps/{id}/regenerate"
CACHED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Unchanged since the answer whose `ETag` was sent in `If-None-Match`."},
    **NOT_FOUND,
}


def _sweep_or_404(session: SessionDep, sweep_id: int) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"sweep {sweep_id} not found")
    return sweep


def _check_fold(tables: TablesDep, sweep: Sweep, fold: str | None) -> None:
    if fold is not None and fold not in tables.folds(sweep):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"sweep {sweep.id} has no fold {fold!r}")


def _folder(settings: SettingsDep, sweep: Sweep) -> Path:
    return sweep_dir(settings.data_root, sweep.asset, sweep.output_subdir)


def _public(tables: TablesDep, sweep: Sweep) -> dict[str, Any]:
    counts = tables.counts(sweep)
    return {
        "id": sweep.id,
        "asset": sweep.asset,
        "output_subdir": sweep.output_subdir,
        "status": sweep.status,
        "continue_on_error": sweep.continue_on_error,
        "created_at": as_utc(sweep.created_at),
        "updated_at": as_utc(sweep.updated_at),
        "reports_at": as_utc(sweep.reports_at),
        "runs": counts,
        "total_runs": sum(counts.values()),
        "cached_runs": tables.cached(sweep),
        "best_config": tables.best_config(sweep),
    }


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SweepSubmitted,
    summary="Submit a sweep (or merge into an existing one)",
    responses={
        200: {
            "description": "A dry run (`dry_run: true`): the plan, estimate and detectability.",
            "model": DryRunPublic,
        },
        201: {"description": "A new sweep was created and its runs queued."},
        202: {"description": "Merged into the existing sweep; only the new runs were queued.", "model": SweepSubmitted},
        409: {
            "description": "The sweep exists (no merge asked), or the merge was refused (every violation listed).",
            "model": MergeRefusedPublic,
        },
        422: {"description": "Invalid config or dataset; each problem names its field.", "model": ErrorPublic},
    },
)
def create_sweep(
    body: SweepCreate, factory: FactoryDep, queue: QueueDep, settings: SettingsDep, background: BackgroundTasks
) -> JSONResponse:
    """Validate the config (and, with `merge_tests`, the merge against the stored sweep), record the
    sweep and its runs, commit, then enqueue one task per new run. A fold whose windows reach
    outside the dataset's dates is refused (422, naming it and the dataset's range) unless
    `walk_forward.clip_to_data`; then `effective_folds` gives the cut windows.

    With `dry_run: true`: the same checks and 4xx answers, nothing recorded, queued or written,
    and 200 with the plan (runs new and total, per config, fold and seed), an estimate of its
    training time from runs recorded on this server, and what the design can detect."""
    config = validate_sweep_config(body.config)
    if body.dry_run:
        report = dry_run_sweep(
            factory, settings.store(), body.asset, config, merge=body.merge_tests, max_runs=settings.max_runs
        )
        return JSONResponse(DryRunPublic(**report).model_dump(mode="json"), status_code=status.HTTP_200_OK)
    return submit_sweep_response(
        factory, queue, settings, background, body.asset, config, body.merge_tests, body.continue_on_error
    )


@router.get("", response_model=SweepsPublic, summary="List sweeps, newest first")
def list_sweeps(
    session: SessionDep,
    tables: TablesDep,
    limit: Limit = 50,
    offset: Offset = 0,
    asset: Annotated[str | None, Query(max_length=64)] = None,
    status_: Annotated[str | None, Query(alias="status", max_length=16)] = None,
) -> SweepsPublic:
    query = select(Sweep)
    if asset:
        query = query.where(Sweep.asset == asset)
    if status_:
        query = query.where(Sweep.status == status_)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    sweeps = session.scalars(query.order_by(Sweep.id.desc()).limit(limit).offset(offset)).all()
    return SweepsPublic(data=[SweepPublic(**_public(tables, s)) for s in sweeps], count=count)


@router.get("/{sweep_id}", response_model=SweepDetail, responses=CACHED, summary="A sweep: status and runs per state")
async def get_sweep(sweep_id: SweepId, request: Request) -> Response:
    """The sweep, its runs per state and its best config so far. Cached until the sweep or
    one of its runs changes; carries an `ETag` (send it back in `If-None-Match` for a 304)."""

    def key(head: SweepHead) -> tuple[Any, ...]:
        return (*SweepTables.key("sweep", head), head.status, head.updated_at, head.reports_at, head.continue_on_error)

    def build(tables: SweepTables) -> bytes:
        sweep = _sweep_or_404(tables.session, sweep_id)
        detail = SweepDetail(**_public(tables, sweep), config=stored_config_dict(sweep))
        return detail.model_dump_json().encode()

    return await cached_json(request, sweep_id, key, build)  # async: a cached answer needs no thread


@router.get(
    "/{sweep_id}/runs",
    response_model=RunsPublic,
    responses=NOT_FOUND,
    summary="Runs of a sweep, in plan order, with every registered metric column",
)
def list_runs(
    sweep_id: SweepId,
    session: SessionDep,
    tables: TablesDep,
    fold: FoldQuery = None,
    state: Annotated[str | None, Query(description="Filter by state.", max_length=16)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> RunsPublic:
    """Each run's `sweep_runs.csv` columns, its training config, and the metric columns of the
    sweep's evaluation.references beyond the seed's (null where the run has none)."""
    sweep = _sweep_or_404(session, sweep_id)
    _check_fold(tables, sweep, fold)
    query = select(func.count()).where(Run.sweep_id == sweep_id)
    if fold:
        query = query.where(Run.fold == fold)
    if state:
        query = query.where(Run.state == state)
    count = session.scalar(query) or 0
    records = run_records(session, sweep_id, fold=fold or None, state=state or None, limit=limit, offset=offset)
    scores = [c for c in metric_columns(tables.evaluation(sweep).references) if c not in RunPublic.model_fields]
    return RunsPublic(data=[RunPublic(**json_safe(_run_public(r, scores))) for r in records], count=count)


def _run_public(record: dict[str, Any], scores: list[str]) -> dict[str, Any]:
    """A run record's `RunPublic` fields and its metric columns `scores` (null where absent):
    not the scoring marks the record also carries (core.runs.SCORED_WITH, SCORED_FROM)."""
    public = {name: value for name, value in record.items() if name in RunPublic.model_fields}
    return public | {column: record.get(column) for column in scores}


# How many of the choices a refused `?metric=` names (the answer's `metrics` has them all).
METRIC_CHOICES_SHOWN = 20
MetricQuery = Annotated[
    str | None,
    Query(
        max_length=128,
        description="Rank by this column: a val_ metric with a direction (the answer's `metrics`); default the "
        "sweep's evaluation.rank_by.",
    ),
]


def _check_metric(tables: TablesDep, sweep: Sweep, metric: str | None) -> tuple[str, list[str]]:
    """(the column to rank by, every column that may be chosen); 422 naming `metric` and its
    choices when `metric` is not one of them."""
    choices = tables.rankable(sweep)
    if metric is None:
        return tables.evaluation(sweep).rank_by, choices
    if metric not in choices:
        shown = ", ".join(choices[:METRIC_CHOICES_SHOWN])
        more = f" and {len(choices) - METRIC_CHOICES_SHOWN} more" if len(choices) > METRIC_CHOICES_SHOWN else ""
        message = f"{metric!r} cannot rank this sweep's configs; choose one of {shown}{more}"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{"field": "metric", "message": message}])
    return metric, choices


@router.get(
    "/{sweep_id}/ranking",
    response_model=RankingPublic,
    responses={
        **CACHED,
        422: {"model": ErrorPublic, "description": "`metric` cannot rank configs (the choices are listed)."},
    },
    summary="Configs ranked by robust score of evaluation.rank_by, or of ?metric= (mean + std, or mean - std)",
)
async def ranking(sweep_id: SweepId, request: Request, fold: FoldQuery = None, metric: MetricQuery = None) -> Response:
    """Configs ranked by `rank_score`, the robust score of `metric` (default: the sweep's
    evaluation.rank_by; mean + std over runs when lower is better, mean - std when higher is
    better): the rows of `config_ranking.csv`, computed from the database now, re-ranked
    without a rebuild. Each row has its verdict against the baseline on that metric (the mean
    paired delta, its 95% interval, the Holm-adjusted Wilcoxon p-value), its skill against the
    naive forecast, the metric columns of every metric of the sweep's references and, at sweep
    level, the relative view (error relative to the naive forecast, mean rank within folds).
    `metrics` lists what `metric` may name. Each row ends with `mcs_pvalue` and `in_mcs`, and
    `selection` gives the model confidence set and SPA test, as the last report build computed
    them from the runs' predictions: shown only for the ranking they were computed for (the
    sweep's evaluation.rank_by, at the sweep's current revision), else null with `selection.reason`.
    Cached per metric until a run of the sweep changes or a report build records its selection;
    carries an `ETag` (send it back in `If-None-Match` for a 304)."""

    def build(tables: SweepTables) -> bytes:
        sweep = _sweep_or_404(tables.session, sweep_id)
        _check_fold(tables, sweep, fold)  # a fold once valid stays valid: merges only add folds
        rank_by, choices = _check_metric(tables, sweep, metric)
        view = tables.selection(sweep, fold, rank_by)
        return ranking_json(fold, rank_by, choices, tables.ranking(sweep, fold, rank_by), view.block, view.members)

    return await cached_json(
        request,
        sweep_id,
        lambda head: (*SweepTables.key("ranking-body", head, fold), head.selection_at, metric),
        build,
    )


@router.get(
    "/{sweep_id}/param-impact",
    response_model=ParamImpactPublic,
    responses=NOT_FOUND,
    summary="Each variant against its baseline run, and aggregated per parameter value",
)
def param_impact(
    sweep_id: SweepId, session: SessionDep, tables: TablesDep, fold: FoldQuery = None
) -> ParamImpactPublic:
    """`param_impact_summary.csv` (each value's interval, Wilcoxon and Holm p-values and verdict)
    and `param_impact_detail.csv`, computed now."""
    sweep = _sweep_or_404(session, sweep_id)
    _check_fold(tables, sweep, fold)
    return ParamImpactPublic(
        fold=fold,
        summary=table_rows(tables.impact(sweep, fold)),
        detail=table_rows(tables.detail(sweep, fold)),
    )


@router.get(
    "/{sweep_id}/drift",
    response_model=DriftPublic,
    responses=NOT_FOUND,
    summary="KS and PSI of each feature, train window against val and test, per fold",
)
def drift(
    sweep_id: SweepId, session: SessionDep, tables: TablesDep, settings: SettingsDep, fold: FoldQuery = None
) -> DriftPublic:
    """Computed now from the sweep's dataset, checked against the fingerprint the sweep
    recorded; `available` is false (and `reason` says why) when it is missing or another one."""
    sweep = _sweep_or_404(session, sweep_id)
    _check_fold(tables, sweep, fold)
    folder = folder_config(sweep)
    settings.store().fetch_dataset(sweep.asset)  # once per fingerprint
    frame, problem = drift_dataset(settings.data_root, folder)
    if frame is None:
        return DriftPublic(fold=fold, available=False, reason=problem, data=[], overall={})
    folds = [f for f in folder.config.folds if fold is None or f.name == fold]
    table = drift_by_fold(frame, folds, stored_features(sweep))
    return DriftPublic(fold=fold, data=table_rows(table), overall=json_safe(drift_overall_summary(table)))


@router.get("/{sweep_id}/summary", responses=NOT_FOUND, summary="Executive summary (as summary.json, computed now)")
def summary(
    sweep_id: SweepId, session: SessionDep, tables: TablesDep, settings: SettingsDep, fold: FoldQuery = None
) -> dict[str, Any]:
    """As `summary.json`, computed now (for the sweep, or one fold). Its `significance` block
    says whether the winner is real: alpha, the best config's delta vs the baseline with its
    95% interval, Holm p-value and verdict, the pairs the exact test needs, whether the best
    config beats the naive forecast by the Diebold-Mariano test, whether the relative view
    agrees, and one plain `sentence`. Its `selection` block (model confidence set, SPA test) is the
    one the last report build recorded, shown only while it describes the sweep's current runs
    (`available` false and a `reason` otherwise): it needs every run's predictions, which only
    the report build reads."""
    from core.summary import SummaryFacts, build_summary

    sweep = _sweep_or_404(session, sweep_id)
    _check_fold(tables, sweep, fold)
    config = stored_config(sweep)
    plots = [p.url for p in _plots(settings, sweep, fold)]
    folder = _folder(settings, sweep)
    stored = read_json(settings, folder / "summary.json", REBUILD, inside=folder)
    if stored is not None and not isinstance(stored, dict):
        raise HTTPException(status.HTTP_409_CONFLICT, f"summary.json is not a JSON object: {REBUILD}")
    drift_headline = stored.get("drift", {}) if stored else {"available": False, "reason": "not computed yet"}
    result: dict[str, Any] = build_summary(
        sweep.asset,
        config,
        tables.runs(sweep, fold),
        tables.ranking(sweep, fold),
        tables.impact(sweep, fold),
        drift_headline,
        plots,
        SummaryFacts(
            dataset=stored_dataset(sweep),
            fold=fold,
            scored_from=tables.scored_from(sweep, fold),
            selection=tables.selection(sweep, fold, config.evaluation.rank_by).block,
        ),
    )
    return result


def _plots(settings: SettingsDep, sweep: Sweep, fold: str | None) -> list[PlotPublic]:
    base = _folder(settings, sweep)
    folder = base / "folds" / fold / "plots" if fold else base / "plots"
    names = listing(settings, folder, ".png", inside=base)
    suffix = f"?fold={fold}" if fold else ""
    return [PlotPublic(name=n, fold=fold, url=f"/sweeps/{sweep.id}/plots/{n}{suffix}") for n in names]


@router.get(
    "/{sweep_id}/plots", response_model=PlotsPublic, responses=NOT_FOUND, summary="Plot files of a sweep or fold"
)
def list_plots(
    sweep_id: SweepId, session: SessionDep, tables: TablesDep, settings: SettingsDep, fold: FoldQuery = None
) -> PlotsPublic:
    sweep = _sweep_or_404(session, sweep_id)
    _check_fold(tables, sweep, fold)
    plots = _plots(settings, sweep, fold)
    return PlotsPublic(data=plots, count=len(plots))


@router.get(
    "/{sweep_id}/plots/{name}",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}, "description": "The PNG."}, **NOT_FOUND},
    summary="One plot as image/png",
)
def get_plot(
    sweep_id: SweepId,
    name: SafeName,
    session: SessionDep,
    tables: TablesDep,
    settings: SettingsDep,
    fold: FoldQuery = None,
) -> Response:
    """Streamed from the store (the data root, or the object store: no local copy)."""
    sweep = _sweep_or_404(session, sweep_id)
    _check_fold(tables, sweep, fold)
    if not name.endswith(".png"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no plot {name!r}")
    base = _folder(settings, sweep)
    path = (base / "folds" / fold / "plots" / name) if fold else (base / "plots" / name)
    response = file_response(settings, path, "image/png", inside=base)  # not the whole data root
    if response is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no plot {name!r}")
    return response


@router.get(
    "/{sweep_id}/artifacts/{file}",
    response_class=FileResponse,
    responses={200: {"content": {"text/csv": {}, "application/json": {}}, "description": "The file."}, **NOT_FOUND},
    summary="Download a report file (CSV/JSON) of the sweep or of one fold",
)
def get_artifact(
    sweep_id: SweepId, file: str, session: SessionDep, tables: TablesDep, settings: SettingsDep, fold: FoldQuery = None
) -> Response:
    """Streamed from the store (the data root, or the object store: no local copy)."""
    sweep = _sweep_or_404(session, sweep_id)
    _check_fold(tables, sweep, fold)
    allowed = FOLD_ARTIFACTS if fold else tuple(SWEEP_ARTIFACTS)
    if file not in allowed:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown artifact {file!r}; known: {', '.join(allowed)}")
    base = _folder(settings, sweep)
    download = f"{sweep.asset}_{sweep.output_subdir}_{fold + '_' if fold else ''}{file}"
    path = base / "folds" / fold / file if fold else base / file
    response = file_response(settings, path, SWEEP_ARTIFACTS[file], filename=download, inside=base)
    if response is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{file} has not been written yet")
    return response


@router.post(
    "/{sweep_id}/cancel",
    response_model=ActionPublic,
    responses={**NOT_FOUND, 409: {"model": ErrorPublic, "description": "The sweep has no queued or running run."}},
    summary="Cancel queued and running runs",
)
def cancel(sweep_id: SweepId, session: SessionDep, factory: FactoryDep, queue: QueueDep) -> ActionPublic:
    _sweep_or_404(session, sweep_id)
    session.close()
    counts = cancel_runs(factory, queue, sweep_id)
    total = counts.get(RunState.QUEUED, 0) + counts.get(RunState.RUNNING, 0)
    return ActionPublic(
        id=sweep_id,
        status="cancelled",
        runs=total,
        detail=f"{counts.get('queued', 0)} queued and {counts.get('running', 0)} running runs cancelled",
    )


@router.post(
    "/{sweep_id}/retry", response_model=ActionPublic, responses=NOT_FOUND, summary="Re-queue failed and cancelled runs"
)
def retry(sweep_id: SweepId, session: SessionDep, factory: FactoryDep, queue: QueueDep) -> ActionPublic:
    _sweep_or_404(session, sweep_id)
    session.close()
    ids = retry_runs(factory, queue, sweep_id)
    return ActionPublic(
        id=sweep_id, status="queued" if ids else "unchanged", runs=len(ids), detail=f"{len(ids)} runs re-queued"
    )


@router.post(
    "/{sweep_id}/regenerate",
    response_model=ActionPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, 409: {"model": ErrorPublic, "description": "A report folder leads outside the data root."}},
    summary="Rebuild reports and plots from what is stored (no training)",
)
def regenerate(
    sweep_id: SweepId, session: SessionDep, factory: FactoryDep, queue: QueueDep, settings: SettingsDep
) -> ActionPublic:
    """Refused (409) when a folder the reports go into leads outside the data root. Requests
    coalesce: while a build asked for earlier has not started, a request joins it, and the
    requests that come during a build cost one more build after it (`detail` says which)."""
    sweep = _sweep_or_404(session, sweep_id)
    folder = _folder(settings, sweep)
    ensure_inside(settings.data_root, folder)
    check_report_folders(folder, stored_config(sweep))
    session.close()  # its connection goes back to the pool before the request's own write
    if request_reports(factory, queue, settings, sweep_id):
        detail = "reports queued on the cpu queue"
    else:
        detail = "already building: a build of these reports is queued or running and serves this request too"
    return ActionPublic(id=sweep_id, status=sweep.status, detail=detail)
