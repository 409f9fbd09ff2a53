"""Dependency direction and idle cost, checked on the source: the library never imports eval/ or
recipes/, pure math never imports transformers, and importing the package loads no matplotlib."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import lvlm_skip

PACKAGE = Path(lvlm_skip.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))
FORBIDDEN = ("eval", "recipes")
PURE_MATH = ("divergence.py", "detection.py")


def _imported(path: Path) -> list[tuple[str, int]]:
    """``(absolute-ish module name, relative level)`` of every import in ``path``."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append((node.module or "", node.level))
    return names


def test_modules_found():
    assert {p.name for p in MODULES} >= {"__init__.py", "anatomy.py", "tracing.py", "heatmap.py", "options.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_library_never_imports_eval_or_recipes(path):
    depth = len(path.relative_to(PACKAGE).parts)  # a relative import above the package has level > depth
    for name, level in _imported(path):
        top = name.split(".")[0]
        assert not (level == 0 and top in FORBIDDEN), f"{path.name} imports {name}"
        assert level <= depth, f"{path.name} imports from above the package ({'.' * level}{name})"


@pytest.mark.parametrize("name", PURE_MATH)
def test_pure_math_imports_no_transformers_and_nothing_of_the_package(name):
    for module, level in _imported(PACKAGE / name):
        assert module.split(".")[0] != "transformers" and level == 0, f"{name} imports {'.' * level}{module}"


def test_init_does_not_import_matplotlib_directly():
    for module, _ in _imported(PACKAGE / "__init__.py"):
        assert "matplotlib" not in module and "figures" not in module and "cli" not in module


def test_idle_import_cost():
    """In a fresh interpreter: the package loads no matplotlib, and the CLI module no transformers."""
    code = (
        "import sys, lvlm_skip, lvlm_skip.cli; "
        "bad = [m for m in ('matplotlib', 'transformers', 'sklearn') if m in sys.modules]; "
        "sys.exit(' '.join(bad) or None)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
