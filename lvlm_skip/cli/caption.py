"""``lvlm-skip caption``: caption quality, CHAIR and closeness to the stock model, one row per variant.

Every image of a COCO-format caption file is described once per variant. Per variant: the COCO
caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr, SPICE when installed), CHAIR_S / CHAIR_I with
``--instances``, and the closeness of each caption to the ``none`` variant's. Writes
``responses.jsonl``, ``run.json`` and ``caption_report.json`` / ``.md`` into ``--out``.
"""

from __future__ import annotations

from .options import add_evaluation_arguments

HELP = "Caption metrics, CHAIR and closeness to the stock model, one row per variant."
DEFAULT_PROMPT = "Please describe this image in detail."
#: COCO scorer groups (``lvlm_skip.benchmarks.caption.coco_metrics.SCORER_GROUPS``), repeated so that --help imports nothing.
METRICS = "bleu,meteor,rouge,cider,spice"


def add_arguments(p) -> None:
    """The caption subcommand's options."""
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--captions", help="COCO-format caption file (images with file_name; annotations with captions).")
    data.add_argument("--dataset", metavar="DIR_OR_PARQUET",
                      help="Captions as lmms-eval ships them (COCO-Caption2017's schema: question_id = file name, id, "
                      "answer = references, image embedded): a .parquet file, a folder of them, or a save_to_disk folder; "
                      "read offline, never downloaded; no --image-dir needed.")
    p.add_argument("--instances", default=None, help="COCO instances file (instances_*.json): enables CHAIR.")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="The instruction every image gets.")
    p.add_argument("--metrics", default=METRICS, help="COCO metric groups to compute, among " + METRICS + ".")
    add_evaluation_arguments(p, default_out="runs/caption", max_new_tokens=512, default_variants="none,skip1,skip2,skip3")


def run(args) -> int:
    """The ``caption`` subcommand."""
    from ._evaluation import run_task

    def load_task():
        from ..benchmarks.caption.task import CaptionTask, HubCaptionTask  # run()'s own: the benchmark loads when it runs

        kind = HubCaptionTask if args.dataset else CaptionTask
        return kind.load(args.dataset or args.captions, prompt=args.prompt, metrics=args.metrics.split(","),
                         instances=args.instances)

    return run_task(args, load_task, embedded_images=bool(args.dataset))
