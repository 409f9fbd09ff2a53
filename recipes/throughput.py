"""Throughput of batched evaluation: answered items per second at batch 1, 4 and 8, with identical answers.

    python -m recipes.throughput                       # scene-llava and bench-llava at the commands' lengths, CPU: hours
    python -m recipes.throughput --max-new-tokens 32   # the same, 32 new tokens: ~20 min on 2 cores
    python -m recipes.throughput --models bench-llava-7b --device cuda --dtype float16 --batch-sizes 1,8,16,32

For every model, the scene benchmark's AMBER generative queries (``amber --task g``) and POPE
questions (the random split) are answered by the evaluation harness's own generator
(:class:`lvlm_skip.evaluation.generation.ModelGenerator`, the one ``lvlm-skip amber`` / ``pope`` run)
for each variant at each batch size, with the harness's batching (sorted by prompt length, by image first for a
variant that shares an image's prefill: :func:`lvlm_skip.evaluation.runner.batches`), up to the length those commands generate by default
(``amber`` 512 new tokens, ``pope`` 128; ``--max-new-tokens`` sets one for both). A model that ends its
answers early (scene-llava) never reaches them; one that never emits an end token (bench-llava) decodes
all of them, so its rate is mostly decoding. Configurations (batch size x variant) are interleaved
round by round, after an untimed warm-up round (``--warmup-tokens`` new tokens per item, 8 by default:
every kernel and cache size runs once); a row's rate is the median over ``--runs`` rounds of
``items / seconds`` (wall clock, CUDA synchronised), and its spread is ``(max - min) / median`` of
the rounds' rates (above 10%: the machine was busy, the row is noise).

Columns: ``items_per_s``, ``x_batch1`` (the same variant's rate at batch 1 over it), ``x_stock``
(against ``none`` at the same batch size), and ``same_answers``, the share of items whose answer
(text and token count) equals the variant's answer at batch 1 (1.0 in float32; reduced precision
may lower it, and the table shows it instead of hiding it).

The stock rows also give what batching can reach at best. In every round the stock variant answers
the items once more with one new token each (the prompt's prefill and the first token, the part no
decoding speedup removes): ``first_token_s`` is that run's seconds per item (median over rounds), and
``x_batch1_bound = (1 / stock items_per_s at batch 1) / first_token_s``, the ``x_batch1`` this batch
size would reach if every later decoding step cost nothing. Where the prefill is compute-bound (a CPU
with a long image prompt) ``first_token_s`` barely falls with the batch, and the bound shows how far
any batch size can go.

Writes ``throughput.json`` and ``throughput.md`` into ``--out`` (default ``runs/throughput``) after
every (model, task), so a stopped run keeps what it measured; the scene benchmark it draws goes to
``--out/bench``.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path

from lvlm_skip.cli.amber import MAX_NEW_TOKENS as AMBER_MAX_NEW_TOKENS
from lvlm_skip.cli.pope import MAX_NEW_TOKENS as POPE_MAX_NEW_TOKENS
from recipes.command import progress_enabled, recipe_parser, run_recipe

logger = logging.getLogger("recipes.throughput")

MODELS = ("scene-llava", "bench-llava")
TASKS = ("amber_g", "pope")
SCENE_LLAVA = Path(__file__).resolve().parent / "models" / "scene-llava"
#: the length limit ``lvlm-skip amber`` / ``pope`` generate with by default, per task
TASK_MAX_NEW_TOKENS = {"amber_g": AMBER_MAX_NEW_TOKENS, "pope": POPE_MAX_NEW_TOKENS}
#: the warm-up round's length limit: enough to load every kernel and allocator size class once
WARMUP_TOKENS = 8


def _parser():
    from lvlm_skip.cli.options import batch_sizes, positive_int

    p = recipe_parser("recipes.throughput", __doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS),
                   help="Comma-separated: scene-llava (the shipped trained model), a built-in model name, or a local folder.")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"Comma-separated, of {', '.join(TASKS)}.")
    p.add_argument("--variants", default="none,skip1,skip3", help="Comma-separated variant specs (the first is the stock row).")
    p.add_argument("--batch-sizes", default="1,4,8", type=batch_sizes,
                   help="Comma-separated batch sizes; 1 is added when missing.")
    p.add_argument("--items", type=positive_int, default=8, help="Items per task (the first N).")
    p.add_argument("--images", type=positive_int, default=8, help="Scenes in the drawn benchmark.")
    p.add_argument("--max-new-tokens", type=positive_int, default=None,
                   help="Generation length limit (default: each task's command default, "
                   f"amber {AMBER_MAX_NEW_TOKENS}, pope {POPE_MAX_NEW_TOKENS}).")
    p.add_argument("--runs", type=positive_int, default=3, help="Timed rounds after one warm-up round.")
    p.add_argument("--warmup-tokens", type=positive_int, default=WARMUP_TOKENS,
                   help="The untimed warm-up round's length limit (at most --max-new-tokens).")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default).")
    p.add_argument("--out", default="runs/throughput", help="Output folder.")
    return p


def _requests(task_name: str, bench: Path, count: int) -> list[tuple]:
    """The first ``count`` (item, image, prompt) of a task on the drawn benchmark, as the harness asks them."""
    from lvlm_skip.benchmarks.amber.task import AmberTask
    from lvlm_skip.benchmarks.pope.task import PopeTask
    from lvlm_skip.inputs.images import load_image

    task = AmberTask.load(bench, "g") if task_name == "amber_g" else PopeTask({"random": bench / "pope" / "scenes_pope_random.json"})
    out = []
    for item in list(task.items())[:count]:
        request = task.request(item)
        out.append((item, load_image(bench / "images" / request.image), request.prompt))
    return out


def _plan(variants: str, model_name: str, num_layers: int):
    """The variants with the layers of ``lvlm-skip speed`` for static skips (:func:`lvlm_skip.speed.benchmark.layer_plan`:
    bench-llava's own plan, else the paper's LLaVA-1.5-7B layers scaled to the model's depth), so that
    no row pays for measuring its layers on the prompt."""
    from lvlm_skip.evaluation.variants import parse_variant_specs, plan_variants
    from lvlm_skip.speed.benchmark import layer_plan

    choice = layer_plan(model_name, num_layers)
    c, m = choice.critical, list(choice.mutations)
    layers = {"skip1": {"critical_layer": c, "mutation_layers": m}, "skip2": {"mutation_layers": m},
              "skip3": {"critical_layer": c}, "exit": {"exit_layer": m[0] - 1}}
    options = {spec.label: layers[spec.variant] for spec in parse_variant_specs(variants, "static")
               if spec.mode == "static" and spec.variant in layers}
    return plan_variants(variants, variant_options=json.dumps(options))


def _answer_all(generator, requests: list[tuple], label: str, size: int, sync, clock=time.perf_counter,
                max_new_tokens: int | None = None) -> tuple[float, dict]:
    """Answer every request at batch ``size`` (the harness's order); seconds and id -> (text, tokens).

    ``max_new_tokens``: the generator's length limit for this run only (``None``: its own).
    """
    from lvlm_skip.evaluation.runner import batch_sort_key, batches

    by_id = {item.id: (image, prompt) for item, image, prompt in requests}
    answers = {}
    limit = generator.max_new_tokens
    generator.max_new_tokens = limit if max_new_tokens is None else max_new_tokens
    try:
        sync()
        start = clock()
        key = batch_sort_key(generator, label)  # as the runner sorts
        for batch in batches([item for item, _, _ in requests], size, key):
            results = generator.generate_batch([by_id[i.id][0] for i in batch], [by_id[i.id][1] for i in batch], label)
            answers.update({item.id: (r.text, r.new_tokens) for item, r in zip(batch, results)})
        sync()
        return clock() - start, answers
    finally:
        generator.max_new_tokens = limit


def measure_task(generator, requests: list[tuple], labels: list[str], sizes: list[int], runs: int, sync,
                 progress: bool = False, clock=time.perf_counter, warmup_tokens: int = WARMUP_TOKENS) -> list[dict]:
    """Rows (one per variant and batch size) of one model on one task: rates, ratios and answer agreement.

    ``labels[0]`` is the stock row; its rows also get ``first_token_s`` and ``x_batch1_bound`` (the
    module docstring). Round 0 warms up, untimed, generating at most ``warmup_tokens`` tokens per item;
    the answers compared are the first timed round's. ``clock``: seconds, a fake in tests.
    """
    from tqdm.auto import tqdm

    stock = labels[0]
    configs = [(size, label) for size in sizes for label in labels]
    rates: dict[tuple, list[float]] = {c: [] for c in configs}
    first_token: dict[int, list[float]] = {size: [] for size in sizes}  # stock: seconds per item, one new token
    answers: dict[tuple, dict] = {}
    for round_index in tqdm(range(runs + 1), desc="rounds", unit="round", disable=not progress):
        warmup = round_index == 0
        for size, label in configs:
            limit = min(warmup_tokens, generator.max_new_tokens) if warmup else None
            seconds, got = _answer_all(generator, requests, label, size, sync, clock, max_new_tokens=limit)
            if not warmup:
                answers.setdefault((size, label), got)
                rates[(size, label)].append(len(requests) / seconds)
            if label == stock:
                seconds, _ = _answer_all(generator, requests, label, size, sync, clock, max_new_tokens=1)
                if not warmup:
                    first_token[size].append(seconds / len(requests))
    rows = []
    for size, label in configs:
        rate = statistics.median(rates[(size, label)])
        base = answers[(1, label)]
        same = sum(answers[(size, label)][k] == v for k, v in base.items()) / len(base)
        row = {
            "variant": label, "batch": size, "items": len(requests), "max_new_tokens": generator.max_new_tokens,
            "items_per_s": round(rate, 3),
            "spread_pct": round(100 * (max(rates[(size, label)]) - min(rates[(size, label)])) / rate, 1),
            "x_batch1": round(rate / statistics.median(rates[(1, label)]), 2),
            "x_stock": round(rate / statistics.median(rates[(size, stock)]), 2),
            "same_answers": round(same, 3),
            "new_tokens_mean": round(statistics.mean(n for _, n in answers[(size, label)].values()), 1),
            "first_token_s": None, "x_batch1_bound": None,
        }
        if label == stock:
            first = statistics.median(first_token[size])
            row["first_token_s"] = round(first, 3)
            row["x_batch1_bound"] = round(1 / statistics.median(rates[(1, stock)]) / first, 2)
        rows.append(row)
    return rows


def run(args) -> int:
    import torch

    from lvlm_skip.anatomy import ModelAnatomy
    from lvlm_skip.cli.options import CliError
    from lvlm_skip.evaluation.generation import ModelGenerator
    from lvlm_skip.evaluation.report import markdown_table
    from lvlm_skip.evaluation.variants import plan_variants
    from lvlm_skip.inputs.models import load_model, resolve_device
    from lvlm_skip.inputs.paths import check_output_dir
    from lvlm_skip.scenes.export import export

    sizes = sorted(set(args.batch_sizes) | {1})
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise CliError(f"--tasks: unknown {', '.join(unknown)} (choose from {', '.join(TASKS)})")
    limits = {task: args.max_new_tokens or TASK_MAX_NEW_TOKENS[task] for task in tasks}
    plan_variants(args.variants)  # a bad spec is refused before anything loads
    out = check_output_dir(args.out)
    bench = export(out / "bench", args.images, 0, overwrite=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    result = {"setting": {"batch_sizes": sizes, "variants": args.variants.split(","), "items": args.items, "runs": args.runs,
                          "max_new_tokens": limits, "warmup_tokens": args.warmup_tokens,
                          "device": str(device), "dtype": args.dtype,
                          "threads": torch.get_num_threads(), "clock": "wall"}, "rows": []}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        path = str(SCENE_LLAVA) if name == "scene-llava" else name
        torch.manual_seed(0)
        model, processor = load_model(path, dtype=getattr(torch, args.dtype), device=device)
        plan = _plan(args.variants, name, ModelAnatomy.from_model(model).num_layers)
        for task in tasks:
            generator = ModelGenerator(model, processor, plan, limits[task])
            requests = _requests(task, bench, args.items)
            logger.info("%s / %s: %d items x %d variants x batch sizes %s, up to %d new tokens, %d round(s)", name, task,
                        len(requests), len(plan.labels), sizes, limits[task], args.runs)
            rows = measure_task(generator, requests, list(plan.labels), sizes, args.runs, sync, progress_enabled(args),
                                warmup_tokens=args.warmup_tokens)
            result["rows"] += [{"model": name, "task": task, **row} for row in rows]
            _write(out, result, markdown_table)  # after every (model, task): a stopped run keeps what it measured
        model = generator = None  # free this model before the next loads
    noisy = [f"{r['model']}/{r['task']}/{r['variant']}@{r['batch']}" for r in result["rows"] if r["spread_pct"] > 10]
    if noisy:
        logger.warning("spread above 10%% (a busy machine; those rows are noise): %s", ", ".join(noisy))
    print(markdown_table(result["rows"]))
    return 0


def _write(out: Path, result: dict, markdown_table) -> None:
    (out / "throughput.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "throughput.md").write_text(markdown_table(result["rows"]) + "\n")


def main(argv: list[str] | None = None) -> int:
    return run_recipe(_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
