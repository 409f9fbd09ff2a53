"""``python -m recipes.fig5``: the command line of the Fig. 5 experiment."""

from __future__ import annotations

import argparse

from lvlm_skip.cli.options import positive_int
from lvlm_skip.profiles.presets import PRESETS

from ..command import progress_enabled, recipe_parser, run_recipe
from .layers import SKIP_VARIANTS

DEFAULT_MODEL = "recipes/models/scene-llava"
DEFAULT_OUT = "runs/fig5"
DEFAULT_PROMPT = "Please describe this image in detail."
"""The paper's caption prompt; scene-llava is trained on it too (``lvlm_skip.scenes.CAPTION_PROMPTS``)."""


def parse_variants(text: str) -> tuple[str, ...]:
    """``"skip1,skip.2"`` -> ``("skip1", "skip2")``, in the paper's order (``skip.N`` is accepted for ``skipN``)."""
    names = [part.strip().replace(".", "") for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in SKIP_VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(SKIP_VARIANTS)}, got {text!r}")
    return tuple(v for v in SKIP_VARIANTS if v in names)


def parse_layers(text: str) -> tuple[int, ...]:
    """``"27,28,29,30"`` or ``"27-30"`` -> ``(27, 28, 29, 30)`` (1-based layers, sorted, unique)."""
    layers: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "-" in part:
                low, high = (int(x) for x in part.split("-", 1))
                layers += range(low, high + 1)
            else:
                layers.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected layers like 27,28,29,30 or 27-30, got {text!r}") from None
    if not layers or min(layers) < 1:
        raise argparse.ArgumentTypeError(f"expected 1-based layers like 27,28,29,30 or 27-30, got {text!r}")
    return tuple(sorted(set(layers)))


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m recipes.fig5``."""
    p = recipe_parser("recipes.fig5", "The paper's skip experiment (Sec. 4.2, Fig. 5): the original model's "
                      "descriptions against skip.1, skip.2 and skip.3.")
    p.add_argument("--variants", type=parse_variants, default=",".join(SKIP_VARIANTS),
                   help="Comma-separated skip variants beside the original: skip1 (skip.1: critical -> first mutation "
                   "layer), skip2 (skip.2: the mutation layers), skip3 (skip.3: critical -> last keep_last layers).")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="A local Hugging Face LLaVA folder (never downloaded), or a built-in random model (tiny).")
    p.add_argument("--images", nargs="+", default=None,
                   help="Image files (default: 4 generated scenes, 2 prior-consistent and 2 prior-breaking).")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="The instruction.")
    p.add_argument("--out", default=DEFAULT_OUT, help="Output folder (results.json, tables, analysis/, images/).")
    p.add_argument("--overwrite", action="store_true",
                   help="Discard results in --out made with other settings, instead of refusing to mix them.")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="The paper's critical layer and keep_last for LLaVA-1.5 (lvlm_skip.profiles.presets); it gives no "
                   "mutation layers (the paper states none): add --mutation or --profile for skip1 and skip2.")
    p.add_argument("--profile", default=None,
                   help="A layer profile (profile.json from `lvlm-skip profile`) giving the critical and mutation layers.")
    p.add_argument("--critical", type=positive_int, default=None,
                   help="Critical layer c (1-based); beats --profile and --preset.")
    p.add_argument("--mutation", type=parse_layers, default=None,
                   help="Mutation layers, e.g. 27,28,29,30 or 27-30; beats --profile.")
    p.add_argument("--keep-last", type=positive_int, default=None,
                   help="Final layers skip.3 keeps (default: the preset's, else 5).")
    p.add_argument("--mode", choices=("static", "online"), default="static",
                   help="static: one skip set per prompt (given, or measured on the prompt); online: decided at every step.")
    p.add_argument("--positions", choices=("generated", "all"), default="generated",
                   help="Static mode: generated (the prompt runs every layer, decoding positions skip) or all "
                   "(the model with those layers deleted).")
    p.add_argument("--max-new-tokens", type=positive_int, default=96, help="Generation length limit.")
    p.add_argument("--batch-size", type=positive_int, default=1,
                   help="Images described per generate call (left-padded); each description equals its image's alone.")
    p.add_argument("--show-deleted", action="store_true", help="Also show the original's dropped words, struck through.")
    p.add_argument("--no-analysis", action="store_true", help="Skip the per-image trace and figures of the original model.")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the Fig. 5 experiment; bad input exits with status 2 and one line."""
    from .run import run

    def execute(args: argparse.Namespace) -> int:
        run(args, progress=progress_enabled(args))
        return 0

    return run_recipe(build_parser(), execute, argv)
