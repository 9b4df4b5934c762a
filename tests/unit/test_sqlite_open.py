"""Processes that open a new SQLite database together (a server and its first worker, a sweep
and a test that watches it) all get it: switching a new file to WAL needs it alone, and SQLite
answers "database is locked" at once there, without its busy wait."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from app.db.session import make_engine


def test_connections_opening_a_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    failures: list[BaseException] = []
    for i in range(60):  # before the retry, about one round in eight failed
        url = f"sqlite:///{tmp_path / f'new{i}.db'}"
        engines = [make_engine(url) for _ in range(3)]
        start = threading.Barrier(len(engines))

        def connect(engine: object, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                with engine.connect() as conn:  # type: ignore[attr-defined]
                    mode = conn.execute(text("PRAGMA journal_mode")).scalar()
                    assert mode == "wal"
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=connect, args=(e,)) for e in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for engine in engines:
            engine.dispose()
    assert failures == []
