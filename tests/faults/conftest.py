from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Cluster
from tests.utils.data import make_data_root


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    root = make_data_root(tmp_path / "data")
    cluster = Cluster(root)
    yield cluster
    cluster.close()
