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
    late = write(tmp_path, "late.json", tiny_sweep(walk_forward={"enabled": True, "folds": [fold("f9", 2030)]}))
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
