"""Separate API and worker processes that fault tests can kill, restart and inspect."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.utils.processes import ServerProcess, free_port


class Cluster:
    """An API process (uvicorn, with the reaper) and worker processes, sharing one data root."""

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.env = {
            **os.environ,
            "TFTSWEEP_DATA_DIR": str(root),
            "TFTSWEEP_TORCH_THREADS": "1",
            "TFTSWEEP_LEASE_SECONDS": "4",
            "TFTSWEEP_REAPER_INTERVAL_SECONDS": "0.5",
            "TFTSWEEP_REQUEUE_AFTER_SECONDS": "3",
            **(env or {}),
        }
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.http = ServerProcess(root)  # reused for its client and polling helpers
        self.http.port = self.port
        self.http.client.base_url = f"http://127.0.0.1:{self.port}"
        self.http.log = root / "api.log"

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.root / log).open("ab") as out:
            return subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def start_api(self) -> None:
        self.api = self._spawn(
            [sys.executable, "-m", "uvicorn", "app.api.main:app", "--host", "127.0.0.1", "--port", str(self.port)],
            "api.log",
        )
        self.http.proc = self.api
        self.http.wait(self.http._healthy, 60, "the API")

    def start_worker(self, concurrency: int = 1) -> subprocess.Popen[bytes]:
        proc = self._spawn(
            [sys.executable, "-m", "worker.cli", "worker", "--concurrency", str(concurrency), "--log-level", "info"],
            f"worker-{len(self.workers)}.log",
        )
        self.workers.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def close(self) -> None:
        for proc in self.workers:
            self.stop(proc)
        self.stop(self.api)
        self.http.client.close()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.root.glob("*.log")))

    def runs(self, sweep_id: int) -> list[dict[str, Any]]:
        return list(self.http.client.get(f"/sweeps/{sweep_id}/runs", params={"limit": 1000}).json()["data"])

    def wait_running(self, sweep_id: int, timeout: float = 90) -> dict[str, Any]:
        """A run of the sweep in the middle of training (state running, owner known)."""
        from app.db.models import Run
        from app.db.session import make_engine, make_session_factory, session_scope

        factory = make_session_factory(
            make_engine(self.env.get("DATABASE_URL") or f"sqlite:///{self.root / 'tftsweep.db'}")
        )

        def running() -> dict[str, Any] | None:
            with session_scope(factory) as session:
                run = session.query(Run).filter(Run.sweep_id == sweep_id, Run.state == "running").first()
                if run is not None and run.lease_owner:
                    return {"run_id": run.id, "owner": run.lease_owner, "attempts": run.attempts}
            return None

        return dict(self.http.wait(running, timeout, "a running run"))


def owner_pid(owner: str) -> int:
    """The pid in a lease owner `host:pid:task_id`."""
    return int(owner.split(":")[1])


def kill_run_process(owner: str) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(owner_pid(owner), signal.SIGKILL)
    time.sleep(0.2)
