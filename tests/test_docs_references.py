"""Every cross-reference in the docs names something that exists.

Two sources are checked:

* every Sphinx role ``:mod:``, ``:class:``, ``:func:``, ``:meth:``, ``:data:`` and ``:attr:``, and
  every double-backticked literal that starts with a dotted ``lvlm_skip.`` name, in a module, class
  or function docstring under ``lvlm_skip/`` (read with :mod:`ast`, so nothing is imported to find
  them);
* every backticked dotted name in ``README.md`` that starts with ``lvlm_skip.``.

A target resolves when importing its longest importable module prefix and ``getattr``-ing the rest
succeeds. A leading ``~`` is dropped; a leading ``.`` is relative to the module it appears in (or to its
package); an unqualified name resolves in the enclosing class (for a docstring inside a class), in the
module's namespace, or among the builtins. An instance attribute counts when it is a dataclass field,
an annotation or assigned as ``self.name`` in a method. ``lvlm_skip.lmms_plugin`` imports lmms-eval, so when lmms-eval
is not installed references into that module are reported as skipped rather than checked.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import inspect
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import lvlm_skip

PACKAGE = Path(lvlm_skip.__file__).parent
ROOT = PACKAGE.parent
README = ROOT / "README.md"
#: The module whose import needs lmms-eval.
LMMS_MODULE = "lvlm_skip.lmms_plugin"
HAVE_LMMS = importlib.util.find_spec("lmms_eval") is not None
#: ``:role:`target``` or ``:role:`title <target>```; the roles this test checks.
ROLE = re.compile(r":(mod|class|func|meth|data|attr):`([^`]+)`")
#: A double-backticked literal in a docstring; those starting with a dotted ``lvlm_skip.`` name are checked too.
LITERAL = re.compile(r"``([^`]+)``")
#: An inline backticked span in Markdown (single or double backticks).
README_SPAN = re.compile(r"(`+)([^`\n]+?)\1")
README_NAME = re.compile(r"lvlm_skip(?:\.[A-Za-z_]\w*)+")


@dataclass(frozen=True)
class Reference:
    """One reference: where it is written (``file:line``), its role and target, and its context."""

    where: str
    role: str
    target: str
    module: str  #: dotted name of the module the docstring belongs to
    classes: tuple[str, ...]  #: the enclosing classes' names, outermost first (empty outside a class)


def module_name(path: Path) -> str:
    """Dotted module name of a ``.py`` file under the repository root (``__init__`` is its package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def references_in_source(source: str, filename: str, module: str) -> list[Reference]:
    """Every checked Sphinx role, and every ````lvlm_skip.…```` literal, in the module, class and function
    docstrings of ``source``."""
    found: list[Reference] = []

    def collect(node: ast.AST, classes: tuple[str, ...]) -> None:
        body = getattr(node, "body", None)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            text = body[0].value.value
            for match in ROLE.finditer(text):
                target = match.group(2)
                if "<" in target and target.endswith(">"):  # `title <target>`
                    target = target[target.rindex("<") + 1:-1]
                line = body[0].value.lineno + text.count("\n", 0, match.start())
                found.append(Reference(f"{filename}:{line}", match.group(1), target.strip(), module, classes))
            for match in LITERAL.finditer(text):
                name = README_NAME.match(match.group(1).strip())
                if name:
                    line = body[0].value.lineno + text.count("\n", 0, match.start())
                    found.append(Reference(f"{filename}:{line}", "literal", name.group(0), module, classes))
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                collect(child, classes + (child.name,))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                collect(child, classes)

    collect(ast.parse(source, filename=filename), ())
    return found


class NeedsLmms(Exception):
    """The target lies in a module whose import needs lmms-eval, which is not installed."""


def resolve_absolute(dotted: str) -> bool:
    """Whether ``dotted`` names an importable module or an attribute path below one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name == "lmms_eval" or (name == LMMS_MODULE and not HAVE_LMMS):
                raise NeedsLmms(name) from error
            continue
        return resolve_attributes(obj, parts[cut:])
    return False


def resolve_attributes(obj: object, names: list[str]) -> bool:
    """Whether ``getattr`` along ``names`` from ``obj`` succeeds (a dataclass field without a default,
    an annotation or a ``self.name = ...`` in a method counts: it is an attribute of every instance)."""
    for name in names:
        if hasattr(obj, name):
            obj = getattr(obj, name)
        elif name in getattr(obj, "__dataclass_fields__", {}) or name in getattr(obj, "__annotations__", {}) \
                or (isinstance(obj, type) and name in instance_attributes(obj)):
            return name == names[-1]  # an instance attribute; nothing below it can be looked up statically
        else:
            return False
    return True


def instance_attributes(cls: type) -> set[str]:
    """Names assigned as ``self.<name>`` in the methods of ``cls`` and of its bases, read from their source."""
    names: set[str] = set()
    for klass in cls.__mro__:
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # builtins and classes without source
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                    and isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
    return names


def resolves(reference: Reference) -> bool:
    """Whether ``reference`` names something that exists (raises :class:`NeedsLmms` when it cannot be told)."""
    target = reference.target.lstrip("~").removesuffix("()")
    if reference.module == LMMS_MODULE and not HAVE_LMMS:
        if not target.startswith(".") and resolve_absolute(target):  # a fully qualified name elsewhere
            return True
        raise NeedsLmms(LMMS_MODULE)
    package = reference.module if reference.module.count(".") == 0 or _is_package(reference.module) \
        else reference.module.rpartition(".")[0]
    if target.startswith("."):
        rest = target.lstrip(".")
        bases = [".".join((reference.module,) + reference.classes)] if reference.classes else []
        bases += [reference.module, package]
        return any(resolve_absolute(f"{base}.{rest}") for base in bases)
    if reference.classes and resolve_absolute(".".join((reference.module,) + reference.classes + (target,))):
        return True
    module = importlib.import_module(reference.module)
    head, *rest = target.split(".")
    if hasattr(module, head) and resolve_attributes(getattr(module, head), rest):
        return True
    if not rest and hasattr(builtins, head):
        return True
    return resolve_absolute(target)


def _is_package(module: str) -> bool:
    """Whether the dotted ``module`` under the repository is a package (a folder with ``__init__.py``)."""
    return (ROOT.joinpath(*module.split(".")) / "__init__.py").is_file()


def package_references() -> list[Reference]:
    """Every checked reference in the docstrings of ``lvlm_skip/``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += references_in_source(path.read_text(), str(path.relative_to(ROOT)), module_name(path))
    return found


def unresolved_and_skipped(references: list[Reference]) -> tuple[list[str], list[str]]:
    """``(unresolved, skipped)``, each as ``"file:line :role:`target`"`` lines."""
    unresolved, skipped = [], []
    for reference in references:
        line = f"{reference.where} :{reference.role}:`{reference.target}`"
        try:
            if not resolves(reference):
                unresolved.append(line)
        except NeedsLmms:
            skipped.append(line)
    return unresolved, skipped


def readme_references() -> list[Reference]:
    """Every backticked dotted name in ``README.md`` starting with ``lvlm_skip.`` (fenced blocks excluded)."""
    found, fenced = [], False
    for number, line in enumerate(README.read_text().splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        for span in README_SPAN.finditer(line):
            name = README_NAME.match(span.group(2).strip())
            if name:
                found.append(Reference(f"README.md:{number}", "readme", name.group(0), "lvlm_skip", ()))
    return found


def test_resolver_tells_a_good_reference_from_a_bad_one(tmp_path, monkeypatch):
    source = '''"""See :func:`lvlm_skip.divergence.js_divergence` and :class:`lvlm_skip.skipping.kv.Nowhere`."""

class Box:
    """Holds :meth:`open`, :attr:`lid`, :attr:`hinge` and :meth:`~.Box.open`, but not :meth:`shut`."""

    lid: int

    def __init__(self):
        self.hinge = 1

    def open(self):
        """Opens; see :class:`Box`, :data:`lvlm_skip.config.DOLA_REPETITION_PENALTY`, :func:`len`,
        ``lvlm_skip.wrap(model)`` and ``lvlm_skip.contrast.dola``."""
'''
    (tmp_path / "synthetic_docs.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        references = references_in_source(source, "synthetic.py", "synthetic_docs")
        unresolved, skipped = unresolved_and_skipped(references)
    finally:
        sys.modules.pop("synthetic_docs", None)
    assert len(references) == 12 and not skipped
    assert unresolved == ["synthetic.py:1 :class:`lvlm_skip.skipping.kv.Nowhere`", "synthetic.py:4 :meth:`shut`",
                          "synthetic.py:13 :literal:`lvlm_skip.contrast.dola`"]


def test_readme_scan_finds_backticked_package_names():
    references = readme_references()
    assert references, "README.md names no `lvlm_skip.` object in backticks"
    assert all(reference.target.startswith("lvlm_skip.") for reference in references)


def test_every_docstring_reference_resolves():
    references = package_references()
    assert len(references) > 100, len(references)  # the scan finds the package's references at all
    unresolved, _ = unresolved_and_skipped(references)
    assert not unresolved, f"{len(unresolved)} of {len(references)} references do not resolve:\n" + "\n".join(unresolved)


def test_every_readme_name_resolves():
    references = readme_references()
    unresolved, _ = unresolved_and_skipped(references)
    assert not unresolved, f"{len(unresolved)} of {len(references)} README.md names do not resolve:\n" + "\n".join(unresolved)


def test_lmms_plugin_references_resolve():
    """The references the two tests above could not resolve without lmms-eval (none when it is installed)."""
    _, skipped = unresolved_and_skipped(package_references() + readme_references())
    if skipped:
        pytest.skip(f"lmms-eval is not installed: {len(skipped)} references in or into {LMMS_MODULE} "
                    "were not resolved:\n" + "\n".join(skipped))
