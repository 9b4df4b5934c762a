"""/hpo: Optuna studies run by the workers; trials, best, top-k, plots, and top-k into a sweep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Response, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from app.api.deps import FactoryDep, Limit, Offset, QueueDep, SessionDep, SettingsDep
from app.api.files import file_response, listing, read_json
from app.api.models import NOT_FOUND, ErrorPublic, PlotPublic, PlotsPublic, SweepSubmitted
from app.api.submitted import submit_sweep_response
from app.db.models import Study
from app.db.sweeps import as_utc
from app.service.studies import cancel_study as cancel_study_service
from app.service.studies import submit_study
from core.config import validate_sweep_config
from core.hpo_config import validate_hpo_config
from core.names import SafeName
from core.paths import hpo_dir

router = APIRouter(prefix="/hpo", tags=["hpo"])

StudyId = Annotated[int, PathParam(ge=1, le=2**62, description="Study id.")]
HPO_PLOTS = ("optuna_history.png", "optuna_param_importances.png", "optuna_parallel_coordinates.png")


class StudyCreate(BaseModel):
    """An HPO submission; `config` follows the HPO config schema (docs/hpo.md)."""

    model_config = ConfigDict(extra="forbid")

    asset: SafeName = Field(examples=["MSFT"])
    config: dict[str, Any] = Field(description="HPO config: the sweep's data keys plus search_space, n_trials, ...")


class StudyPublic(BaseModel):
    id: int
    asset: str
    output_subdir: str
    status: str
    tasks: int
    error: str | None
    created_at: Any
    updated_at: Any
    config: dict[str, Any] | None = Field(
        None,
        description="The study's effective HPO config (defaults filled in), as last submitted: its `walk_forward` "
        "folds, `replica_seeds`, `features`, `split_config` and baseline `training_config` are what a top-k sweep "
        "(POST /hpo/{id}/sweep) takes to run on the same folds and seeds.",
    )
    summary: dict[str, Any] | None = Field(
        None,
        description="optuna_summary.json once a trial has finished; `comparison` says whether the best trial beats "
        "the baseline (trial 0) and the naive forecast, with `sentence`; `importances` has a `status` "
        "('not enough trials' below the documented minimum of complete trials).",
    )


class StudiesPublic(BaseModel):
    data: list[StudyPublic]
    count: int


class StudySweepCreate(BaseModel):
    """A sweep that evaluates the study's top-k configs (and the baseline) over its folds and seeds."""

    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] = Field(description="A sweep config; its `configs` is filled with the study's top-k.")
    merge_tests: bool = Field(
        False,
        description="Merge the top-k into the existing sweep of the same `output_subdir` (e.g. the OFAT sweep that "
        "holds the baseline): only the new configs' runs are queued; configs merged before must stay.",
    )
    continue_on_error: bool = False


def _study_or_404(session: SessionDep, study_id: int) -> Study:
    study = session.get(Study, study_id)
    if study is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"study {study_id} not found")
    return study


def _folder(settings: SettingsDep, study: Study) -> Path:
    return hpo_dir(settings.data_root, study.asset, study.output_subdir)


def _read(settings: SettingsDep, study: Study, name: str) -> Any:
    """A study file's JSON (None before it is written; 409 when unreadable)."""
    folder = _folder(settings, study)
    return read_json(settings, folder / name, "it is rewritten after the study's next trial", inside=folder)


def _public(settings: SettingsDep, study: Study) -> StudyPublic:
    return StudyPublic(
        id=study.id,
        asset=study.asset,
        output_subdir=study.output_subdir,
        status=study.status,
        tasks=study.tasks,
        error=study.error,
        created_at=as_utc(study.created_at),
        updated_at=as_utc(study.updated_at),
        config=json.loads(study.config_json) if study.config_json else None,
        summary=_read(settings, study, "optuna_summary.json"),
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=StudyPublic,
    responses={
        409: {"model": ErrorPublic, "description": "A study with this name exists with another config."},
        422: {"model": ErrorPublic, "description": "Invalid config or dataset; each problem names its field."},
    },
    summary="Start (or continue) an Optuna study",
)
def create_study(body: StudyCreate, factory: FactoryDep, queue: QueueDep, settings: SettingsDep) -> JSONResponse:
    """Queue trial tasks on the gpu queue. A SQLite study runs one trial at a time; with a
    server `storage` URL several tasks share the study. Submitting the same study again
    (only `n_trials`/`timeout_s` may change) continues it."""
    config = validate_hpo_config(body.config)
    study, continued = submit_study(factory, queue, settings, body.asset, config)
    code = status.HTTP_202_ACCEPTED if continued else status.HTTP_201_CREATED
    return JSONResponse(json.loads(_public(settings, study).model_dump_json()), status_code=code)


@router.get("", response_model=StudiesPublic, summary="List studies, newest first")
def list_studies(session: SessionDep, settings: SettingsDep, limit: Limit = 50, offset: Offset = 0) -> StudiesPublic:
    count = session.scalar(select(func.count()).select_from(Study)) or 0
    studies = session.scalars(select(Study).order_by(Study.id.desc()).limit(limit).offset(offset)).all()
    return StudiesPublic(data=[_public(settings, s) for s in studies], count=count)


@router.get("/{study_id}", response_model=StudyPublic, responses=NOT_FOUND, summary="A study: status and summary")
def get_study(study_id: StudyId, session: SessionDep, settings: SettingsDep) -> StudyPublic:
    return _public(settings, _study_or_404(session, study_id))


@router.get(
    "/{study_id}/trials", responses=NOT_FOUND, summary="Trials, a page at a time: state, value, params, metrics"
)
def get_trials(
    study_id: StudyId, session: SessionDep, settings: SettingsDep, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Trials in the order they started; `count` is every trial, `data` one page."""
    trials = _read(settings, _study_or_404(session, study_id), "optuna_trials.json") or []
    return {"data": trials[offset : offset + limit], "count": len(trials)}


@router.post(
    "/{study_id}/cancel",
    response_model=StudyPublic,
    responses={**NOT_FOUND, 409: {"model": ErrorPublic, "description": "The study already finished."}},
    summary="Stop a study: no new trial starts; a running one ends at its next pruning check",
)
def cancel_study(study_id: StudyId, session: SessionDep, factory: FactoryDep, settings: SettingsDep) -> StudyPublic:
    _study_or_404(session, study_id)
    session.close()
    return _public(settings, cancel_study_service(factory, study_id))


@router.get("/{study_id}/best", responses=NOT_FOUND, summary="The best complete trial")
def get_best(study_id: StudyId, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    best = _read(settings, _study_or_404(session, study_id), "optuna_best_trial.json")
    if not best:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no complete trial yet")
    return dict(best)


@router.get("/{study_id}/top-k", responses=NOT_FOUND, summary="The top-k configs, usable as a sweep's `configs`")
def get_top_k(study_id: StudyId, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    top = _read(settings, _study_or_404(session, study_id), "optuna_top_k_configs.json") or []
    return {"data": top, "count": len(top)}


@router.get("/{study_id}/plots", response_model=PlotsPublic, responses=NOT_FOUND, summary="Plot files of a study")
def list_plots(study_id: StudyId, session: SessionDep, settings: SettingsDep) -> PlotsPublic:
    study = _study_or_404(session, study_id)
    folder = _folder(settings, study)
    found = set(listing(settings, folder, ".png", inside=folder))
    names = [n for n in HPO_PLOTS if n in found]
    data = [PlotPublic(name=n, fold=None, url=f"/hpo/{study_id}/plots/{n}") for n in names]
    return PlotsPublic(data=data, count=len(data))


@router.get(
    "/{study_id}/plots/{name}",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}, "description": "The PNG."}, **NOT_FOUND},
    summary="One study plot as image/png",
)
def get_plot(study_id: StudyId, name: str, session: SessionDep, settings: SettingsDep) -> Response:
    study = _study_or_404(session, study_id)
    folder = _folder(settings, study)
    response = file_response(settings, folder / name, "image/png", inside=folder) if name in HPO_PLOTS else None
    if response is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no plot {name!r}")
    return response


@router.post(
    "/{study_id}/sweep",
    status_code=status.HTTP_201_CREATED,
    response_model=SweepSubmitted,
    responses={**NOT_FOUND, 409: {"model": ErrorPublic}, 422: {"model": ErrorPublic}},
    summary="Create a sweep that evaluates the study's top-k configs",
)
def sweep_from_study(
    study_id: StudyId,
    body: StudySweepCreate,
    session: SessionDep,
    factory: FactoryDep,
    queue: QueueDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> JSONResponse:
    """The sweep's `configs` become the study's top-k; the usual robust ranking and reports apply."""
    study = _study_or_404(session, study_id)
    top = _read(settings, study, "optuna_top_k_configs.json") or []
    if not top:
        raise HTTPException(status.HTTP_409_CONFLICT, "the study has no complete trial yet")
    if body.config.get("configs"):
        raise HTTPException(422, [{"field": "config.configs", "message": "filled from the study; leave it out"}])
    config = validate_sweep_config({**body.config, "configs": top})
    asset = study.asset
    session.close()
    return submit_sweep_response(
        factory, queue, settings, background, asset, config, body.merge_tests, body.continue_on_error
    )
