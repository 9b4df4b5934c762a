"""`tftsweep plan`: exit codes, field-named messages, JSON output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.utils.configs import fold, sweep_dict
from worker.cli import main


def write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.mark.parametrize("path", ["core/configs/sweeps/example_msft.json", "core/configs/model_analysis.default.json"])
def test_example_configs_plan(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--config-json", path]) == 0
    out = capsys.readouterr().out
    assert "configs (" in out and "runs:" in out


def test_without_config_json_the_guides_default_is_used(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan"]) == 0
    captured = capsys.readouterr()
    assert "using the default config model_analysis.default.json (shipped with tftsweep)" in captured.err
    assert "output_subdir: 0_0_sweep_all_params_robust_vs_baseline" in captured.out
    assert "runs: 20" in captured.out  # 4 encoder lengths (one is the baseline) x 1 fold x 5 seeds


def test_the_cap_comes_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TFTSWEEP_MAX_RUNS", "3")
    assert main(["plan", "--config-json", write(tmp_path, "c.json", sweep_dict())]) == 2
    assert "16 runs, over the cap of 3" in capsys.readouterr().err


def test_plan_checks_the_folds_against_an_assets_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.utils.data import make_data_root, tiny_sweep

    monkeypatch.setenv("TFTSWEEP_DATA_DIR", str(make_data_root(tmp_path / "data")))
    good = write(tmp_path, "good.json", tiny_sweep())
    assert main(["plan", "--config-json", good, "--asset", "SYN"]) == 0
    assert "dataset SYN: every fold has rows for every config" in capsys.readouterr().out
    late_fold = {"enabled": True, "folds": [fold("f9", 2030)], "clip_to_data": True}
    late = write(tmp_path, "late.json", tiny_sweep(walk_forward=late_fold))
    assert main(["plan", "--config-json", late, "--asset", "SYN"]) == 2
    assert "fold f9: train window 20270101..20291231 has 0 rows" in capsys.readouterr().err
    assert main(["plan", "--config-json", good, "--asset", "NOPE"]) == 2
    assert "no dataset for asset 'NOPE'" in capsys.readouterr().err


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--config-json", write(tmp_path, "c.json", sweep_dict()), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["violations"] == []
    assert len(data["runs"]) == 16
    assert set(data["runs"][0]) == {"run_key", "config_id", "param_name", "param_value", "fold", "seed"}


def test_invalid_config_exits_2_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = sweep_dict(replica_seeds=[1, 1])
    assert main(["plan", "--config-json", write(tmp_path, "c.json", bad)]) == 2
    assert "replica_seeds: duplicate seeds: [1]" in capsys.readouterr().err


def test_invalid_json_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--config-json", write(tmp_path, "c.json", '{"a": }')]) == 2
    assert "invalid JSON at line 1 column 7" in capsys.readouterr().err


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--config-json", "/nonexistent/x.json"]) == 2
    assert "--config-json: file not found" in capsys.readouterr().err


def test_merge_lists_new_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path, "old.json", sweep_dict())
    new = write(tmp_path, "new.json", sweep_dict(replica_seeds=[7, 11, 99]))
    assert main(["plan", "--config-json", new, "--merge-with", old, "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert len(runs) == 8 and {r["seed"] for r in runs} == {99}


def test_refused_merge_exits_2_with_violations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path, "old.json", sweep_dict())
    new = write(
        tmp_path,
        "new.json",
        sweep_dict(replica_seeds=[7], walk_forward={"enabled": True, "folds": [fold("wf_1", 2015)]}),
    )
    assert main(["plan", "--config-json", new, "--merge-with", old]) == 2
    err = capsys.readouterr().err
    assert "2 violation(s)" in err
    assert "replica_seeds" in err and "walk_forward.folds[1]" in err
    assert main(["plan", "--config-json", new, "--merge-with", old, "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert {v["field"] for v in data["violations"]} == {"replica_seeds", "walk_forward.folds[1]"}


def test_unknown_flag_exits_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["plan", "--config-jsn", "x"])
    assert info.value.code == 2


def test_plan_refuses_folds_outside_the_assets_dataset_unless_clipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.utils.data import make_data_root, tiny_fold, tiny_sweep

    monkeypatch.setenv("TFTSWEEP_DATA_DIR", str(make_data_root(tmp_path / "data")))
    early = {**tiny_fold("f1", 2012), "train_start": "20050101"}
    walk = {"enabled": True, "folds": [early]}
    config = write(tmp_path, "c.json", tiny_sweep(walk_forward=walk))
    assert main(["plan", "--config-json", config, "--asset", "SYN"]) == 2
    assert (
        "walk_forward.folds[0].train_start: fold f1: train_start 20050101 is before the dataset's first date "
        "(SYN's dataset runs 20100101..20140110)"
    ) in capsys.readouterr().err
    assert main(["plan", "--config-json", config]) == 0  # without --asset there is no dataset to hold it to
    capsys.readouterr()
    clipped = write(tmp_path, "clip.json", tiny_sweep(walk_forward={**walk, "clip_to_data": True}))
    assert main(["plan", "--config-json", clipped, "--asset", "SYN"]) == 0
    out = capsys.readouterr().out
    assert "fold f1 cut to the data (train_start clipped): train 20100101..20111231" in out
    assert main(["plan", "--config-json", clipped, "--asset", "SYN", "--json"]) == 0
    (cut,) = json.loads(capsys.readouterr().out)["effective_folds"]
    assert (cut["train_start"], cut["clipped"]) == ("20100101", ["train_start"])


def test_plan_prints_what_the_design_can_detect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TFTSWEEP_DATA_DIR", str(tmp_path / "data"))  # no database there
    three = sweep_dict(
        replica_seeds=[7, 11, 13], param_ranges={"hidden_size": [8, 32, 64], "dropout": [0.1]}
    )  # 3 variants (dropout 0.1 is the baseline), 2 folds x 3 seeds
    assert main(["plan", "--config-json", write(tmp_path, "c.json", three)]) == 0
    out = capsys.readouterr().out
    assert (
        "detectability: 6 pairs per variant (folds x seeds), Holm family 3, smallest adjusted p-value 0.0938 "
        "(alpha 0.05): better not reachable; pairs needed 7"
    ) in out
    assert "smallest detectable delta: unknown" in out
    assert "no estimate: no database to read past runs from" in out
    assert not (tmp_path / "data").exists()  # plan creates no database
    assert main(["plan", "--config-json", write(tmp_path, "c.json", three), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["detectability"]["better_reachable"] is False
    assert data["plan"]["runs_total"] == 24 and data["estimate"] is None


def test_plan_estimates_from_a_database_it_can_see(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.service.submission import record_sweep
    from core.config import validate_sweep_config
    from core.store import LocalStore
    from tests.utils.data import make_data_root, tiny_sweep
    from tests.utils.server import finish_runs
    from worker.local_sweep import open_database

    root = make_data_root(tmp_path / "data")
    monkeypatch.setenv("TFTSWEEP_DATA_DIR", str(root))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    factory = open_database(root)
    done = record_sweep(
        factory, LocalStore(root), "SYN", validate_sweep_config(tiny_sweep()), merge=False, continue_on_error=False
    )
    finish_runs(factory, {run_id: 0.01 for run_id in done.new_run_ids})
    config = write(tmp_path, "c.json", tiny_sweep(output_subdir="next", param_ranges={"hidden_size": [4, 6, 8]}))
    assert main(["plan", "--config-json", config, "--asset", "SYN"]) == 0
    out = capsys.readouterr().out
    assert "estimate: 2 s of training for 3 new runs, one at a time" in out  # 0.5 s per recorded run
