"""AMBER evaluation CLI: generate (resumable, shardable) and score per variant.

Usage::

    python -m eval.amber --model PATH --amber-root DIR --image-dir DIR \\
        --variants none,skip1,skip2,skip3,skip2:online --task g [--limit N] [--out DIR] \\
        [--variant-options '{"skip3": {"critical_layer": 18}}']
    accelerate launch --num_processes 4 -m eval.amber ...   # sharded
    python -m eval.amber --amber-root DIR --task g --out DIR --score-only

Outputs in ``--out``: ``responses.jsonl`` (one line per (variant, id)) and
``amber_<task>.json`` / ``amber_<task>.md`` (one row per variant: metrics,
tokens/s, speedup = tokens/s of the variant / tokens/s of ``none``, layers_skipped
= mean decoder layers skipped per decoding step, errors, language backend).
Rerunning the same command resumes where it stopped. Variant specs (``name[:mode]``)
and ``--variant-options`` are described in :mod:`eval.generation`.

For tests, ``main(argv, generate_fn=...)`` injects a generator and the hidden
``--fake-generator`` flag uses a deterministic one (no model needed).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from eval.amber_data import AmberFormatError, check_queries, load_amber, load_queries, TASK_FILES
from eval.amber_metrics import score_discriminative, score_generative
from eval.generation import load_variant_options, parse_variant_specs, resolve_variant_options
from eval.language import pick_backend
from eval.results import (GenerateFn, GenItem, ResultStore, ShardMergeError, format_table,
                          mean_layers_skipped, merge_shards, partial_state, run_generation,
                          shard_items, write_report)

logger = logging.getLogger(__name__)

#: Table columns per task (the JSON report keeps every metric).
TASK_COLUMNS: dict[str, tuple[str, ...]] = {
    "g": ("CHAIR", "Cover", "Hal", "Cog"),
    "d": ("Accuracy", "Precision", "Recall", "F1", "existence_F1", "attribute_F1", "relation_F1"),
    "a": ("CHAIR", "Cover", "Hal", "Cog", "Accuracy", "Precision", "Recall", "F1"),
    "de": ("existence_Accuracy", "existence_Precision", "existence_Recall", "existence_F1"),
    "da": ("attribute_Accuracy", "attribute_Precision", "attribute_Recall", "attribute_F1",
           "state_F1", "number_F1", "action_F1"),
    "dr": ("relation_Accuracy", "relation_Precision", "relation_Recall", "relation_F1"),
}


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser of the AMBER CLI."""
    p = argparse.ArgumentParser(prog="python -m eval.amber", description=__doc__.split("\n")[0])
    p.add_argument("--model", help="local model folder (not needed with --score-only)")
    p.add_argument("--amber-root", required=True, help="folder with annotations.json, query/, relation.json, safe_words.txt")
    p.add_argument("--image-dir", help="folder with the AMBER_*.jpg images")
    p.add_argument("--variants", default="none",
                   help="comma-separated specs name[:mode], e.g. none,skip1,skip2,skip2:online,exit:online")
    p.add_argument("--variant-options", default=None,
                   help="JSON object (or a JSON file) of lvlm_skip.wrap options by variant name or spec, "
                        "e.g. '{\"skip3\": {\"critical_layer\": 18}}'")
    p.add_argument("--task", default="g", choices=list(TASK_FILES), help="g generative, d discriminative, a all; de/da/dr sub-dimensions")
    p.add_argument("--limit", type=int, default=None, help="only the first N queries")
    p.add_argument("--out", default="runs/amber", help="output folder (resumable)")
    p.add_argument("--mode", default="static", choices=["static", "online"], help="mode of the specs that name none")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--score-only", action="store_true", help="score existing responses, generate nothing")
    p.add_argument("--backend", default="auto", choices=["auto", "official", "offline"], help="language backend for the generative metric")
    p.add_argument("--device-map", default="auto")
    p.add_argument("--fake-generator", action="store_true", help=argparse.SUPPRESS)
    return p


def fake_generate_fn(image: Any, prompt: str, variant: str) -> tuple[str, int, float]:
    """Deterministic stand-in generator used by ``--fake-generator`` (tests)."""
    if prompt.lower().startswith(("is ", "are ", "does ", "do ", "can ")):
        return "Yes", 1, 0.01
    return "A man walks a dog on the grass.", 8, 0.01


def _parse_variants(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[list, dict]:
    """Returns the variant specs and the raw ``--variant-options`` (checked; errors exit 2)."""
    try:
        specs = parse_variant_specs(args.variants, args.mode)
        options = load_variant_options(args.variant_options)
        resolve_variant_options(specs, options)
    except ValueError as exc:
        parser.error(str(exc))
    return specs, options


def score_variant(records: Sequence[dict[str, Any]], task: str, data, backend) -> dict[str, Any]:
    """Scores one variant's records; returns metrics, ``n``, ``errors`` and ``tokens_per_s``."""
    ok = [r for r in records if "error" not in r]
    row: dict[str, Any] = {"n": len(records), "errors": len(records) - len(ok)}
    responses = {r["id"]: r["response"] for r in ok}
    if task in ("g", "a"):
        row.update(score_generative(responses, data.annotations, data.relation, data.safe_words, backend))
    if task != "g":
        row.update(score_discriminative(responses, data.annotations))
    seconds = sum(r.get("seconds", 0.0) for r in ok)
    row["tokens_per_s"] = sum(r.get("new_tokens", 0) for r in ok) / seconds if seconds > 0 else None
    row["layers_skipped"] = mean_layers_skipped(ok)
    return row


def main(argv: Sequence[str] | None = None, generate_fn: GenerateFn | None = None) -> int:
    """Runs the AMBER CLI.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).
        generate_fn: Test hook: ``generate_fn(image, prompt, variant) -> (text,
            new_tokens, seconds)`` used instead of loading ``--model``.

    Returns:
        0 on success (bad inputs exit with status 2 and a one-line message;
        an interrupted generation exits with 130 and can be resumed).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    specs, variant_options = _parse_variants(parser, args)
    variants = [s.label for s in specs]
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    try:
        data = load_amber(args.amber_root)
        queries = load_queries(args.amber_root, args.task)
        check_queries(queries, data)
    except AmberFormatError as exc:
        parser.error(str(exc))
    if args.limit is not None:
        queries = queries[: args.limit]
    generating = not args.score_only
    if generating:
        if not args.image_dir or not Path(args.image_dir).is_dir():
            parser.error(f"--image-dir {args.image_dir!r}: folder not found")
        if generate_fn is None and not args.fake_generator:
            if not args.model or not Path(args.model).exists():
                parser.error(f"--model {args.model!r}: path not found")
    try:
        backend, backend_name = pick_backend(args.backend, data.vocabulary())
    except RuntimeError as exc:
        parser.error(str(exc))

    state = partial_state()
    out = Path(args.out)
    expected = [(v, q["id"]) for v in variants for q in queries]
    if generating:
        store = ResultStore(out, rank=state.process_index if state.num_processes > 1 else None)
        items = [GenItem(q["id"], Path(args.image_dir) / q["image"], q["query"]) for q in queries]
        shard = shard_items(items, state.process_index, state.num_processes)
        if generate_fn is None:
            if args.fake_generator:
                generate_fn = fake_generate_fn
            else:
                from eval.generation import build_generate_fn

                # one full model copy per process on its own device under `accelerate launch`
                device_map = str(state.device) if state.num_processes > 1 else args.device_map
                try:
                    generate_fn = build_generate_fn(args.model, specs, args.mode, args.max_new_tokens,
                                                    device_map, variant_options=variant_options)
                except (OSError, RuntimeError, ValueError) as exc:
                    parser.error(f"cannot load model {args.model}: {exc}")
        try:
            run_generation(store, variants, shard, generate_fn, show_progress=state.is_local_main_process)
        except KeyboardInterrupt:
            print(f"interrupted; rerun the same command to resume from {store.path}", file=sys.stderr)
            raise SystemExit(130) from None
        state.wait_for_everyone()
    if not state.is_main_process:
        return 0
    try:
        merged = merge_shards(out, expected)
    except ShardMergeError as exc:
        hint = " (run without --score-only first)" if args.score_only else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        raise SystemExit(2) from None

    rows = []
    for variant in variants:
        recs = [r for r in merged.records if r["variant"] == variant]
        rows.append({"variant": variant, **score_variant(recs, args.task, data, backend)})
    base = next((r["tokens_per_s"] for r, s in zip(rows, specs) if s.variant == "none"), None)
    for row in rows:
        tps = row["tokens_per_s"]
        row["speedup"] = tps / base if tps and base else None
        row["backend"] = backend_name
    skipped_col = ["layers_skipped"] if any(r["layers_skipped"] is not None for r in rows) else []
    columns = ["variant", *TASK_COLUMNS[args.task], "tokens_per_s", "speedup", *skipped_col, "n", "errors"]
    meta = {"task": args.task, "mode": args.mode, "backend": backend_name,
            "variants": {s.label: {"variant": s.variant, "mode": s.mode} for s in specs},
            "variant_options": variant_options,
            "model": args.model, "amber_root": str(args.amber_root), "duplicates_dropped": merged.duplicates}
    json_path, md_path = write_report(rows, out, f"amber_{args.task}", meta=meta, columns=columns)
    print(f"AMBER task={args.task} backend={backend_name} errors={sum(r['errors'] for r in rows)}")
    print(format_table(rows, columns))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
