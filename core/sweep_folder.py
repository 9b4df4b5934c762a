"""What a sweep folder says about itself, so it can be rebuilt or adopted wherever it lies.

`analysis_config.json` holds the effective (merged) sweep config plus the asset and the
fingerprint of the dataset the runs trained on and, with `walk_forward.clip_to_data`, the
folds' windows cut to that dataset's dates (`effective_folds`); `sweep_runs.json` holds every
run. Nothing here reads the folder's position under a data root.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import SweepConfig, clipped_window, parse_date, validate_sweep_config
from core.errors import InvalidSweepConfig, SweepFolderError
from core.files import write_json_atomic
from core.names import check_safe_name
from core.sweep_runs import records_from_rows

ANALYSIS_CONFIG = "analysis_config.json"
SWEEP_RUNS_JSON = "sweep_runs.json"
# Keys of analysis_config.json that describe the folder rather than the sweep config.
FOLDER_KEYS = ("asset", "dataset", "effective_folds")


@dataclass(frozen=True)
class SweepFolderConfig:
    """`analysis_config.json`: the asset, its dataset's fingerprint (None in folders written
    before fingerprints were recorded) and the effective sweep config."""

    asset: str
    dataset: dict[str, Any] | None
    config: SweepConfig

    @property
    def effective_folds(self) -> list[dict[str, Any]] | None:
        """With `walk_forward.clip_to_data`, each fold's windows cut to the dataset's first and
        last dates (`clipped_window`), from the fingerprint alone; None without clipping (every
        window lies inside the data: submission refuses any other) or without a fingerprint."""
        return effective_folds(self.config, self.dataset)

    def to_json_dict(self) -> dict[str, Any]:
        data = {"asset": self.asset, "dataset": self.dataset, **self.config.to_json_dict()}
        folds = self.effective_folds
        if folds is not None:
            data["effective_folds"] = folds
        return data


def effective_folds(config: SweepConfig, dataset: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """`config`'s folds cut to the dates of the dataset `dataset` fingerprints, when
    `walk_forward.clip_to_data` is on (else None)."""
    if not config.walk_forward.clip_to_data or not dataset or not dataset.get("first_date"):
        return None
    first = parse_date(str(dataset["first_date"]).replace("-", ""))
    last = parse_date(str(dataset["last_date"]).replace("-", ""))
    return [clipped_window(fold, fold.name, first, last) for fold in config.folds]


def write_analysis_config(folder: Path, analysis: SweepFolderConfig) -> None:
    write_json_atomic(folder / ANALYSIS_CONFIG, analysis.to_json_dict())


def is_sweep_folder(folder: Path) -> bool:
    return (folder / ANALYSIS_CONFIG).is_file() and (folder / SWEEP_RUNS_JSON).is_file()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepFolderError(f"{path.parent.name}/{path.name} is missing: not a sweep folder") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SweepFolderError(f"{path.parent.name}/{path.name} cannot be read: {exc}") from None


def read_analysis_config(folder: Path, asset: str | None = None) -> SweepFolderConfig:
    """The folder's `analysis_config.json`. `asset` is needed only for folders written before
    the asset was recorded in it.

    Raises:
        SweepFolderError: the file is missing, unreadable, invalid, or names no asset.
    """
    data = _read_json(folder / ANALYSIS_CONFIG)
    if not isinstance(data, dict):
        raise SweepFolderError(f"{ANALYSIS_CONFIG} in {folder.name} is not a JSON object")
    recorded = data.get("asset")
    name = recorded if isinstance(recorded, str) else asset
    if name is None:
        raise SweepFolderError(
            f"{ANALYSIS_CONFIG} in {folder.name} records no asset (an older folder): give it with --asset"
        )
    problem = check_safe_name(name)
    if problem is not None:
        raise SweepFolderError(f"{ANALYSIS_CONFIG} in {folder.name}: asset {name!r} {problem}")
    dataset = data.get("dataset")
    try:
        config = validate_sweep_config({k: v for k, v in data.items() if k not in FOLDER_KEYS})
    except InvalidSweepConfig as exc:
        raise SweepFolderError(f"{ANALYSIS_CONFIG} in {folder.name} is not a valid sweep config: {exc}") from None
    return SweepFolderConfig(name, dataset if isinstance(dataset, dict) else None, config)


def read_run_records(folder: Path) -> list[dict[str, Any]]:
    """The run records of `sweep_runs.json`.

    Raises:
        SweepFolderError: the file is missing or is not a list of rows.
    """
    rows = _read_json(folder / SWEEP_RUNS_JSON)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise SweepFolderError(f"{SWEEP_RUNS_JSON} in {folder.name} is not a list of runs")
    return records_from_rows(rows)
