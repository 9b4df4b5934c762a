"""A worker's default torch threads share the machine's cores between every run training at
once: worker processes (one per GPU) x runs per process."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from app.settings import Settings
from worker import supervisor


def test_default_threads_split_the_cores_between_processes_and_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert Settings(worker_concurrency=1, worker_processes=1).threads_per_process(1) == 16
    assert Settings(worker_concurrency=2, worker_processes=1).threads_per_process(2) == 8
    assert Settings(worker_concurrency=2, worker_processes=4).threads_per_process(2) == 2
    assert Settings(worker_processes=32).threads_per_process(1) == 1  # never 0
    assert Settings(worker_processes=4, torch_threads=3).threads_per_process(2) == 3  # set: kept


def test_worker_processes_started_together_are_told_how_many_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    envs: list[dict[str, str]] = []

    class Started:
        def __init__(self, argv: list[str], env: dict[str, str], **_kwargs: Any) -> None:
            envs.append(env)
            self.returncode = 0
            self.pid = 1

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", Started)
    monkeypatch.setattr(supervisor, "stop_workers", lambda procs: None)
    monkeypatch.setattr("app.db.migrate.upgrade_database", lambda url: None)
    supervisor.run_workers(2, ["gpu"], ["0", "1", "2"], "info")
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "2"]
    assert {e["TFTSWEEP_WORKER_PROCESSES"] for e in envs} == {"3"}
    assert {e["TFTSWEEP_WORKER_CONCURRENCY"] for e in envs} == {"2"}
    # What each pool process then reads from that environment.
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    monkeypatch.setenv("TFTSWEEP_WORKER_PROCESSES", envs[0]["TFTSWEEP_WORKER_PROCESSES"])
    monkeypatch.setenv("TFTSWEEP_WORKER_CONCURRENCY", envs[0]["TFTSWEEP_WORKER_CONCURRENCY"])
    settings = Settings()
    assert settings.threads_per_process(settings.worker_concurrency) == 2
