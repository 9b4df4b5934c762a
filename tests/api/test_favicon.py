"""The dashboard's icon: `/favicon.ico` answers, and every page links an icon that loads without a key."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from tests.utils.fakes import RecordingQueue
from tests.utils.server import api_client, server_settings

PAGES = ("/ui", "/ui/hpo", "/ui/submit", "/ui/workers", "/ui/sweeps/1", "/ui/hpo/1")


@pytest.fixture
def keyed(root: Path, queue: RecordingQueue) -> Iterator[TestClient]:
    settings = server_settings(root, api_keys="read:icon-read-key-0123456789")
    with api_client(create_app(settings, queue=queue, reaper=False)) as client:
        yield client


def test_favicon_ico_is_an_icon(client: TestClient) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # the ICO header: reserved 0, type 1 (icon)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_links_an_icon_that_loads_without_a_key(keyed: TestClient, page: str) -> None:
    html = keyed.get(page)
    assert html.status_code == 200
    links = re.findall(r'<link rel="icon" href="([^"]+)"', html.text)
    assert links == ["/ui/static/favicon.svg", "/ui/static/favicon.ico"]
    svg, ico = (keyed.get(link) for link in links)  # no key sent: the pages' files need none
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.startswith("<svg")
    assert ico.status_code == 200 and ico.content[:4] == b"\x00\x00\x01\x00"


def test_favicon_ico_needs_no_key_on_a_keyed_server(keyed: TestClient) -> None:
    """Browsers ask for /favicon.ico on their own, with no key: it answers, and holds no data."""
    response = keyed.get("/favicon.ico")
    assert response.status_code == 200 and response.content[:4] == b"\x00\x00\x01\x00"
    assert keyed.get("/sweeps").status_code == 401  # the API itself still needs the key
