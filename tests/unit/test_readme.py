"""The README and the operator docs stand alone: they name no document that does not ship, every
file they point at is in the repository, the dashboard's pages are listed, and the upload line
matches the real route."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.api.main import create_app
from app.api.routes import ui
from tests.utils.data import csv_bytes, prices
from tests.utils.fakes import RecordingQueue
from tests.utils.server import api_client, server_settings

DOCS = ("README.md", "docs/deploy.md", "docs/operations.md", "docs/benchmarks.md")
# Every document that ships: none may lean on one that does not.
ALL_DOCS = ("README.md", *sorted(str(p) for p in Path("docs").glob("*.md")))
KEY = "readme-write-key-0123456789"
# Folders of this repository: a backticked path under one of them must exist here.
TOP = ("app/", "bench/", "core/", "docs/", "migrations/", "scripts/", "tests/", "worker/")


@pytest.mark.parametrize("name", ALL_DOCS)
def test_no_reference_to_a_document_that_does_not_ship(name: str) -> None:
    text = Path(name).read_text()
    assert not re.findall(r"[^\n]*\bthe guide\b[^\n]*", text, flags=re.IGNORECASE)
    assert not re.findall(r"[^\n]*\bSPEC\b[^\n]*", text)
    assert "PITFALLS" not in text and "STYLE.md" not in text
    assert "src.main" not in text  # scripts of a pipeline that does not ship


@pytest.mark.parametrize("name", DOCS)
def test_every_repository_path_named_exists(name: str) -> None:
    paths = [p for p in re.findall(r"`([^`\s]+)`", Path(name).read_text()) if p.startswith(TOP)]
    assert paths, f"{name} names no file: the check would prove nothing"
    missing = [p for p in paths if not (list(Path().glob(p)) if "*" in p else Path(p).exists())]
    assert missing == []


def test_readme_lists_every_dashboard_page() -> None:
    text = Path("README.md").read_text()
    listed = set(re.findall(r"^\| `(/[^`]*)` \|", text, flags=re.MULTILINE))
    pages = {route.path for route in ui.router.routes}  # type: ignore[attr-defined]
    pages = {re.sub(r"\{\w+\}", "{id}", p) for p in pages}
    assert pages == {"/ui", "/ui/sweeps/{id}", "/ui/hpo", "/ui/hpo/{id}", "/ui/workers", "/ui/submit", "/ui/compare"}
    assert pages | {"/docs"} <= listed


def test_readme_upload_line_works_as_written(tmp_path: Path) -> None:
    """The README's curl line, sent to a keyed server as curl sends it (a multipart file field
    named as written, the key in the header written), uploads a dataset; without the key, 401."""
    text = Path("README.md").read_text()
    (line,) = [line for line in text.splitlines() if line.startswith("curl -F")]
    match = re.fullmatch(r"curl -F (\w+)=@(\S+) -H '([\w-]+): \.\.\.' http://127\.0\.0\.1:8000(/\S+)", line)
    assert match, line
    field, filename, header, path = match.groups()
    settings = server_settings(tmp_path, api_keys=f"write:{KEY}")
    with api_client(create_app(settings, queue=RecordingQueue(), reaper=False)) as client:
        upload = {field: (filename, csv_bytes(prices()), "text/csv")}
        assert client.post(path, files=upload).status_code == 401
        response = client.post(path, files=upload, headers={header: KEY})
        assert response.status_code == 201, response.text
        assert response.json()["asset"] == path.rsplit("/", 1)[1] and response.json()["rows"] > 0
