"""Engines and sessions: SQLite (WAL, busy timeout) by default, PostgreSQL via DATABASE_URL."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Executable, Row, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from app.db.revisions import install_revision_listeners

SQLITE_BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class PoolSize:
    """Connections an engine keeps open (`size`), may open beyond them (`overflow`), and how
    long a checkout waits for one before `sqlalchemy.exc.TimeoutError` (`timeout`, seconds)."""

    size: int
    overflow: int
    timeout: float = 30.0

    @property
    def most(self) -> int:
        return self.size + self.overflow


# A process other than the API (a worker, a CLI command): a handful of threads at most.
DEFAULT_POOL = PoolSize(size=16, overflow=8)


def request_sessions(threads: int) -> int:
    """Requests of the API that may hold a database session at once: two per API thread (one
    running its handler, one waiting for a thread to encode its answer), so every thread has
    work and the pool is never asked for more than it holds (app.api.deps)."""
    return 2 * threads


def api_pool(threads: int, timeout: float) -> PoolSize:
    """The API's pool: a connection for each request that may hold a session and one for the
    reaper; overflow for the threads that open a session of their own beside it (services
    called with the session factory, background tasks). /healthz and /metrics use a probe
    engine of their own (`make_probe_engine`)."""
    return PoolSize(size=request_sessions(threads) + 1, overflow=threads, timeout=timeout)


def make_engine(url: str, *, pooled: bool = True, pool: PoolSize = DEFAULT_POOL) -> Engine:
    """An engine for `url`; SQLite connections get WAL, a busy timeout and foreign keys.

    `pooled=False` opens a connection per use and keeps none open (a heartbeat thread in a
    process that forks must not hand its connections to the children). `pool` sizes the
    pool (SQLite and PostgreSQL alike): past it a checkout waits `pool.timeout` seconds.
    """
    options: dict[str, Any] = (
        {"pool_size": pool.size, "max_overflow": pool.overflow, "pool_timeout": pool.timeout}
        if pooled
        else {"poolclass": NullPool}
    )
    if url.startswith("sqlite"):
        return _sqlite_engine(url, SQLITE_BUSY_TIMEOUT_MS, options)
    return create_engine(url, pool_pre_ping=True, **options)


def make_probe_engine(url: str, timeout: float) -> Engine:
    """A small engine of its own for health checks and metrics, so that they answer while the
    API's pool is busy: one connection (two at most), a checkout waits `timeout` seconds, and
    a statement waits no longer than that for a lock (SQLite busy timeout, PostgreSQL
    `statement_timeout` and `connect_timeout`)."""
    options: dict[str, Any] = {"pool_size": 1, "max_overflow": 1, "pool_timeout": timeout}
    if url.startswith("sqlite"):
        return _sqlite_engine(url, int(timeout * 1000), options)
    connect: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect = {"connect_timeout": max(1, round(timeout)), "options": f"-c statement_timeout={int(timeout * 1000)}"}
    return create_engine(url, pool_pre_ping=True, connect_args=connect, **options)


def make_loop_reader(url: str) -> LoopReader | None:
    """For SQLite, a reader whose reads may run on the API's event loop: one connection
    (the loop reads one statement at a time) and no busy timeout, so a read that would wait
    for a lock fails at once (the caller retries it on a thread). In WAL mode readers never
    wait for writers, so that is rare. None for a server database: a network round trip
    does not belong on the loop."""
    if not url.startswith("sqlite"):
        return None
    return LoopReader(_sqlite_engine(url, 0, {"pool_size": 1, "max_overflow": 0, "pool_timeout": 1}))


class LoopReader:
    """One-row reads on the API's event loop (SQLite), through one connection kept open: a
    checkout from a pool per read costs as much as the read. Each read ends its transaction at
    once, so it never holds a snapshot (a later read sees later commits) nor blocks a
    checkpoint. Only the loop's thread uses it, one statement at a time.

    Raises (from `one_or_none`) `sqlalchemy.exc.OperationalError` at once where the read
    would wait for a lock (no busy timeout: the caller reads on a thread instead)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    def one_or_none(self, statement: Executable, params: dict[str, Any]) -> Row[Any] | None:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.engine.connect()
        try:
            return self._conn.execute(statement, params).one_or_none()
        finally:
            self._conn.rollback()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self.engine.dispose()


def _sqlite_engine(url: str, busy_ms: int, options: dict[str, Any]) -> Engine:
    engine = create_engine(url, connect_args={"timeout": busy_ms / 1000, "check_same_thread": False}, **options)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        _enter_wal(cur, busy_ms)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


def _enter_wal(cur: Any, busy_ms: int) -> None:
    """`PRAGMA journal_mode=WAL`, retried while another connection holds the database: the
    switch of a new database file to WAL needs it alone, and SQLite answers "database is
    locked" at once there, without its busy wait (two processes opening a new database
    together, e.g. a server and its first worker, saw it one time in eight). Waits at most
    `busy_ms` (at least a second), as any other statement would."""
    deadline = time.monotonic() + max(busy_ms, 1000) / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


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
