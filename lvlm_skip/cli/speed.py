"""``lvlm-skip speed``: decoding speed of every variant and mode against the stock model.

Every configuration generates exactly ``--new-tokens`` tokens (EOS suppressed); a streamer stamps
each token, giving the prefill time and the decode rate. Configurations are interleaved run by
run after a warm-up round; a row's step time is the mean over steps of each step's least duration
over the runs (or ``--statistic median``). Writes ``speed.md`` and
``speed.json`` into ``--out`` (see :mod:`lvlm_skip.speed.benchmark`).
"""

from __future__ import annotations

import logging
import sys
from typing import get_args

from ..config import SpeedClock, SpeedStatistic

from .options import (CliError, add_model_arguments, add_output_arguments, batch_sizes, non_negative_int, positive_int,
                      progress_enabled)


logger = logging.getLogger("lvlm_skip.cli")

HELP = "Decoding speed of every variant and mode against the stock model."


def add_arguments(p) -> None:
    """The speed subcommand's options."""
    add_model_arguments(p, default="bench-llava")
    p.add_argument("--image", default=None, help="Image of the prompt (default: random pixels).")
    p.add_argument("--prompt", default="Please describe this image in detail.", help="The instruction.")
    p.add_argument("--new-tokens", type=positive_int, default=48, help="Tokens generated per run, exactly (EOS suppressed; at least 2).")
    p.add_argument("--runs", type=positive_int, default=5, help="Timed rounds after one warm-up round.")
    p.add_argument("--batch-size", default="1", type=batch_sizes, metavar="N[,N...]",
                   help="Batch sizes to measure, e.g. 1,4,8: at each, every configuration and the stock model run the "
                   "same batch (row r: the image, then random pixels of seed r; the same prompt), and same_tokens is "
                   "the share of rows whose tokens equal that row's tokens generated alone.")
    p.add_argument("--statistic", default="min", choices=get_args(SpeedStatistic),
                   help="A row's step time. min: every step's least duration over the runs (the runs make the same "
                   "tokens; noise only adds time), averaged over steps. median: of all steps of all runs.")
    p.add_argument("--candidates", type=non_negative_int, default=256, help="Online candidate vocabulary size (0: exact full vocabulary).")
    p.add_argument("--only", default=None, help="Comma-separated configuration names or variant prefixes (stock always runs).")
    p.add_argument("--threads", type=non_negative_int, default=1, help="torch CPU threads (0: torch's default).")
    p.add_argument("--clock", default="auto", choices=("auto", *get_args(SpeedClock)),
                   help="auto: the process's CPU time on a CPU device (robust to a shared machine), wall time on CUDA.")
    p.add_argument("--profile", default=None, help="A layer profile giving the static rows' layers (default: the model's plan).")
    p.add_argument("--text-only", action="store_true",
                   help="Benchmark the model's language model alone (its decoder and LM head, the same weights, as a "
                   "causal LM) on the prompt without the image: transformers' early-exit assistant runs only on a "
                   "text model. A text model is benchmarked as it is.")
    p.add_argument("--skip-approximation", action="store_true",
                   help="Skip the measurements of the candidate-vocabulary JSD against the exact one and of the "
                   "lagged decisions' agreement.")
    add_output_arguments(p, default="runs/speed", resumable=False)


def run(args) -> int:
    """The ``speed`` subcommand."""
    import dataclasses
    import json

    from ..inputs.paths import check_output_dir

    out = check_output_dir(args.out)
    if args.new_tokens < 2:
        raise CliError("--new-tokens must be at least 2 (the decode rate needs two tokens)")
    import torch

    from ..anatomy import ModelAnatomy, placeholder_token_ids
    from ..speed import benchmark as speed
    from ..evaluation.report import markdown_table
    from ..inputs.models import chat_prompt, encode_inputs, load_image, load_model, resolve_device, resolve_dtype

    speed.parse_only(args.only)  # an unknown name is refused before the model loads
    if args.text_only and args.batch_size != [1]:
        raise CliError("--text-only measures batch 1 (the rows of a batch differ by their images)")
    image = load_image(args.image) if args.image else speed.random_image()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, processor = load_model(args.model, dtype=resolve_dtype(args.dtype, device), device=device,
                                  device_map=args.device_map, progress=progress_enabled(args))
    model, inputs = speed.benchmark_inputs(model, processor, args.prompt, image, args.text_only)
    anatomy = ModelAnatomy.from_model(model)
    profile = None
    if args.profile:
        from ..profiles import LayerProfile

        profile = LayerProfile.load(args.profile)
        profile.check_model(anatomy.num_layers, args.profile)
    plan = speed.layer_plan(args.model, anatomy.num_layers, profile)
    configs = speed.select_configs(speed.default_configs(plan, anatomy.num_layers, args.candidates,
                                                         placeholder_token_ids(model)), args.only)
    setting = {"model": args.model, "model_class": type(model).__name__, "text_only": args.text_only,
               "num_layers": anatomy.num_layers,
               "layer_plan": {"critical_layer": plan.critical, "mutation_layers": list(plan.mutations),
                              "source": plan.source},
               "hidden_size": anatomy.hidden_size, "vocab_size": anatomy.vocab_size,
               "prompt_tokens": int(inputs["input_ids"].shape[1]), "new_tokens": args.new_tokens,
               "device": str(model.device), "dtype": str(model.dtype).replace("torch.", ""),
               "threads": torch.get_num_threads(), "runs": args.runs}
    logger.info("%s", ", ".join(f"{k} {v}" for k, v in setting.items()))
    clock = args.clock if args.clock != "auto" else ("cpu" if model.device.type == "cpu" else "wall")
    if clock == "cpu" and model.device.type != "cpu":
        raise CliError("--clock cpu measures host CPU time: use --clock wall on an accelerator")
    setting.update(clock=clock, statistic=args.statistic)
    setting["batch_sizes"] = args.batch_size
    rows = []
    alone: dict[tuple[str, int], tuple] = {}  # (configuration, row) -> its tokens generated alone
    for size in args.batch_size:
        images = [image] + [speed.random_image(seed=r) for r in range(1, size)]
        batch = inputs if size == 1 else encode_inputs(processor, [chat_prompt(processor, args.prompt)] * size, images, model)
        tokens: dict = {}
        measured = speed.measure(model, batch, configs, args.runs, args.new_tokens, progress=progress_enabled(args),
                                 clock=clock, statistic=args.statistic, tokens=tokens)
        if size == 1:
            alone.update({(name, 0): rows_of[0] for name, rows_of in tokens.items() if rows_of})
            rows += measured
            continue
        for config, row in zip(configs, measured):
            if row.error:  # a row that cannot run at this batch size (speculative decoding is batch 1)
                rows.append(row)
                continue
            for r in range(size):
                if (config.name, r) not in alone:
                    one = inputs if r == 0 else encode_inputs(processor, [chat_prompt(processor, args.prompt)], [images[r]], model)
                    alone[(config.name, r)] = speed.alone_tokens(model, one, config, args.new_tokens)
            share = speed.same_tokens_share(tokens[config.name], [alone[(config.name, r)] for r in range(size)])
            rows.append(dataclasses.replace(row, same_tokens=round(share, 3)))
        logger.info("batch %d measured", size)
    printed, judge_note = speed.unjudged([r.to_dict() for r in rows], args.runs)
    table = markdown_table(printed)
    noisy = speed.noisy_rows(rows) if judge_note is None else []
    if judge_note:
        logger.warning("%s", judge_note)
    elif noisy:
        logger.warning("the decode rate of %s spread by more than 10%% over the runs: the machine was busy, "
                       "those rows are noise", ", ".join(noisy))
    approximation = agreement = None
    if not args.skip_approximation and args.candidates:
        approximation = speed.approximation_error(model, inputs, args.candidates, min(args.new_tokens, 24))
        logger.info("candidate-vocabulary JSD (k=%d) vs exact over the same steps: mean |error| %.2e nats, max %.2e "
                    "(mean exact JSD %.2e); default-threshold detections agree on %.1f%% of critical layers and %.1f%% "
                    "of mutation flags", approximation["candidates"], approximation["mean_abs_error_nats"],
                    approximation["max_abs_error_nats"], approximation["mean_exact_jsd_nats"],
                    100 * approximation["critical_agreement"], 100 * approximation["mutation_agreement"])
        agreement = speed.lagged_agreement(model, inputs, args.candidates, min(args.new_tokens, 24))
        logger.info("lagged decisions (step t acts on step t-1's confirmation layer) equal per-step decisions at %.1f%% "
                    "of %d steps (%.1f%% within one layer)", 100 * agreement["exact"], agreement["steps"],
                    100 * agreement["within_one_layer"])
    (out / "speed.md").write_text(table + "\n")
    result = {"setting": setting, "num_layers": anatomy.num_layers, "rows": [r.to_dict() for r in rows],
              "noisy_rows": noisy, "note": judge_note, "approximation": approximation, "lagged_agreement": agreement}
    (out / "speed.json").write_text(json.dumps(result, indent=1) + "\n")
    sys.stdout.write(table + "\n" + (f"\n{judge_note}\n" if judge_note else ""))
    logger.info("wrote %s and %s", out / "speed.md", out / "speed.json")
    return 0
