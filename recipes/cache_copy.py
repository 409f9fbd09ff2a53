"""What transformers' per-step cache copy costs: decoding steps with its DynamicCache and with the harness's reserved one.

    python -m recipes.cache_copy                          # bench-llava, batch 1 and 8, CPU, about 3 minutes
    python -m recipes.cache_copy --model bench-llava-7b --device cuda --dtype float16 --batch-sizes 1,8,32

transformers' ``DynamicLayer.update`` concatenates, so every decoding step copies the whole cache; the
evaluation harness hands ``generate`` :func:`lvlm_skip.anatomy.reserved_cache` instead, which writes in place.
For each batch size (every row the demo image and the same prompt), the two caches are interleaved round by
round after a warm-up round; a row's decoding time is a ``--new-tokens`` ``generate`` minus a one-token one
(the prefill), per step, and the table gives the median and the spread over ``--runs`` rounds, and whether the
tokens were identical. Writes ``cache_copy.json`` / ``cache_copy.md`` into ``--out`` (default ``runs/cache_copy``).
"""

from __future__ import annotations

import json
import statistics
import time

from recipes.command import recipe_parser, run_recipe

PROMPT = "Describe the image in detail."


def _parser():
    from lvlm_skip.cli.options import batch_sizes, positive_int

    p = recipe_parser("recipes.cache_copy", __doc__.split("\n\n")[0])
    p.add_argument("--model", default="bench-llava", help="A built-in model name or a local folder.")
    p.add_argument("--batch-sizes", default="1,8", type=batch_sizes, help="Comma-separated batch sizes.")
    p.add_argument("--new-tokens", type=positive_int, default=32, help="Tokens generated per row (at least 2).")
    p.add_argument("--runs", type=positive_int, default=3, help="Timed rounds after one warm-up round.")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default).")
    p.add_argument("--out", default="runs/cache_copy", help="Output folder.")
    return p


def decode_step_ms(model, inputs: dict, new_tokens: int, cache_kwargs, sync, clock=time.perf_counter):
    """One measurement: (milliseconds per decoding step, the tokens) of ``generate`` with the extra arguments
    ``cache_kwargs()`` (a fresh cache per call; ``{}``: transformers' own), the one-token ``generate``'s time
    (prefill) subtracted."""
    import torch

    times, out = [], None
    for count in (1, new_tokens):
        extra = cache_kwargs()
        sync()
        start = clock()
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=count, min_new_tokens=count, do_sample=False, **extra)
        sync()
        times.append(clock() - start)
    return (times[1] - times[0]) / (new_tokens - 1) * 1000, out


def run(args) -> int:
    import torch

    from lvlm_skip.anatomy import ModelAnatomy, reserved_cache
    from lvlm_skip.cli.options import CliError
    from lvlm_skip.evaluation.report import markdown_table
    from lvlm_skip.inputs.builtin_models import demo_image
    from lvlm_skip.inputs.models import chat_prompt, encode_inputs, load_model, resolve_device
    from lvlm_skip.inputs.paths import check_output_dir

    sizes = args.batch_sizes
    if args.new_tokens < 2:
        raise CliError("--new-tokens must be at least 2 (a decoding step needs a second token)")
    out_dir = check_output_dir(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model, processor = load_model(args.model, dtype=getattr(torch, args.dtype), device=device)
    argument = ModelAnatomy.from_model(model).model_cache_argument
    caches = {"transformers DynamicCache": lambda inputs: {},
              "reserved (lvlm_skip)": lambda inputs: {argument: reserved_cache(model, inputs["input_ids"].shape[1]
                                                                               + args.new_tokens)}}
    text = chat_prompt(processor, PROMPT, with_image=True)
    batches = {size: encode_inputs(processor, [text] * size, [demo_image()] * size, model) for size in sizes}
    steps = {(size, name): [] for size in sizes for name in caches}
    tokens = {}
    for round_index in range(args.runs + 1):
        for size in sizes:
            for name, factory in caches.items():
                ms, out = decode_step_ms(model, batches[size], args.new_tokens, lambda: factory(batches[size]), sync)
                tokens.setdefault((size, name), out.cpu())
                if round_index:  # round 0 warms up
                    steps[(size, name)].append(ms)
    rows = []
    for size in sizes:
        stock = statistics.median(steps[(size, "transformers DynamicCache")])
        for name in caches:
            median = statistics.median(steps[(size, name)])
            rows.append({"batch": size, "cache": name, "step_ms": round(median, 1),
                         "runs_ms": " / ".join(f"{t:.0f}" for t in steps[(size, name)]),
                         "spread_pct": round(100 * (max(steps[(size, name)]) - min(steps[(size, name)])) / median, 1),
                         "x_faster": round(stock / median, 2),
                         "same_tokens": torch.equal(tokens[(size, name)], tokens[(size, "transformers DynamicCache")])})
    result = {"setting": {"model": args.model, "batch_sizes": sizes, "new_tokens": args.new_tokens, "runs": args.runs,
                          "device": str(device), "dtype": args.dtype, "threads": torch.get_num_threads(),
                          "prompt_tokens": int(batches[sizes[0]]["input_ids"].shape[1])}, "rows": rows}
    (out_dir / "cache_copy.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / "cache_copy.md").write_text(markdown_table(rows) + "\n")
    print(markdown_table(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_recipe(_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
