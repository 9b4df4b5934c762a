"""`tftsweep serve` (API + an embedded worker) and `tftsweep worker` (Celery workers, one per GPU)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from app.queue import CPU_QUEUE, GPU_QUEUE
from app.settings import get_settings

log = logging.getLogger("tftsweep.serve")

WORKER_STOP_SECONDS = 20.0


def celery_worker_argv(concurrency: int, queues: Sequence[str], name: str, loglevel: str) -> list[str]:
    """The Celery worker command line: prefork, one task at a time per process (prefetch 1)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "--quiet",
        "-A",
        "worker.celery_app",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "--queues",
        ",".join(queues),
        "--hostname",
        name,
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
        "--prefetch-multiplier",
        "1",
    ]


def start_workers(
    concurrency: int, queues: Sequence[str], gpus: Sequence[str], loglevel: str
) -> list[subprocess.Popen[bytes]]:
    """One Celery worker process per GPU (`CUDA_VISIBLE_DEVICES`), or one for the CPU."""
    host = socket.gethostname()
    procs = []
    devices: list[str | None] = list(gpus) or [None]
    for gpu in devices:
        env = dict(os.environ)
        env["TFTSWEEP_WORKER_CONCURRENCY"] = str(concurrency)
        name = f"tftsweep-cpu@{host}"
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
            name = f"tftsweep-gpu{gpu}@{host}"
        procs.append(
            subprocess.Popen(
                celery_worker_argv(concurrency, queues, name, loglevel), env=env, preexec_fn=_die_with_parent
            )
        )
    return procs


def _die_with_parent() -> None:
    """Linux: the worker gets SIGTERM (a warm shutdown) if `serve` dies without stopping it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def stop_workers(procs: list[subprocess.Popen[bytes]], timeout: float = WORKER_STOP_SECONDS) -> None:
    """SIGTERM (Celery's warm shutdown), then SIGKILL after `timeout`; the reaper re-queues what was cut."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses only this machine can reach."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(host: str, port: int, concurrency: int, loglevel: str) -> int:
    """Run the API in this process and an embedded Celery worker beside it, until interrupted."""
    import uvicorn

    from app.api.main import create_app
    from app.api.security import parse_api_keys
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
    procs = start_workers(concurrency, [GPU_QUEUE, CPU_QUEUE], [], loglevel.upper())
    try:
        uvicorn.run(
            create_app(settings), host=host, port=port, log_level=loglevel.lower(), timeout_graceful_shutdown=10
        )
    finally:
        stop_workers(procs)
    return 0


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_workers(concurrency: int, queues: Sequence[str], gpus: Sequence[str], loglevel: str) -> int:
    """Run Celery workers in the foreground until they exit or are interrupted."""
    from app.db.migrate import upgrade_database

    upgrade_database(get_settings().db_url)
    procs = start_workers(concurrency, queues, gpus, loglevel.upper())
    signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM here means: stop the workers gracefully
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop_workers(procs)
    return max((p.returncode or 0) for p in procs)
