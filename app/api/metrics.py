"""`GET /metrics`: the API's load in the Prometheus text format, for a team's Prometheus and Grafana.

Per request, an ASGI middleware counts answers by method, route and status and times them
in a histogram by method and route. The route is the template the request matched
(`/sweeps/{sweep_id}`), never the raw path, so the number of series stays bounded; requests
answered before routing (refused by the host, key or body checks) or matching no route
count as `other`. Per scrape, on a probe thread and the probe engine (as /healthz): runs by
state, the queue's depth and the live workers from the database; the pool's connections
and the request sessions in use from the process.

Series (every name starts with `tftsweep_`):

    http_requests_total{method,route,status}      answers sent
    http_request_duration_seconds{method,route}   latency histogram, first byte in to last byte out
    http_requests_in_flight                       requests being handled now
    runs{state}                                   runs per state (queued, running, succeeded, ...)
    queue_depth                                   runs waiting for a worker (state queued)
    live_workers                                  workers with a heartbeat younger than two intervals
    database_up                                   1 when this scrape's database read answered in time
    db_pool_connections_in_use / _max             the API's pool: checked out, and the most it opens
    db_sessions_in_use / _max / _waiting          request sessions held, their limit, requests waiting
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.deps import probe
from app.db.models import Run, RunState
from app.db.workers import live_worker_count

PREFIX = "tftsweep_"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"
# Latency buckets (seconds): cached answers take milliseconds, report builds and uploads seconds.
# No `_created` series beside each counter and histogram (Prometheus does not need them): half
# the lines per scrape. A process-wide switch of prometheus-client; this process is the API.
disable_created_metrics()  # type: ignore[no-untyped-call]

BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class ApiMetrics:
    """The app's own registry (one per app, so tests can build many) and its request series."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=False))

    def __post_init__(self) -> None:
        self.requests = Counter(
            f"{PREFIX}http_requests",
            "HTTP answers sent, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}http_request_duration_seconds",
            "Time from a request's arrival to the last byte of its answer, by method and route template.",
            ["method", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            f"{PREFIX}http_requests_in_flight", "Requests being handled now.", registry=self.registry
        )
        # Label children, looked up once per (method, route[, status]): the hot path is a dict get.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(method, route, str(status))
        counter.inc()
        histogram = self._histograms.get(key[:2])
        if histogram is None:
            histogram = self._histograms[key[:2]] = self.latency.labels(method, route)
        histogram.observe(seconds)


class MetricsMiddleware:
    """Counts and times every HTTP request (outermost, so refusals count too)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, timed_send)
        finally:
            self.metrics.in_flight.dec()
            method = scope["method"] if scope["method"] in METHODS else OTHER
            # The router puts the matched route in the scope (the request's own dict, shared down the stack).
            route = getattr(scope.get("route"), "path", None) or OTHER
            self.metrics.observe(method, route, status, time.perf_counter() - started)


@dataclass(frozen=True)
class DatabaseFacts:
    runs: dict[str, int]
    live_workers: int


def database_facts(engine: Engine, heartbeat_seconds: float) -> DatabaseFacts:
    """Runs per state and live workers, read through the probe engine."""
    with Session(engine) as session:
        rows = session.execute(select(Run.state, func.count()).group_by(Run.state)).all()
        live = live_worker_count(session, heartbeat_seconds)
    runs = {str(state): 0 for state in RunState} | {str(state): int(n) for state, n in rows}
    return DatabaseFacts(runs=runs, live_workers=live)


class _Snapshot(Collector):
    """The gauges read at one scrape (a collector per scrape: concurrent scrapes never mix)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}{name}", documentation, value=value)


def snapshot(
    facts: DatabaseFacts | None, engine: Engine, most_connections: int, slots: anyio.Semaphore, slot_count: int
) -> list[Metric]:
    """The scrape-time series: database facts (when read in time), the pool and the session slots."""
    families: list[Metric] = [
        _gauge("database_up", "1 when this scrape's database read answered in time, else 0.", bool(facts))
    ]
    if facts is not None:
        runs = GaugeMetricFamily(f"{PREFIX}runs", "Runs per state.", labels=["state"])
        for state, count in facts.runs.items():
            runs.add_metric([state], count)
        families += [
            runs,
            _gauge("queue_depth", "Runs waiting for a worker (state queued).", facts.runs[RunState.QUEUED]),
            _gauge("live_workers", "Workers whose heartbeat is younger than two intervals.", facts.live_workers),
        ]
    pool = engine.pool
    if isinstance(pool, QueuePool):
        families += [
            _gauge("db_pool_connections_in_use", "The API's database connections checked out.", pool.checkedout()),
            _gauge(
                "db_pool_connections_max",
                "The most connections the API's pool opens (size + overflow).",
                most_connections,
            ),
        ]
    families += [
        _gauge("db_sessions_in_use", "Requests holding a database session.", slot_count - slots.value),
        _gauge("db_sessions_max", "Requests that may hold a database session at once.", slot_count),
        _gauge(
            "db_sessions_waiting",
            "Requests waiting for a database session (503 after TFTSWEEP_DB_WAIT_SECONDS).",
            slots.statistics().tasks_waiting,
        ),
    ]
    return families


router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE_PLAIN_0_0_4: {"schema": {"type": "string"}}},
            "description": "Prometheus text format (version 0.0.4).",
        }
    },
    summary="Metrics in the Prometheus text format (requests, latency, runs, queue, workers, pool)",
)
async def metrics(request: Request) -> Response:
    """Request counts and latency per route, runs per state, queue depth, live workers and the
    database pool, for Prometheus (needs a read key when keys are configured: `Authorization:
    Bearer KEY`). The database part is read on a probe thread within
    `TFTSWEEP_HEALTH_TIMEOUT_SECONDS`; when it does not answer, `tftsweep_database_up` is 0
    and the database series are left out of that scrape."""
    state = request.app.state
    facts: DatabaseFacts | None
    try:
        facts = await probe(request, partial(database_facts, state.probe_engine, state.settings.heartbeat_seconds))
    except Exception:  # reported as database_up 0; /healthz says why
        facts = None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(snapshot(facts, state.engine, state.pool.most, state.db_slots, state.db_slot_count)))
    api_metrics: ApiMetrics = state.metrics
    body = generate_latest(api_metrics.registry) + generate_latest(registry)
    return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)
