"""Caption benchmark for layer-skipping variants: ``python -m eval.caption``.

For every image of a COCO-format caption split and every variant spec (``none`` = stock
model, ``skip1``/``skip2``/``skip3``/``exit`` = layer skipping, ``name:mode`` picks the
mode, ``--variant-options`` the layers; see :mod:`eval.generation`), the model describes the image;
each answer is appended to ``<out>/responses.jsonl`` as soon as it is produced (a rerun
resumes; failures are stored as ``error`` records and counted).  Then, per variant:

* COCO caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr; SPICE only when its
  Stanford CoreNLP jars are installed) against the reference captions;
* CHAIR_S / CHAIR_I (``--instances``): ground truth = instance categories united with
  the objects named in the reference captions, as in Rohrbach et al. (2018);
* closeness to the ``none`` output of the same image (identical fraction, word edit
  similarity, unigram F1, ROUGE-L F1; see
  :func:`eval.caption_metrics.closeness_to_reference_variant`);
* throughput: tokens/s = sum(new tokens) / sum(generate seconds), and
  speedup = tokens/s(variant) / tokens/s(none);
* layers_skipped: mean decoder layers skipped per decoding step (when recorded).

One table is printed and written as ``<out>/caption_report.{json,md}``.

Under ``accelerate launch`` the images are sharded by position over the processes,
each process writes ``responses.rank{R}.jsonl`` and rank 0 merges and scores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eval.caption_data import CaptionDataError, CaptionDataset, load_captions, load_instances
from eval.caption_metrics import (
    chair_scores,
    closeness_to_reference_variant,
    coco_caption_scores_multi,
    image_objects_from_captions,
)
from eval.generation import load_variant_options, parse_variant_specs, resolve_variant_options
from eval.results import (
    GenerateFn,
    GenItem,
    ResultStore,
    ShardMergeError,
    format_table,
    mean_layers_skipped,
    merge_shards,
    partial_state,
    run_generation,
    shard_items,
    write_report,
)

logger = logging.getLogger(__name__)

DEFAULT_PROMPT = "Please describe this image in detail."
DEFAULT_VARIANTS = "none,skip1,skip2,skip3"
DEFAULT_METRICS = "bleu,meteor,rouge,cider,spice"
REPORT_NAME = "caption_report"


class UsageError(Exception):
    """Bad command-line input (reported as one line, exit code 2)."""


@dataclass
class VariantRow:
    """One report row (a variant).

    Attributes:
        variant: variant name.
        n: captions generated successfully.
        errors: items stored with an error.
        scores: caption metrics, CHAIR and closeness values by column name.
        tok_per_s: sum of new tokens / sum of generation seconds.
        speedup: ``tok_per_s / tok_per_s(none)``.
        avg_new_tokens: mean generated tokens per caption.
        layers_skipped: mean decoder layers skipped per step (``None``: not recorded).
    """

    variant: str
    n: int
    errors: int
    scores: dict[str, float | None]
    tok_per_s: float | None
    speedup: float | None
    avg_new_tokens: float | None
    layers_skipped: float | None = None

    def flat(self) -> dict[str, Any]:
        """The row as a flat ``{column: value}`` dict, in table order (no ``layers_skipped`` when not recorded)."""
        d = asdict(self)
        scores = d.pop("scores")
        if d["layers_skipped"] is None:
            d.pop("layers_skipped")
        tail = {k: d.pop(k) for k in ("avg_new_tokens", "tok_per_s", "speedup", "layers_skipped") if k in d}
        return {**d, **scores, **tail}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = _Parser(prog="python -m eval.caption", description=__doc__.split("\n")[0])
    p.add_argument("--model", help="local model folder (needed unless --score-only)")
    p.add_argument("--captions", required=True, help="COCO-format caption annotation JSON")
    p.add_argument("--image-dir", help="folder holding the images' file_name (needed unless --score-only)")
    p.add_argument("--instances", help="COCO instances JSON: enables CHAIR")
    p.add_argument("--variants", default=DEFAULT_VARIANTS,
                   help="comma-separated specs name[:mode], e.g. none,skip2,skip2:online (default: %(default)s)")
    p.add_argument("--variant-options", default=None,
                   help="JSON object (or a JSON file) of lvlm_skip.wrap options by variant name or spec")
    p.add_argument("--mode", choices=["static", "online"], default="static",
                   help="mode of the specs that name none (default: %(default)s)")
    p.add_argument("--limit", type=int, help="first N images only")
    p.add_argument("--out", default="results/caption", help="output folder (default: %(default)s)")
    p.add_argument("--score-only", action="store_true", help="score stored responses, generate nothing")
    p.add_argument("--prompt", default=DEFAULT_PROMPT)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--metrics", default=DEFAULT_METRICS,
                   help="COCO metric groups among bleu,meteor,rouge,cider,spice (default: %(default)s)")
    p.add_argument("--device-map", default="auto", help="from_pretrained device_map (single process)")
    return p


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    try:
        args.specs = parse_variant_specs(args.variants, args.mode)
        args.variant_options = load_variant_options(args.variant_options)
        resolve_variant_options(args.specs, args.variant_options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    args.variants = [s.label for s in args.specs]
    args.metrics = [m.strip().lower() for m in args.metrics.split(",") if m.strip()]
    bad = set(args.metrics) - set(DEFAULT_METRICS.split(","))
    if bad:
        raise UsageError(f"unknown --metrics {sorted(bad)}; choose among {DEFAULT_METRICS}")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be >= 1")
    if args.max_new_tokens < 1:
        raise UsageError("--max-new-tokens must be >= 1")
    if not args.score_only:
        if not args.image_dir or not Path(args.image_dir).is_dir():
            raise UsageError(f"--image-dir is not a folder: {args.image_dir}")
    return args


def _dist_info() -> tuple[int | None, int, Any]:
    """``(rank or None when single-process, world size, accelerate state or None)``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None, 1, None
    state = partial_state()
    if state.num_processes <= 1:
        logger.warning("WORLD_SIZE>1 but accelerate sees one process: running unsharded")
        return None, 1, None
    return state.process_index, state.num_processes, state


def _generate(args: argparse.Namespace, data: CaptionDataset,
              generate_fn: GenerateFn | None) -> bool:
    """Runs (or resumes) generation; returns True on the process that should score."""
    rank, world, state = _dist_info()
    items = [GenItem(im.image_id, Path(args.image_dir) / im.file_name, args.prompt)
             for im in data.images]
    store = ResultStore(args.out, rank)
    if generate_fn is None:
        if not args.model or not Path(args.model).exists():
            raise UsageError(f"--model must be an existing local model folder: {args.model}")
        from eval.generation import build_generate_fn

        # One full model copy per process on its own device under `accelerate launch`.
        device_map = str(state.device) if state is not None else args.device_map
        try:
            generate_fn = build_generate_fn(args.model, args.specs, args.mode, args.max_new_tokens,
                                            device_map, variant_options=args.variant_options)
        except (OSError, RuntimeError, ValueError) as exc:
            raise UsageError(f"cannot load model {args.model}: {exc}".replace("\n", " ")) from None
    mine = shard_items(items, rank or 0, world)
    try:
        produced = run_generation(store, args.variants, mine, generate_fn,
                                  show_progress=rank in (None, 0))
    except KeyboardInterrupt:
        print(f"interrupted; rerun the same command to resume from {store.path}", file=sys.stderr)
        raise SystemExit(130) from None
    logger.info("rank %s: %d new item(s) generated (or failed)", rank or 0, produced)
    if state is None:
        return True
    state.wait_for_everyone()
    try:
        if rank == 0:
            merge_shards(args.out, [(v, it.id) for v in args.variants for it in items])
    finally:
        state.wait_for_everyone()  # reached even when the merge fails: no rank hangs
    return rank == 0


def _throughput(records: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    tokens = sum(r.get("new_tokens", 0) for r in records)
    seconds = sum(r.get("seconds", 0.0) for r in records)
    avg = tokens / len(records) if records else None
    return (tokens / seconds if seconds > 0 else None), avg


def score(args: argparse.Namespace, data: CaptionDataset,
          image_objects: dict[Any, set[str]] | None) -> tuple[list[VariantRow], dict[str, Any]]:
    """Scores the stored responses of every variant.

    Returns:
        The rows and a ``meta`` dict (skipped metrics with reasons, counts, settings).
        With ground-truth objects, the mentioned / hallucinated objects of every caption
        are also written to ``<out>/caption_chair_details.json``.
    """
    wanted = {im.image_id for im in data.images}
    records = [r for r in ResultStore(args.out).records() if r["id"] in wanted]
    references = data.references()
    if image_objects is not None:
        from_caps = image_objects_from_captions(references)
        image_objects = {i: set(objs) | from_caps.get(i, set()) for i, objs in image_objects.items()}
    by_variant = {v: [r for r in records if r["variant"] == v] for v in args.variants}
    texts = {v: {r["id"]: r["response"] for r in rs if "error" not in r} for v, rs in by_variant.items()}
    base = next((s.label for s in args.specs if s.variant == "none"), None)  # the speedup / closeness reference
    none_tps = _throughput([r for r in by_variant.get(base, []) if "error" not in r])[0]
    skipped: dict[str, str] = {}
    chair_details: dict[str, dict[str, Any]] = {}
    coco: dict[str, dict[str, Any]] = {}
    if references and args.metrics:
        coco = coco_caption_scores_multi(references, {v: t for v, t in texts.items() if t},
                                         metrics=args.metrics)
    rows = []
    for v in args.variants:
        ok = [r for r in by_variant[v] if "error" not in r]
        scores: dict[str, float | None] = {}
        if v in coco:
            scores.update(coco[v]["scores"])
            skipped.update(coco[v]["skipped"])
        if image_objects is not None:
            chair = chair_scores(texts[v], image_objects)
            chair_details[v] = {str(i): d for i, d in chair["per_caption"].items()}
            scores["CHAIR_S"], scores["CHAIR_I"] = chair["CHAIR_S"], chair["CHAIR_I"]
        if base is not None and v != base:
            close = closeness_to_reference_variant(texts[v], texts[base])
            for k in ("identical", "edit_similarity", "unigram_f1", "rouge_l_f1"):
                scores[f"close_{k}"] = close[k]
        tps, avg = _throughput(ok)
        speedup = tps / none_tps if tps is not None and none_tps else None
        rows.append(VariantRow(v, len(ok), len(by_variant[v]) - len(ok), scores, tps, speedup, avg,
                               mean_layers_skipped(ok)))
    # Give every row the same columns (closeness is absent for `none`).
    columns = list(dict.fromkeys(k for r in rows for k in r.scores))
    for r in rows:
        r.scores = {k: r.scores.get(k) for k in columns}
    if chair_details:
        path = Path(args.out) / "caption_chair_details.json"
        path.write_text(json.dumps(chair_details, indent=1) + "\n", encoding="utf-8")
    meta = {"captions": str(args.captions), "images": len(data), "prompt": args.prompt,
            "mode": args.mode, "variants": {s.label: {"variant": s.variant, "mode": s.mode} for s in args.specs},
            "variant_options": args.variant_options, "instances": args.instances, "skipped_metrics": skipped,
            "speedup": "tokens/s of the variant / tokens/s of none",
            "closeness": "mean over images of identical / word edit similarity / unigram F1 / "
                         "ROUGE-L F1 between the variant's and none's output"}
    return rows, meta


def main(argv: Sequence[str] | None = None, generate_fn: GenerateFn | None = None) -> int:
    """CLI entry point; returns the process exit code (2 on bad input)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args = _parse(argv)
        data = load_captions(args.captions, limit=args.limit)
        if not data.images:
            raise UsageError(f"no images in {args.captions}")
        image_objects = load_instances(args.instances) if args.instances else None
        if not args.score_only and not _generate(args, data, generate_fn):
            return 0  # non-zero ranks: rank 0 reports
        if not (Path(args.out) / "responses.jsonl").is_file():
            raise UsageError(f"no stored responses in {args.out}")
        rows, meta = score(args, data, image_objects)
    except (UsageError, CaptionDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ShardMergeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    flat = [r.flat() for r in rows]
    json_path, md_path = write_report(flat, args.out, REPORT_NAME, meta)
    print(format_table(flat))
    for name, reason in meta["skipped_metrics"].items():
        print(f"note: {name} skipped: {reason}")
    print(f"report: {json_path} {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
