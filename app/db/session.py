"""Engines and sessions: SQLite (WAL, busy timeout) by default, PostgreSQL via DATABASE_URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from app.db.revisions import install_revision_listeners

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_POOL_SIZE = 16  # above the API's threads (TFTSWEEP_API_THREADS), where its handlers run


def make_engine(url: str, *, pooled: bool = True) -> Engine:
    """An engine for `url`; SQLite connections get WAL, a busy timeout and foreign keys.

    `pooled=False` opens a connection per use and keeps none open (a heartbeat thread in a
    process that forks must not hand its connections to the children).
    """
    pool: dict[str, Any] = {"poolclass": NullPool} if not pooled else {}
    if url.startswith("sqlite"):
        if pooled:
            # A pooled connection per API thread: past the pool, SQLAlchemy opens and closes
            # a connection per checkout (with the pragmas below), which a loaded API pays per request.
            pool = {"pool_size": SQLITE_POOL_SIZE, "max_overflow": 8}
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}, **pool
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions of the app: objects stay readable after commit; sweep revisions bump at commit."""
    factory = sessionmaker(engine, expire_on_commit=False)
    install_revision_listeners(factory)
    return factory


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
