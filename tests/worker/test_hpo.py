"""A real tiny Optuna study: trials train, one is pruned, a rerun continues, top-k feeds a sweep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest

from core.errors import InvalidSweepConfig
from core.hpo import open_study, run_study
from core.hpo_config import validate_hpo_config
from tests.utils.data import ASSET, make_data_root, tiny_study, tiny_sweep
from worker.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    root = make_data_root(tmp_path_factory.mktemp("hpo") / "data")
    out = root / "models/SYN/optuna/study"
    summary = run_study(root, ASSET, validate_hpo_config(tiny_study()), out)
    return root, out, summary


def test_study_writes_every_artifact(finished: tuple[Path, Path, dict[str, Any]]) -> None:
    _, out, summary = finished
    for name in (
        "optuna_summary.json",
        "optuna_best_trial.json",
        "optuna_top_k_configs.json",
        "optuna_trials.csv",
        "optuna_trials.json",
        "optuna_study.db",
        "optuna_history.png",
        "optuna_param_importances.png",
        "optuna_parallel_coordinates.png",
    ):
        assert (out / name).is_file(), name
    assert summary["n_trials_wanted"] == 6 and summary["complete"] is True
    trials = pd.read_csv(out / "optuna_trials.csv")
    assert len(trials) == 6
    assert {"number", "state", "value", "params_learning_rate", "params_hidden_size", "mean_val_rmse"} <= set(trials)
    best = json.loads((out / "optuna_best_trial.json").read_text())
    done = trials[trials["state"] == "complete"]
    assert best["value"] == pytest.approx(done["value"].min())
    assert len(best["runs"]) == 2 and {r["fold"] for r in best["runs"]} == {"f1", "f2"}
    assert best["value"] == pytest.approx(sum(r["val_rmse"] for r in best["runs"]) / 2)


def test_hopeless_trials_are_pruned_at_fold_aware_steps(finished: tuple[Path, Path, dict[str, Any]]) -> None:
    _, out, summary = finished
    assert summary["n_trials"]["pruned"] >= 1
    study = optuna.load_study(study_name="study", storage=f"sqlite:///{out / 'optuna_study.db'}")
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    # Run i reports epoch e at step i * max_epochs + e: fold f1 -> steps 0..2, fold f2 -> 3..5.
    assert all(set(t.intermediate_values) <= {0, 1, 2, 3, 4, 5} for t in study.trials)
    assert any(set(t.intermediate_values) >= {0, 3} for t in complete)
    assert all(len(t.intermediate_values) < len(complete[0].intermediate_values) for t in pruned)
    for t in pruned:  # each pruning decision kept with the values it compared
        decision = t.user_attrs["pruned_at"]
        assert decision["step"] == max(t.intermediate_values) and decision["pruned"] is True
        assert decision["value"] == t.intermediate_values[decision["step"]] > decision["median"]


def test_top_k_are_sweep_configs(finished: tuple[Path, Path, dict[str, Any]]) -> None:
    _, out, summary = finished
    top = json.loads((out / "optuna_top_k_configs.json").read_text())
    candidates = summary["n_trials"]["complete"] - 1  # every complete trial but the baseline
    assert 1 <= len(top) == min(2, candidates)
    assert [t["source"]["rank"] for t in top] == list(range(1, len(top) + 1))
    assert [t["source"]["value"] for t in top] == sorted(t["source"]["value"] for t in top)
    assert 0 not in {t["source"]["trial"] for t in top}  # the baseline is not a candidate
    assert set(top[0]["params"]) == {"learning_rate", "hidden_size"}
    assert top[0]["name"].startswith("optuna_t")


def test_trial_0_trains_the_baseline_and_the_summary_compares_with_it(
    finished: tuple[Path, Path, dict[str, Any]],
) -> None:
    _, out, summary = finished
    trials = json.loads((out / "optuna_trials.json").read_text())
    assert trials[0]["baseline"] is True and trials[0]["state"] == "complete"
    assert (trials[0]["params_learning_rate"], trials[0]["params_hidden_size"]) == (0.01, 4)
    assert not any(t["baseline"] for t in trials[1:])
    comparison = summary["comparison"]
    assert comparison["baseline_trial"] == 0 and comparison["baseline_value"] == trials[0]["value"]
    assert comparison["best_value"] == min(t["value"] for t in trials if t["state"] == "complete")
    assert isinstance(comparison["beats_naive"], bool) and comparison["sentence"]
    if comparison["best_trial"] != 0:  # two folds x one seed: 2 pairs, never enough for 'better'
        assert comparison["test"]["pairs"] == 2 and comparison["test"]["verdict"] == "insufficient"
    needed = summary["importances"]["needed"]
    assert summary["importances"]["complete"] == summary["n_trials"]["complete"]
    assert summary["importances"]["status"] == (
        "ok" if summary["n_trials"]["complete"] >= needed else "not enough trials"
    )


def test_rerun_continues_the_study(finished: tuple[Path, Path, dict[str, Any]]) -> None:
    root, out, _ = finished
    config = validate_hpo_config(tiny_study(n_trials=7))
    summary = run_study(root, ASSET, config, out, plots=False)
    study = open_study(config, out)
    assert len(study.trials) == 7  # one more trial in the same study, not a new one
    assert summary["n_trials"]["complete"] + summary["n_trials"]["pruned"] == 7


def test_cli_hpo_and_a_sweep_from_its_top_k(
    finished: tuple[Path, Path, dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, out, _ = finished
    monkeypatch.setenv("TFTSWEEP_DATA_DIR", str(root))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config_file = tmp_path / "hpo.json"
    config_file.write_text(json.dumps(tiny_study(output_subdir="cli_study", n_trials=2)))
    assert main(["hpo", "--asset", ASSET, "--config-json", str(config_file)]) == 0
    captured = capsys.readouterr()
    assert "trial 1" in captured.err and "top-2 configs for a sweep" in captured.out
    summary = json.loads((root / "models/SYN/optuna/cli_study/optuna_summary.json").read_text())
    assert summary["comparison"]["sentence"] in captured.out  # beats the baseline / naive, or not

    sweep_file = tmp_path / "sweep.json"
    sweep_file.write_text(json.dumps(tiny_sweep(output_subdir="from_hpo", param_ranges={})))
    assert main(["sweep", "--asset", ASSET, "--config-json", str(sweep_file), "--from-hpo", str(out)]) == 0
    ranking = pd.read_csv(root / "models/SYN/sweeps/from_hpo/config_ranking.csv")
    top = json.loads((out / "optuna_top_k_configs.json").read_text())
    assert set(ranking["config_id"]) == {"baseline", *(t["name"] for t in top)}
    assert main(["sweep", "--asset", ASSET, "--config-json", str(sweep_file), "--from-hpo", str(tmp_path)]) == 2


def test_a_cancelled_study_stops_at_the_next_pruning_check(tmp_path: Path) -> None:
    """POST /hpo/{id}/cancel while a trial trains: the trial ends (pruned) at its next
    epoch's pruning check, no other trial starts, and the study stays cancelled."""
    import threading
    import time

    from app.service.studies import cancel_study, run_study, submit_study
    from core.hpo import run_stored_study
    from core.hpo_config import validate_hpo_config
    from tests.utils.fakes import RecordingQueue
    from tests.utils.server import server_settings
    from worker.local_sweep import open_database

    root = make_data_root(tmp_path / "data")
    settings = server_settings(root)
    factory = open_database(root)
    long = tiny_study(output_subdir="long", n_trials=20, pruner={"type": "none"})
    long["training_config"] |= {"max_epochs": 200, "early_stopping_patience": 200}
    study, _ = submit_study(factory, RecordingQueue(), settings, ASSET, validate_hpo_config(long))
    result: dict[str, str] = {}
    worker = threading.Thread(target=lambda: result.update(r=run_study(factory, settings, study.id, run_stored_study)))
    worker.start()
    out = root / "models" / ASSET / "optuna" / "long"
    deadline = time.monotonic() + 120
    while not (out / "optuna_study.db").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # the first trial is training
    started = time.monotonic()
    assert cancel_study(factory, study.id).status == "cancelled"
    worker.join(timeout=120)
    assert not worker.is_alive() and time.monotonic() - started < 30
    study_db = optuna.load_study(study_name="long", storage=f"sqlite:///{out / 'optuna_study.db'}")
    states = [t.state.name for t in study_db.trials]
    assert len(states) < 20 and states[-1] == "PRUNED"
    from app.db.models import Study
    from app.db.session import session_scope

    with session_scope(factory) as session:
        assert session.get_one(Study, study.id).status == "cancelled"


def test_a_study_continued_on_another_machine_through_the_object_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A study's folder (its SQLite storage included) lives in the store: a second worker with
    an empty disk continues it, and an API on a third machine serves its files."""
    from app.api.main import create_app
    from app.service.studies import run_study, submit_study
    from app.settings import Settings
    from core.hpo import run_stored_study
    from tests.utils.fakes import RecordingQueue
    from tests.utils.server import api_client
    from tests.utils.services import object_store, use_s3
    from worker.local_sweep import open_database

    url = use_s3(monkeypatch)
    staging = make_data_root(tmp_path / "staging")
    object_store(staging, url).publish_dataset(ASSET)
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    machines = {
        name: Settings(data_dir=tmp_path / name, database_url=database, redis_url=None, store_url=url)
        for name in ("api", "w1", "w2")
    }
    factory = open_database(tmp_path, database)
    short = validate_hpo_config(tiny_study(n_trials=2, pruner={"type": "none"}))
    study, _ = submit_study(factory, RecordingQueue(), machines["api"], ASSET, short)
    assert (
        run_study(factory, machines["w1"], study.id, run_stored_study)
        == "study 1: {'complete': 2, 'pruned': 0, 'fail': 0, 'running': 0}"
    )
    longer = validate_hpo_config(tiny_study(n_trials=3, pruner={"type": "none"}))
    _, continued = submit_study(factory, RecordingQueue(), machines["api"], ASSET, longer)
    assert continued
    assert (
        run_study(factory, machines["w2"], study.id, run_stored_study)
        == "study 1: {'complete': 3, 'pruned': 0, 'fail': 0, 'running': 0}"
    )
    with api_client(create_app(machines["api"], queue=RecordingQueue(), reaper=False)) as client:
        public = client.get(f"/hpo/{study.id}").json()
        assert public["status"] == "succeeded" and public["summary"]["n_trials"]["complete"] == 3
        # The continued run's sampler (the same seed, a new process) suggests trial 1's config
        # again: trial 2 reuses its runs, and the top-k lists that config once.
        assert client.get(f"/hpo/{study.id}/top-k").json()["count"] == 1
        plots = client.get(f"/hpo/{study.id}/plots").json()["data"]
        assert plots and all(client.get(p["url"]).content.startswith(b"\x89PNG") for p in plots)
    assert not (tmp_path / "api" / "models").exists()  # served from the store, not a local copy


def test_a_study_maximises_a_higher_better_metric(tmp_path: Path) -> None:
    """`metric: val_dir_acc` (higher is better): the study maximises it, the best trial has the
    highest value and the top-k come best first; a metric no registry entry ranks is refused."""
    root = make_data_root(tmp_path / "data")
    config = validate_hpo_config(tiny_study(n_trials=3, metric="val_dir_acc", pruner={"type": "none"}, top_k=2))
    out = root / "models/SYN/optuna/direction"
    summary = run_study(root, ASSET, config, out)
    assert (summary["metric"], summary["direction"]) == ("val_dir_acc", "maximize")
    trials = [t for t in open_study(config, out).get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert summary["best"]["value"] == max(float(t.value or 0) for t in trials)
    top = json.loads((out / "optuna_top_k_configs.json").read_text())
    values = {t.number: float(t.value or 0) for t in trials}
    ranked = [values[c["source"]["trial"]] for c in top]
    assert ranked == sorted(ranked, reverse=True)
    with pytest.raises(InvalidSweepConfig, match=r"metric: .val_coverage_80. cannot rank"):
        validate_hpo_config(tiny_study(metric="val_coverage_80"))


def test_the_wilcoxon_pruner_gets_one_value_per_fold_and_seed_run(tmp_path: Path) -> None:
    """`pruner: {type: wilcoxon}` over 2 folds x 3 seeds: each trial reports one val_rmse per
    run at steps 0, 1, ... (the run's index), never per epoch; a pruned trial stopped before its
    last run and says why; the baseline (trial 0) completes."""
    root = make_data_root(tmp_path / "data")
    config = validate_hpo_config(
        tiny_study(
            replica_seeds=[1, 2, 3],
            n_trials=4,
            search_space={"learning_rate": {"type": "categorical", "choices": [0.01, 0.5, 1.0, 2.0]}},
            sampler={"type": "grid", "seed": 3},
            pruner={"type": "wilcoxon", "p_threshold": 0.1, "n_startup_trials": 1},
        )
    )
    out = root / "models/SYN/optuna/wilcoxon"
    summary = run_study(root, ASSET, config, out)
    assert summary["pruner"]["type"] == "wilcoxon" and summary["pruner"]["warmup_steps_in_effect"] == 2
    trials = open_study(config, out).get_trials()
    for t in trials:
        runs = t.user_attrs["runs"]
        assert sorted(t.intermediate_values) == list(range(len(runs)))
        assert [t.intermediate_values[i] for i in range(len(runs))] == [r["val_rmse"] for r in runs]
    assert trials[0].user_attrs.get("baseline") and trials[0].state == optuna.trial.TrialState.COMPLETE
    assert len(trials[0].user_attrs["runs"]) == 6
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "learning rate 1.0 is worse than the best trial on every run of the first fold"
    for t in pruned:
        assert 4 <= len(t.user_attrs["runs"]) < 6  # 4 pairs at the least for p < 0.1 (1/16)
        assert t.user_attrs["pruned_at"]["rule"] == "wilcoxon"


def test_a_trial_reuses_runs_trained_before_by_the_study_or_by_a_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run cache in a study: a sweep's baseline runs (same dataset, folds, seeds, training)
    stand in for trial 0's, and a config the grid suggests again reuses the earlier trial's
    runs: those trials train nothing and score what the runs scored."""
    root = make_data_root(tmp_path / "data")
    monkeypatch.setenv("TFTSWEEP_DATA_DIR", str(root))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    study = tiny_study(
        n_trials=3,
        search_space={"learning_rate": {"type": "categorical", "choices": [0.01, 0.02]}},
        sampler={"type": "grid", "seed": 3},
        pruner={"type": "none"},
    )
    sweep = {k: v for k, v in study.items() if k in tiny_sweep()} | {"output_subdir": "base", "param_ranges": {}}
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    (tmp_path / "study.json").write_text(json.dumps(study))
    assert main(["sweep", "--asset", ASSET, "--config-json", str(tmp_path / "sweep.json")]) == 0
    assert main(["hpo", "--asset", ASSET, "--config-json", str(tmp_path / "study.json")]) == 0
    capsys.readouterr()
    config = validate_hpo_config(study)
    trials = open_study(config, root / "models" / ASSET / "optuna" / "study").get_trials()
    baseline = trials[0].user_attrs["runs"]
    assert [r["cached_from"].split("/")[0] for r in baseline] == ["1", "1"]  # sweep 1's baseline runs
    lr = {t.number: t.params["learning_rate"] for t in trials}
    again = next(t for t in trials[1:] if lr[t.number] == 0.01)  # the grid suggests the baseline again
    assert [r["cached_from"] for r in again.user_attrs["runs"]] == [
        "1/" + r["cached_from"].split("/")[1] for r in baseline
    ]
    assert again.value == trials[0].value
    other = next(t for t in trials if lr[t.number] == 0.02)
    assert all("cached_from" not in r for r in other.user_attrs["runs"])  # trained
