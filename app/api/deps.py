"""Dependencies: settings, a database session, the run queue (as `Annotated` aliases); the
API's engines and the probe threads that /healthz and /metrics use beside the API's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, HTTPException, Query, Request, Response, status
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State

from app.api.cache import cached_answer
from app.api.tables import SweepHead, SweepTables, head_on_loop
from app.db.session import api_pool, make_engine, make_loop_reader, make_probe_engine, request_sessions
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
    the loop reader of cached answers (SQLite). Kept on the app's `state`; returns the API's
    engine."""
    state.pool = api_pool(settings.api_threads, settings.db_wait_seconds)
    state.engine = make_engine(settings.db_url, pool=state.pool)
    state.db_slot_count = request_sessions(settings.api_threads)
    state.db_slots = anyio.Semaphore(state.db_slot_count)
    state.probe_engine = make_probe_engine(settings.db_url, settings.health_timeout_seconds)
    state.probe_threads = anyio.CapacityLimiter(PROBE_THREADS)
    state.loop_reader = make_loop_reader(settings.db_url)  # cached answers read on the loop (SQLite)
    engine: Engine = state.engine
    return engine


def close_database(state: State) -> None:
    state.engine.dispose()
    state.probe_engine.dispose()
    if state.loop_reader is not None:
        state.loop_reader.close()


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_factory(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.session_factory
    return factory


async def get_db(request: Request) -> AsyncIterator[Session]:
    """A session for the endpoint, closed (its connection back in the pool) as soon as the
    endpoint and the encoding of its answer are done, before the answer is sent (function
    scope, below): a slow client never holds a connection. See `request_session`."""
    async with request_session(request) as session:
        yield session


@asynccontextmanager
async def request_session(request: Request) -> AsyncIterator[Session]:
    """A session of the request, in one of the app's session slots.

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


async def cached_json(
    request: Request,
    sweep_id: int,
    key_of: Callable[[SweepHead], tuple[Any, ...]],
    build: Callable[[SweepTables], bytes],
) -> Response:
    """The JSON answer of a sweep's cached GET: `key_of` its head (what changes in the sweep)
    names the answer, `build` makes it from the sweep's tables on a miss.

    A built answer is sent from the event loop with no session, no thread and no dependency
    (SQLite: the head is read on the loop, app.api.tables.head_on_loop), which
    is most of a cached answer's cost (docs/benchmarks.md). Otherwise the head is read, and
    the answer built, on one API thread with a session of the request."""
    state = request.app.state
    head = head_on_loop(state.loop_reader, sweep_id)
    if head is not None:
        found = cached_answer(request, state.cache, key_of(head))
        if found is not None:
            return found
    async with request_session(request) as session:
        tables = SweepTables(session, state.cache)

        def answer() -> Response:
            return tables.answer(request, key_of(head or tables.head(sweep_id)), lambda: build(tables))

        return await run_in_threadpool(answer)


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
    return SweepTables(session, request.app.state.cache)


def get_queue(request: Request) -> RunQueue:
    queue: RunQueue = request.app.state.queue
    return queue


Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=2**62, description="Rows to skip.")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_db, scope="function")]
FactoryDep = Annotated[sessionmaker[Session], Depends(get_factory)]
QueueDep = Annotated[RunQueue, Depends(get_queue)]
TablesDep = Annotated[SweepTables, Depends(get_tables)]
