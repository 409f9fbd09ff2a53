"""``lvlm-skip amber``: the AMBER hallucination benchmark, one report row per variant.

Generates (resumable, shardable under ``torchrun`` / ``accelerate launch``) and scores like AMBER's
official ``inference.py``: CHAIR, Cover, Hal, Cog for descriptions (``--task g``), Accuracy,
Precision, Recall, F1 for yes/no questions (``--task d``, ``de``, ``da``, ``dr``), both for ``a``.
Writes ``responses.jsonl``, ``run.json`` (the fingerprint) and ``amber_<task>.json`` / ``.md`` into ``--out``.
"""

from __future__ import annotations

from typing import get_args

from ..config import AmberTaskName, LanguageBackendChoice
from .options import add_evaluation_arguments

HELP = "AMBER hallucination benchmark (generative and yes/no), one row per variant."
#: AMBER tasks (the keys of ``lvlm_skip.data.amber.TASK_FILES``).
TASKS: tuple[str, ...] = get_args(AmberTaskName)
#: ``--max-new-tokens``'s default: room for a full description (AMBER's and LLaVA's captions are ~100 tokens).
MAX_NEW_TOKENS = 512


def add_arguments(p) -> None:
    """The amber subcommand's options."""
    p.add_argument("--amber-root", required=True,
                   help="AMBER's data folder: annotations.json, query/query_*.json, relation.json, safe_words.txt.")
    p.add_argument("--task", default="g", choices=TASKS,
                   help="g generative, d discriminative, a all; de / da / dr: existence / attribute / relation.")
    p.add_argument("--backend", default="auto", choices=get_args(LanguageBackendChoice),
                   help="Language backend of the generative metric: official (nltk + spaCy en_core_web_lg), "
                   "offline (vocabulary match), auto (official when installed).")
    add_evaluation_arguments(p, default_out="runs/amber", max_new_tokens=MAX_NEW_TOKENS)


def run(args) -> int:
    """The ``amber`` subcommand."""
    from ._evaluation import run_task

    def load_task():
        from ..benchmarks.amber.task import AmberTask  # run()'s own: the benchmark loads when it runs

        return AmberTask.load(args.amber_root, args.task, backend=args.backend)

    return run_task(args, load_task)
