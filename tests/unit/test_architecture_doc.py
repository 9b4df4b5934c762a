"""`docs/architecture.md` names only what exists: every file, module, function and class it
points at (read from the source, nothing imported), so a rename that forgets the map fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

DOC = Path("docs/architecture.md")
PACKAGES = ("app", "core", "worker", "migrations", "tests")
PATH_PREFIXES = (*(f"{p}/" for p in (*PACKAGES, "docs", "bench", "scripts")), "pyproject.toml")


def named() -> list[str]:
    return re.findall(r"`([^`\s]+)`", DOC.read_text())


def module_file(parts: list[str]) -> Path | None:
    folder = Path(*parts)
    if (folder / "__init__.py").is_file():
        return folder / "__init__.py"
    return folder.with_suffix(".py") if folder.with_suffix(".py").is_file() else None


def defined(body: list[ast.stmt]) -> dict[str, ast.stmt]:
    """Top-level names of a module or class body: functions, classes and assigned names."""
    names: dict[str, ast.stmt] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            names.update({t.id: node for t in node.targets if isinstance(t, ast.Name)})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        source = module_file(parts[:cut])
        if source is None:
            continue
        body: list[ast.stmt] = ast.parse(source.read_text()).body
        for name in parts[cut:]:
            node = defined(body).get(name)
            if node is None:
                return False
            body = node.body if isinstance(node, ast.ClassDef) else []
        return True
    return False


def test_the_map_names_modules_and_files() -> None:
    dotted = [n for n in named() if n.split(".")[0] in PACKAGES and "." in n and "/" not in n]
    paths = [n for n in named() if n.startswith(PATH_PREFIXES)]
    assert len(dotted) > 30 and len(paths) > 5  # or the checks below would prove little


@pytest.mark.parametrize("name", sorted({n for n in named() if n.split(".")[0] in PACKAGES and "/" not in n}))
def test_every_module_function_and_class_named_exists(name: str) -> None:
    assert resolves(name), f"docs/architecture.md names {name}, which the source does not define"


@pytest.mark.parametrize("path", sorted({n for n in named() if n.startswith(PATH_PREFIXES)}))
def test_every_file_named_exists(path: str) -> None:
    assert Path(path).exists(), f"docs/architecture.md names {path}, which is not in the repository"


def test_it_stands_alone() -> None:
    text = DOC.read_text()
    assert not re.search(r"\bthe guide\b", text, flags=re.IGNORECASE)
    assert not re.search(r"\bSPEC\b", text) and "PITFALLS" not in text and "STYLE.md" not in text
