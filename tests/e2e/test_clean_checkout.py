"""A normal (non-editable) `pip install .` leaves the checkout as it found it: whatever the
build writes into the tree (`build/`, `*.egg-info`) is ignored by git, so `git status` shows
nothing new and nobody commits a build by mistake."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A clone of this repository with the working tree's version of every tracked file (so
    an uncommitted `.gitignore` or `pyproject.toml` is what is tested)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout")
    clone = tmp_path / "checkout"
    git(tmp_path, "clone", "--quiet", "--local", str(REPO), str(clone))
    for name in git(REPO, "ls-files", "-z").split("\0"):
        source = REPO / name
        if name and source.is_file() and not source.is_symlink():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, clone / name)
    return clone


def test_a_normal_install_leaves_no_untracked_files(checkout: Path, tmp_path: Path) -> None:
    before = git(checkout, "status", "--porcelain", "--untracked-files=all")
    install = [
        sys.executable,
        "-m",
        "pip",
        "--disable-pip-version-check",
        "--quiet",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--target",
        str(tmp_path / "site"),
        ".",
    ]
    subprocess.run(install, cwd=checkout, check=True, capture_output=True, text=True)
    assert (checkout / "build").is_dir()  # the build did write into the tree (setuptools builds in place)
    assert list((tmp_path / "site").glob("tftsweep-*.dist-info"))  # and it installed
    after = git(checkout, "status", "--porcelain", "--untracked-files=all")
    new = sorted(set(after.splitlines()) - set(before.splitlines()))
    assert not new, f"`pip install .` left files git does not ignore: {new}"
