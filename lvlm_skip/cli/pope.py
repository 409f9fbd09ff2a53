"""``lvlm-skip pope``: POPE object-probing questions (random / popular / adversarial), one report row per variant.

Asks every question of POPE's question files (``<dataset>_pope_<split>.json`` in ``--pope-root``, or
the files of ``--questions``) once per variant, resumable and shardable like every evaluation, and
scores each split like POPE's official ``evaluate.py``: accuracy, precision, recall, F1 ("yes"
positive) and the yes-ratio, in percent. Writes ``responses.jsonl``, ``run.json`` and
``pope_<split>.json`` / ``.md`` (``pope_all`` for the three splits) into ``--out``.
"""

from __future__ import annotations

import argparse
from typing import get_args

from ..config import PopeSplit
from .options import CliError, add_evaluation_arguments

HELP = "POPE yes/no object probing (random, popular, adversarial), one row per variant."
#: POPE's splits (``lvlm_skip.data.pope.POPE_SPLITS``).
SPLITS: tuple[str, ...] = get_args(PopeSplit)
#: ``lvlm_skip.benchmarks.pope.task.PROMPT_SUFFIXES``' names, repeated for the same reason.
SUFFIXES = ("none", "llava", "vcd")
#: ``lvlm_skip.benchmarks.pope.protocols.PROTOCOLS``, repeated for the same reason.
PROTOCOLS = ("harness", "authors")
#: ``--max-new-tokens``'s default: a yes/no answer with room for a free-form sentence around it.
MAX_NEW_TOKENS = 128


def add_arguments(p) -> None:
    """The pope subcommand's options."""
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--pope-root",
                      help="Folder of POPE question files <dataset>_pope_<split>.json (POPE's output/coco, or the "
                      "pope/ folder of `lvlm-skip scenes`).")
    data.add_argument("--questions", nargs="+", metavar="FILE",
                      help="POPE question files (JSON lines {question_id, image, text, label}) instead of --pope-root; "
                      "a file's split is <split> of its name <dataset>_pope_<split>.json, else its stem.")
    data.add_argument("--dataset", metavar="DIR_OR_PARQUET",
                      help="POPE as the hub ships it (lmms-lab/POPE's schema, images embedded): a .parquet file, a folder "
                      "of them (a hub snapshot, e.g. ~/.cache/huggingface/hub/datasets--lmms-lab--POPE/snapshots/REV), or "
                      "a save_to_disk folder; read offline, never downloaded; no --image-dir needed. Splits: its "
                      "'category' column.")
    p.add_argument("--split", default="all", choices=(*SPLITS, "all"),
                   help="With --pope-root or --dataset: the split to answer, or all three in one run.")
    p.add_argument("--file-prefix", default=None,
                   help="With --pope-root: the file prefix (coco, aokvqa, gqa, scenes); default: the only one in the folder.")
    p.add_argument("--prompt-suffix", default="none",
                   help="Text appended to every question: none (POPE's question as is), llava (LLaVA-1.5's "
                   "'\\nAnswer the question using a single word or phrase.'), vcd (VCD's ' Please answer this question "
                   "with one word.'), or any other text, appended verbatim. Part of the run's fingerprint.")
    p.add_argument("--protocol", default="harness", choices=PROTOCOLS,
                   help="harness: every variant asked alike (the question plus --prompt-suffix, greedy, --max-new-tokens, "
                   "POPE's official answer reading). authors: each peer as its released POPE script runs it (vcd: "
                   "' Please answer this question with one word.', sampling at temperature 1, beta 0.2, 1024 tokens, "
                   "VCD's eval_pope.py reading; deco: the question as is, greedy, 5 tokens, DeCo's yes-word reading), "
                   "the other variants as the harness. Recorded in the fingerprint and the report.")
    add_evaluation_arguments(p, default_out="runs/pope", max_new_tokens=MAX_NEW_TOKENS, default_variants="none",
                             limit_help="Only the first N questions of each split.")


def run(args) -> int:
    """The ``pope`` subcommand."""
    from ._evaluation import run_task

    if args.questions and (args.split != "all" or args.file_prefix):
        raise CliError("--split and --file-prefix choose files of --pope-root; with --questions, name the files")
    if args.dataset and args.file_prefix:
        raise CliError("--file-prefix chooses files of --pope-root; --dataset reads its splits from its 'category' column")
    splits = SPLITS if args.split == "all" else (args.split,)

    def load_task():
        from ..benchmarks.pope.task import HubPopeTask, PopeTask, resolve_prompt_suffix  # run()'s own: loads when it runs

        suffix = resolve_prompt_suffix(args.prompt_suffix)
        if args.questions:
            return PopeTask.from_files(args.questions, prompt_suffix=suffix, limit=args.limit)
        if args.dataset:
            return HubPopeTask(args.dataset, None if args.split == "all" else splits, prompt_suffix=suffix,
                               limit=args.limit)
        return PopeTask.from_folder(args.pope_root, splits, args.file_prefix, prompt_suffix=suffix, limit=args.limit)

    def adapt_plan(plan, task):
        from ..benchmarks.pope.protocols import apply_protocols, variant_protocols  # as load_task's

        protocols = variant_protocols(plan, args.protocol)
        task.use_protocols(protocols)
        return apply_protocols(plan, protocols)

    # --limit applies per split inside the task, so the runner must not cut the concatenated items again
    return run_task(argparse.Namespace(**{**vars(args), "limit": None}), load_task, embedded_images=bool(args.dataset),
                    adapt_plan=adapt_plan)
