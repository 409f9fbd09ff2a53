"""POPE both ways: lmms-eval's own POPE task through the ``lvlm_skip`` plugin beside ``lvlm-skip pope``.

    python -m recipes.pope_both_ways                                  # runs/scenes, scene-llava, none,skip2,dola
    python -m recipes.pope_both_ways --scenes runs/scenes --profile runs/profile/profile.json --variants none,skip2,dola

Needs lmms-eval (``pip install -e .[lmms]``, README "lmms-eval and VLMEvalKit") and a ``lvlm-skip
scenes`` export (``--scenes``), whose ``hub/pope/<split>.parquet`` are lmms-lab/POPE's schema and
whose ``pope/scenes_pope_<split>.json`` are the same questions as POPE files. Per split, a local
lmms-eval task (``pope_scene_<split>``) includes lmms-eval's installed ``pope.yaml`` and reads the
parquet (``dataset_path: parquet``); per variant, one ``python -m lmms_eval --model lvlm_skip`` run
answers all splits. ``lvlm-skip pope`` answers the same questions with the same variants. The prompts
agree both ways: ``--prompt-suffix llava`` (default) keeps lmms-eval's post-prompt
("\nAnswer the question using a single word or phrase.") and gives ``lvlm-skip pope --prompt-suffix
llava``; ``none`` sets the tasks' post-prompt to nothing, POPE's question as is (the harness default).

The table, per variant and split: the share of identical answers, and F1 / accuracy as each harness
scores them. They agree when the answers are bare "yes" / "no". They need not otherwise:
lmms-eval compares the lower-cased, stripped answer with the label exactly, so "Yes." is neither a
yes nor a no to it, while POPE's ``evaluate.py`` (ours) reads it as yes. lmms-eval's
``pope_yes_ratio`` is the share of *labels* that are yes (0.5 on POPE), not the model's yes-ratio, so
the table gives ours only.

Writes ``lmms_tasks/`` (the task YAMLs), ``lmms/<variant>/`` (lmms-eval's results and samples),
``ours/`` (the ``lvlm-skip pope`` run folder), and ``both_ways.json`` / ``both_ways.md`` into
``--out`` (default ``runs/pope_both_ways``). A rerun reuses every lmms-eval run that finished and
resumes ours.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from recipes.command import recipe_parser, run_recipe

logger = logging.getLogger("recipes.pope_both_ways")

ROOT = Path(__file__).resolve().parents[1]
SCENE_LLAVA = ROOT / "recipes" / "models" / "scene-llava"
SPLITS = ("random", "popular", "adversarial")
#: lmms-eval's POPE post-prompt (its pope.yaml), which ``--prompt-suffix llava`` appends too.
LMMS_POST_PROMPT = "\nAnswer the question using a single word or phrase."


def _parser():
    from lvlm_skip.cli.options import positive_int

    p = recipe_parser("recipes.pope_both_ways", __doc__.split("\n\n")[0])
    p.add_argument("--scenes", default="runs/scenes", help="A `lvlm-skip scenes` export (its hub/pope parquets and pope/ files).")
    p.add_argument("--model", default=str(SCENE_LLAVA), help="A local model folder (default: the shipped scene-llava).")
    p.add_argument("--variants", default="none,skip2,dola", help="Comma-separated variant specs (name or name:mode).")
    p.add_argument("--profile", default=None, help="A layer profile (profile.json) for the skip variants, both ways.")
    p.add_argument("--splits", default=",".join(SPLITS), help="Comma-separated POPE splits.")
    p.add_argument("--prompt-suffix", default="llava", choices=("llava", "none"),
                   help="llava: lmms-eval's POPE post-prompt, both ways; none: the question as is, both ways.")
    p.add_argument("--limit", type=positive_int, default=None, help="Only the first N questions of each split (both ways).")
    p.add_argument("--device", default="cpu", help="cpu or cuda (both ways).")
    p.add_argument("--out", default="runs/pope_both_ways", help="Output folder.")
    return p


def write_tasks(folder: Path, parquets: dict[str, Path], post_prompt: str | None = None) -> dict[str, str]:
    """One lmms-eval task per split, ``pope_scene_<split>``, that includes lmms-eval's ``pope.yaml`` and reads a
    local parquet; returns split -> task name. ``utils.py`` re-exports lmms-eval's POPE functions (the YAML's
    ``!function``s). ``post_prompt``: replaces lmms-eval's (``None``: keep it)."""
    import lmms_eval

    pope_yaml = Path(lmms_eval.__file__).parent / "tasks" / "pope" / "pope.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "utils.py").write_text("from lmms_eval.tasks.pope.utils import *  # noqa: F401,F403\n")
    names = {}
    for split, parquet in parquets.items():
        names[split] = f"pope_scene_{split}"
        text = (f"include: {pope_yaml}\ntask: {names[split]}\ndataset_path: parquet\ndataset_kwargs:\n"
                f"  data_files:\n    test: {parquet.resolve()}\n")
        if post_prompt is not None:
            text += f"lmms_eval_specific_kwargs:\n  default:\n    pre_prompt: \"\"\n    post_prompt: {json.dumps(post_prompt)}\n"
        (folder / f"{names[split]}.yaml").write_text(text)
    return names


def _model_args(spec, model: str, profile: str | None, stats: Path) -> str:
    from lvlm_skip.variants import PEERS, PROFILE_VARIANTS

    args = [f"pretrained={model}", f"variant={spec.variant}"]
    if spec.variant != "none" and spec.variant not in PEERS:  # a peer takes no mode
        args.append(f"mode={spec.mode}")
    if profile and spec.variant in PROFILE_VARIANTS:
        args.append(f"profile={Path(profile).resolve()}")
    return ",".join([*args, f"lvlm_skip_output={stats}"])


def run_lmms(spec, tasks: dict[str, str], args, out: Path) -> dict[str, list[dict]]:
    """lmms-eval's samples of one variant, split -> [sample]; runs lmms-eval unless a finished run is in ``out``."""
    from lvlm_skip.cli.options import CliError

    samples = _samples(out, tasks)
    if all(samples.values()):
        logger.info("lmms-eval / %s: reusing %s", spec.label, out)
        return samples
    command = [sys.executable, "-m", "lmms_eval", "--model", "lvlm_skip",
               "--model_args", _model_args(spec, args.model, args.profile, out),
               "--tasks", ",".join(tasks.values()), "--include_path", str(out.parent.parent / "lmms_tasks"),
               "--output_path", str(out), "--log_samples", "--device", args.device, "--batch_size", "1"]
    if args.limit:
        command += ["--limit", str(args.limit)]
    logger.info("lmms-eval / %s: %s", spec.label, " ".join(command[1:]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    samples = _samples(out, tasks)
    if done.returncode or not all(samples.values()):  # lmms-eval exits 0 on some errors: the samples decide
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CliError(f"lmms-eval / {spec.label} wrote no samples (exit {done.returncode}): {tail[0]}")
    return samples


def _samples(out: Path, tasks: dict[str, str]) -> dict[str, list[dict]]:
    found = {}
    for split, task in tasks.items():
        files = sorted(glob.glob(str(out / "**" / f"*samples_{task}.jsonl"), recursive=True))
        found[split] = [json.loads(line) for line in open(files[-1], encoding="utf-8")] if files else []
    return found


def _lmms_scores(samples: list[dict]) -> dict[str, float]:
    """F1 and accuracy as lmms-eval aggregates them (its ``pope_aggregate_*`` on the logged per-sample results)."""
    from lmms_eval.tasks.pope import utils

    results = [s["pope_f1_score"] for s in samples]
    return {"f1": utils.pope_aggregate_f1_score(results), "accuracy": utils.pope_aggregate_accuracy(results)}


def run(args) -> int:
    from lvlm_skip.cli import main as lvlm_skip
    from lvlm_skip.cli.options import CliError
    from lvlm_skip.evaluation.report import markdown_table
    from lvlm_skip.evaluation.variants import plan_variants
    from lvlm_skip.inputs.paths import check_output_dir

    try:
        import lmms_eval  # noqa: F401
    except ImportError:
        raise CliError("lmms-eval is not installed: pip install -e .[lmms] (README, lmms-eval and VLMEvalKit)") from None
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if not splits or any(s not in SPLITS for s in splits):
        raise CliError(f"--splits: choose from {', '.join(SPLITS)}, got {args.splits!r}")
    scenes = Path(args.scenes)
    parquets = {s: scenes / "hub" / "pope" / f"{s}.parquet" for s in splits}
    files = {s: scenes / "pope" / f"scenes_pope_{s}.json" for s in splits}
    missing = [str(p) for p in [*parquets.values(), *files.values()] if not p.is_file()]
    if missing:
        raise CliError(f"--scenes {args.scenes!r} is not a `lvlm-skip scenes` export: {missing[0]} is missing")
    plan = plan_variants(args.variants, profile=args.profile)
    out = check_output_dir(args.out)
    tasks = write_tasks(out / "lmms_tasks", parquets, None if args.prompt_suffix == "llava" else "")

    common = ["--model", args.model, "--variants", args.variants, "--prompt-suffix", args.prompt_suffix, "--device", args.device,
              "--out", str(out / "ours"), "--no-progress", *(["--limit", str(args.limit)] if args.limit else []),
              *(["--profile", args.profile] if args.profile else [])]
    if lvlm_skip(["pope", "--questions", *map(str, files.values()), "--image-dir", str(scenes / "images"), *common]):
        raise CliError("lvlm-skip pope failed (its error is above)")
    ours = {}
    for line in open(out / "ours" / "responses.jsonl", encoding="utf-8"):
        record = json.loads(line)
        ours[(record["variant"], str(record["id"]))] = record.get("response")
    report = json.loads((out / "ours" / f"pope_{'all' if tuple(splits) == SPLITS else '_'.join(splits)}.json").read_text())
    our_rows = {row["variant"]: row for row in report["rows"]}

    rows = []
    for spec in plan.specs:
        samples = run_lmms(spec, tasks, args, out / "lmms" / spec.label.replace(":", "_"))
        for split in splits:
            theirs = {str(s["pope_f1_score"]["question_id"]): s["filtered_resps"] for s in samples[split]}
            key = (lambda q: f"{split}:{q}") if len(splits) > 1 else (lambda q: q)
            same = [_text(answer) == (ours.get((spec.label, key(q))) or "").strip() for q, answer in theirs.items()]
            scores = _lmms_scores(samples[split])
            mine = our_rows[spec.label]
            rows.append({"variant": spec.label, "split": split, "questions": len(theirs),
                         "same_answers": round(sum(same) / len(same), 3),
                         "F1 (lvlm-skip pope)": round(mine[f"{split}_F1"], 2),
                         "F1 (lmms-eval)": round(100 * float(scores["f1"]), 2),
                         "accuracy (lvlm-skip pope)": round(mine[f"{split}_Accuracy"], 2),
                         "accuracy (lmms-eval)": round(100 * float(scores["accuracy"]), 2),
                         "yes % (lvlm-skip pope)": round(mine[f"{split}_yes_ratio"], 2)})
        _write(out, args, rows, markdown_table)
    print(markdown_table(rows))
    return 0


def _text(filtered) -> str:
    """lmms-eval's logged answer (a list of one string, or the string)."""
    return (filtered[0] if isinstance(filtered, list) and filtered else filtered or "").strip()


def _write(out: Path, args, rows: list[dict], markdown_table) -> None:
    import lmms_eval

    setting = {"model": args.model, "variants": args.variants, "profile": args.profile, "splits": args.splits,
               "limit": args.limit, "lmms_eval": getattr(lmms_eval, "__version__", None) or _version("lmms_eval")}
    (out / "both_ways.json").write_text(json.dumps({"setting": setting, "rows": rows}, indent=1) + "\n")
    (out / "both_ways.md").write_text(markdown_table(rows) + "\n")


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    return run_recipe(_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
