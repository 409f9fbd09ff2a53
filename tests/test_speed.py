"""``lvlm-skip speed``: the configurations it measures, and one short run on the tiny model."""

from __future__ import annotations

import json

import pytest

from lvlm_skip.cli import main
from lvlm_skip.evaluation import speed


def test_default_configs_scale_the_papers_layers():
    configs = {c.name: c for c in speed.default_configs(32, 256)}
    assert configs["stock"].wrap is None and list(configs)[0] == "stock"
    assert configs["skip1 static"].wrap == dict(variant="skip1", critical_layer=18, mutation_layers=(27, 28, 29, 30))
    assert configs["skip1 static"].skipped == len(range(19, 27))
    assert configs["skip3 static"].skipped == len(range(19, 28))
    names = [c.name for c in speed.select_configs(speed.default_configs(32, 256), "none,skip2")]
    assert names == ["stock", "none", "skip2 static", "skip2 online"]


def test_bad_arguments_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["speed", "--new-tokens", "1", "--out", str(tmp_path)])
    assert info.value.code == 2
    assert "--new-tokens must be at least 2" in capsys.readouterr().err


@pytest.mark.slow
def test_speed_run_writes_its_table(tmp_path, capsys):
    argv = ["speed", "--model", "tiny", "--runs", "1", "--new-tokens", "2", "--only", "none", "--skip-approximation",
            "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    result = json.loads((tmp_path / "speed.json").read_text())
    assert [r["config"] for r in result["rows"]] == ["stock", "none"]
    assert result["rows"][1]["target"] == "<= 3% over stock" and result["rows"][0]["speedup"] == 1.0
    assert result["setting"]["layers"] == 16 and result["approximation"] is None
    assert "| config" in capsys.readouterr().out and (tmp_path / "speed.md").is_file()
