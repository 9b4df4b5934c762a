"""Where things live under the data root (SPEC section 3), and checks that a path stays inside it."""

from __future__ import annotations

from pathlib import Path

from core.errors import UnsafePath
from core.names import check_safe_name


def _safe(name: str, what: str) -> str:
    problem = check_safe_name(name)
    if problem is not None:
        raise ValueError(f"{what} {name!r} {problem}")
    return name


def sweep_dir(root: Path, asset: str, output_subdir: str) -> Path:
    return root / "models" / _safe(asset, "asset") / "sweeps" / _safe(output_subdir, "output_subdir")


def hpo_dir(root: Path, asset: str, output_subdir: str) -> Path:
    return root / "models" / _safe(asset, "asset") / "optuna" / _safe(output_subdir, "output_subdir")


def fold_dir(sweep: Path, fold: str) -> Path:
    return sweep / "folds" / _safe(fold, "fold")


def model_version(config_id: str, seed: int) -> str:
    """A run's model version folder name: unique per (config, seed) within a fold."""
    return f"{config_id}__seed{seed}"


def version_dir(sweep: Path, fold: str, config_id: str, seed: int) -> Path:
    return fold_dir(sweep, fold) / "models" / model_version(config_id, seed)


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
