"""The installed layout: only ``lvlm_skip`` is installed, and the console script works from any folder.

Research repositories often have an ``eval/`` folder, and distributions named ``eval`` and
``recipes`` exist on the package index: installing this project must not put either name into
site-packages. ``eval/`` and ``recipes/`` stay folders of a checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from a copy of the checkout (no build artefacts in the worktree)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    ignore = shutil.ignore_patterns("*.safetensors", "*.png", "*.svg", "__pycache__", "*.egg-info", "build", "dist", ".git")
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("lvlm_skip", "eval", "recipes"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(root / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (found,) = (root / "dist").glob("lvlm_skip-*.whl")
    return found


@pytest.mark.slow
def test_wheel_holds_only_lvlm_skip(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"lvlm_skip"}, tops
    assert "lvlm_skip/evaluation/runner.py" in names and "lvlm_skip/scenes/export.py" in names
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["lvlm_skip"]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "lvlm-skip = lvlm_skip.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_installed_console_script_works_from_any_folder_and_eval_is_not_importable(wheel, tmp_path):
    """Install the wheel into a target folder and use it from elsewhere, without this checkout on the path.

    ``python -S`` keeps the machine's site-packages (and any editable install of this project) out,
    so what is importable is exactly what the wheel installed.
    """
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    script = site / "bin" / "lvlm-skip"
    assert script.is_file()
    for argv in ([str(script), "--help"], [str(script), "amber", "--help"]):
        run = subprocess.run([sys.executable, "-S", *argv], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert "lvlm-skip" in run.stdout
    listing = subprocess.run([sys.executable, "-S", str(script), "--help"], cwd=elsewhere, env=env, capture_output=True,
                             text=True, timeout=60).stdout
    for command in ("trace", "profile", "amber", "caption", "pope", "speed", "scenes"):
        assert command in listing
    probe = ("import importlib.util, lvlm_skip; "
             "print(lvlm_skip.__file__); "
             "print([importlib.util.find_spec(n) is not None for n in ('eval', 'recipes')])")
    run = subprocess.run([sys.executable, "-S", "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    where, found = run.stdout.split("\n")[:2]
    assert where.startswith(str(site)) and found == "[False, False]", run.stdout


def test_every_subcommand_has_help_with_defaults(capsys):
    from lvlm_skip.cli import SUBCOMMANDS, main

    for command in SUBCOMMANDS:
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert f"lvlm-skip {command}" in text and "--log-level" in text
        if command in ("amber", "caption", "pope", "speed", "scenes", "trace"):
            assert f"(default: runs/{command})" in text


def test_checkout_entry_modules_forward_to_the_cli():
    """``python -m eval.amber --help`` from a checkout is ``lvlm-skip amber --help``."""
    for module, command in (("eval.amber", "amber"), ("eval.caption", "caption"), ("eval.pope", "pope"),
                            ("eval.speed", "speed"), ("eval.scenes", "scenes")):
        run = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert f"lvlm-skip {command}" in run.stdout
