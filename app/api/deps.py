"""Dependencies: settings, a database session, the run queue (as `Annotated` aliases)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from app.api.tables import SweepTables
from app.queue import RunQueue
from app.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_factory(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.session_factory
    return factory


async def get_db(request: Request) -> AsyncIterator[Session]:
    """A session for the request. Async on purpose: creating and closing a session does no
    blocking work worth a thread (it connects on first use, inside the endpoint's thread),
    and a sync generator here costs two thread-pool hops per request."""
    session = get_factory(request)()
    try:
        yield session
    finally:
        session.close()


async def get_tables(request: Request, session: SessionDep) -> SweepTables:
    return SweepTables(session, request.app.state.cache)


def get_queue(request: Request) -> RunQueue:
    queue: RunQueue = request.app.state.queue
    return queue


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_db)]
FactoryDep = Annotated[sessionmaker[Session], Depends(get_factory)]
QueueDep = Annotated[RunQueue, Depends(get_queue)]
TablesDep = Annotated[SweepTables, Depends(get_tables)]
