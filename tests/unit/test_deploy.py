"""The deployment files describe the production stack the docs promise."""

from __future__ import annotations

import re
from pathlib import Path

import yaml


def test_compose_has_the_production_stack() -> None:
    compose = yaml.safe_load(Path("docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "minio", "bucket", "migrate", "api", "worker"}
    assert all("healthcheck" in services[name] for name in ("postgres", "redis", "minio"))
    assert services["migrate"]["command"] == ["tftsweep", "db", "upgrade"]
    env = compose["x-env"]
    assert env["TFTSWEEP_STORE_URL"].startswith("s3://") and env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    volumes = set()
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["bucket"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["TFTSWEEP_STORE_URL"] == env["TFTSWEEP_STORE_URL"]
        volumes |= set(services[name]["volumes"])
    assert len(volumes) == 2  # no disk is shared: each keeps its own cache, the store holds the files
    device = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["capabilities"] == ["gpu"]
    assert services["api"]["build"]["target"] == "api" and services["worker"]["build"]["target"] == "worker"


def test_api_image_has_no_training_stack() -> None:
    text = Path("Dockerfile").read_text()
    stages = dict(re.findall(r"^FROM \S+ AS (\w+)\n(.*?)(?=^FROM |\Z)", text, flags=re.M | re.S))
    assert set(stages) == {"base", "api", "worker"}
    assert "torch" not in stages["api"] and "[ml]" not in stages["api"]
    assert "torch==2.13.0" in stages["worker"] and "[ml]" in stages["worker"]


def test_images_use_a_normal_install() -> None:
    """Not editable: the installed package must carry its migrations and configs itself
    (tests/e2e/test_installed_package.py proves it works from any directory)."""
    text = Path("Dockerfile").read_text()
    installs = re.findall(r"pip install [^\n]*", text)
    assert installs and not any(" -e " in line or "--editable" in line for line in installs)


def test_pre_commit_runs_what_make_lint_runs() -> None:
    hooks = [h for repo in yaml.safe_load(Path(".pre-commit-config.yaml").read_text())["repos"] for h in repo["hooks"]]
    assert [h["entry"] for h in hooks] == ["make lint"]
    assert "lint:" in Path("Makefile").read_text()
