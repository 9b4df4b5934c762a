"""The dashboard in a real headless Chromium over a server that really trains (tests/ui/conftest.py
starts the browser; screenshots land in $TFTSWEEP_TEST_ARTIFACTS, default tests/artifacts/)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui.browser import fits_at_every_width, shot, wait_for
from tests.utils.data import make_data_root, tiny_sweep
from tests.utils.processes import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WRITE_KEY = "ui-write-key-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = make_data_root(tmp_path_factory.mktemp("ui") / "data")
    proc = ServerProcess(root, env={"TFTSWEEP_API_KEYS": f"write:{WRITE_KEY}"})
    proc.client.headers["X-API-Key"] = WRITE_KEY
    proc.start()
    sweep = proc.client.post("/sweeps", json={"asset": "SYN", "config": tiny_sweep(output_subdir="finished")})
    assert sweep.status_code == 201, sweep.text
    proc.wait_sweep(sweep.json()["id"])
    yield proc
    proc.stop()


def test_dashboard_flow(server: ServerProcess, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    base = f"http://127.0.0.1:{server.port}"
    browser.get(f"{base}/ui")
    wait_for(browser, lambda b: "API key" in b.find_element(By.ID, "notice").text)  # the server asks for a key
    key = browser.find_element(By.ID, "api-key")
    key.send_keys(WRITE_KEY)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait_for(browser, lambda b: "finished" in b.find_element(By.ID, "sweeps").text)
    wait_for(browser, lambda b: b.find_element(By.ID, "workers-status").text == "1 live worker")
    shot(browser, "1_sweeps_list")

    browser.find_element(By.LINK_TEXT, "finished").click()
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#ranking tbody tr td.num")) > 0)
    ranking = browser.find_element(By.ID, "ranking").text
    assert "baseline" in ranking and "hidden_size=6" in ranking
    # The verdict of each row as a badge, and the summary's sentence on whether the winner is real.
    assert browser.find_elements(By.CSS_SELECTOR, "#ranking .badge.verdict-baseline")
    assert browser.find_elements(By.CSS_SELECTOR, "#ranking .badge.verdict-insufficient")  # 1 pair: too few
    wait_for(browser, lambda b: "at alpha 0.05" in b.find_element(By.ID, "significance").text)
    sentence = browser.find_element(By.ID, "significance").text
    assert "with 1 pair the test cannot go below 1: add seeds or folds" in sentence
    # The plots load lazily: a user scrolls to them (how far down they are depends on the page).
    wait_for(
        browser,
        lambda b: b.execute_script(
            "document.getElementById('plots').scrollIntoView();"
            "const i = document.querySelector('#plots img'); return i && i.complete && i.naturalWidth > 0;"
        ),
    )
    assert "succeeded: 2 of 2 runs finished" in browser.find_element(By.ID, "progress-text").text
    header = browser.find_element(By.CSS_SELECTOR, "#ranking th[data-column='robust_score'] button")
    header.click()
    header.click()
    sorted_by = browser.find_element(By.CSS_SELECTOR, "#ranking th[data-column='robust_score']")
    assert sorted_by.get_attribute("aria-sort") == "descending"
    assert browser.find_elements(
        By.CSS_SELECTOR, "#drift tbody tr.band-stable, #drift tbody tr.band-moderate, #drift tbody tr.band-significant"
    )
    assert not browser.find_element(By.ID, "ranking-partial").is_displayed()  # every run finished
    fits_at_every_width(browser, "2_sweep_page")

    browser.get(f"{base}/ui/submit")
    area = wait_for(browser, lambda b: b.find_element(By.ID, "config"))
    bad = tiny_sweep(output_subdir="from_ui", replica_seeds=[3, 3])
    area.clear()
    area.send_keys(json.dumps(bad))
    browser.find_element(By.ID, "asset").clear()
    browser.find_element(By.ID, "asset").send_keys("SYN")
    browser.find_element(By.CSS_SELECTOR, "#submit-form button").click()
    wait_for(browser, lambda b: "config.replica_seeds" in b.find_element(By.ID, "errors").text)
    shot(browser, "3_submit_error")

    area.clear()
    area.send_keys(json.dumps(tiny_sweep(output_subdir="from_ui")))
    browser.find_element(By.CSS_SELECTOR, "#submit-form button").click()
    wait_for(browser, lambda b: "Submitted" in b.find_element(By.ID, "result").text)
    browser.get(f"{base}/ui")
    wait_for(browser, lambda b: "from_ui" in b.find_element(By.ID, "sweeps").text)
    shot(browser, "4_sweeps_after_submit")

    browser.get(f"{base}/ui/workers")
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#workers tbody tr.worker-live")) == 1)
    assert "1 of 1 workers live" in browser.find_element(By.ID, "workers-summary").text
    shot(browser, "5_workers")


def test_dashboard_warns_when_no_worker_is_live(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    server = ServerProcess(make_data_root(tmp_path / "data"), args=["--no-worker"]).start()
    try:
        assert server.client.post("/sweeps", json={"asset": "SYN", "config": tiny_sweep()}).status_code == 201
        browser.get(f"http://127.0.0.1:{server.port}/ui")
        status = wait_for(browser, lambda b: b.find_element(By.ID, "workers-status"))
        wait_for(browser, lambda b: status.text == "No live worker: 2 queued runs will not start")
        assert "warn" in status.get_attribute("class")
        shot(browser, "6_no_live_worker")
    finally:
        server.stop()


def enter_key(browser: Any, base: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base}/ui")
    key = wait_for(
        browser,
        lambda b: b.find_element(By.CSS_SELECTOR, "#key-form button:enabled") and b.find_element(By.ID, "api-key"),
    )
    key.clear()
    key.send_keys(WRITE_KEY)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait_for(browser, lambda b: "finished" in b.find_element(By.ID, "sweeps").text)


def urls_seen(browser: Any) -> list[str]:
    """The page's address and every resource it fetched (the Resource Timing entries)."""
    return list(browser.execute_script("return [location.href, ...performance.getEntries().map((e) => e.name)];"))


def click(browser: Any, element: Any) -> None:
    """Click `element` as the page's own handlers see a click. The sweep page's plots arrive
    (fetched with the key) while the test runs and move the links below them, so a pointer
    click at coordinates read a moment earlier can land on a plot (seen once in a clean run);
    the element's own click event cannot."""
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", element)


def test_downloads_and_docs_work_with_a_key_that_never_lands_in_a_url(
    server: ServerProcess, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    base = f"http://127.0.0.1:{server.port}"
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    enter_key(browser, base)
    seen = urls_seen(browser)
    sweep_id = next(s["id"] for s in server.client.get("/sweeps").json()["data"] if s["output_subdir"] == "finished")
    browser.get(f"{base}/ui/sweeps/{sweep_id}")
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#ranking tbody tr td.num")) > 0)
    # A plain link would get 401 (it sends no key): the click fetches with the key and saves a blob.
    click(browser, browser.find_element(By.LINK_TEXT, "config_ranking.csv"))
    saved = downloads / "SYN_finished_config_ranking.csv"
    wait_for(browser, lambda b: saved.is_file() and saved.stat().st_size > 0)
    want = server.client.get(f"/sweeps/{sweep_id}/artifacts/config_ranking.csv")
    assert want.status_code == 200 and saved.read_bytes() == want.content
    assert "baseline" in saved.read_text()
    seen += urls_seen(browser)
    browser.get_log("browser")  # what came before the docs

    click(browser, browser.find_element(By.LINK_TEXT, "API"))  # /docs: Swagger UI loads the schema with the key
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, ".opblock")) >= 20)
    assert browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path[data-path='/sweeps/{sweep_id}']")
    violations = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert violations == []
    seen += urls_seen(browser)
    shot(browser, "7_api_docs")
    assert any("/openapi.json" in url for url in seen) and any("/artifacts/" in url for url in seen)
    assert [url for url in seen if WRITE_KEY in url or "key=" in url] == []
    assert all(url.startswith(base) for url in seen if url.startswith("http")), seen  # nothing from a CDN


def test_a_key_form_sent_before_the_script_runs_puts_no_key_in_the_url(server: ServerProcess, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base = f"http://127.0.0.1:{server.port}"
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/ui/static/app.js"]})  # app.js never runs
    try:
        browser.get(f"{base}/ui")
        assert browser.execute_script("return typeof headers") == "undefined"  # app.js did not load
        button = browser.find_element(By.CSS_SELECTOR, "#key-form button")
        assert not button.is_enabled()  # Enter and clicks do not submit while it is disabled
        browser.execute_script("window.sameDocument = true;")
        browser.find_element(By.ID, "api-key").send_keys(WRITE_KEY + Keys.ENTER)
        button.click()
        assert browser.execute_script("return window.sameDocument === true;")
        assert browser.current_url == f"{base}/ui"
        # Even a form submitted by force sends no key: its field has no name.
        browser.execute_script("document.querySelector('#key-form button').disabled = false;")
        browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
        wait_for(browser, lambda b: b.execute_script("return window.sameDocument !== true;"))
        assert browser.current_url in (f"{base}/ui?", f"{base}/ui")
        assert WRITE_KEY not in browser.current_url
    finally:
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        browser.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": False})
