"""Dependencies: settings, a database session, the run queue (as `Annotated` aliases); the
API's engines and the probe threads that /healthz and /metrics use beside the API's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import State

from app.api.tables import SweepTables
from app.db.session import api_pool, make_engine, make_loop_engine, make_probe_engine, request_sessions
from app.queue import RunQueue
from app.settings import Settings

T = TypeVar("T")

# What a client told "busy" should wait before it asks again.
RETRY_AFTER_SECONDS = 1
# Threads for /healthz and /metrics beside the API's (a scrape and a health check at once).
PROBE_THREADS = 4


def open_database(state: State, settings: Settings) -> Engine:
    """The API's engine, its pool sized from `settings.api_threads`, and the request session
    slots that keep demand within it; the probe engine and threads of /healthz and /metrics;
    the loop engine of cached answers (SQLite). Kept on the app's `state`; returns the API's
    engine."""
    state.pool = api_pool(settings.api_threads, settings.db_wait_seconds)
    state.engine = make_engine(settings.db_url, pool=state.pool)
    state.db_slot_count = request_sessions(settings.api_threads)
    state.db_slots = anyio.Semaphore(state.db_slot_count)
    state.probe_engine = make_probe_engine(settings.db_url, settings.health_timeout_seconds)
    state.probe_threads = anyio.CapacityLimiter(PROBE_THREADS)
    state.loop_engine = make_loop_engine(settings.db_url)  # cached answers read on the loop (SQLite)
    engine: Engine = state.engine
    return engine


def close_database(state: State) -> None:
    state.engine.dispose()
    state.probe_engine.dispose()
    if state.loop_engine is not None:
        state.loop_engine.dispose()


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_factory(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.session_factory
    return factory


async def get_db(request: Request) -> AsyncIterator[Session]:
    """A session for the endpoint, closed (its connection back in the pool) as soon as the
    endpoint and the encoding of its answer are done, before the answer is sent (function
    scope, below): a slow client never holds a connection.

    A request first takes one of the app's session slots (`db_slots`, sized with the pool in
    app.db.session), so however many requests arrive the pool is never asked for more
    connections than it holds; past `TFTSWEEP_DB_WAIT_SECONDS` of waiting for a slot the
    answer is 503 with Retry-After. Async on purpose: taking a slot and closing a session do
    no blocking work worth a thread (the session connects on first use, inside the
    endpoint's thread), and a sync generator here costs two thread-pool hops per request.
    """
    slots: anyio.Semaphore = request.app.state.db_slots
    try:
        slots.acquire_nowait()
    except anyio.WouldBlock:
        await _wait_for_slot(slots, request.app.state.settings.db_wait_seconds)
    try:
        session = get_factory(request)()
        try:
            yield session
        finally:
            session.close()
    finally:
        slots.release()


async def _wait_for_slot(slots: anyio.Semaphore, seconds: float) -> None:
    try:
        with anyio.fail_after(seconds):
            await slots.acquire()
    except TimeoutError:
        raise database_busy(seconds) from None


def database_busy(seconds: float) -> HTTPException:
    """503 with Retry-After: every database session was in use for `seconds`."""
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"the server is busy: no database connection came free within {seconds:g} s; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def probe(request: Request, call: Callable[[], T]) -> T:
    """`call()` on one of the app's probe threads (not the API's), within
    `TFTSWEEP_HEALTH_TIMEOUT_SECONDS`: health checks and metrics answer while every API thread
    is busy.

    Raises:
        TimeoutError: no answer in time (the thread is left to finish; its database waits
            are bounded by the same timeout, app.db.session.make_probe_engine).
    """
    state = request.app.state
    with anyio.fail_after(state.settings.health_timeout_seconds):
        return await anyio.to_thread.run_sync(call, limiter=state.probe_threads, abandon_on_cancel=True)


async def get_tables(request: Request, session: SessionDep) -> SweepTables:
    return SweepTables(session, request.app.state.cache, request.app.state.loop_engine)


def get_queue(request: Request) -> RunQueue:
    queue: RunQueue = request.app.state.queue
    return queue


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_db, scope="function")]
FactoryDep = Annotated[sessionmaker[Session], Depends(get_factory)]
QueueDep = Annotated[RunQueue, Depends(get_queue)]
TablesDep = Annotated[SweepTables, Depends(get_tables)]
