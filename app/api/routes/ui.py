"""/ui: the built-in dashboard. Page shells are rendered here; every number on them is fetched
from the public REST API by the browser, with the same key, so the UI can do nothing the
API would refuse. No build step, no CDN."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.api.routes.hpo import StudyId
from app.api.routes.sweeps import SWEEP_ARTIFACTS, SweepId
from core.shipped import shipped_config

HERE = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/ui", tags=["ui"], include_in_schema=False)


@router.get("", response_class=HTMLResponse)
def sweeps_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "sweeps.html")


@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
def sweep_page(request: Request, sweep_id: SweepId) -> HTMLResponse:
    return templates.TemplateResponse(request, "sweep.html", {"sweep_id": sweep_id, "artifacts": list(SWEEP_ARTIFACTS)})


@router.get("/hpo", response_class=HTMLResponse)
def studies_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "studies.html")


@router.get("/hpo/{study_id}", response_class=HTMLResponse)
def study_page(request: Request, study_id: StudyId) -> HTMLResponse:
    return templates.TemplateResponse(request, "study.html", {"study_id": study_id})


@router.get("/workers", response_class=HTMLResponse)
def workers_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "workers.html")


@router.get("/submit", response_class=HTMLResponse)
def submit_page(request: Request) -> HTMLResponse:
    example = json.dumps(json.loads(shipped_config("example")[1]), indent=2)
    return templates.TemplateResponse(request, "submit.html", {"example": example})
