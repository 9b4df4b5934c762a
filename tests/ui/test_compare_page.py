"""The dashboard shows the model confidence set: a marker per config in the sweep's ranking and the
selection sentence beside it; and the compare page answers two sweeps on different assets with the
transfer first. Real API and pages (uvicorn in a thread); the runs are recorded through the service
with a fake trainer and the report build's selection is filled by hand (tests/api/test_compare_api.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from app.service.reports import build_reports
from app.service.runs import train_run
from tests.api.test_compare_api import (
    MCS_PVALUES,
    OTHER_ASSET,
    REPORT_WRITER,
    chosen_trainer,
    compare_config,
    hand_filled_reports,
)
from tests.ui.browser import fits_at_every_width, wait_for
from tests.utils.data import ASSET, make_data_root
from tests.utils.processes import app_in_thread

pytestmark = [pytest.mark.e2e]


@dataclass
class Served:
    base: str
    a: int
    b: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = make_data_root(tmp_path_factory.mktemp("compare") / "data")
    make_data_root(root, asset=OTHER_ASSET, seed=1)
    with pytest.MonkeyPatch.context() as patch, app_in_thread(root) as (app, base, client):
        patch.setattr(REPORT_WRITER, hand_filled_reports)
        ids = []
        for asset, subdir in ((ASSET, "spx"), (OTHER_ASSET, "ndx")):
            created = client.post("/sweeps", json={"asset": asset, "config": compare_config(subdir)})
            assert created.status_code == 201, created.text
            sweep_id = created.json()["id"]
            store = app.state.settings.store()
            for run in client.get(f"/sweeps/{sweep_id}/runs").json()["data"]:
                trained = train_run(
                    app.state.session_factory, store, run["run_id"], "ui-test", chosen_trainer, lease_seconds=60
                )
                assert trained.text == "succeeded", trained.text
            assert build_reports(app.state.session_factory, store, sweep_id, builder="ui-test") is not None
            ids.append(sweep_id)
        yield Served(base, ids[0], ids[1])


def cells(browser: Any, table: str, column: str) -> list[str]:
    return list(
        browser.execute_script(
            "return [...document.querySelectorAll(`#${arguments[0]} tbody td[data-column='${arguments[1]}']`)]"
            ".map((td) => td.textContent);",
            table,
            column,
        )
    )


def test_the_ranking_marks_the_mcs_members_and_says_the_selection(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(f"{served.base}/ui/sweeps/{served.a}")
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#ranking tbody .badge.mcs-in")) > 0)
    members = {c for c, p in MCS_PVALUES[ASSET].items() if p >= 0.1}
    ids, marks = cells(browser, "ranking", "config_id"), cells(browser, "ranking", "in_mcs")
    assert {c for c, mark in zip(ids, marks, strict=True) if mark == "in MCS"} == members
    assert {c for c, mark in zip(ids, marks, strict=True) if mark == "out"} == {"dropout=0.2"}
    sentence = browser.find_element(By.ID, "selection").text
    assert sentence.startswith("3 of 4 configs are in the 90% model confidence set of val_rmse")
    assert "SPA p = 0.3" in sentence

    # Another metric: the set was not computed for it, and the page says so instead of marking.
    Select(browser.find_element(By.ID, "ranking-metric")).select_by_value("val_mae")
    wait_for(browser, lambda b: "not shown" in b.find_element(By.ID, "selection").text)
    assert "computed for val_rmse" in browser.find_element(By.ID, "selection").text
    assert set(cells(browser, "ranking", "in_mcs")) == {"–"}
    Select(browser.find_element(By.ID, "ranking-metric")).select_by_value("val_rmse")
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#ranking tbody .badge.mcs-in")) == 3)
    fits_at_every_width(browser, "ranking_mcs")


def test_the_compare_page_leads_with_transfer_across_assets(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{served.base}/ui/sweeps/{served.a}")
    link = wait_for(browser, lambda b: b.find_element(By.ID, "compare-link"))
    assert link.get_attribute("href").endswith(f"/ui/compare?a={served.a}")
    browser.get(f"{served.base}/ui/compare?a={served.a}&b={served.b}")
    sentence = wait_for(
        browser, lambda b: b.find_element(By.ID, "compare-sentence").text.startswith("Transfer") and b
    ).find_element(By.ID, "compare-sentence")
    assert sentence.text.startswith("Transfer from SYN/spx to SYN2/ndx")
    assert "not compared across assets" in sentence.text
    assert browser.find_element(By.ID, "transfer-section").is_displayed()
    assert not browser.find_element(By.ID, "significance-section").is_displayed()
    assert browser.find_element(By.ID, "compare-title").text == "Compare SYN/spx with SYN2/ndx"
    stats = browser.find_element(By.ID, "transfer-stats").text
    assert stats.startswith("2 of 3 variants move the same way") and "Spearman 0.800000" in stats
    ids, signs = cells(browser, "transfer", "config_id"), cells(browser, "transfer", "same_sign")
    assert dict(zip(ids, signs, strict=True)) == {
        "hidden_size=6": "same sign",
        "hidden_size=8": "opposite",
        "dropout=0.2": "same sign",
    }
    in_b = dict(zip(ids, cells(browser, "transfer", "in_mcs_b"), strict=True))
    assert in_b == {"hidden_size=6": "in MCS", "hidden_size=8": "out", "dropout=0.2": "out"}
    assert len(cells(browser, "compare-mcs", "config_id")) == 8
    fits_at_every_width(browser, "compare_transfer")

    # A bad id is answered in words naming the parameter.
    browser.find_element(By.ID, "compare-b").clear()
    browser.find_element(By.ID, "compare-b").send_keys("999")
    browser.find_element(By.CSS_SELECTOR, "#compare-form button[type=submit]").click()
    wait_for(browser, lambda b: "b: sweep 999 not found" in b.find_element(By.ID, "compare-errors").text)
    assert browser.find_element(By.ID, "compare-sentence").text == "Not compared (404)."
