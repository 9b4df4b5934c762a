"""/healthz (the API, its database and broker, live workers) and /workers (every worker's heartbeat)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, text

from app.api.deps import QueueDep, SessionDep, SettingsDep
from app.api.models import HealthPublic, WorkerPublic, WorkersPublic
from app.db.models import Run, RunState
from app.db.sweeps import as_utc, utcnow
from app.db.workers import is_live, list_workers, live_worker_count

router = APIRouter(tags=["health"])


@router.head("/healthz", operation_id="healthz_head", summary="Health, headers only (status code as GET)")
@router.get(
    "/healthz",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic, "description": "The database or the broker does not answer."}},
    summary="Health: database, broker, live workers",
)
def healthz(session: SessionDep, queue: QueueDep, settings: SettingsDep) -> JSONResponse:
    """200 while the API can serve (its database and broker answer), 503 otherwise. The body
    says `degraded` also when runs are queued and no worker has been seen for two heartbeat
    intervals: nothing will train them, but the API itself is fine (a container health
    check should not restart it for that)."""
    checks: dict[str, str] = {}
    live = queued = 0
    try:
        session.execute(text("SELECT 1"))
        live = live_worker_count(session, settings.heartbeat_seconds)
        queued = int(session.scalar(select(func.count()).where(Run.state == RunState.QUEUED)) or 0)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        queue.ping()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"error: {type(exc).__name__}"
    serving = all(v == "ok" for v in checks.values())
    detail = None
    if not serving:
        detail = "; ".join(f"{k} {v}" for k, v in checks.items() if v != "ok")
    elif queued and not live:
        detail = f"{queued} runs are queued and no worker has been seen for {2 * settings.heartbeat_seconds:g} s"
    body = HealthPublic(
        status="degraded" if detail else "ok", live_workers=live, queued_runs=queued, detail=detail, **checks
    )
    return JSONResponse(body.model_dump(), status_code=200 if serving else 503)


@router.get("/workers", response_model=WorkersPublic, summary="Worker heartbeats, live or stale")
def workers(session: SessionDep, settings: SettingsDep) -> WorkersPublic:
    """Every worker seen in the last day, most recently seen first: what it consumes, how many
    runs it holds, when it was last seen, and whether it is live."""
    now = utcnow()
    rows = [
        WorkerPublic(
            id=w.id,
            host=w.host,
            pid=w.pid,
            name=w.name,
            queues=[q for q in w.queues.split(",") if q],
            gpu=w.gpu,
            concurrency=w.concurrency,
            runs_in_hand=w.runs_in_hand,
            started_at=as_utc(w.started_at),
            last_seen=as_utc(w.last_seen),
            stopped_at=as_utc(w.stopped_at),
            live=is_live(w, now, settings.heartbeat_seconds),
        )
        for w in list_workers(session)
    ]
    return WorkersPublic(
        data=rows, count=len(rows), live=sum(w.live for w in rows), heartbeat_seconds=settings.heartbeat_seconds
    )
