"""The sweep page shows the runs that were not trained: those recorded from the run cache and
those racing skipped. Real API and page (uvicorn in a thread); two sweeps are recorded through
the service with a fake trainer that has an identity, so the run cache and racing act as they do
for real runs: the second sweep's baseline comes from the first's, and its variant, worse on every
pair, is raced out after 8 pairs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.service.runs import train_run
from core.run_cache import TrainerIdentity, trainer_identity
from core.runs import RunOutcome, RunSpec
from tests.ui.browser import fits_at_every_width, shot, wait_for
from tests.utils.data import ASSET, make_data_root, tiny_sweep
from tests.utils.fakes import fake_train
from tests.utils.processes import app_in_thread

pytestmark = [pytest.mark.e2e]

SEEDS = list(range(1, 17))  # 16 blocks: racing looks once, at 8 (min_pairs), where 8 all-worse pairs give p = 1/256
WORSE = "hidden_size=8"
RACING = {"enabled": True, "alpha": 0.05, "min_pairs": 8}


class KnownTrainer:
    """`fake_train` with an identity (so its runs take part in the cache), the variant `WORSE`
    0.005 worse on validation RMSE than any baseline run."""

    def __init__(self) -> None:
        self._identity = trainer_identity(None, "cpu")

    def identity(self) -> TrainerIdentity:
        return self._identity

    def __call__(self, spec: RunSpec, stop_requested: Callable[[], bool] | None = None) -> RunOutcome:
        outcome = fake_train(spec, stop_requested)
        if spec.config_id == WORSE and outcome.metrics is not None:
            outcome.metrics["val_rmse"] += 0.005
        return outcome


@dataclass
class Served:
    base: str
    first_id: int
    sweep_id: int
    runs: list[dict[str, Any]]  # the raced sweep's, after it ran


def run_all(app: Any, client: httpx.Client, sweep_id: int) -> None:
    """Every run of the sweep through the one pipeline, in plan order (a run racing skipped
    meanwhile is not taken)."""
    store = app.state.settings.store()
    trainer = KnownTrainer()
    for run in client.get(f"/sweeps/{sweep_id}/runs", params={"limit": 1000}).json()["data"]:
        train_run(app.state.session_factory, store, run["run_id"], "ui-test", trainer, lease_seconds=60)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = make_data_root(tmp_path_factory.mktemp("cache_racing") / "data")
    with app_in_thread(root) as (app, base, client):
        first = client.post(
            "/sweeps",
            json={"asset": ASSET, "config": tiny_sweep(output_subdir="first", replica_seeds=SEEDS)},
        )
        assert first.status_code == 201, first.text
        run_all(app, client, first.json()["id"])
        config = tiny_sweep(
            output_subdir="raced", replica_seeds=SEEDS, param_ranges={"hidden_size": [8]}, racing=RACING
        )
        raced = client.post("/sweeps", json={"asset": ASSET, "config": config})
        assert raced.status_code == 201, raced.text
        sweep_id = raced.json()["id"]
        run_all(app, client, sweep_id)
        runs = client.get(f"/sweeps/{sweep_id}/runs", params={"limit": 1000}).json()["data"]
        yield Served(base, first.json()["id"], sweep_id, runs)


def test_what_the_runs_say(served: Served) -> None:
    """The seeded sweep is what the page is asked to show: the baseline all cached from the first
    sweep, the variant trained for 8 pairs and skipped for the other 8."""
    baseline = [r for r in served.runs if r["config_id"] == "baseline"]
    variant = [r for r in served.runs if r["config_id"] == WORSE]
    assert len(baseline) == len(variant) == len(SEEDS)
    assert all(r["status"] == "succeeded" and r["cached_from"].startswith(f"{served.first_id}/") for r in baseline)
    assert [r["status"] for r in variant] == ["succeeded"] * 8 + ["skipped"] * 8
    assert all(r["cached_from"] is None for r in variant)
    assert all(r["skip_reason"].startswith("raced out after 8 pairs: worse than the baseline") for r in variant[8:])


def test_the_sweep_page_shows_cached_and_skipped_runs(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(f"{served.base}/ui/sweeps/{served.sweep_id}")
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#runs tbody td[data-column='run_id']")) > 0)

    # Beside the other counts: how many were recorded from the cache, how many racing skipped.
    progress = browser.find_element(By.ID, "progress-text").text
    assert progress.startswith("succeeded: 32 of 32 runs finished")  # a skipped run is settled
    cached = browser.find_element(By.ID, "cached-count")
    skipped = browser.find_element(By.ID, "skipped-count")
    assert cached.is_displayed() and cached.text == "16 cached (not trained)"
    assert skipped.is_displayed() and skipped.text == "8 skipped (raced out)"
    partial = browser.find_element(By.ID, "ranking-partial").text
    assert partial == "partial: 24 of 32 runs (8 raced out, not trained)"

    # The raced-out verdict is a worse one (its badge), marked as reached by racing.
    variant = browser.find_element(By.XPATH, f"//table[@id='ranking']//tr[td[@data-column='config_id']='{WORSE}']")
    verdict = variant.find_element(By.CSS_SELECTOR, "td[data-column='verdict'] .badge")
    assert verdict.text == "worse (raced out after 8 pairs)"
    assert set(verdict.get_attribute("class").split()) == {"badge", "verdict-worse", "raced-out"}
    assert "its remaining runs were skipped" in verdict.get_attribute("title")
    red = browser.execute_script("return getComputedStyle(arguments[0]).color", verdict)
    plain_worse = browser.execute_script(
        "const s = document.createElement('span'); s.className = 'badge verdict-worse'; document.body.append(s);"
        "const c = getComputedStyle(s).color; s.remove(); return c;"
    )
    assert red == plain_worse  # coloured as any worse verdict

    # The runs table: a cached run names its source, a skipped run its reason.
    by_id = {r["run_id"]: r for r in served.runs}
    cached_badges = browser.find_elements(By.CSS_SELECTOR, "#runs tbody td[data-column='status'] .badge.run-cached")
    assert cached_badges, "no cached run is marked"
    tr = cached_badges[0].find_element(By.XPATH, "ancestor::tr")
    run = by_id[int(tr.find_element(By.CSS_SELECTOR, "td[data-column='run_id']").text)]
    assert run["config_id"] == "baseline"
    assert cached_badges[0].get_attribute("title") == f"recorded from run {run['cached_from']}, not trained"
    assert tr.find_element(By.CSS_SELECTOR, "td[data-column='cached_from']").text == run["cached_from"]
    assert tr.find_element(By.CSS_SELECTOR, "td[data-column='status']").text == "succeeded cached"
    assert browser.find_element(By.ID, "runs-note").text == "32 runs."
    shot(browser, "cache_racing_sweep_page")

    # Only the skipped runs: each says it was skipped and, as its tooltip and in a column, why.
    Select(browser.find_element(By.ID, "runs-state")).select_by_value("skipped")
    wait_for(browser, lambda b: browser.find_element(By.ID, "runs-note").text == "8 skipped runs.")
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    assert len(rows) == 8
    for tr in rows:
        run = by_id[int(tr.find_element(By.CSS_SELECTOR, "td[data-column='run_id']").text)]
        assert run["config_id"] == WORSE and run["status"] == "skipped"
        assert "run-skipped-row" in tr.get_attribute("class").split()
        mark = tr.find_element(By.CSS_SELECTOR, "td[data-column='status'] .badge.run-skipped")
        assert mark.text == "skipped" and mark.get_attribute("title") == run["skip_reason"]
        assert tr.find_element(By.CSS_SELECTOR, "td[data-column='skip_reason']").text == run["skip_reason"]
    assert "one-sided Wilcoxon p = 0.00391" in rows[0].text
    fits_at_every_width(browser, "cache_racing_sweep")


def test_the_sweep_list_counts_skipped_and_cached(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{served.base}/ui")
    wait_for(browser, lambda b: "raced" in b.find_element(By.ID, "sweeps").text)
    header = browser.find_element(By.CSS_SELECTOR, "#sweeps thead").text
    assert "queued / running / succeeded / failed / cancelled / skipped" in header
    row = browser.find_element(By.XPATH, f"//table[@id='sweeps']//tr[td[1]='{served.sweep_id}']")
    assert "0 / 0 / 24 / 0 / 0 / 8 (16 cached)" in row.text
