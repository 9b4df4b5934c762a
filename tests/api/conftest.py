from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from tests.utils.data import make_data_root
from tests.utils.fakes import RecordingQueue
from tests.utils.server import api_client, server_settings


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_data_root(tmp_path / "data")


@pytest.fixture
def client(root: Path, queue: RecordingQueue, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = create_app(server_settings(root), queue=queue, reaper=False)
    with api_client(app) as test_client:
        yield test_client
