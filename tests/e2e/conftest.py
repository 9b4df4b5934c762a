from __future__ import annotations

import os

import pytest


def service_url(name: str) -> str:
    """A test service URL from scripts/services.sh; required in CI, skipped elsewhere when absent."""
    url = os.environ.get(name)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not set: .ci/run must start the service (scripts/services.sh)")
        pytest.skip(f'{name} not set (run: eval "$(scripts/services.sh)")')
    return url
