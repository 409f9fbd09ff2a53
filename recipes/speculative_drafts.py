"""Which draft boundary makes a good self-speculative draft: the profile's layers against alternatives, in one run.

    python -m recipes.speculative_drafts --profile runs/profile/profile.json      # scene-llava, CPU, ~1 min
    python -m recipes.speculative_drafts --model DIR --profile P --device cuda --dtype float16

The draft skips the layers after a boundary ``b`` (skip3: ``b+1 .. L-keep_last``; exit: ``b+1 .. L``) or the
stabilization stage (skip1: ``c+1 .. m-1``). The boundary is the profile's critical layer ``c``, ``c - 2`` and
``c + 2``, and, for "no profile", the paper's LLaVA-1.5-7B layer 18 scaled to the model's depth
(:func:`lvlm_skip.speed.benchmark.layer_plan`). Every configuration is timed by ``lvlm-skip speed``'s
benchmark (:func:`lvlm_skip.speed.benchmark.measure`: exactly ``--new-tokens`` greedy tokens, runs interleaved
after a warm-up round, each step's least time over the runs), next to the stock model, static skip1 (the lossy
reference) and transformers' two built-in training-free forms (prompt lookup, an early-exit assistant at ``c``;
a row that cannot run on the model says why; ``--text-only`` runs the language model alone, where the early-exit
assistant runs). Per row: the speedup, the acceptance rate, draft tokens accepted per verify pass, the measured
costs of a draft forward and of a verify pass in stock steps, the speedup they and the acceptance predict with no
overhead (``ideal``) and the share of it reached, the memory-bound prediction (a verify costing one step, draft
tokens costing their share of the layers) and the share of it reached, and whether the tokens are the stock
model's.

The prompt is ``--prompt`` on ``--image`` (default: the first scene image under ``--scenes``, else random
pixels). Writes ``drafts.md`` and ``drafts.json`` into ``--out`` (default ``runs/speculative_drafts``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from recipes.command import progress_enabled, recipe_parser, run_recipe

logger = logging.getLogger("recipes.speculative_drafts")

SCENE_LLAVA = Path(__file__).resolve().parent / "models" / "scene-llava"
COLUMNS = ("config", "speedup", "acceptance_rate", "mean_accepted", "draft_cost", "verify_cost", "ideal", "pct_of_ideal",
           "ideal_memory_bound", "pct_of_memory_bound", "same_tokens_as_stock", "step_ms", "spread_pct", "error")


def _parser():
    from lvlm_skip.cli.options import positive_int

    p = recipe_parser("recipes.speculative_drafts", __doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(SCENE_LLAVA), help="A local model folder or a built-in model name.")
    p.add_argument("--profile", required=True, help="The model's profile.json (lvlm-skip profile): its c and M.")
    p.add_argument("--image", default=None, help="The prompt's image (default: the first scene under --scenes).")
    p.add_argument("--scenes", default="runs/scenes", help="A scene benchmark folder (lvlm-skip scenes).")
    p.add_argument("--prompt", default="Please describe this image in detail.", help="The instruction.")
    p.add_argument("--new-tokens", type=positive_int, default=48, help="Tokens generated per run, exactly.")
    p.add_argument("--runs", type=positive_int, default=5, help="Timed rounds after one warm-up round.")
    p.add_argument("--k", type=positive_int, default=4, help="Draft tokens per verify pass.")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default).")
    p.add_argument("--text-only", action="store_true",
                   help="The model's language model alone on the prompt without the image (lvlm-skip speed --text-only).")
    p.add_argument("--out", default="runs/speculative_drafts", help="Output folder.")
    return p


def draft_configs(critical: int, mutations: tuple[int, ...], num_layers: int, scaled_critical: int, k: int,
                  keep_last: int = 5, placeholder_tokens=()):
    """The benchmark's configurations: stock, the drafts at each boundary, static skip1 and the built-ins (prompt
    lookup with the image placeholders suppressed, as in ``lvlm-skip speed``)."""
    from lvlm_skip.speed.benchmark import LOOKUP_TOKENS, SPECULATIVE, SpeedConfig, builtin_speculative_configs

    def speculative(name, draft, **layers):
        return SpeedConfig(name, dict(variant="speculative", draft=draft, k=k, **layers), SPECULATIVE)

    configs = [SpeedConfig("stock", None)]
    boundaries = [("c", critical), ("c-2", critical - 2), ("c+2", critical + 2), ("no profile", scaled_critical)]
    seen = set()
    for label, b in boundaries:
        if not 1 <= b < num_layers - keep_last or b in seen and label != "c":
            continue
        seen.add(b)
        configs.append(speculative(f"speculative skip3 at {label} = {b}", "skip3", critical_layer=b, keep_last=keep_last))
        configs.append(speculative(f"speculative exit at {label} = {b}", "exit", exit_layer=b))
        if label == "c":  # k moved by acceptance: transformers' assisted-generation rule, and the expected gain
            for schedule in ("heuristic", "expected"):
                configs.append(speculative(f"speculative skip3 at c = {b}, {schedule} k", "skip3", critical_layer=b,
                                           keep_last=keep_last, schedule=schedule))
                configs.append(speculative(f"speculative exit at c = {b}, {schedule} k", "exit", exit_layer=b,
                                           schedule=schedule))
            for draft, layers in (("skip3", dict(critical_layer=b, keep_last=keep_last)), ("exit", dict(exit_layer=b))):
                configs.append(speculative(f"speculative {draft} at c = {b}, expected k + lookup", draft,
                                           schedule="expected", lookup=LOOKUP_TOKENS, **layers))
    if mutations and critical + 1 < mutations[0]:
        configs.append(speculative(f"speculative skip1 c = {critical}, m = {mutations[0]}", "skip1",
                                   critical_layer=critical, mutation_layers=mutations))
        configs.append(SpeedConfig("skip1 static (lossy)", dict(variant="skip1", critical_layer=critical,
                                                                 mutation_layers=mutations)))
    return configs + builtin_speculative_configs(critical, placeholder_tokens)


def run(args) -> int:
    import torch

    from lvlm_skip.anatomy import ModelAnatomy, placeholder_token_ids
    from lvlm_skip.evaluation.report import markdown_table
    from lvlm_skip.inputs.images import load_image
    from lvlm_skip.inputs.models import load_model
    from lvlm_skip.inputs.paths import check_output_dir
    from lvlm_skip.profiles import LayerProfile
    from lvlm_skip.speed import benchmark as speed

    out = check_output_dir(args.out)
    profile = LayerProfile.load(args.profile)
    scenes = sorted((Path(args.scenes) / "images").glob("*.png")) if not args.image else []
    image = load_image(args.image) if args.image else (load_image(scenes[0]) if scenes else speed.random_image())
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, processor = load_model(args.model, dtype=getattr(torch, args.dtype), device=torch.device(args.device),
                                  progress=progress_enabled(args))
    model, inputs = speed.benchmark_inputs(model, processor, args.prompt, image, args.text_only)
    anatomy = ModelAnatomy.from_model(model)
    profile.check_model(anatomy.num_layers, args.profile)
    critical, mutations = profile.critical_layer, tuple(profile.mutation_layers)
    scaled = speed.layer_plan("", anatomy.num_layers).critical
    configs = draft_configs(critical, mutations, anatomy.num_layers, scaled, args.k,
                            placeholder_tokens=placeholder_token_ids(model))
    clock = "cpu" if model.device.type == "cpu" else "wall"
    rows = speed.measure(model, inputs, configs, args.runs, args.new_tokens, progress=progress_enabled(args), clock=clock)
    table = [{c: row.to_dict().get(c) for c in COLUMNS} for row in rows]
    text = markdown_table(table)
    setting = {"model": args.model, "text_only": args.text_only, "profile": args.profile, "critical_layer": critical, "mutation_layers": list(mutations),
               "num_layers": anatomy.num_layers, "new_tokens": args.new_tokens, "runs": args.runs, "k": args.k,
               "device": str(model.device), "dtype": args.dtype, "clock": clock, "threads": torch.get_num_threads()}
    (out / "drafts.md").write_text(text + "\n")
    (out / "drafts.json").write_text(json.dumps({"setting": setting, "rows": [r.to_dict() for r in rows]}, indent=1) + "\n")
    print(text)
    noisy = speed.noisy_rows(rows)
    if noisy:
        logger.warning("spread above 10%% (the machine was busy; those rows are noise): %s", ", ".join(noisy))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_recipe(_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
