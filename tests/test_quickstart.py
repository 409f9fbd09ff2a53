"""The README's quick start, as written, reproduces the README's quick-start table.

Both the commands and the numbers are read from README.md (its "## Quick start" section), so the
README and this test cannot drift apart: the ``lvlm-skip`` commands of the section's first bash
block (after the install steps) run in-process, in that order, in a fresh folder that links the
checkout's ``recipes/`` (the shipped scene-llava): a fresh scene draw, the profile, AMBER's
generative task for every variant. Then the profile's critical and mutation layers are the ones the
text states and every row of the table (CHAIR, Cover, Hal, Cog, layers skipped per step) equals the
report's, as rounded in the README.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def quick_start_section(text: str) -> str:
    start = text.index("\n## Quick start\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def quick_start_commands(section: str) -> list[list[str]]:
    """The ``lvlm-skip`` commands of the section's first bash block, as argument lists (without the program)."""
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    commands = [shlex.split(part) for part in block.replace("\\\n", " ").split("&&")]
    return [argv[1:] for argv in commands if argv and argv[0] == "lvlm-skip"]


def quick_start_table(section: str) -> dict[str, list[str]]:
    """The rows of the section's table whose header starts with "variant": variant (its label's first word) -> the other cells."""
    rows, inside = {}, False
    for line in section.splitlines():
        if not line.startswith("|"):
            inside = inside and not rows  # the table ends at its first non-table line
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "variant":
            inside = not rows
        elif inside and not set(cells[0]) <= set("-"):
            rows[cells[0].split()[0]] = cells[1:]
    return rows


SECTION = quick_start_section(README.read_text(encoding="utf-8"))


def test_the_readme_quick_start_is_found():
    commands = quick_start_commands(SECTION)
    assert [argv[0] for argv in commands] == ["scenes", "profile", "amber"], commands
    table = quick_start_table(SECTION)
    assert "none" in table and len(table) >= 2 and all(len(cells) == 5 for cells in table.values()), table
    variants = commands[2][commands[2].index("--variants") + 1].split(",")
    assert sorted(table) == sorted(variants), "the table's rows are not the command's variants"
    assert re.search(r"critical layer (\d+) and mutation layer (\d+)", SECTION)


@pytest.mark.slow
def test_the_readme_quick_start_reproduces_its_table(tmp_path, monkeypatch):
    from lvlm_skip.cli import main

    (tmp_path / "recipes").symlink_to(ROOT / "recipes", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    commands = quick_start_commands(SECTION)
    for argv in commands:
        assert main(argv) == 0, argv
    critical, mutation = map(int, re.search(r"critical layer (\d+) and mutation layer (\d+)", SECTION).groups())
    profile = json.loads(Path(commands[1][commands[1].index("--out") + 1], "profile.json").read_text())
    assert (profile["critical_layer"], profile["mutation_layers"]) == (critical, [mutation])
    out = Path(commands[2][commands[2].index("--out") + 1])
    report = {row["variant"]: row for row in json.loads((out / "amber_g.json").read_text())["rows"]}
    mismatches = []
    for variant, cells in quick_start_table(SECTION).items():
        row = report[variant]
        assert row["errors"] == 0, (variant, row)
        measured = [row["CHAIR"], row["Cover"], row["Hal"], row["Cog"], row["layers_skipped"]]
        stated = [float(cell.split()[0]) for cell in cells]
        digits = [len(cell.split()[0].partition(".")[2]) for cell in cells]
        if any(round(m, d) != s for m, s, d in zip(measured, stated, digits)):
            mismatches.append(f"{variant}: README {cells}, measured {[round(m, 2) for m in measured]}")
    assert not mismatches, "the README's quick-start table does not reproduce:\n" + "\n".join(mismatches)
