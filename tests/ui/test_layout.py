"""The dashboard's pages read at 1400 and 1000 px: nothing overflows the page, long tables are
collapsed, partial results say so, a study's trials and best trial read as tables, the top-k form
starts filled. Real API and pages (uvicorn in a thread, a recording queue instead of workers): the
runs' results are recorded as a worker would, the study's files written by the study's own writer
from Optuna trials made by hand, so nothing trains."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.feature_sets import resolve_features
from tests.ui.browser import fits_at_every_width, page_overflow, wait_for
from tests.utils.data import ASSET, make_data_root, tiny_fold, tiny_study, tiny_sweep
from tests.utils.processes import app_in_thread
from tests.utils.server import finish_runs

pytestmark = [pytest.mark.e2e]

# Long candidate names (the longest a name may be is 64) make the ranking wider than any page.
LONG_NAMES = [f"candidate_{i}_learning_rate_{lr}_with_a_name_long_enough_to_be_wide" for i, lr in enumerate((3, 5))]
WIDE_SWEEP = tiny_sweep(
    output_subdir="a_wide_sweep_whose_output_subdir_is_long_too",
    features="BASELINE_FEATURES",
    replica_seeds=[1, 2],
    walk_forward={
        "enabled": True,
        "folds": [
            tiny_fold("f1", 2012),
            tiny_fold("f2", 2013),
            {
                "name": "f3",
                "train_start": "20100701",
                "train_end": "20120630",
                "val_start": "20120701",
                "val_end": "20121231",
                "test_start": "20130101",
                "test_end": "20130630",
            },
        ],
    },
    param_ranges={"hidden_size": [6, 8, 12], "dropout": [0.05, 0.2]},
    configs=[{"name": name, "params": {"learning_rate": 0.001 * (i + 3)}} for i, name in enumerate(LONG_NAMES)],
)


@dataclass
class Served:
    base: str
    client: httpx.Client
    sweep_id: int
    total_runs: int
    finished: int
    study_id: int
    study_config: dict[str, Any]


# The median each pruned trial was compared with when it was pruned (as the pruner records it).
PRUNED_MEDIANS = {1: 0.0181, 3: 0.0173}


def _study_files(root: Path, config: dict[str, Any]) -> None:
    """The study's files as a worker leaves them after 2 complete and 2 pruned trials, written by
    `core.hpo_report.write_hpo_artifacts` from trials made by hand (Optuna gives a pruned trial its last
    intermediate value as its value, as here). Trial 0 is the baseline (its training_config's
    values, marked as the study marks the trial it enqueues); each pruned trial records the
    decision it was pruned on."""
    import optuna
    from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    from core.hpo import baseline_params
    from core.hpo_config import validate_hpo_config
    from core.hpo_pruning import BASELINE_ATTR
    from core.hpo_report import write_hpo_artifacts
    from core.paths import hpo_dir

    hpo = validate_hpo_config(config)
    study = optuna.create_study(study_name=hpo.output_subdir, direction="minimize")
    space: dict[str, BaseDistribution] = {
        "learning_rate": FloatDistribution(0.0001, 0.5, log=True),
        "hidden_size": IntDistribution(4, 8, step=2),
    }
    trials = [
        (TrialState.COMPLETE, 0.0123, baseline_params(hpo)),
        (TrialState.PRUNED, 0.9, {"learning_rate": 0.4, "hidden_size": 8}),
        (TrialState.COMPLETE, 0.0119, {"learning_rate": 0.003, "hidden_size": 6}),
        (TrialState.PRUNED, 0.8, {"learning_rate": 0.3, "hidden_size": 4}),
    ]
    for number, (state, value, params) in enumerate(trials):
        complete = state == TrialState.COMPLETE
        runs = [
            {"fold": fold, "seed": 1, "val_rmse": value + shift, "val_naive_rmse": 0.0125}
            for fold, shift in (("f1", -0.0002), ("f2", 0.0002))
        ]
        attrs: dict[str, Any] = {"mean_val_rmse": value, "std_val_rmse": 0.0004, "mean_test_rmse": value + 0.001}
        attrs |= {"mean_val_naive_rmse": 0.0125, "runs": runs}
        if complete:
            attrs["training_config"] = {**hpo.training_config.model_dump(), **params}
        if number == 0:
            attrs[BASELINE_ATTR] = True
        pruned_at = {"trial": number, "step": 1, "fold": "f1", "seed": 1, "epoch": 1, "value": value, "compared": 2}
        pruned_at |= {"median": PRUNED_MEDIANS.get(number), "pruned": True}
        study.add_trial(
            create_trial(
                state=state,
                value=value,
                params=params,
                distributions=space,
                intermediate_values={0: value * 1.1, 1: value} if not complete else {0: 0.02, 5: 0.015},
                user_attrs=attrs if complete else {"pruned_at": pruned_at},
            )
        )
    out = hpo_dir(root, ASSET, hpo.output_subdir)
    out.mkdir(parents=True, exist_ok=True)
    write_hpo_artifacts(study, hpo, out, asset=ASSET, plots=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = make_data_root(tmp_path_factory.mktemp("layout") / "data")
    with app_in_thread(root) as (app, base, client):
        sweep = client.post("/sweeps", json={"asset": ASSET, "config": WIDE_SWEEP})
        assert sweep.status_code == 201, sweep.text
        sweep_id, total = sweep.json()["id"], sweep.json()["total_runs"]
        runs = client.get(f"/sweeps/{sweep_id}/runs", params={"limit": 1000}).json()["data"]
        # Two thirds of the runs finish (a result that depends on the run), the rest stay queued.
        done: dict[int, float | None] = {
            r["run_id"]: 0.010 + 0.0001 * (i % 7) for i, r in enumerate(runs) if i % 3 != 2
        }
        finish_runs(app.state.session_factory, done)
        study_config = tiny_study(output_subdir="study_with_a_long_name_for_its_top_k_sweep")
        study = client.post("/hpo", json={"asset": ASSET, "config": study_config})
        assert study.status_code == 201, study.text
        _study_files(root, study_config)
        yield Served(base, client, sweep_id, total, len(done), study.json()["id"], study_config)


def visible_rows(browser: Any, table: str) -> int:
    return int(
        browser.execute_script(
            f"return [...document.querySelectorAll('#{table} tbody tr')].filter((r) => !r.hidden).length"
        )
    )


def card_scrolls(browser: Any, table: str) -> bool:
    """The table is wider than its card, and the card (not the page) scrolls to show the rest."""
    return bool(
        browser.execute_script(
            "const card = document.getElementById(arguments[0]).closest('.table-scroll');"
            "return card !== null && getComputedStyle(card).overflowX === 'auto'"
            " && card.scrollWidth > card.clientWidth;",
            table,
        )
    )


def headings(browser: Any, table: str) -> list[tuple[str, str, str]]:
    """Each header cell of `table`: (its column, the text shown, its tooltip)."""
    from selenium.webdriver.common.by import By

    return [
        (th.get_attribute("data-column"), th.text.replace("\n", ""), th.get_attribute("title") or "")
        for th in browser.find_elements(By.CSS_SELECTOR, f"#{table} thead th")
    ]


def check_verdict_intervals(served: Served, browser: Any) -> None:
    """Beside each verdict the simultaneous interval (Bonferroni over its Holm family); the ci95
    columns are named unadjusted; a note under each table says which decides, over how many."""
    from selenium.webdriver.common.by import By

    ranking = served.client.get(f"/sweeps/{served.sweep_id}/ranking").json()["data"]
    impact = served.client.get(f"/sweeps/{served.sweep_id}/param-impact").json()["summary"]
    for table, rows, key, noun in (("ranking", ranking, "config_id", "variants"), ("impact", impact, None, "values")):
        shown = headings(browser, table)
        columns = [c for c, _, _ in shown]
        verdict = columns.index("verdict")
        assert columns[verdict + 2 : verdict + 6] == [
            "simultaneous_ci_low",
            "simultaneous_ci_high",
            "holm_pvalue",
            "holm_family",
        ], columns
        text = {c: (t, title) for c, t, title in shown}
        for end in ("low", "high"):
            assert text[f"ci95_{end}"][0] == f"unadjusted 95% CI {end}"
            assert "does not decide the verdict" in text[f"ci95_{end}"][1]
            assert text[f"simultaneous_ci_{end}"][0] == f"simultaneous CI {end}"
            assert "Bonferroni" in text[f"simultaneous_ci_{end}"][1]
        tested = [r for r in rows if r["holm_pvalue"] is not None]
        assert len(tested) >= 2, f"{table}: too few tested rows for the family to show"
        family = {r["holm_family"] for r in tested}
        assert family == {len(tested)}  # one table, one Holm family
        note = browser.find_element(By.ID, f"{table}-note").text
        assert note.startswith(
            f"verdict: Holm-adjusted Wilcoxon over {len(tested)} {noun}; "
            "interval shown: simultaneous (Bonferroni) for that family."
        ), note
        untested = [r for r in rows if r["holm_pvalue"] is None and r.get("verdict") != "baseline"]
        assert ("without a p-value" in note) == bool(untested), note
        assert all(r["holm_family"] == len(tested) + 1 for r in untested)
        if key is not None:  # the cells hold the API's values for each row
            for row in tested:
                tr = browser.find_element(
                    By.XPATH, f"//table[@id='{table}']//tr[td[@data-column='{key}']='{row[key]}']"
                )
                for end in ("low", "high"):
                    cell = tr.find_element(By.CSS_SELECTOR, f"td[data-column='simultaneous_ci_{end}']")
                    assert float(cell.get_attribute("data-value")) == pytest.approx(
                        row[f"simultaneous_ci_{end}"], rel=1e-5
                    )


def test_sweep_list_and_sweep_page_fit_at_both_widths(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{served.base}/ui")
    wait_for(browser, lambda b: "a_wide_sweep" in b.find_element(By.ID, "sweeps").text)
    fits_at_every_width(browser, "layout_sweeps")

    browser.get(f"{served.base}/ui/sweeps/{served.sweep_id}")
    wait_for(browser, lambda b: LONG_NAMES[0] in b.find_element(By.ID, "ranking").text)
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#drift tbody tr")) > 10)
    wait_for(browser, lambda b: "at alpha" in b.find_element(By.ID, "significance").text)

    # The baseline's verdict cell holds its badge; its config_id cell (also "baseline") stays text.
    baseline = browser.find_element(By.XPATH, "//table[@id='ranking']//tr[td[@data-column='config_id']='baseline']")
    assert baseline.find_elements(By.CSS_SELECTOR, "td[data-column='verdict'] .badge.verdict-baseline")
    assert not baseline.find_elements(By.CSS_SELECTOR, "td[data-column='config_id'] .badge")

    check_verdict_intervals(served, browser)

    partial = f"partial: {served.finished} of {served.total_runs} runs"
    for tag in ("ranking-partial", "significance-partial"):
        assert browser.find_element(By.ID, tag).is_displayed()
        assert browser.find_element(By.ID, tag).text.startswith(partial)

    drift_rows = served.client.get(f"/sweeps/{served.sweep_id}/drift").json()["data"]
    # folds × features × (val, test): 84, as long as the table the issue saw
    assert len(drift_rows) == 3 * len(resolve_features("BASELINE_FEATURES")) * 2 > 10
    assert visible_rows(browser, "drift") == 10
    more = browser.find_element(By.ID, "drift-more")
    assert more.text.startswith(f"10 of {len(drift_rows)} rows shown.") and f"Show all {len(drift_rows)}" in more.text
    # Largest PSI first: the collapsed rows are the features that moved most.
    shown = [
        float(v)
        for v in browser.execute_script(
            "return [...document.querySelectorAll('#drift tbody tr')].slice(0, 10)"
            ".map((r) => r.cells[5].dataset.value);"
        )
    ]
    assert shown == pytest.approx(sorted((r["psi"] for r in drift_rows), reverse=True)[:10], rel=1e-5)

    def ranking_scrolls_in_its_card(browser: Any, width: int) -> None:
        assert card_scrolls(browser, "ranking"), f"the ranking fits at {width} px: the test proves nothing"

    fits_at_every_width(browser, "layout_sweep", ranking_scrolls_in_its_card)

    more.find_element(By.TAG_NAME, "button").click()
    assert visible_rows(browser, "drift") == len(drift_rows)
    assert more.text.startswith(f"All {len(drift_rows)} rows shown.")
    assert page_overflow(browser) == 0
    # A sort keeps the choice (every row shown); the first click sorts ascending.
    browser.find_element(By.CSS_SELECTOR, "#drift th:nth-child(6) button").click()
    assert visible_rows(browser, "drift") == len(drift_rows)
    more.find_element(By.TAG_NAME, "button").click()
    assert visible_rows(browser, "drift") == 10
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_study_page_reads_as_tables_and_fills_the_top_k_form(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    study = served.client.get(f"/hpo/{served.study_id}").json()
    browser.get(f"{served.base}/ui/hpo/{served.study_id}")
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#trials tbody tr")) == 4)

    # The best trial (number 2) as a table of its parameters and values, not a block of JSON.
    assert browser.find_element(By.ID, "best-caption").text == "Trial 2: mean_val_rmse 0.0119000."
    best = {
        row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td").text
        for row in browser.find_elements(By.CSS_SELECTOR, "#best tbody tr")
    }
    assert best == {
        "learning_rate": "0.00300000",
        "hidden_size": "6",
        "mean_val_rmse": "0.0119000",
        "std_val_rmse": "0.000400000",
        "mean_test_rmse": "0.0129000",
        "mean_val_naive_rmse": "0.0125000",
    }
    assert not browser.find_elements(By.CSS_SELECTOR, "pre")

    # Pruned trials' values sit in their own column, never under "objective", beside the median
    # they were compared with when pruned (as the API's trial rows carry it).
    headers = [th.text.replace("\n", "") for th in browser.find_elements(By.CSS_SELECTOR, "#trials thead th")]
    objective, last = headers.index("objective"), headers.index("last intermediate value")
    median = headers.index("median at pruning")
    cells = {
        row.find_elements(By.TAG_NAME, "td")[0].get_attribute("data-value"): [
            td.get_attribute("data-value") for td in row.find_elements(By.TAG_NAME, "td")
        ]
        for row in browser.find_elements(By.CSS_SELECTOR, "#trials tbody tr")
    }
    api_trials = served.client.get(f"/hpo/{served.study_id}/trials").json()["data"]
    assert [t["pruned_median"] for t in api_trials] == [None, PRUNED_MEDIANS[1], None, PRUNED_MEDIANS[3]]
    assert [(cells[n][1], cells[n][objective], cells[n][last], cells[n][median]) for n in "0123"] == [
        ("complete", "0.0123000", "", ""),
        ("pruned", "", "0.900000", "0.0181000"),
        ("complete", "0.0119000", "", ""),
        ("pruned", "", "0.800000", "0.0173000"),
    ]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#trials tbody tr.trial-pruned")) == 2
    # The baseline trial (trial 0, the study's own training_config) is marked, and only it.
    assert [t["baseline"] for t in api_trials] == [True, False, False, False]
    marked = browser.find_elements(By.CSS_SELECTOR, "#trials tbody tr.trial-baseline")
    assert [row.find_element(By.TAG_NAME, "td").text for row in marked] == ["0 baseline"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#trials tbody .badge.verdict-baseline")) == 1

    # The top-k form starts from the study's own config as GET /hpo/{id} answers it: its folds,
    # seeds, features and baseline training_config, under `{output_subdir}_top_k`, nothing of the search.
    area = browser.find_element(By.ID, "topk-config")
    filled = json.loads(area.get_attribute("value"))
    assert "Filled from study" in browser.find_element(By.ID, "topk-source").text
    effective = study["config"]  # the config with its defaults filled in
    assert filled["walk_forward"]["folds"] == effective["walk_forward"]["folds"]
    assert [f["name"] for f in filled["walk_forward"]["folds"]] == ["f1", "f2"]
    assert filled["training_config"] == effective["training_config"]
    assert filled["training_config"]["learning_rate"] == served.study_config["training_config"]["learning_rate"]
    assert filled["replica_seeds"] == served.study_config["replica_seeds"] == [1]
    assert filled["features"] == effective["features"]
    assert filled["output_subdir"] == f"{served.study_config['output_subdir']}_top_k"
    assert not {"search_space", "n_trials", "sampler", "pruner", "top_k", "objective", "storage"} & set(filled)

    # It stays editable: what the user types survives the page's refresh, and is what is submitted.
    edited = {**filled, "output_subdir": "edited_top_k", "replica_seeds": [1, 2]}
    browser.execute_script("arguments[0].value = JSON.stringify(arguments[1], null, 2);", area, edited)
    browser.execute_async_script("const done = arguments[arguments.length - 1]; studyPage().then(done, done);")
    assert json.loads(area.get_attribute("value")) == edited

    fits_at_every_width(browser, "layout_study")

    browser.find_element(By.CSS_SELECTOR, "#topk-form button").click()
    wait_for(browser, lambda b: "/ui/sweeps/" in b.current_url)
    sweep_id = int(browser.current_url.rsplit("/", 1)[1])
    sweep = served.client.get(f"/sweeps/{sweep_id}").json()
    assert (sweep["asset"], sweep["output_subdir"]) == (ASSET, "edited_top_k")
    assert sweep["config"]["replica_seeds"] == [1, 2]
    top = served.client.get(f"/hpo/{served.study_id}/top-k").json()["data"]
    # The baseline (trial 0) is no candidate: the sweep trains it as its baseline anyway.
    assert [c["name"] for c in sweep["config"]["configs"]] == [t["name"] for t in top] == ["optuna_t002"]
    assert sweep["config"]["walk_forward"]["folds"] == effective["walk_forward"]["folds"]
    assert sweep["config"]["training_config"] == effective["training_config"]


def test_study_notes_show_when_the_answer_has_them(served: Served, browser: Any) -> None:
    """The study's comparison sentence and an importances notice, wherever the answer carries
    them (top level or its summary); nothing when it carries neither."""
    from selenium.webdriver.common.by import By

    browser.get(f"{served.base}/ui/hpo/{served.study_id}")
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#trials tbody tr")) == 4)
    study = served.client.get(f"/hpo/{served.study_id}").json()
    summary = study.get("summary") or {}
    note = study.get("importances") or summary.get("importances")
    comparison = study.get("comparison") or summary.get("comparison")
    shown = browser.find_element(By.ID, "comparison")
    assert shown.is_displayed() == bool(comparison and comparison.get("sentence"))
    if comparison:
        assert shown.text == comparison["sentence"]
    notice = browser.find_element(By.ID, "importances-note")
    assert notice.is_displayed() == bool(note and note.get("status") not in (None, "ok", "computed", "available"))
    # The page's own reading of such answers, for the shapes the study may carry.
    for answer in (
        {"comparison": {"sentence": "trial 2 beats the baseline"}},
        {"summary": {"comparison": {"sentence": "x"}}},
    ):
        assert browser.execute_script("return studyNote(arguments[0], 'comparison').sentence;", answer)
    text = browser.execute_script(
        "return importancesText({status: 'not enough trials', complete: 2, needed: 5});"
    )  # the shape core.hpo_report.param_importances answers
    assert text == "Parameter importances: not enough trials (2 of 5 complete trials)."
    assert browser.execute_script("return importancesText({status: 'ok'});") == ""
