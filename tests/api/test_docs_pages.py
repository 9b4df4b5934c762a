"""/docs from packaged files under the pages' CSP, /redoc, HEAD on every GET route, and the
serving boundary: a file is served only from inside its own sweep's or study's folder (probe
rows 12 and 15, and the link inside the data root that posed as a plot)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.service.reports import build_reports
from core.store import LocalStore
from tests.unit.test_hpo_config import hpo_dict
from tests.utils.data import ASSET, tiny_sweep
from tests.utils.fakes import RecordingQueue
from tests.utils.server import api_client, finish_runs, server_settings

READ_KEY = "docs-read-key-0123456789"
KEYED = {"X-API-Key": READ_KEY}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def keyed(root: Path, queue: RecordingQueue) -> Iterator[TestClient]:
    settings = server_settings(root, api_keys=f"read:{READ_KEY},write:docs-write-key-0123456789")
    with api_client(create_app(settings, queue=queue, reaper=False)) as client:
        yield client


class Scripts(HTMLParser):
    """The `<script>` elements of a page: their `src`, and whether any has inline code."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.links: list[str] = []
        self.inline = False
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script":
            self._in_script = True
            if named.get("src"):
                self.sources.append(str(named["src"]))
        if tag == "link" and named.get("href"):
            self.links.append(str(named["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline = True


def test_docs_are_served_from_the_package_under_the_pages_csp(keyed: TestClient) -> None:
    page = keyed.get("/docs")  # no key: the shell holds no data (the schema needs the key)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "no-referrer"
    found = Scripts()
    found.feed(page.text)
    assert not found.inline, "an inline script would be blocked by the CSP"
    assert found.sources == ["/docs/static/swagger-ui-bundle.js", "/ui/static/docs.js"]
    assert all(url.startswith("/") and not url.startswith("//") for url in [*found.sources, *found.links])
    assert "cdn" not in page.text.lower() and "unpkg" not in page.text.lower()
    for url in [*found.sources, *found.links]:
        asset = keyed.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-security-policy"] == csp and asset.headers["x-content-type-options"] == "nosniff"
    bundle = keyed.get("/docs/static/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith("text/javascript") and len(bundle.content) > 500_000
    assert keyed.get("/docs/static/swagger-ui.css").headers["content-type"].startswith("text/css")
    # Only the files the page loads: the package's demo page (inline script, petstore schema) is not served.
    for other in ("index.html", "swagger-initializer.js", "..%2Fswagger-ui-bundle.js", "oauth2-redirect.html"):
        assert keyed.get(f"/docs/static/{other}").status_code == 404, other
    # The schema still needs a read key; the page's script sends the dashboard's key.
    assert keyed.get("/openapi.json").status_code == 401
    schema = keyed.get("/openapi.json", headers=KEYED)
    assert schema.status_code == 200 and "/sweeps" in schema.json()["paths"]
    assert "X-API-Key" in keyed.get("/ui/static/docs.js").text


def test_redoc_leads_to_docs(keyed: TestClient) -> None:
    response = keyed.get("/redoc", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/docs"
    assert response.headers["x-frame-options"] == "DENY"
    assert keyed.get("/redoc").url.path == "/docs"


def test_no_dashboard_form_can_put_the_key_into_a_url(keyed: TestClient) -> None:
    for page in ("/ui", "/ui/submit", "/ui/sweeps/1", "/ui/hpo/1", "/ui/workers", "/ui/hpo"):
        html = keyed.get(page).text
        forms = re.findall(r"<form\b.*?</form>", html, flags=re.S)
        assert forms, page
        for form in forms:
            # A field without a name is never sent; a disabled submit button blocks submitting
            # (by click or by Enter) until app.js has taken the form over.
            assert not re.search(r"<(input|textarea|select)\b[^>]*\bname=", form), (page, form)
            assert re.search(r"<button type=\"submit\" disabled>", form), (page, form)
            assert "action=" not in form and "method=" not in form
        assert 'id="api-key"' in html or page != "/ui"


def finished_sweep(client: TestClient, root: Path) -> tuple[int, Path]:
    sweep_id = client.post("/sweeps", json={"asset": ASSET, "config": tiny_sweep()}).json()["id"]
    ids = [r["run_id"] for r in client.get(f"/sweeps/{sweep_id}/runs").json()["data"]]
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    finish_runs(factory, {ids[0]: 0.01, ids[1]: 0.011})
    build_reports(factory, LocalStore(root), sweep_id, builder="docs-test", plots=False)
    folder = root / "models" / ASSET / "sweeps" / "tiny"
    (folder / "plots").mkdir(exist_ok=True)
    (folder / "plots" / "real.png").write_bytes(PNG)
    return sweep_id, folder


def test_head_answers_like_get_on_every_get_route(client: TestClient, root: Path) -> None:
    sweep_id, _ = finished_sweep(client, root)
    study = client.post("/hpo", json={"asset": ASSET, "config": hpo_dict()})
    assert study.status_code == 201, study.text
    paths = []
    for template, operations in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        if "get" in operations:
            path = template.replace("{sweep_id}", str(sweep_id)).replace("{study_id}", str(study.json()["id"]))
            path = path.replace("{name}", "real.png").replace("{file}", "config_ranking.csv")
            paths.append(path.replace("{asset}", ASSET))
    pages = ["/ui", f"/ui/sweeps/{sweep_id}", "/docs", "/docs/static/swagger-ui.css", "/ui/static/app.js", "/redoc"]
    assert len(paths) >= 20
    started = time.perf_counter()
    statuses = set()
    for path in [*paths, *pages]:
        got = client.get(path, follow_redirects=False)
        head = client.head(path, follow_redirects=False)
        again = client.get(path, follow_redirects=False)  # a live page (/metrics) changes between calls
        statuses.add(got.status_code)
        assert head.status_code == got.status_code != 405, path
        assert head.content == b"", path
        assert head.headers.get("content-type") == got.headers.get("content-type"), path
        if got.content == again.content:
            assert head.headers["content-length"] == str(len(got.content)), path
    assert 200 in statuses
    assert time.perf_counter() - started < 60
    # A route without GET still says what it takes: HEAD is listed wherever GET is.
    refused = client.delete(f"/sweeps/{sweep_id}")
    assert refused.status_code == 405 and "HEAD" in refused.headers["allow"] and "GET" in refused.headers["allow"]
    assert client.head(f"/sweeps/{sweep_id}/cancel").headers["allow"] == "POST"


def test_a_link_inside_the_data_root_posing_as_a_plot_is_not_served(client: TestClient, root: Path) -> None:
    sweep_id, folder = finished_sweep(client, root)
    real = client.get(f"/sweeps/{sweep_id}/plots/real.png")
    assert real.status_code == 200 and real.content == PNG  # the route serves the sweep's own files
    database = root / "tftsweep.db"
    assert database.is_file()
    (folder / "plots" / "db.png").symlink_to(database)
    (folder / "plots" / "relative.png").symlink_to(Path("../../../../../tftsweep.db"))
    other = root / "models" / ASSET / "sweeps" / "other"
    other.mkdir(parents=True)
    (other / "x.png").write_bytes(PNG)
    (folder / "plots" / "other.png").symlink_to(other / "x.png")  # another sweep's file
    (folder / "config_ranking.csv").unlink()
    (folder / "config_ranking.csv").symlink_to(database)
    started = time.perf_counter()
    for name in ("db.png", "relative.png", "other.png"):
        response = client.get(f"/sweeps/{sweep_id}/plots/{name}")
        assert response.status_code == 404 and b"SQLite" not in response.content, name
    assert client.get(f"/sweeps/{sweep_id}/artifacts/config_ranking.csv").status_code == 404
    assert [p["name"] for p in client.get(f"/sweeps/{sweep_id}/plots").json()["data"]] == ["real.png"]
    # A link inside the sweep's folder stays inside it: served.
    (folder / "plots" / "alias.png").symlink_to(folder / "plots" / "real.png")
    assert client.get(f"/sweeps/{sweep_id}/plots/alias.png").content == PNG
    assert time.perf_counter() - started < 5


def test_a_sweep_folder_that_is_a_link_serves_nothing(client: TestClient, root: Path) -> None:
    sweep_id, folder = finished_sweep(client, root)
    moved = root / "models" / ASSET / "elsewhere"
    folder.rename(moved)
    folder.symlink_to(moved, target_is_directory=True)  # the folder a link: its boundary is unknown
    assert client.get(f"/sweeps/{sweep_id}/plots/real.png").status_code == 404
    assert client.get(f"/sweeps/{sweep_id}/artifacts/config_ranking.csv").status_code == 404
    folder.unlink()
    moved.rename(folder)
    assert client.get(f"/sweeps/{sweep_id}/artifacts/config_ranking.csv").status_code == 200


def test_study_files_are_served_only_from_the_study_folder(client: TestClient, root: Path) -> None:
    study = client.post("/hpo", json={"asset": ASSET, "config": hpo_dict()})
    assert study.status_code == 201, study.text
    study_id = study.json()["id"]
    folder = root / "models" / ASSET / "optuna" / study.json()["output_subdir"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "optuna_history.png").write_bytes(PNG)
    assert client.get(f"/hpo/{study_id}/plots/optuna_history.png").content == PNG
    (folder / "optuna_param_importances.png").symlink_to(root / "tftsweep.db")
    _, sweep_folder = finished_sweep(client, root)
    (folder / "optuna_best_trial.json").symlink_to(sweep_folder / "summary.json")  # JSON, another folder's
    assert client.get(f"/hpo/{study_id}/plots/optuna_param_importances.png").status_code == 404
    assert [p["name"] for p in client.get(f"/hpo/{study_id}/plots").json()["data"]] == ["optuna_history.png"]
    assert client.get(f"/hpo/{study_id}/best").status_code == 404
