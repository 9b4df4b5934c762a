"""Output encoding: text the server writes into a CSV never reaches a spreadsheet as a live
formula (probe row 6, CSV injection), and numbers stay numbers."""

from __future__ import annotations

import csv
import io
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

from app.service.reports import build_reports
from core.datasets import synthetic_dataset
from core.report_files import csv_lines
from core.store import LocalStore
from tests.utils.data import tiny_sweep
from tests.utils.server import finish_runs

FORMULA = '=HYPERLINK("http://x","click")'
ESCAPED = '"\'=HYPERLINK(""http://x"",""click"")"'


def test_a_formula_named_feature_is_escaped_in_the_drift_csv(client: TestClient, root: Path) -> None:
    # A parquet upload keeps every column: a feature may be named anything.
    dataset = synthetic_dataset("CSVI", n_days=1050)
    dataset[FORMULA] = np.random.default_rng(0).normal(size=len(dataset))
    upload = client.post("/datasets/CSVI", files={"file": ("d.parquet", dataset.to_parquet(index=False))})
    assert upload.status_code == 201, upload.text
    config = tiny_sweep(output_subdir="csvi", features=["ret_5", FORMULA])
    sweep = client.post("/sweeps", json={"asset": "CSVI", "config": config})
    assert sweep.status_code == 201, sweep.text
    sweep_id = sweep.json()["id"]
    ids = [r["run_id"] for r in client.get(f"/sweeps/{sweep_id}/runs").json()["data"]]
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    finish_runs(factory, {ids[0]: 0.01, ids[1]: 0.011})
    build_reports(factory, LocalStore(root), sweep_id, builder="test", plots=False)

    served = client.get(f"/sweeps/{sweep_id}/artifacts/drift_ks_psi_by_fold.csv")
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/csv")
    lines = served.text.splitlines()
    formula_rows = [line for line in lines if "HYPERLINK" in line]
    assert len(formula_rows) == 2  # val and test of the one fold
    assert all(f",{ESCAPED}," in line for line in formula_rows), formula_rows
    # No cell of the file starts a formula, and a CSV reader gets the text back behind one quote.
    cells = [cell for row in csv.reader(io.StringIO(served.text)) for cell in row]
    assert {cell for cell in cells if cell.startswith(("=", "@", "\t", "\r"))} == set()
    assert "'" + FORMULA in cells
    # The JSON view holds the name as it is: escaping is for spreadsheets, not data.
    drift = client.get(f"/sweeps/{sweep_id}/drift").json()["data"]
    assert FORMULA in {row["feature"] for row in drift}


def test_signs_escape_text_but_never_numbers() -> None:
    cases = {  # text cell: as written
        "-0.5": "-0.5",  # numbers spelled as text (a parameter value) stay numbers
        "-1e-05": "-1e-05",
        "+3": "+3",
        "-1+cmd|' /C calc'!A0": "\"'-1+cmd|' /C calc'!A0\"",
        "@SUM(A1)": '"\'@SUM(A1)"',
        "\tx": '"\'\tx"',
        "\rx": '"\'\rx"',
        "\x00x": '"\'\x00x"',
        "-": '"\'-"',
        "plain": "plain",
    }
    numbers = [-0.5, -1e-05, 3.0, -2.0, 0.0, 1.5, -0.25, -1e300, -7.0, 2.0]
    frame = pd.DataFrame({"text": list(cases), "num": numbers, "n": range(-10, 0)})
    lines = csv_lines(frame)[1:]
    assert [line.split(",")[0] for line in lines] == list(cases.values())
    assert [line.split(",")[1:] for line in lines][:3] == [["-0.5", "-10"], ["-1e-05", "-9"], ["3", "-8"]]
    assert [line.split(",")[1] for line in lines][-3:] == ["-1e+300", "-7", "2"]
    assert csv_lines(pd.DataFrame({FORMULA: [1]}))[0] == ESCAPED  # a header is a cell too


def test_escaping_keeps_a_100k_row_text_column_cheap() -> None:
    n = 100_000
    plain = pd.DataFrame({"config_id": [f"hidden_size={i % 200}" for i in range(n)], "x": np.arange(n) * 0.5})
    risky = plain.assign(config_id=[f"={i}" if i % 1000 == 0 else f"c{i}" for i in range(n)])
    started = time.perf_counter()
    assert len(csv_lines(plain)) == n + 1  # no cell needs escaping: one scan of the column
    lines = csv_lines(risky)  # a few do: each distinct cell is looked at once
    elapsed = time.perf_counter() - started
    tracemalloc.start()  # apart from the clock: tracing slows every allocation
    csv_lines(risky)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert lines[1].startswith('"\'=0",') and lines[2].startswith("c1,")
    assert elapsed < 2.0 and peak < 200 * 2**20, (elapsed, peak)
