"""Lock order on PostgreSQL: run rows first, the sweep row last, so concurrent writers never deadlock."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from app.db.lifecycle import claim_run, fail_sweep, finish_run
from app.db.migrate import upgrade_database
from app.db.models import Run, Sweep
from app.db.session import make_engine, make_session_factory, session_scope
from app.service.submission import record_submission
from core.config import validate_sweep_config
from tests.utils.data import ASSET, tiny_sweep
from tests.utils.processes import create_postgres_database
from tests.utils.services import service_url

pytestmark = [pytest.mark.e2e]


def test_a_failure_cancelling_queued_runs_does_not_deadlock_with_a_claim() -> None:
    """Worker 1's run fails (fail-fast: its transaction cancels the queued runs) while worker
    2 claims one of those runs. Had the failure locked the sweep row before the run rows,
    the two transactions would wait for each other and PostgreSQL would abort one."""
    url = create_postgres_database(service_url("TFTSWEEP_TEST_DATABASE_URL"))
    upgrade_database(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        result = record_submission(session, ASSET, validate_sweep_config(tiny_sweep(replica_seeds=[1, 2])))
        sweep_id, (failing, claimed, *rest) = result.sweep_id, result.new_run_ids
    with session_scope(factory) as session:
        assert claim_run(session, failing, "w1", 60)

    errors: list[BaseException] = []
    first = factory()
    assert finish_run(first, failing, "w1", error="RuntimeError: boom")
    first.flush()

    def second_worker() -> None:
        try:
            with session_scope(factory) as session:
                assert claim_run(session, claimed, "w2", 60)
                time.sleep(0.5)  # the first transaction is now waiting for this run's row
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=second_worker)
    thread.start()
    time.sleep(0.2)
    try:
        fail_sweep(first, first.get_one(Sweep, sweep_id), "run failed")
        first.commit()
    finally:
        first.close()
        thread.join()
    assert errors == []
    with session_scope(factory) as session:
        states = {r.id: r.state for r in session.execute(select(Run.id, Run.state).where(Run.sweep_id == sweep_id))}
        revision = session.get_one(Sweep, sweep_id).revision
    assert states[failing] == "failed" and states[claimed] == "running"
    assert all(states[r] == "cancelled" for r in rest)
    assert revision == 3  # the two claims and the failure, each transaction once (a new sweep starts at 0)
    engine.dispose()


def test_concurrent_submissions_of_one_sweep_are_serialised() -> None:
    """Four creations of the same new sweep, then four merges adding the same value, at once:
    each is created, merged or refused (SweepExists), never a unique-key violation."""
    from core.errors import SweepExists

    url = create_postgres_database(service_url("TFTSWEEP_TEST_DATABASE_URL"))
    upgrade_database(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    results: list[object] = []

    def submit(config: dict[str, object], merge: bool) -> None:
        try:
            with session_scope(factory) as session:
                done = record_submission(session, ASSET, validate_sweep_config(config), merge=merge)
                results.append(len(done.new_run_ids))
                time.sleep(0.2)  # hold the transaction open: the others must wait, not collide
        except SweepExists:
            results.append("exists")
        except BaseException as exc:  # reported below
            results.append(exc)

    def at_once(config: dict[str, object], merge: bool) -> list[object]:
        results.clear()
        threads = [threading.Thread(target=submit, args=(config, merge)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        return sorted(results, key=str)

    assert at_once(tiny_sweep(), merge=False) == [2, "exists", "exists", "exists"]
    assert at_once(tiny_sweep(param_ranges={"hidden_size": [4, 6, 8]}), merge=True) == [0, 0, 0, 1]
    with session_scope(factory) as session:
        assert len(session.scalars(select(Run.id)).all()) == 3
    engine.dispose()
