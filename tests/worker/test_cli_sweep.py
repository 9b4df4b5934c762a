"""`tftsweep dataset ...` and `tftsweep sweep`: exit codes and messages a user sees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.datasets import synthetic_ohlcv
from tests.utils.data import make_data_root, tiny_sweep
from worker.cli import main


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    monkeypatch.setenv("TFTSWEEP_DATA_DIR", str(root))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return root


def test_dataset_import_and_list(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "prices.csv"
    synthetic_ohlcv(300).rename(columns=str.title).to_csv(csv, index=False)
    assert main(["dataset", "import", "--asset", "ABC", "--csv", str(csv)]) == 0
    assert "dataset ABC: 237 rows" in capsys.readouterr().out
    assert main(["dataset", "list"]) == 0
    assert capsys.readouterr().out.startswith("ABC\t237 rows")


def test_dataset_import_errors_exit_2(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "prices.csv"
    synthetic_ohlcv(300).drop(columns=["volume"]).to_csv(csv, index=False)
    assert main(["dataset", "import", "--asset", "ABC", "--csv", str(csv)]) == 2
    assert "missing columns ['volume']" in capsys.readouterr().err
    assert main(["dataset", "import", "--asset", "ABC", "--csv", str(tmp_path / "nope.csv")]) == 2
    assert "--csv: file not found" in capsys.readouterr().err
    assert main(["dataset", "import", "--asset", "a/b", "--csv", str(csv)]) == 2
    assert "asset 'a/b'" in capsys.readouterr().err


def test_sweep_without_dataset_exits_2(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps(tiny_sweep()))
    assert main(["sweep", "--asset", "NONE", "--config-json", str(config)]) == 2
    assert "no dataset for asset 'NONE'" in capsys.readouterr().err


@pytest.mark.slow
def test_sweep_command_runs_and_resumes(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_data_root(data_dir)
    config = tmp_path / "c.json"
    config.write_text(json.dumps(tiny_sweep()))
    args = ["sweep", "--asset", "SYN", "--config-json", str(config), "--output-subdir", "renamed"]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "sweep SYN/renamed (id 1): succeeded; runs: succeeded 2" in out.out
    assert "runs 2/2" in out.err
    assert (data_dir / "models/SYN/sweeps/renamed/sweep_runs.csv").is_file()
    assert main(args) == 0
    assert "resuming: 2/2 runs already finished" in capsys.readouterr().err
    config.write_text(json.dumps(tiny_sweep(param_ranges={"hidden_size": [4, 6, 8]})))
    assert main(args) == 2
    assert "--merge-tests" in capsys.readouterr().err
    assert main([*args, "--merge-tests"]) == 0
    assert "succeeded 3" in capsys.readouterr().out


@pytest.mark.slow
def test_dataset_example_builds_msft(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "example"]) == 0
    assert "dataset MSFT: 7920 rows, 1986-06-12..2017-11-10" in capsys.readouterr().out
    sidecar = json.loads((data_dir / "processed/dataset_tft/MSFT/dataset_tft_MSFT.json").read_text())
    assert sidecar["source"]["origin"] == "pmdarima.datasets.load_msft"


def test_sweep_with_a_fold_outside_the_data_exits_2(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 22 item 2: the windows were cut to the data without a word; now refused before training."""
    from tests.utils.data import tiny_fold

    make_data_root(data_dir)
    late = {**tiny_fold("f1", 2013), "test_end": "20191231"}
    config = tmp_path / "c.json"
    config.write_text(json.dumps(tiny_sweep(walk_forward={"enabled": True, "folds": [late]})))
    assert main(["sweep", "--asset", "SYN", "--config-json", str(config)]) == 2
    err = capsys.readouterr().err
    assert "walk_forward.folds[0].test_end: fold f1: test_end 20191231 is after the dataset's last date" in err
    assert not (data_dir / "models").exists()
