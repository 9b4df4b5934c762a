"""`tftsweep serve`: the HTTP API under uvicorn in this process, its keys checked and its
database migrated first, and, when asked, an embedded Celery worker kept alive beside it.

The worker's supervisor is the worker package's (`worker.supervisor.WorkerSupervisor`): the
command line passes it in, as the trainer is passed to the run pipeline, so this package
never imports worker code.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from app.settings import Settings, get_settings

if TYPE_CHECKING:
    import uvicorn


class EmbeddedWorker(Protocol):
    """A supervised worker: started before the server, stopped after it."""

    def start(self) -> None: ...
    def wait_started(self) -> None: ...
    def stop(self) -> None: ...


# Builds the embedded worker from the settings and the call that stops the server when the
# worker cannot be kept alive (with why).
StartWorker = Callable[[Settings, Callable[[str], None]], EmbeddedWorker]


def server_config(app: Any, host: str, port: int, loglevel: str, settings: Settings) -> uvicorn.Config:
    """uvicorn's settings for `serve`: slow clients are dropped (a deadline on reading each
    request, `TFTSWEEP_REQUEST_READ_TIMEOUT_SECONDS`; idle keep-alive connections closed after
    `TFTSWEEP_KEEP_ALIVE_SECONDS`), and past `TFTSWEEP_MAX_CONNECTIONS` open connections or
    requests in progress the answer is 503 with Retry-After."""
    import uvicorn

    from app.http_protocol import read_timeout_protocol

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=loglevel.lower(),
        timeout_graceful_shutdown=10,
        http=read_timeout_protocol(settings.request_read_timeout_seconds),
        timeout_keep_alive=settings.keep_alive_seconds,
        limit_concurrency=settings.max_connections,
    )


def serve(host: str, port: int, loglevel: str, worker: StartWorker | None = None) -> int:
    """Run the API in this process and, with `worker`, the embedded Celery worker it starts
    beside it, until interrupted (exit 0) or the worker cannot be kept alive (exit 1)."""
    import uvicorn

    from app.api.main import create_app
    from app.api.security import is_loopback, parse_api_keys
    from app.db.migrate import upgrade_database

    settings = get_settings()
    try:
        keys = parse_api_keys(settings.api_keys)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not keys and not is_loopback(host):
        print(
            f"error: refusing to listen on {host} without API keys; set TFTSWEEP_API_KEYS (read:KEY,write:KEY) "
            "or bind to 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    if not keys:
        print("tftsweep: no API keys configured; listening on loopback only", flush=True)
    settings.data_root.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings.db_url)
    broker = settings.redis_url or f"filesystem ({settings.broker_dir})"
    database = settings.db_url.split("@")[-1] if "@" in settings.db_url else settings.db_url
    print(f"tftsweep: data {settings.data_root}; database {database}; broker {broker}", flush=True)
    server = uvicorn.Server(server_config(create_app(settings), host, port, loglevel, settings))
    gave_up: list[str] = []

    def give_up(why: str) -> None:
        gave_up.append(why)
        server.should_exit = True

    supervisor = worker(settings, give_up) if worker is not None else None
    if supervisor is not None:
        supervisor.start()
        supervisor.wait_started()
    # uvicorn re-raises the signal that stopped it once it is done; SIGTERM is a normal stop
    # here (the worker is stopped below, then exit 0), not a death by signal.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    try:
        server.run()
    finally:
        if supervisor is not None:
            supervisor.stop()
    if gave_up:
        print(f"error: {gave_up[0]}", file=sys.stderr)
        return 1
    return 0
