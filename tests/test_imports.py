"""Dependency direction and idle cost, checked on the source: the library never imports eval/ or
recipes/, the core never imports the evaluation harness, the benchmarks, speed, the scenes or the
CLI, pure math never imports transformers, ``data`` imports only ``errors``, ``profiles`` and
``tracing`` never import the harness, the configs, the variant registry and the sequence clock import
no torch, and importing the package loads no matplotlib."""

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
#: Pure math on tensors: no transformers, and of the package only the torch-free configs (and, for the
#: peers, their shared argument checks).
PURE_MATH = ("divergence.py", "detection.py", "peers/dola.py", "peers/deco.py", "peers/vcd.py", "peers/checks.py")
PURE_MATH_MAY_IMPORT = ("lvlm_skip.config", "lvlm_skip.peers.checks")
#: The core: model internals, hooks, readouts, the math, the configs and the interventions.
CORE = ("anatomy.py", "clock.py", "hooks.py", "readout.py", "divergence.py", "detection.py", "config.py", "variants.py",
        "wrapping.py", "processors.py", "peers", "skips")
#: What sits on top of the core, which the core must never import.
ABOVE_CORE = ("evaluation", "benchmarks", "speed", "scenes", "cli")


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


def _absolute(path: Path) -> list[str]:
    """The dotted name of every module ``path`` imports, relative imports resolved (``lvlm_skip.config``)."""
    package = ["lvlm_skip", *path.relative_to(PACKAGE).parts[:-1]]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - (node.level - 1)] if node.level else []
            module = [*base, *(node.module.split(".") if node.module else [])]
            # ``from . import variants`` imports the module lvlm_skip.variants, not just the package
            names += [".".join(module)] if node.module else [".".join([*module, alias.name]) for alias in node.names]
    return names


def _in(name: str, packages) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _package_modules(*folders: str) -> list[Path]:
    return [p for p in MODULES if p.relative_to(PACKAGE).parts[0] in folders]


@pytest.mark.parametrize("name", PURE_MATH)
def test_pure_math_imports_no_transformers_and_only_the_configs_of_the_package(name):
    for module in _absolute(PACKAGE / name):
        assert not _in(module, ("transformers",)), f"{name} imports {module}"
        assert not _in(module, ("lvlm_skip",)) or _in(module, PURE_MATH_MAY_IMPORT), f"{name} imports {module}"


@pytest.mark.parametrize("path", _package_modules("data"), ids=lambda p: p.name)
def test_data_imports_only_errors(path):
    for module in _absolute(path):
        assert not _in(module, ("torch", "transformers", "numpy")), f"data/{path.name} imports {module}"
        assert not _in(module, ("lvlm_skip",)) or _in(module, ("lvlm_skip.errors", "lvlm_skip.data")), \
            f"data/{path.name} imports {module}"


@pytest.mark.parametrize("path", [*_package_modules("profiles"), PACKAGE / "tracing.py"],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_profiles_and_tracing_never_import_the_harness(path):
    harness = ("lvlm_skip.evaluation", "lvlm_skip.benchmarks", "lvlm_skip.speed")
    for module in _absolute(path):
        assert not _in(module, harness), f"{path.relative_to(PACKAGE)} imports {module}"


@pytest.mark.parametrize("name", ["config.py", "variants.py"])
def test_configs_and_registry_import_only_the_standard_library_and_each_other(name):
    for module in _absolute(PACKAGE / name):
        top = module.split(".")[0]
        assert top in sys.stdlib_module_names or top == "__future__" or _in(
            module, ("lvlm_skip.config", "lvlm_skip.variants", "lvlm_skip.anatomy")), f"{name} imports {module}"


def test_sequence_clock_imports_only_the_standard_library_and_errors():
    """The clock counts positions; the cache it counts them from is the anatomy's."""
    for module in _absolute(PACKAGE / "clock.py"):
        top = module.split(".")[0]
        assert top in sys.stdlib_module_names or top == "__future__" or module == "lvlm_skip.errors", f"clock.py imports {module}"


def test_configs_and_registry_load_no_torch():
    """``lvlm_skip.anatomy`` is named in config.py for type checking only: importing it must not happen."""
    code = ("import sys, lvlm_skip.config, lvlm_skip.variants, lvlm_skip.cli.options; "
            "sys.exit(' '.join(m for m in ('torch', 'transformers', 'numpy', 'lvlm_skip.anatomy') if m in sys.modules) or None)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_init_does_not_import_matplotlib_directly():
    for module, _ in _imported(PACKAGE / "__init__.py"):
        assert "matplotlib" not in module and "figures" not in module and "cli" not in module


def test_idle_import_cost():
    """In a fresh interpreter: the package, the CLI's parser and the harness load no torch stack."""
    code = (
        "import sys, lvlm_skip, lvlm_skip.cli, lvlm_skip.evaluation.runner, lvlm_skip.benchmarks.amber.task; "
        "lvlm_skip.cli.build_parser(); "
        "bad = [m for m in ('matplotlib', 'transformers', 'sklearn', 'torch') if m in sys.modules]; "
        "sys.exit(' '.join(bad) or None)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


#: Modules still using ``assert`` for runtime checks, being fixed elsewhere (issue 19 owns the harness's runner).
ASSERT_PENDING = ("evaluation/runner.py",)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_runtime_checks_raise_errors_not_assert(path):
    """``python -O`` drops ``assert``: a check of input or state raises a one-line error instead."""
    found = [node.lineno for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Assert)]
    if found and str(path.relative_to(PACKAGE)) in ASSERT_PENDING:
        pytest.xfail(f"assert on line(s) {found}, replaced by the harness's own change")
    assert not found, f"{path.relative_to(PACKAGE)}: assert on line(s) {found}"


def _function_imports(path: Path) -> list[tuple[str, ast.stmt]]:
    """``(function name, import statement)`` of every import inside a function of ``path``."""
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)) and function is not None:
                found.append((function, child))
            visit(child, child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function)

    visit(ast.parse(path.read_text(), filename=str(path)), None)
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_sit_at_module_level_or_say_why(path):
    """An import inside a function is a ``cli/*.run()``'s own, or its line says why (an optional extra,
    torch kept off the ``--help`` import path, matplotlib, a slow import only one function needs)."""
    lines = path.read_text().splitlines()
    in_cli = path.relative_to(PACKAGE).parts[0] == "cli"
    for function, node in _function_imports(path):
        if in_cli and function == "run":
            continue
        assert "#" in lines[node.lineno - 1], (f"{path.relative_to(PACKAGE)}:{node.lineno} imports inside {function}() "
                                                "without a comment saying why (or move it to the module's top)")
