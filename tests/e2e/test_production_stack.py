"""The same end-to-end sweep on the production stack: Redis broker and PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.utils.data import make_data_root
from tests.utils.processes import ServerProcess, check_full_sweep_and_merge, create_postgres_database
from tests.utils.services import service_url

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    redis_url = service_url("TFTSWEEP_TEST_REDIS_URL")
    # The Redis server outlives test runs: messages an earlier run left (duplicates the reaper
    # sent, a reports task) would reach this run's worker and name its sweeps and runs.
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    database_url = create_postgres_database(service_url("TFTSWEEP_TEST_DATABASE_URL"))
    root = make_data_root(tmp_path_factory.mktemp("prod") / "data")
    proc = ServerProcess(root, env={"REDIS_URL": redis_url, "DATABASE_URL": database_url}).start()
    yield proc
    proc.stop()


def test_full_sweep_on_redis_and_postgres(server: ServerProcess) -> None:
    health = server.client.get("/healthz").json()
    assert (health["status"], health["database"], health["broker"]) == ("ok", "ok", "ok")
    assert server.wait(lambda: server.client.get("/healthz").json()["live_workers"] == 1, 60, "a live worker")
    check_full_sweep_and_merge(server)
    assert not (server.root / "tftsweep.db").exists()  # the SQLite default was not used
    assert not (server.root / "broker").exists()  # nor the filesystem broker
