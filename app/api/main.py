"""The FastAPI application: `uvicorn app.api.main:app` (or `tftsweep serve`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from app.api.cache import BuildOnce
from app.api.deps import close_database, open_database
from app.api.errors import AllowHeaderMiddleware, HeadAsGetMiddleware, install_error_handlers
from app.api.metrics import ApiMetrics, MetricsMiddleware
from app.api.metrics import router as metrics_router
from app.api.models import ErrorPublic
from app.api.routes import compare, datasets, health, hpo, sweeps, ui
from app.api.security import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    CrossSiteMiddleware,
    LoopbackOnlyMiddleware,
    SecurityHeadersMiddleware,
    allowed_hosts,
    parse_api_keys,
)
from app.db.migrate import upgrade_database
from app.db.session import make_session_factory
from app.queue import CeleryQueue, RunQueue, make_celery
from app.service.reaper import Reaper
from app.settings import Settings, get_settings

log = logging.getLogger("tftsweep.server")

DESCRIPTION = """
Robust hyperparameters for Temporal Fusion Transformer forecasts.

POST a sweep config to `/sweeps`; the server expands it one factor at a time over
walk-forward folds and replica seeds, trains each run on a worker, and serves rankings
(by `rank_score`, the robust score of the config's `evaluation.rank_by` metric: mean + std
over runs for a lower-better metric, mean - std for a higher-better one; the default,
`val_rmse`, gives `robust_score = mean_val_rmse + std_val_rmse`; `?metric=` re-ranks),
parameter impact, feature drift, summaries and plots. The sweep config schema is
documented in `docs/config.md`.
"""


COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorPublic, "description": "The request could not be parsed."},
    401: {"model": ErrorPublic, "description": "Missing or invalid API key (when keys are configured)."},
    403: {"model": ErrorPublic, "description": "The key's scope does not allow this route (read key on a write)."},
    413: {"model": ErrorPublic, "description": "Request body over the size limit."},
    422: {"model": ErrorPublic, "description": "Invalid input; each problem names its field."},
}


def create_app(settings: Settings | None = None, queue: RunQueue | None = None, reaper: bool = True) -> FastAPI:
    """Build the app; `queue` replaces the Celery client (tests), `reaper` starts the lease reaper."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_root.mkdir(parents=True, exist_ok=True)
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        upgrade_database(settings.db_url)
        engine = open_database(app.state, settings)  # pool sized from the threads; /healthz's own engine
        app.state.settings = settings
        app.state.cache = BuildOnce()
        app.state.session_factory = make_session_factory(engine)
        app.state.queue = queue or CeleryQueue(make_celery(settings))
        thread = Reaper(app.state.session_factory, app.state.queue, settings) if reaper else None
        if thread is not None:
            thread.start()
        try:
            yield
        finally:
            if thread is not None:
                thread.stop()
            close_database(app.state)

    keys = parse_api_keys(settings.api_keys)
    app = FastAPI(
        title="tftsweep",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=COMMON_RESPONSES,
        docs_url=None,  # /docs and /redoc: app.api.routes.ui, from packaged files under the pages' CSP
        redoc_url=None,
    )
    # Starlette runs the middleware added last first (app.api.security lists them outermost first).
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        max_json_depth=settings.max_json_depth,
    )
    app.add_middleware(ApiKeyMiddleware, keys=keys)
    app.add_middleware(CrossSiteMiddleware)
    app.add_middleware(LoopbackOnlyMiddleware, keys=keys)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings.allowed_hosts))
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(AllowHeaderMiddleware, spec=app.openapi)
    app.add_middleware(HeadAsGetMiddleware)
    app.state.metrics = ApiMetrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: counts refusals too
    if not keys:
        log.warning("no API keys configured (TFTSWEEP_API_KEYS): every client that reaches this port has full access")
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics_router)
    app.include_router(sweeps.router)
    app.include_router(compare.router)
    app.include_router(hpo.router)
    app.include_router(datasets.router)
    app.include_router(ui.router)
    app.include_router(ui.docs)
    app.mount("/ui/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn app.api.main:app` builds the app on first access, not at import.
    if name == "app":
        return create_app()
    raise AttributeError(name)
