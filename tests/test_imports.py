"""Dependency direction and idle cost, checked on the source: the library never imports eval/ or
recipes/, the core never imports the evaluation harness, the scenes or the CLI, pure math never
imports transformers, and importing the package loads no matplotlib."""

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
PURE_MATH = ("divergence.py", "detection.py", "contrast.py")
#: The core: model internals, hooks, readouts, the math and the interventions.
CORE = ("anatomy.py", "hooks.py", "readout.py", "divergence.py", "detection.py", "contrast.py", "wrapping.py",
        "processors.py", "peers.py", "skips")
#: What sits on top of the core, which the core must never import.
ABOVE_CORE = ("evaluation", "scenes", "cli")


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


def _core_modules() -> list[Path]:
    """The core's modules: the files of :data:`CORE`, ``skipping*.py``, and every module of a ``skipping`` package."""
    found = []
    for path in MODULES:
        parts = path.relative_to(PACKAGE).parts
        if (len(parts) == 1 and (parts[0] in CORE or parts[0].startswith("skipping"))) or parts[0] in CORE:
            found.append(path)
    return found


def test_core_modules_found():
    names = {p.name for p in _core_modules()}
    assert {"anatomy.py", "hooks.py", "readout.py", "divergence.py", "detection.py", "wrapping.py"} <= names


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_never_imports_the_harness_the_scenes_or_the_cli(path):
    package_parts = path.relative_to(PACKAGE).parts[:-1]
    for name, level in _imported(path):
        if level == 0:
            parts = name.split(".")
            assert not (parts[0] == "lvlm_skip" and len(parts) > 1 and parts[1] in ABOVE_CORE), f"{path.name} imports {name}"
        else:
            base = list(package_parts[: len(package_parts) - (level - 1)]) if level > 1 else list(package_parts)
            target = base + [p for p in name.split(".") if p]
            assert not (target and target[0] in ABOVE_CORE), f"{path.name} imports {'.' * level}{name}"


def test_harness_and_scenes_import_no_cli():
    for path in MODULES:
        parts = path.relative_to(PACKAGE).parts
        if parts[0] in ("evaluation", "scenes"):
            for name, level in _imported(path):
                assert "cli" not in name.split("."), f"{'/'.join(parts)} imports {'.' * level}{name}"


@pytest.mark.parametrize("name", PURE_MATH)
def test_pure_math_imports_no_transformers_and_nothing_of_the_package(name):
    for module, level in _imported(PACKAGE / name):
        assert module.split(".")[0] != "transformers" and level == 0, f"{name} imports {'.' * level}{module}"


def test_init_does_not_import_matplotlib_directly():
    for module, _ in _imported(PACKAGE / "__init__.py"):
        assert "matplotlib" not in module and "figures" not in module and "cli" not in module


def test_idle_import_cost():
    """In a fresh interpreter: the package, the CLI's parser and the harness load no torch stack."""
    code = (
        "import sys, lvlm_skip, lvlm_skip.cli, lvlm_skip.evaluation.runner, lvlm_skip.evaluation.amber; "
        "lvlm_skip.cli.build_parser(); "
        "bad = [m for m in ('matplotlib', 'transformers', 'sklearn', 'torch') if m in sys.modules]; "
        "sys.exit(' '.join(bad) or None)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
