"""Where things live under the data root (docs/architecture.md), and checks that a path stays inside it.

This module is the one place that knows the layout: the folders below are built here, and the
patterns that recognise them (`PUBLISHED_FOLDERS`, `VERSIONS`) are built from the same pieces.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from core.errors import DatasetError, UnsafePath
from core.names import check_safe_name

ANY = "*"
# Under the data root: one folder per asset, holding its dataset and sidecar.
DATASETS = PurePosixPath("processed", "dataset_tft")
# Under a sweep folder: one folder per fold.
FOLDS = "folds"
# In a model version: every forecast of the run (core.evaluation), and the seed's test file.
PREDICTIONS_FILE = "predictions.parquet"
LEGACY_PREDICTIONS_FILE = "test_predictions.csv"


def _safe(name: str, what: str) -> str:
    problem = check_safe_name(name)
    if problem is not None:
        raise ValueError(f"{what} {name!r} {problem}")
    return name


def _sweep(asset: str, output_subdir: str) -> PurePosixPath:
    return PurePosixPath("models", asset, "sweeps", output_subdir)


def _study(asset: str, output_subdir: str) -> PurePosixPath:
    return PurePosixPath("models", asset, "optuna", output_subdir)


def _models(fold: str) -> PurePosixPath:
    """A fold's model versions, under its sweep folder."""
    return PurePosixPath(FOLDS, fold, "models")


# Folders published as one (each with its own manifest), under the data root, innermost first:
# a model version, a sweep (its reports and inputs), a study, a dataset.
PUBLISHED_FOLDERS = (_sweep(ANY, ANY) / _models(ANY) / ANY, _sweep(ANY, ANY), _study(ANY, ANY), DATASETS / ANY)
# A sweep's model versions, under its folder.
VERSIONS = _models(ANY) / ANY


def datasets_dir(root: Path) -> Path:
    return root / DATASETS


def dataset_dir(root: Path, asset: str) -> Path:
    """The folder of an asset's dataset and sidecar (published to an object store as one).

    Raises:
        DatasetError: `asset` is no safe name (field `asset`).
    """
    problem = check_safe_name(asset)
    if problem is not None:
        raise DatasetError(f"asset {asset!r} {problem}", field="asset")
    return datasets_dir(root) / asset


def sweep_dir(root: Path, asset: str, output_subdir: str) -> Path:
    return root / _sweep(_safe(asset, "asset"), _safe(output_subdir, "output_subdir"))


def hpo_dir(root: Path, asset: str, output_subdir: str) -> Path:
    return root / _study(_safe(asset, "asset"), _safe(output_subdir, "output_subdir"))


def fold_dir(sweep: Path, fold: str) -> Path:
    return sweep / FOLDS / _safe(fold, "fold")


def model_version(config_id: str, seed: int) -> str:
    """A run's model version folder name: unique per (config, seed) within a fold."""
    return f"{config_id}__seed{seed}"


def version_folder(sweep: Path, fold: str, version: str) -> Path:
    """The folder of the model version named `version` (`model_version`) in a fold of `sweep`."""
    return sweep / _models(_safe(fold, "fold")) / version


def version_dir(sweep: Path, fold: str, config_id: str, seed: int) -> Path:
    return version_folder(sweep, fold, model_version(config_id, seed))


def sweep_at(rel: PurePosixPath) -> tuple[str, str] | None:
    """The (asset, output_subdir) of the sweep folder at `rel` under the data root, or None
    when `rel` is no sweep folder."""
    pattern = _sweep(ANY, ANY)
    if len(rel.parts) != len(pattern.parts) or not rel.match(str(pattern)):
        return None
    asset, output_subdir = rel.parts[1], rel.parts[3]
    if check_safe_name(asset) is not None or check_safe_name(output_subdir) is not None:
        return None
    return asset, output_subdir


def publishing_folders(root: Path, path: Path) -> list[Path]:
    """The folders whose manifest may list `path`, innermost first (none outside `root`)."""
    if not path.is_relative_to(root):
        return []
    rel = PurePosixPath(path.relative_to(root).as_posix())
    return [root.joinpath(*rel.parts[: len(p.parts)]) for p in PUBLISHED_FOLDERS if _within(rel, p)]


def in_versions(rel: PurePosixPath) -> bool:
    """`rel` (a path under a sweep folder) lies in a fold's model versions folder: model
    versions are published alone, never with the sweep's files."""
    return _within(rel, _models(ANY))


def owning_version(rel: PurePosixPath) -> PurePosixPath | None:
    """The model version folder (under the sweep folder) that `rel` lies inside, or None."""
    return PurePosixPath(*rel.parts[: len(VERSIONS.parts)]) if _within(rel, VERSIONS) else None


def _within(rel: PurePosixPath, pattern: PurePosixPath) -> bool:
    """`rel` lies strictly inside a folder that `pattern` matches (both relative, same base)."""
    depth = len(pattern.parts)
    return len(rel.parts) > depth and PurePosixPath(*rel.parts[:depth]).match(str(pattern))


def resolve_inside(root: Path, path: Path) -> Path | None:
    """`path` with symlinks resolved, or None when that lands outside `root` (a planted symlink)."""
    real_root = root.resolve()
    real = path.resolve()
    return real if real == real_root or real_root in real.parents else None


def ensure_inside(root: Path, *paths: Path) -> None:
    """Check, before anything is written there, that each of `paths` (existing or not) resolves
    inside `root`: a folder replaced by a link to elsewhere must not receive files.

    Raises:
        UnsafePath: naming the path relative to `root`.
    """
    for path in paths:
        if resolve_inside(root, path) is None:
            shown = path.relative_to(root) if path.is_relative_to(root) else path.name
            raise UnsafePath(f"{shown} leads outside {root.name} (a link?): nothing is written through it")
