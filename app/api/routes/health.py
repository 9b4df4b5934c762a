"""/healthz (the API, its database and broker, live workers) and /workers (every worker's heartbeat)."""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.api.deps import SessionDep, SettingsDep, probe
from app.api.models import HealthPublic, WorkerPublic, WorkersPublic
from app.db.models import Run, RunState
from app.db.sweeps import as_utc, utcnow
from app.db.workers import is_live, list_workers, live_worker_count
from app.queue import RunQueue
from app.settings import Settings

router = APIRouter(tags=["health"])


def _database_facts(engine: Engine, heartbeat_seconds: float) -> tuple[int, int]:
    """(live workers, queued runs), read through the probe engine."""
    with Session(engine) as session:
        live = live_worker_count(session, heartbeat_seconds)
        queued = int(session.scalar(select(func.count()).where(Run.state == RunState.QUEUED)) or 0)
    return live, queued


@router.head("/healthz", operation_id="healthz_head", summary="Health, headers only (status code as GET)")
@router.get(
    "/healthz",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic, "description": "The database or the broker does not answer."}},
    summary="Health: database, broker, live workers",
)
async def healthz(request: Request) -> JSONResponse:
    """200 while the API can serve (its database and broker answer), 503 otherwise. The body
    says `degraded` also when runs are queued and no worker has been seen for two heartbeat
    intervals: nothing will train them, but the API itself is fine (a container health
    check should not restart it for that).

    Never waits behind other requests: both checks run at once on threads and a database
    connection of their own (not the API's), each within `TFTSWEEP_HEALTH_TIMEOUT_SECONDS`
    (a check that misses it is an error)."""
    state = request.app.state
    settings: Settings = state.settings
    queue: RunQueue = state.queue
    checks: dict[str, str] = {}
    found: dict[str, Any] = {}

    async def check(name: str, call: Any) -> None:
        try:
            found[name] = await probe(request, call)
            checks[name] = "ok"
        except TimeoutError:
            checks[name] = f"error: no answer within {settings.health_timeout_seconds:g} s"
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}"

    async with anyio.create_task_group() as group:
        group.start_soon(check, "database", partial(_database_facts, state.probe_engine, settings.heartbeat_seconds))
        group.start_soon(check, "broker", queue.ping)
    live, queued = found.get("database", (0, 0))
    serving = all(v == "ok" for v in checks.values())
    detail = None
    if not serving:
        detail = "; ".join(f"{k} {checks[k]}" for k in ("database", "broker") if checks[k] != "ok")
    elif queued and not live:
        detail = f"{queued} runs are queued and no worker has been seen for {2 * settings.heartbeat_seconds:g} s"
    body = HealthPublic(
        status="degraded" if detail else "ok",
        live_workers=live,
        queued_runs=queued,
        detail=detail,
        database=checks["database"],
        broker=checks["broker"],
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
