"""/ui: the built-in dashboard, and /docs: the API's Swagger UI. Page shells are rendered here;
every number on them is fetched from the public REST API by the browser, with the same key, so
the UI can do nothing the API would refuse. No build step, no CDN: Swagger UI's files come
from the `swagger-ui-bundle` package (pinned), and /redoc leads to /docs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import swagger_ui_bundle
from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from app.api.routes.hpo import StudyId
from app.api.routes.sweeps import SWEEP_ARTIFACTS, SweepId
from core.shipped import shipped_config

HERE = Path(__file__).resolve().parent.parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/ui", tags=["ui"], include_in_schema=False)
docs = APIRouter(tags=["docs"], include_in_schema=False)

SWAGGER_UI = Path(str(swagger_ui_bundle.swagger_ui_path))
# Only what /docs loads: the package's folder also holds a demo page that would load another site's schema.
SWAGGER_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


@router.get("", response_class=HTMLResponse)
def sweeps_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "sweeps.html")


@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
def sweep_page(request: Request, sweep_id: SweepId) -> HTMLResponse:
    return templates.TemplateResponse(request, "sweep.html", {"sweep_id": sweep_id, "artifacts": list(SWEEP_ARTIFACTS)})


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    a: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    b: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> HTMLResponse:
    """Two sweeps compared (GET /compare, fetched by the page); `a` and `b` prefill the form."""
    return templates.TemplateResponse(request, "compare.html", {"a": a, "b": b})


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


@docs.get("/docs", response_class=HTMLResponse)
def docs_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "docs.html", {"openapi_url": request.app.openapi_url})


@docs.get("/docs/static/{name}", response_class=FileResponse)
def docs_file(name: str) -> FileResponse:
    if name not in SWAGGER_FILES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no docs file {name!r}")
    return FileResponse(SWAGGER_UI / name, media_type=SWAGGER_FILES[name])


@docs.get("/favicon.ico", response_class=FileResponse)
def favicon() -> FileResponse:
    """For clients that ask the root for it; the pages themselves link `/ui/static/favicon.svg`."""
    return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon", headers={"cache-control": "max-age=86400"})


@docs.get("/redoc", response_class=RedirectResponse)
def redoc() -> RedirectResponse:
    """ReDoc needs inline styles the pages' CSP forbids, and no registry package ships it for
    Python: the one API browser is /docs."""
    return RedirectResponse("/docs", status_code=307)
