"""Generated walk-forward folds (`walk_forward.generate`) and the embargo (`embargo_days`):
the expansion, its limits and errors, the plan and merges over it, and the rows an embargo cuts."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.config import MAX_LIST, Fold, validate_sweep_config
from core.dataset_folds import check_fold_fits, fold_counts, fold_rows, folds_out_of_range
from core.dry_run import dry_run_lines, dry_run_report
from core.errors import DatasetError, InvalidSweepConfig, MergeRejected
from core.folds import FoldPattern, add_years, fold_count, generate_windows
from core.merge import validate_merge
from core.plan import expand_sweep
from core.sweep_folder import SweepFolderConfig, read_analysis_config, write_analysis_config
from tests.utils.configs import fold, sweep_dict

# sweep_dict's two hand-written folds, as a pattern: train 2012-2014, val 2015, test 2016; then a year on.
GENERATE: dict[str, Any] = {
    "start": "20120101",
    "end": "20171231",
    "train_years": 3,
    "val_years": 1,
    "test_years": 1,
    "step_years": 1,
}


def generated(**changes: Any) -> dict[str, Any]:
    """`sweep_dict` with its folds generated from GENERATE with `changes` (None drops a key)."""
    pattern = {k: v for k, v in {**GENERATE, **changes}.items() if v is not None}
    return sweep_dict(walk_forward={"enabled": True, "generate": pattern})


def folds_of(**changes: Any) -> list[dict[str, str]]:
    return [{"name": f.name, **f.window_dict()} for f in validate_sweep_config(generated(**changes)).folds]


def errors_of(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidSweepConfig) as info:
        validate_sweep_config(data)
    return {e.field: e.message for e in info.value.errors}


# -- expansion -----------------------------------------------------------------------------------


def test_generated_folds_are_named_by_their_test_year_and_tile_the_calendar() -> None:
    assert folds_of() == [
        {
            "name": "wf_2016",
            "train_start": "20120101",
            "train_end": "20141231",
            "val_start": "20150101",
            "val_end": "20151231",
            "test_start": "20160101",
            "test_end": "20161231",
        },
        {
            "name": "wf_2017",
            "train_start": "20130101",
            "train_end": "20151231",
            "val_start": "20160101",
            "val_end": "20161231",
            "test_start": "20170101",
            "test_end": "20171231",
        },
    ]


def test_the_documented_example_expands_as_documented() -> None:
    text = Path("docs/config.md").read_text()
    example = json.loads("{" + text.split('"walk_forward": {"enabled": true, "generate": {')[1].split("}}")[0] + "}")
    got = folds_of(**example)
    rows = [
        f"| `{f['name']}` | {f['train_start']}..{f['train_end']} | {f['val_start']}..{f['val_end']} | "
        f"{f['test_start']}..{f['test_end']} |"
        for f in got
    ]
    assert [f["name"] for f in got] == ["wf_2019", "wf_2020", "wf_2021"]
    assert all(row in text for row in rows)


def test_the_last_fold_is_the_last_whose_test_window_ends_by_end() -> None:
    assert [f["name"] for f in folds_of(end="20191230")] == ["wf_2016", "wf_2017", "wf_2018"]
    assert [f["name"] for f in folds_of(end="20191231")] == ["wf_2016", "wf_2017", "wf_2018", "wf_2019"]


def test_expanding_keeps_train_start_and_grows_the_train_window() -> None:
    folds = folds_of(end="20191231", expanding=True)
    assert [f["train_start"] for f in folds] == ["20120101"] * 4
    assert [f["train_end"] for f in folds] == ["20141231", "20151231", "20161231", "20171231"]
    assert [f["test_start"] for f in folds] == ["20160101", "20170101", "20180101", "20190101"]


def test_step_years_moves_every_window_and_defaults_to_test_years() -> None:
    two = folds_of(end="20211231", step_years=2)
    assert [(f["train_start"], f["test_start"]) for f in two] == [
        ("20120101", "20160101"),
        ("20140101", "20180101"),
        ("20160101", "20200101"),
    ]
    # Two-year test windows moving by two years (the default step) tile the test period.
    tests = folds_of(end="20211231", test_years=2, step_years=None)
    assert [(f["name"], f["test_start"], f["test_end"]) for f in tests] == [
        ("wf_2016_2017", "20160101", "20171231"),
        ("wf_2018_2019", "20180101", "20191231"),
        ("wf_2020_2021", "20200101", "20211231"),
    ]


def test_train_days_counts_calendar_days_and_names_by_test_start() -> None:
    folds = folds_of(start="20120701", end="20160101", train_years=None, train_days=365)
    # 365 days from 2012-07-01 (a leap year's February is behind it) end on 2013-06-30.
    assert folds[0] == {
        "name": "wf_20140701",
        "train_start": "20120701",
        "train_end": "20130630",
        "val_start": "20130701",
        "val_end": "20140630",
        "test_start": "20140701",
        "test_end": "20150630",
    }
    assert len(folds) == 1  # the next test window would end on 2016-06-30


def test_a_year_from_29_february_ends_on_28_february() -> None:
    assert add_years(date(2016, 2, 29), 1) == date(2017, 3, 1)
    assert add_years(date(2016, 2, 29), 4) == date(2020, 2, 29)
    folds = folds_of(start="20160229", end="20210301", train_years=1)
    assert (folds[0]["train_start"], folds[0]["train_end"], folds[0]["val_start"]) == (
        "20160229",
        "20170228",
        "20170301",
    )
    assert folds[1]["train_start"] == "20170301" and folds[1]["test_end"] == "20200228"


@pytest.mark.parametrize("expanding", [False, True])
@pytest.mark.parametrize(("years", "days"), [(3, None), (None, 500)])
def test_the_fold_count_is_arithmetic_and_agrees_with_the_windows(
    expanding: bool, years: int | None, days: int | None
) -> None:
    def pattern(end: date) -> FoldPattern:
        return FoldPattern(date(1990, 3, 15), end, years, days, 2, 1, 1, expanding)

    windows = generate_windows(pattern(date(2024, 6, 30)))
    assert fold_count(pattern(date(2024, 6, 30))) == len(windows) > 20
    assert all(w.test_end <= date(2024, 6, 30) for w in windows)
    # Ending on the last fold's last test day keeps it; a day earlier drops it.
    assert fold_count(pattern(windows[-1].test_end)) == len(windows)
    assert fold_count(pattern(windows[-1].test_end - timedelta(days=1))) == len(windows) - 1


def test_ten_thousand_years_of_folds_are_counted_never_built() -> None:
    # A few date computations (bisection), up to the calendar's very last day.
    assert fold_count(FoldPattern(date(1, 1, 1), date(9999, 12, 31), 1, None, 1, 1, 1, False)) == 9997


def test_generated_folds_are_written_explicitly_and_read_back_the_same(tmp_path: Path) -> None:
    config = validate_sweep_config(generated(embargo_days=5))
    write_analysis_config(tmp_path, SweepFolderConfig("SYN", None, config))
    stored = json.loads((tmp_path / "analysis_config.json").read_text())
    assert "generate" not in stored["walk_forward"]
    assert [f["name"] for f in stored["walk_forward"]["folds"]] == ["wf_2016", "wf_2017"]
    assert stored["walk_forward"]["embargo_days"] == 5
    again = read_analysis_config(tmp_path).config
    assert again.folds == config.folds and [f.embargo_days for f in again.folds] == [5, 5]
    assert again.to_json_dict() == config.to_json_dict()
    assert [r.run_key for r in expand_sweep(again).runs] == [r.run_key for r in expand_sweep(config).runs]


def test_a_config_without_an_embargo_stores_the_keys_it_always_did() -> None:
    assert list(validate_sweep_config(sweep_dict()).to_json_dict()["walk_forward"]) == [
        "enabled",
        "folds",
        "clip_to_data",
    ]


# -- limits and errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"val_years": 0}, "walk_forward.generate.val_years", "greater than or equal to 1"),
        ({"test_years": -1}, "walk_forward.generate.test_years", "greater than or equal to 1"),
        ({"step_years": 0}, "walk_forward.generate.step_years", "greater than or equal to 1"),
        ({"train_days": 0, "train_years": None}, "walk_forward.generate.train_days", "greater than or equal to 1"),
        ({"train_days": 400}, "walk_forward.generate.train_years", "not both"),
        ({"train_years": None}, "walk_forward.generate.train_years", "required key is missing"),
        ({"val_years": None}, "walk_forward.generate.val_years", "required key is missing"),
        ({"end": "20120101"}, "walk_forward.generate.end", "must be after start 20120101"),
        ({"end": "20161230"}, "walk_forward.generate.end", "generates no fold: the first fold's test window ends on"),
        ({"start": "2012-01-01"}, "walk_forward.generate.start", "not a YYYYMMDD date"),
        ({"embargo_days": -1}, "walk_forward.generate.embargo_days", "greater than or equal to 0"),
        ({"expanding": "yes"}, "walk_forward.generate.expanding", "valid boolean"),
        ({"folds": 3}, "walk_forward.generate.folds", "unknown key"),
    ],
)
def test_a_bad_pattern_is_refused_at_its_field(changes: dict[str, Any], field: str, words: str) -> None:
    errors = errors_of(generated(**changes))
    assert words in errors[field], errors


def test_more_folds_than_the_list_limit_are_refused_before_any_is_built() -> None:
    errors = errors_of(generated(start="00010101", end="99991231", train_years=1))
    message = errors["walk_forward.generate.end"]
    assert f"generates 9,997 folds, over the limit of {MAX_LIST:,}" in message
    # Test years 1002..2001: exactly the limit; one year more is one fold too many.
    assert len(folds_of(start="10000101", end="20011231", train_years=1)) == MAX_LIST
    over = errors_of(generated(start="10000101", end="20021231", train_years=1))
    assert f"generates {MAX_LIST + 1:,} folds" in over["walk_forward.generate.end"]


def test_folds_and_generate_together_are_refused() -> None:
    both = sweep_dict(walk_forward={"enabled": True, "folds": [fold("wf_1", 2015)], "generate": GENERATE})
    assert "not both" in errors_of(both)["walk_forward.generate"]


def test_generate_and_an_embargo_need_walk_forward_enabled() -> None:
    split = {"split_config": fold("x", 2015) | {"name": None}}
    split["split_config"].pop("name")
    off = sweep_dict(walk_forward={"enabled": False, "generate": GENERATE}, **split)
    assert "set it to true" in errors_of(off)["walk_forward.generate"]
    off = sweep_dict(walk_forward={"enabled": False, "embargo_days": 3}, **split)
    assert "walk-forward folds only" in errors_of(off)["walk_forward.embargo_days"]


def test_the_embargo_keys_agree_or_are_refused() -> None:
    both = sweep_dict(walk_forward={"enabled": True, "generate": {**GENERATE, "embargo_days": 3}, "embargo_days": 4})
    assert "3 differs from walk_forward.embargo_days (4)" in errors_of(both)["walk_forward.generate"]
    same = sweep_dict(walk_forward={"enabled": True, "generate": {**GENERATE, "embargo_days": 3}, "embargo_days": 3})
    assert [f.embargo_days for f in validate_sweep_config(same).folds] == [3, 3]
    outer = sweep_dict(walk_forward={"enabled": True, "generate": GENERATE, "embargo_days": 4})
    assert validate_sweep_config(outer).walk_forward.embargo_days == 4
    explicit = sweep_dict(walk_forward={"enabled": True, "folds": [fold("wf_1", 2015)], "embargo_days": 2})
    assert [f.embargo_days for f in validate_sweep_config(explicit).folds] == [2]
    # A fold may repeat the block's embargo (a stored config does), not set another one.
    repeated = {"enabled": True, "folds": [fold("wf_1", 2015) | {"embargo_days": 2}], "embargo_days": 2}
    assert validate_sweep_config(sweep_dict(walk_forward=repeated)).folds[0].embargo_days == 2
    other = sweep_dict(walk_forward={"enabled": True, "folds": [fold("wf_1", 2015) | {"embargo_days": 2}]})
    assert (
        "folds[0] (wf_1) has embargo_days 2 but walk_forward.embargo_days is 0"
        in errors_of(other)["walk_forward.folds"]
    )


def test_everything_that_serialises_a_fold_carries_its_embargo() -> None:
    from core.run_cache import fold_windows

    plain, cut = validate_sweep_config(generated()).folds[0], validate_sweep_config(generated(embargo_days=5)).folds[0]
    assert "embargo_days" not in plain.model_dump()
    assert cut.model_dump()["embargo_days"] == 5
    assert fold_windows(cut) == {**fold_windows(plain), "embargo_days": 5}  # the run cache's key tells them apart


# -- the plan ------------------------------------------------------------------------------------


def test_generated_folds_plan_exactly_as_the_same_folds_written_by_hand() -> None:
    by_hand = sweep_dict(walk_forward={"enabled": True, "folds": [fold("wf_2016", 2015), fold("wf_2017", 2016)]})
    hand_plan = expand_sweep(validate_sweep_config(by_hand))
    gen_plan = expand_sweep(validate_sweep_config(generated()))
    assert [r.to_dict() for r in gen_plan.runs] == [r.to_dict() for r in hand_plan.runs]
    assert gen_plan.folds == hand_plan.folds
    hand_report = dry_run_report("SYN", hand_plan, hand_plan.runs, 0.05, None)
    gen_report = dry_run_report("SYN", gen_plan, gen_plan.runs, 0.05, None)
    assert gen_report == hand_report
    assert gen_report["plan"]["folds"][0] == {
        "fold": "wf_2016",
        "train_start": "20120101",
        "train_end": "20141231",
        "val_start": "20150101",
        "val_end": "20151231",
        "test_start": "20160101",
        "test_end": "20161231",
        "embargo_days": 0,
        "runs_new": 16 // 2,
        "runs_total": 16 // 2,
    }
    assert dry_run_lines(gen_report)[:2] == [
        "  fold wf_2016: train 20120101..20141231  val 20150101..20151231  test 20160101..20161231",
        "  fold wf_2017: train 20130101..20151231  val 20160101..20161231  test 20170101..20171231",
    ]


def test_an_embargo_is_part_of_every_run_key_and_none_keeps_the_old_keys() -> None:
    plain = expand_sweep(validate_sweep_config(generated())).runs
    zero = expand_sweep(validate_sweep_config(generated(embargo_days=0))).runs
    embargoed = expand_sweep(validate_sweep_config(generated(embargo_days=5))).runs
    assert [r.run_key for r in zero] == [r.run_key for r in plain]
    assert not {r.run_key for r in embargoed} & {r.run_key for r in plain}
    report = dry_run_report("SYN", expand_sweep(validate_sweep_config(generated(embargo_days=5))), [], 0.05, None)
    assert report["plan"]["folds"][0]["embargo_days"] == 5
    assert dry_run_lines(report)[0].endswith("(embargo: last 5 rows of train and of val left out)")


# -- merges --------------------------------------------------------------------------------------


def test_a_later_end_adds_folds_as_an_additive_merge() -> None:
    old = validate_sweep_config(generated())
    result = validate_merge(old, validate_sweep_config(generated(end="20191231")))
    assert [f.name for f in result.config.folds] == ["wf_2016", "wf_2017", "wf_2018", "wf_2019"]
    assert {r.fold for r in result.new_runs} == {"wf_2018", "wf_2019"}
    assert len(result.new_runs) == 2 * 4 * 2  # new folds x configs x seeds


def test_a_stored_config_with_explicit_folds_merges_with_the_pattern_that_made_it() -> None:
    stored = validate_sweep_config(json.loads(json.dumps(validate_sweep_config(generated()).to_json_dict())))
    result = validate_merge(stored, validate_sweep_config(generated(end="20181231")))
    assert {r.fold for r in result.new_runs} == {"wf_2018"}


def test_another_train_size_changes_the_old_folds_and_is_refused() -> None:
    with pytest.raises(MergeRejected) as info:
        validate_merge(validate_sweep_config(generated()), validate_sweep_config(generated(train_years=2)))
    found = {v.field: v for v in info.value.violations}
    assert set(found) == {"walk_forward.folds[0]", "walk_forward.folds[1]"}
    assert found["walk_forward.folds[0]"].rule == "fold 'wf_2016' may not be changed"
    assert found["walk_forward.folds[0]"].new["train_start"] == "20130101"


def test_another_embargo_is_refused_once() -> None:
    with pytest.raises(MergeRejected) as info:
        validate_merge(validate_sweep_config(generated()), validate_sweep_config(generated(embargo_days=3)))
    assert [(v.field, v.old, v.new) for v in info.value.violations] == [("walk_forward.embargo_days", 0, 3)]


# -- the rows an embargo leaves out --------------------------------------------------------------


def days(first: str, last: str) -> pd.DataFrame:
    dates = pd.bdate_range(first, last)
    return pd.DataFrame({"date": dates, "target": range(len(dates))})


def test_an_embargo_leaves_out_the_last_rows_of_train_and_of_val_and_keeps_test_whole() -> None:
    frame = days("2012-01-01", "2017-12-31")
    plain = validate_sweep_config(generated()).folds[0]
    cut = validate_sweep_config(generated(embargo_days=5)).folds[0]
    whole, embargoed = fold_rows(frame, plain), fold_rows(frame, cut)
    for part in ("train", "val"):
        assert len(embargoed[part]) == len(whole[part]) - 5
        pd.testing.assert_frame_equal(embargoed[part], whole[part].iloc[:-5])
    pd.testing.assert_frame_equal(embargoed["test"], whole["test"])
    # Five business days (rows) before each next window start: 2014-12-31 back to 2014-12-25.
    assert embargoed["train"]["date"].iloc[-1] == pd.Timestamp("2014-12-24")
    assert embargoed["val"]["date"].iloc[-1] == pd.Timestamp("2015-12-24")
    counts = fold_counts(pd.DatetimeIndex(frame["date"]), cut)
    assert counts.rows == {part: len(rows) for part, rows in embargoed.items()}


def test_a_fold_too_short_after_its_embargo_is_reported_like_any_other() -> None:
    from core.config import TrainingConfig

    frame = days("2012-01-01", "2017-12-31")
    short = Fold.model_validate(fold("wf_1", 2015, train_years=1)).with_embargo(240)
    training = TrainingConfig(max_encoder_length=30)
    with pytest.raises(DatasetError) as info:
        check_fold_fits(frame, short, training)
    assert str(info.value) == (
        "fold wf_1: train window 20140101..20141231 has 21 rows after an embargo of 240 rows; "
        "max_encoder_length=30 + max_prediction_length=1 needs at least 32"
    )


def test_a_generated_fold_outside_the_data_is_named_like_an_explicit_one() -> None:
    config = validate_sweep_config(generated(end="20191231"))
    errors = folds_out_of_range(config, "SYN", date(2012, 1, 1), date(2018, 6, 29))
    assert [e.field for e in errors] == ["walk_forward.folds[2].test_end", "walk_forward.folds[3].val_end"]
    assert errors[0].message.startswith("fold wf_2018: test_end 20181231 is after the dataset's last date")
    assert "walk_forward.generate.start and end" in errors[0].message


def test_tftsweep_plan_checks_generated_folds_against_the_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.utils.data import make_data_root, tiny_sweep
    from worker.cli import main

    monkeypatch.setenv("TFTSWEEP_DATA_DIR", str(make_data_root(tmp_path / "data")))  # 2010-01 .. about 2014-01

    def plan(pattern: dict[str, Any]) -> int:
        path = tmp_path / "c.json"
        path.write_text(json.dumps(tiny_sweep(walk_forward={"enabled": True, "generate": pattern})))
        return main(["plan", "--config-json", str(path), "--asset", "SYN"])

    fits = {"start": "20100101", "end": "20131231", "train_years": 1, "val_years": 1, "test_years": 1}
    assert plan(fits) == 0
    out = capsys.readouterr().out
    assert "folds (2): wf_2012, wf_2013" in out
    assert "  fold wf_2013: train 20110101..20111231  val 20120101..20121231  test 20130101..20131231" in out
    assert plan({**fits, "end": "20141231"}) == 2
    assert "walk_forward.folds[2].test_end: fold wf_2014: test_end 20141231 is after the dataset's last date" in (
        capsys.readouterr().err
    )
    assert plan({**fits, "embargo_days": 250}) == 2
    assert "fold wf_2012: train window 20100101..20101231 has 11 rows after an embargo of 250 rows" in (
        capsys.readouterr().err
    )
