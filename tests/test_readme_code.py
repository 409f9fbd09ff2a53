"""The README's Python examples run as written.

Every ```` ```python ```` block of README.md is found by parsing the file (no list of blocks here, so
a block added later is run too). The blocks of one ``## `` section run in order in one fresh
namespace, which first runs the README's setup block (the one whose first line is
:data:`SETUP_MARK`: the shipped scene-llava, its processor and one quick-start scene's ``inputs``).
Every section runs in the same working folder, in README order, as a user reading top to bottom
would: it holds what the examples name, and nothing more:

* ``recipes/`` (a link to the checkout's: the shipped model ``recipes/models/scene-llava``);
* ``runs/scenes/``: the quick start's scene draw (seed 7), :data:`N_SCENES` scenes;
* ``AMBER/data/`` and ``AMBER/image/``: the same scenes in AMBER's own layout (images in the
  sibling ``image/`` folder);
* the checkout on ``sys.path`` (``from eval.pope import ...`` runs from a checkout).

A block that cannot run here (a GPU, a 7B model, the user's own data) carries a comment line
``# not run by tests/test_readme_code.py: <reason>``; :data:`OPTED_OUT` lists those blocks by section
and reason, and the test fails when the README's markers and that list differ, so an opt-out is
always explicit in both places. Opted-out blocks are still compiled.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SETUP_MARK = "# setup: the Python examples in this README start from these names"
OPT_OUT = re.compile(r"^\s*#\s*not run by tests/test_readme_code\.py:(.*)$", re.MULTILINE)
N_SCENES = 4

# (section heading, reason) of every block the README marks as not run here.
OPTED_OUT: set[tuple[str, str]] = {
    ("lmms-eval and VLMEvalKit", "VLMEvalKit does not import on this machine (torchvision, above)"),
}


@dataclass(frozen=True)
class Block:
    section: str  # the enclosing "## " heading's text
    line: int  # README line of the block's first code line (1-based)
    code: str

    @property
    def opt_out(self) -> str | None:
        """The opt-out reason, stripped ('' when the marker has none), or None without a marker."""
        found = OPT_OUT.search(self.code)
        return None if found is None else found.group(1).strip()

    @property
    def is_setup(self) -> bool:
        return self.code.lstrip().startswith(SETUP_MARK)


def python_blocks(text: str) -> list[Block]:
    """Every ```` ```python ```` block of a Markdown text, with its ``## `` section and line."""
    blocks, section, fence, start, body = [], "", None, 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if fence is None:
            if line.startswith("## "):
                section = line[3:].strip()
            elif stripped.startswith("```"):
                fence, start, body = stripped[3:].strip().lower(), number + 1, []
        elif stripped == "```":
            if fence == "python":
                blocks.append(Block(section, start, "\n".join(body) + "\n"))
            fence = None
        else:
            body.append(line)
    assert fence is None, f"README.md: a code fence opened at line {start - 1} is never closed"
    return blocks


def sections(blocks: list[Block]) -> dict[str, list[Block]]:
    grouped: dict[str, list[Block]] = {}
    for block in blocks:
        grouped.setdefault(block.section, []).append(block)
    return grouped


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_parser_finds_blocks_sections_and_markers():
    text = ("## A\n```python\nx = 1\n```\n```bash\n```python\n```\n## B (`b`)\n"
            "```Python\n# not run by tests/test_readme_code.py: needs a GPU\ny = 2\n```\n")
    found = python_blocks(text)
    assert [(b.section, b.line, b.code) for b in found] == [
        ("A", 3, "x = 1\n"),
        ("B (`b`)", 10, "# not run by tests/test_readme_code.py: needs a GPU\ny = 2\n"),
    ]
    assert found[0].opt_out is None and found[1].opt_out == "needs a GPU"
    with pytest.raises(AssertionError, match="never closed"):
        python_blocks("```python\nx = 1\n")


def test_every_block_compiles_and_opt_outs_are_listed():
    assert len(BLOCKS) >= 5, "README.md's Python examples were not found"
    setups = [b for b in BLOCKS if b.is_setup]
    assert len(setups) == 1, f"README.md needs exactly one block starting {SETUP_MARK!r}, found {len(setups)}"
    assert setups[0].opt_out is None, "the setup block cannot opt out"
    for block in BLOCKS:
        compile(block.code, f"README.md:{block.line}", "exec")
    marked = {(b.section, b.opt_out) for b in BLOCKS if b.opt_out is not None}
    assert all(reason for _, reason in marked), f"an opt-out without a reason: {sorted(marked)}"
    assert marked == OPTED_OUT, (f"README opt-outs {sorted(marked)} differ from OPTED_OUT {sorted(OPTED_OUT)}: "
                                 "update both together")


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    from lvlm_skip.scenes.export import export

    (tmp_path / "recipes").symlink_to(ROOT / "recipes", target_is_directory=True)
    export(tmp_path / "runs" / "scenes", n_images=N_SCENES, seed=7, pope=False)
    amber = tmp_path / "AMBER"
    export(amber / "data", n_images=N_SCENES, seed=7, pope=False)
    (amber / "data" / "images").rename(amber / "image")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    return tmp_path


def test_readme_python_examples_run_as_written(workspace):
    """Each section's blocks run in order in a fresh namespace that starts with the setup block."""
    import lvlm_skip

    setup = next(b for b in BLOCKS if b.is_setup)
    ran = 0
    for section, blocks in sections(BLOCKS).items():
        runnable = [b for b in blocks if b.opt_out is None]
        if not runnable:
            continue
        namespace = {"__name__": "__readme__"}
        if not any(b.is_setup for b in runnable):
            _run(setup, namespace, section)
        for block in runnable:
            _run(block, namespace, section)
            ran += 1
        model = namespace.get("model")
        if model is not None and lvlm_skip.is_wrapped(model):  # a section may end wrapped, as its example shows
            lvlm_skip.unwrap(model)
    assert ran == sum(b.opt_out is None for b in BLOCKS)


def _run(block: Block, namespace: dict, section: str) -> None:
    try:
        exec(compile(block.code, f"README.md:{block.line}", "exec"), namespace)
    except Exception as error:
        pytest.fail(f"README.md line {block.line} (section {section!r}) fails as written: {type(error).__name__}: {error}")
