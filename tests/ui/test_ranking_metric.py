"""The sweep page's metric selector: it lists the metrics the ranking may follow, starts on the
sweep's rank_by, and choosing another re-orders the table and shows that metric's columns,
verdict badges kept. Real API and page (uvicorn in a thread); the runs are recorded through the
service with a fake trainer, so nothing trains."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from app.service.runs import train_run
from core.runs import RunOutcome, RunSpec
from tests.ui.browser import fits_at_every_width, wait_for
from tests.utils.data import ASSET, make_data_root, tiny_sweep
from tests.utils.fakes import fake_train
from tests.utils.processes import app_in_thread

pytestmark = [pytest.mark.e2e]

# Per config (val RMSE, val MAE): the baseline has the lower RMSE, the variant the lower MAE.
SCORES = {"baseline": (0.010, 0.009), "hidden_size=6": (0.012, 0.004)}


def opposite_trainer(spec: RunSpec, stop_requested: Callable[[], bool] | None = None) -> RunOutcome:
    """`fake_train` with `SCORES`' validation RMSE and MAE (seed 2 adds 10%)."""
    outcome = fake_train(spec, stop_requested)
    assert outcome.metrics is not None
    rmse, mae = (value * (1 + 0.1 * (spec.seed - 1)) for value in SCORES[spec.config_id])
    outcome.metrics |= {"val_rmse": rmse, "val_mae": mae}
    return outcome


@dataclass
class Served:
    base: str
    sweep_id: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = make_data_root(tmp_path_factory.mktemp("metric") / "data")
    with app_in_thread(root) as (app, base, client):
        sweep = client.post("/sweeps", json={"asset": ASSET, "config": tiny_sweep(replica_seeds=[1, 2])})
        assert sweep.status_code == 201, sweep.text
        sweep_id = sweep.json()["id"]
        store = app.state.settings.store()
        for run in client.get(f"/sweeps/{sweep_id}/runs").json()["data"]:
            trained = train_run(
                app.state.session_factory, store, run["run_id"], "ui-test", opposite_trainer, lease_seconds=60
            )
            assert trained.text == "succeeded", trained.text
        yield Served(base, sweep_id)


def column_values(browser: Any, column: str) -> list[str]:
    return list(
        browser.execute_script(
            "return [...document.querySelectorAll(`#ranking tbody td[data-column='${arguments[0]}']`)]"
            ".map((td) => td.textContent);",
            column,
        )
    )


def test_choosing_a_metric_reranks_the_table_and_shows_its_columns(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(f"{served.base}/ui/sweeps/{served.sweep_id}")
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#ranking tbody tr td.num")) > 0)
    select = browser.find_element(By.ID, "ranking-metric")
    label = browser.find_element(By.CSS_SELECTOR, "label[for='ranking-metric']")
    assert label.text == "Rank by"
    choices = [o.get_attribute("value") for o in Select(select).options]
    assert {"val_rmse", "val_mae", "val_dir_acc"} <= set(choices) and "val_coverage_80" not in choices
    assert Select(select).first_selected_option.get_attribute("value") == "val_rmse"  # the sweep's rank_by
    assert column_values(browser, "config_id") == ["baseline", "hidden_size=6"]
    columns = [th.get_attribute("data-column") for th in browser.find_elements(By.CSS_SELECTOR, "#ranking thead th")]
    assert {"mean_val_rmse", "std_val_rmse", "mean_test_rmse", "rank_score"} <= set(columns)

    Select(select).select_by_value("val_mae")
    wait_for(browser, lambda b: column_values(b, "config_id") == ["hidden_size=6", "baseline"])
    columns = [th.get_attribute("data-column") for th in browser.find_elements(By.CSS_SELECTOR, "#ranking thead th")]
    at = columns.index("robust_score")
    assert columns[at + 1 : at + 5] == ["mean_val_mae", "std_val_mae", "mean_test_mae", "rank_score"]
    mae = [0.004, 0.0044]
    mean, std = sum(mae) / 2, (mae[1] - mae[0]) / 2**0.5
    assert [float(v) for v in column_values(browser, "mean_val_mae")] == pytest.approx([mean, 0.00945], rel=1e-5)
    assert float(column_values(browser, "rank_score")[0]) == pytest.approx(mean + std, rel=1e-5)
    # The verdicts (on the chosen metric) stay badges.
    assert browser.find_elements(By.CSS_SELECTOR, "#ranking td[data-column='verdict'] .badge.verdict-baseline")
    assert Select(select).first_selected_option.get_attribute("value") == "val_mae"
    fits_at_every_width(browser, "ranking_by_metric")
