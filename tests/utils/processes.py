"""Real server and worker processes for end-to-end tests, on free loopback ports."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

TERMINAL = ("succeeded", "failed", "partial", "cancelled")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """`tftsweep serve` in a subprocess, with an HTTP client and polling helpers."""

    def __init__(self, root: Path, env: dict[str, str] | None = None, args: list[str] | None = None) -> None:
        self.root = root
        self.args = args or []
        self.port = free_port()
        self.log = root / f"serve-{self.port}.log"
        self.env = {
            **os.environ,
            "TFTSWEEP_DATA_DIR": str(root),
            "TFTSWEEP_TORCH_THREADS": "1",
            "TFTSWEEP_LEASE_SECONDS": "6",
            "TFTSWEEP_REAPER_INTERVAL_SECONDS": "1",
            "TFTSWEEP_REQUEUE_AFTER_SECONDS": "4",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def start(self) -> ServerProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "worker.cli",
                    "serve",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "info",
                    *self.args,
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait(lambda: self._healthy(), timeout=60, what="server health")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{self.log.read_text()[-3000:]}")
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.client.close()

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.25)
        # The worker's and reaper's lines, not the access log of the polling above.
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        tail = "\n".join([line for line in lines if '" 200 OK' not in line][-60:])
        raise AssertionError(f"timed out waiting for {what}\n--- server log (no access lines) ---\n{tail}")

    def sweep(self, sweep_id: int) -> dict[str, Any]:
        return dict(self.client.get(f"/sweeps/{sweep_id}").json())

    def wait_sweep(self, sweep_id: int, timeout: float = 180, reports: bool = True) -> dict[str, Any]:
        """Wait until the sweep is finished (and, by default, its reports are written)."""

        def done() -> dict[str, Any] | None:
            sweep = self.sweep(sweep_id)
            finished = sweep["status"] in TERMINAL and not sweep["runs"]["queued"] and not sweep["runs"]["running"]
            if finished and (not reports or sweep["reports_at"]):
                return sweep
            return None

        return dict(self.wait(done, timeout, f"sweep {sweep_id} to finish"))


class WorkerProcess:
    """`tftsweep worker` in a subprocess (its own process group), on its own data root."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.log = root.parent / f"{root.name}-worker.log"
        self.env = {
            **os.environ,
            "TFTSWEEP_DATA_DIR": str(root),
            "TFTSWEEP_TORCH_THREADS": "1",
            "TFTSWEEP_LEASE_SECONDS": "6",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "worker", "--concurrency", "1", "--log-level", "info"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pids(self) -> set[int]:
        """This worker's processes: the launcher, its Celery main process and the pool."""
        assert self.proc is not None
        found = {self.proc.pid}
        for _ in range(3):
            found |= {pid for parent in list(found) for pid in children(parent)}
        return found

    def kill(self) -> None:
        """SIGKILL to every process of the worker, at once (a machine that dies)."""
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.kill()


def _processes() -> list[tuple[int, int, int, str]]:
    """(pid, parent pid, process group, command line) of every live process, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid, pgrp = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state != "Z":
            found.append((int(entry.name), int(ppid), int(pgrp), cmdline))
    return found


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes in process group `pgid`."""
    return sorted(pid for pid, _, group, _ in _processes() if group == pgid)


def children(pid: int) -> list[int]:
    """Pids of the live child processes of `pid`."""
    return [child for child, parent, _, _ in _processes() if parent == pid]


def orphans(pattern: str = "worker.celery_app") -> list[int]:
    """Pids of processes whose command line holds `pattern` and whose parent is init."""
    return [pid for pid, parent, _, cmdline in _processes() if parent == 1 and pattern in cmdline]


def create_postgres_database(admin_url: str) -> str:
    """A fresh database on the test PostgreSQL server; returns its SQLAlchemy URL."""
    import psycopg

    name = f"tftsweep_{uuid.uuid4().hex[:10]}"
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def check_full_sweep_and_merge(server: ServerProcess) -> None:
    """A 4-run sweep through HTTP, reports and plots, then a merge that trains only the 2 new runs."""
    from tests.utils.data import ASSET, tiny_sweep

    def submit(config: dict[str, Any], **extra: Any) -> Any:
        return server.client.post("/sweeps", json={"asset": ASSET, "config": config, **extra})

    created = submit(tiny_sweep(output_subdir="full", replica_seeds=[1, 2]))
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]
    sweep = server.wait_sweep(sweep_id)
    assert sweep["status"] == "succeeded" and sweep["runs"]["succeeded"] == 4
    folder = server.root / "models/SYN/sweeps/full"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["counts"]["runs_by_status"]["succeeded"] == 4
    ranking = server.client.get(f"/sweeps/{sweep_id}/ranking").json()["data"]
    assert {r["config_id"] for r in ranking} == {"baseline", "hidden_size=6"}
    plot = server.client.get(server.client.get(f"/sweeps/{sweep_id}/plots").json()["data"][0]["url"])
    assert plot.headers["content-type"] == "image/png"
    before = {r["run_id"]: r["finished_at"] for r in server.client.get(f"/sweeps/{sweep_id}/runs").json()["data"]}

    merged = submit(
        tiny_sweep(output_subdir="full", replica_seeds=[1, 2], param_ranges={"hidden_size": [4, 6, 8]}),
        merge_tests=True,
    )
    assert merged.status_code == 202, merged.text
    assert (merged.json()["new_runs"], merged.json()["total_runs"]) == (2, 6)
    time.sleep(0.5)
    sweep = server.wait_sweep(sweep_id)
    assert sweep["runs"]["succeeded"] == 6
    after = {r["run_id"]: r["finished_at"] for r in server.client.get(f"/sweeps/{sweep_id}/runs").json()["data"]}
    assert all(after[run_id] == finished for run_id, finished in before.items())  # nothing retrained
    assert json.loads((folder / "summary.json").read_text())["counts"]["runs"] == 6


@contextlib.contextmanager
def uvicorn_in_thread(config: Any, timeout: float = 30) -> Iterator[None]:
    """A `uvicorn.Config`'s server running in a thread of this process (so a test may reach
    the app's state), started before the block and stopped after it."""
    import asyncio
    import threading

    import uvicorn

    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def app_in_thread(root: Path) -> Iterator[tuple[Any, str, Any]]:
    """The API over the data root `root` (a recording queue instead of workers, no reaper)
    served by uvicorn in a thread of this process, with its base URL and an httpx client of it."""
    import httpx
    import uvicorn

    from app.api.main import create_app
    from tests.utils.fakes import RecordingQueue
    from tests.utils.server import server_settings

    app = create_app(server_settings(root), queue=RecordingQueue(), reaper=False)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (
        uvicorn_in_thread(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")),
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        yield app, base, client
