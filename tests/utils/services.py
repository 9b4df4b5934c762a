"""The test services scripts/services.sh starts on loopback: their URLs, and an object store."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from core.store import ObjectStore

S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "tftsweep-test",
    "AWS_SECRET_ACCESS_KEY": "tftsweep-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def service_url(name: str) -> str:
    """A test service URL from scripts/services.sh; required in CI, skipped elsewhere when absent."""
    url = os.environ.get(name)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not set: .ci/run must start the service (scripts/services.sh)")
        pytest.skip(f'{name} not set (run: eval "$(scripts/services.sh)")')
    return url


def s3_env(prefix: str = "data") -> dict[str, str]:
    """The environment of a machine that uses a new, empty bucket of the test S3 server (the
    usual AWS variables, as s3fs reads them, and TFTSWEEP_STORE_URL)."""
    import boto3

    endpoint = service_url("TFTSWEEP_TEST_S3_ENDPOINT")
    bucket = f"tftsweep-{uuid.uuid4().hex[:12]}"
    env = {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
    client: Any = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    client.create_bucket(Bucket=bucket)
    return {**env, "TFTSWEEP_STORE_URL": f"s3://{bucket}/{prefix}"}


def use_s3(monkeypatch: pytest.MonkeyPatch, prefix: str = "data") -> str:
    """Point this process at a new bucket (s3fs reads the AWS variables); returns the store URL."""
    env = s3_env(prefix)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env["TFTSWEEP_STORE_URL"]


def object_store(root: Path, url: str) -> ObjectStore:
    return ObjectStore(root.resolve(), url)
