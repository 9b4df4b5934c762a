"""Under load the API degrades, never fails: bounded database connections, 503 with Retry-After
when they are all in use, /healthz beside busy threads, /metrics, and slow clients dropped."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from app.api.main import create_app
from app.db.session import api_pool, request_sessions
from app.serve import server_config
from tests.utils.data import ASSET, tiny_sweep
from tests.utils.fakes import RecordingQueue
from tests.utils.processes import free_port, uvicorn_in_thread
from tests.utils.server import api_client, server_settings

READ_KEY = "load-read-key-0123456789"
WRITE_KEY = "load-write-key-0123456789"


@contextmanager
def loaded_client(root: Path, **settings: Any) -> Iterator[TestClient]:
    app = create_app(server_settings(root, **settings), queue=RecordingQueue(), reaper=False)
    with api_client(app) as client:
        yield client


def submit(client: TestClient, name: str) -> dict[str, Any]:
    response = client.post("/sweeps", json={"asset": ASSET, "config": tiny_sweep(output_subdir=name)})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def state(client: TestClient) -> Any:
    return client.app.state  # type: ignore[attr-defined]


def test_concurrent_reads_never_hold_more_connections_than_the_pool(root: Path) -> None:
    """64 reads at once on 2 API threads: each request holds a connection only while it has a
    session slot, so the pool's peak stays within the slots and nobody gets a 500."""
    with loaded_client(root, api_threads=2) as client:
        ids = [submit(client, f"s{i}")["id"] for i in range(6)]
        engine = state(client).engine
        in_use = peak = 0
        lock = threading.Lock()

        def checkout(*_: Any) -> None:
            nonlocal in_use, peak
            with lock:
                in_use += 1
                peak = max(peak, in_use)

        def checkin(*_: Any) -> None:
            nonlocal in_use
            with lock:
                in_use -= 1

        event.listen(engine, "checkout", checkout)
        event.listen(engine, "checkin", checkin)
        paths = ["/sweeps?limit=1000", f"/sweeps/{ids[0]}", f"/sweeps/{ids[-1]}/runs", "/healthz"] * 16
        started = time.perf_counter()
        with ThreadPoolExecutor(len(paths)) as pool:
            statuses = list(pool.map(lambda p: client.get(p).status_code, paths))
        elapsed = time.perf_counter() - started
    assert statuses == [200] * len(paths)
    assert 1 <= peak <= request_sessions(2)  # 4 connections at most, for 64 requests
    assert elapsed < 30


def test_an_exhausted_pool_answers_503_with_retry_after_not_500(root: Path) -> None:
    with loaded_client(root, api_threads=1, db_wait_seconds=0.3) as client:
        sweep_id = submit(client, "s")["id"]
        engine = state(client).engine
        held = [engine.connect() for _ in range(api_pool(1, 0.3).most)]  # every connection the pool has
        try:
            for path in ("/sweeps", f"/sweeps/{sweep_id}", "/workers"):
                started = time.perf_counter()
                response = client.get(path)
                elapsed = time.perf_counter() - started
                assert response.status_code == 503, (path, response.text)
                assert response.headers["retry-after"] == "1" and "busy" in response.json()["detail"]
                assert 0.25 < elapsed < 3
        finally:
            for conn in held:
                conn.close()
        assert client.get(f"/sweeps/{sweep_id}").status_code == 200


def test_requests_wait_for_a_free_session_then_get_503_with_retry_after(root: Path) -> None:
    with loaded_client(root, api_threads=1, db_wait_seconds=0.3) as client:
        slots: anyio.Semaphore = state(client).db_slots
        portal = client.portal
        assert portal is not None
        for _ in range(request_sessions(1)):
            portal.call(slots.acquire_nowait)  # every session slot taken
        started = time.perf_counter()
        response = client.get("/sweeps")
        elapsed = time.perf_counter() - started
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert 0.25 < elapsed < 3
        # A slot freed while a request waits goes to it: it is answered, not refused.
        waiting = ThreadPoolExecutor(1).submit(client.get, "/sweeps")
        for _ in range(100):
            if portal.call(lambda: slots.statistics().tasks_waiting):
                break
            time.sleep(0.01)
        portal.call(slots.release)
        assert waiting.result(timeout=5).status_code == 200
        portal.call(slots.release)


def test_a_cached_answer_needs_no_session(root: Path) -> None:
    """With SQLite a built answer is sent from the event loop: no session slot, no pool
    connection, no thread (app.api.deps.cached_json), so it answers when all are taken."""
    with loaded_client(root, api_threads=1, db_wait_seconds=0.3) as client:
        sweep_id = submit(client, "s")["id"]
        cached = [f"/sweeps/{sweep_id}", f"/sweeps/{sweep_id}/ranking"]
        built = {path: client.get(path).json() for path in cached}
        slots: anyio.Semaphore = state(client).db_slots
        portal = client.portal
        assert portal is not None
        for _ in range(request_sessions(1)):
            portal.call(slots.acquire_nowait)  # every session slot taken
        try:
            for path in cached:
                response = client.get(path)
                assert response.status_code == 200 and response.json() == built[path]
            assert client.get(f"/sweeps/{sweep_id}/runs").status_code == 503  # needs a session
            assert client.get(f"/sweeps/{sweep_id + 1}").status_code == 404  # read on the loop too
        finally:
            for _ in range(request_sessions(1)):
                portal.call(slots.release)
        # A change to the sweep: its answer is built again (with a session), not served stale.
        assert client.post(f"/sweeps/{sweep_id}/cancel").status_code == 200
        after = client.get(f"/sweeps/{sweep_id}")
        assert after.status_code == 200 and after.json()["status"] == "cancelled"


def test_healthz_answers_while_every_api_thread_is_busy(root: Path) -> None:
    with loaded_client(root, api_threads=2) as client:
        portal = client.portal
        assert portal is not None
        limiter = portal.call(anyio.to_thread.current_default_thread_limiter)
        tokens = [object(), object()]
        for token in tokens:
            portal.call(limiter.acquire_on_behalf_of_nowait, token)  # both API threads busy
        blocked = ThreadPoolExecutor(1).submit(client.get, "/sweeps")
        try:
            started = time.perf_counter()
            health = client.get("/healthz")
            elapsed = time.perf_counter() - started
            assert health.status_code == 200 and health.json()["database"] == "ok"
            assert elapsed < 2
            metrics = client.get("/metrics")
            assert metrics.status_code == 200 and "tftsweep_database_up 1.0" in metrics.text
            assert not blocked.done()  # the ordinary request waits for an API thread
        finally:
            for token in tokens:
                portal.call(limiter.release_on_behalf_of, token)
        assert blocked.result(timeout=10).status_code == 200


def test_a_cached_answer_needs_no_api_thread(root: Path) -> None:
    """The cached GETs (a sweep, its ranking) read the sweep's revision on the event loop
    (SQLite) and answer from the cache: no thread hop, the bulk of their cost."""
    with loaded_client(root, api_threads=1) as client:
        sweep_id = submit(client, "s")["id"]
        paths = [f"/sweeps/{sweep_id}", f"/sweeps/{sweep_id}/ranking"]
        built = {p: client.get(p) for p in paths}  # built once, on a thread
        portal = client.portal
        assert portal is not None
        limiter = portal.call(anyio.to_thread.current_default_thread_limiter)
        token = object()
        portal.call(limiter.acquire_on_behalf_of_nowait, token)  # the only API thread is busy
        try:
            started = time.perf_counter()
            asked = ThreadPoolExecutor(1).submit(lambda: {p: client.get(p) for p in paths})
            again = asked.result(timeout=5)  # a thread hop would wait for the busy thread
            elapsed = time.perf_counter() - started
        finally:
            portal.call(limiter.release_on_behalf_of, token)
    for path in paths:
        assert again[path].status_code == 200 and again[path].content == built[path].content
        assert again[path].headers["etag"] == built[path].headers["etag"]
    assert elapsed < 2


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def test_metrics_in_the_prometheus_text_format_per_route_template(root: Path) -> None:
    keys = f"read:{READ_KEY},write:{WRITE_KEY}"
    with loaded_client(root, api_keys=keys, api_threads=3) as client:
        write = {"X-API-Key": WRITE_KEY}
        read = {"Authorization": f"Bearer {READ_KEY}"}
        created = client.post("/sweeps", json={"asset": ASSET, "config": tiny_sweep()}, headers=write)
        assert created.status_code == 201
        sweep_id, runs = created.json()["id"], created.json()["total_runs"]
        for _ in range(3):
            assert client.get(f"/sweeps/{sweep_id}", headers=read).status_code == 200
        assert client.get("/sweeps/999", headers=read).status_code == 404
        assert client.get("/no/such/path", headers=read).status_code == 404
        assert client.get("/metrics").status_code == 401  # a key is needed, as on every GET
        started = time.perf_counter()
        response = client.get("/metrics", headers=read)
        elapsed = time.perf_counter() - started
    assert response.status_code == 200 and elapsed < 2
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(response.text)
    values = {(name, tuple(sorted(labels.items()))): value for name, labels, value in found}

    def value(name: str, **labels: str) -> float:
        return values[(name, tuple(sorted(labels.items())))]

    detail = {"method": "GET", "route": "/sweeps/{sweep_id}"}
    assert value("tftsweep_http_requests_total", **detail, status="200") == 3
    assert value("tftsweep_http_requests_total", **detail, status="404") == 1
    assert value("tftsweep_http_requests_total", method="GET", route="other", status="404") == 1
    assert value("tftsweep_http_requests_total", method="GET", route="other", status="401") == 1
    assert value("tftsweep_http_request_duration_seconds_count", **detail) == 4
    assert value("tftsweep_http_request_duration_seconds_bucket", **detail, le="+Inf") == 4
    routes = {labels["route"] for _, labels, _ in found if "route" in labels}
    assert not any(r.startswith("/sweeps/") and "{" not in r for r in routes), routes  # templates, never raw paths
    assert value("tftsweep_runs", state="queued") == runs and value("tftsweep_runs", state="succeeded") == 0
    assert value("tftsweep_queue_depth") == runs and value("tftsweep_live_workers") == 0
    assert value("tftsweep_database_up") == 1
    assert value("tftsweep_db_pool_connections_max") == api_pool(3, 10).most
    assert 0 <= value("tftsweep_db_pool_connections_in_use") <= api_pool(3, 10).most
    assert value("tftsweep_db_sessions_max") == request_sessions(3)
    assert value("tftsweep_db_sessions_waiting") == 0
    assert value("tftsweep_http_requests_in_flight") == 1  # the scrape itself


# -- uvicorn as `tftsweep serve` configures it: read deadline, keep-alive, concurrency limit ----------


async def echo_body(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A tiny ASGI app: reads the whole body, answers its length."""
    if scope["type"] == "lifespan":
        for phase in ("startup", "shutdown"):
            assert (await receive())["type"] == f"lifespan.{phase}"
            await send({"type": f"lifespan.{phase}.complete"})
        return
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def served(tmp_path: Path) -> Iterator[int]:
    """`echo_body` behind uvicorn with serve's config: 0.5 s to send a request, 3 connections."""
    settings = server_settings(tmp_path, request_read_timeout_seconds=0.5, max_connections=3, keep_alive_seconds=1)
    port = free_port()
    with uvicorn_in_thread(server_config(echo_body, "127.0.0.1", port, "warning", settings), timeout=10):
        yield port


def until_closed(sock: socket.socket, limit: float = 5) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    sock.settimeout(limit)
    started, received = time.perf_counter(), b""
    while chunk := sock.recv(4096):
        received += chunk
    return received, time.perf_counter() - started


@pytest.mark.parametrize("sent", [b"", b"GET /sweeps HT", b"GET /sweeps HTTP/1.1\r\nHost: 127.0.0.1\r\n"])
def test_a_client_that_does_not_finish_its_request_gets_408_and_is_dropped(served: int, sent: bytes) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(sent)
        received, elapsed = until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408 ") and elapsed < 3


def test_a_stalled_body_is_dropped_and_a_slow_but_steady_one_is_served(served: int) -> None:
    head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n"
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(head + b"abc")  # 3 of 10 bytes, then nothing
        received, elapsed = until_closed(sock)
    assert received == b"" and elapsed < 3
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(head[:20])
        for piece in (head[20:], b"abcde", b"fghij"):  # each piece well within the deadline
            time.sleep(0.2)
            sock.sendall(piece)
        answer, _ = until_closed(sock)  # the answer, then the keep-alive deadline
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n10")


def test_an_idle_kept_alive_connection_is_closed(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received, elapsed = until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200 ") and 0.5 < elapsed < 3  # keep-alive 1 s


def test_past_the_connection_limit_the_answer_is_503_with_retry_after(served: int) -> None:
    with (
        socket.create_connection(("127.0.0.1", served)),
        socket.create_connection(("127.0.0.1", served)),
        socket.create_connection(("127.0.0.1", served)) as third,
    ):
        started = time.perf_counter()
        third.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received, _ = until_closed(third)
        elapsed = time.perf_counter() - started
    assert received.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1\r\n" in received.lower()
    assert elapsed < 3
