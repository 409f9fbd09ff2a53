"""lmms-eval's own POPE task through the lvlm_skip plugin gives the answers and F1 of `lvlm-skip pope`."""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

lmms_eval = pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (pip install -e .[lmms], see .ci/run)")

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "recipes" / "models" / "scene-llava"
N = 6
VARIANTS = ("none", "skip2", "dola", "speculative")
#: per variant: (extra lmms-eval model_args, our --variants spec, our --variant-options)
EXTRA = {"speculative": (",draft=exit,exit_layer=8,k=3", "speculative:exit", '{"speculative:exit": {"exit_layer": 8, "k": 3}}')}


def test_split_model_args_lists_and_errors():
    from lvlm_skip.errors import InputError
    from lvlm_skip.lmms_plugin import split_model_args

    opts, rest = split_model_args({"pretrained": "x", "variant": "layers", "layers": "[12,14]", "mutation_layers": "3;4"})
    assert opts == {"variant": "layers", "layers": [12, 14], "mutation_layers": [3, 4]} and rest == {"pretrained": "x"}
    opts, rest = split_model_args({"pretrained": "x", "variant": "speculative", "draft": "exit", "exit_layer": 8, "k": "3"})
    assert opts == {"variant": "speculative", "draft": "exit", "exit_layer": 8, "k": "3"} and rest == {"pretrained": "x"}
    with pytest.raises(InputError, match="expected a list"):
        split_model_args({"layers": "twelve"})


@pytest.mark.parametrize("variant", VARIANTS)
def test_pope_both_ways(tmp_path, variant):
    from lvlm_skip.benchmarks.pope.metrics import score_pope  # noqa: F401
    from lvlm_skip.scenes.export import export

    bench = export(tmp_path / "bench", 2, 0)
    task = tmp_path / "task"
    task.mkdir()
    pope_yaml = Path(lmms_eval.__file__).parent / "tasks" / "pope" / "pope.yaml"
    (task / "pope_scene.yaml").write_text(
        f"include: {pope_yaml}\ntask: pope_scene\ndataset_path: parquet\ndataset_kwargs:\n"
        f"  data_files:\n    test: {bench / 'hub' / 'pope' / 'random.parquet'}\n")
    (task / "utils.py").write_text("from lmms_eval.tasks.pope.utils import *\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    extra, spec, options = EXTRA.get(variant, ("", variant, None))
    out = tmp_path / "lmms"
    subprocess.run([sys.executable, "-m", "lmms_eval", "--model", "lvlm_skip", "--model_args",
                    f"pretrained={MODEL},variant={variant},lvlm_skip_output={out}{extra}", "--tasks", "pope_scene",
                    "--include_path", str(task), "--output_path", str(out), "--log_samples", "--limit", str(N)],
                   env=env, check=False, capture_output=True, timeout=900)
    samples = [json.loads(line) for f in glob.glob(str(out / "*" / "*samples_pope_scene.jsonl")) for line in open(f)]
    assert len(samples) == N, "lmms-eval wrote no samples (it exits 0 on errors)"
    assert (out / f"lvlm_skip_{variant}_rank0.json").exists()
    ours = tmp_path / "ours"
    subprocess.run([sys.executable, "-m", "lvlm_skip.cli", "pope", "--questions",
                    str(bench / "pope" / "scenes_pope_random.json"), "--model", str(MODEL), "--variants", spec,
                    *(["--variant-options", options] if options else []), "--image-dir", str(bench / "images"), "--prompt-suffix", "llava", "--limit", str(N), "--out", str(ours), "--device", "cpu"],
                   env=env, check=True, capture_output=True, timeout=900)
    rows = [json.loads(line) for line in open(ours / "responses.jsonl")]
    theirs = {s["pope_f1_score"]["question_id"]: s["filtered_resps"] for s in samples}
    mine = {str(r["id"]): r["response"] for r in rows}
    assert {k: v.strip() for k, v in theirs.items()} == {k: v.strip() for k, v in mine.items()}


def test_both_ways_recipe_gives_one_table_and_reuses_finished_runs(tmp_path, caplog):
    """``recipes.pope_both_ways``: lmms-eval's POPE and ``lvlm-skip pope`` on the same questions, one table."""
    from lvlm_skip.scenes.export import export
    from recipes import pope_both_ways

    bench = export(tmp_path / "bench", 2, 0)
    out = tmp_path / "both"
    argv = ["--scenes", str(bench), "--variants", "none", "--splits", "random,popular", "--limit", "3",
            "--prompt-suffix", "none", "--out", str(out), "--no-progress"]
    assert pope_both_ways.main(argv) == 0
    result = json.loads((out / "both_ways.json").read_text())
    assert [(r["variant"], r["split"], r["questions"]) for r in result["rows"]] == [("none", "random", 3), ("none", "popular", 3)]
    for row in result["rows"]:  # the same answers; bare yes/no answers score the same both ways
        assert row["same_answers"] == 1.0
        assert row["F1 (lmms-eval)"] == row["F1 (lvlm-skip pope)"]
    assert 'post_prompt: ""' in (out / "lmms_tasks" / "pope_scene_random.yaml").read_text()
    with caplog.at_level("INFO", logger="recipes.pope_both_ways"):
        assert pope_both_ways.main(argv) == 0
    assert "lmms-eval / none: reusing" in caplog.text


def test_both_ways_recipe_refuses_a_folder_that_is_not_a_scenes_export(tmp_path, capsys):
    from recipes import pope_both_ways

    with pytest.raises(SystemExit) as stopped:
        pope_both_ways.main(["--scenes", str(tmp_path), "--out", str(tmp_path / "out")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m recipes.pope_both_ways: error: --scenes") and "\n" not in err
