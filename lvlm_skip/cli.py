"""The ``lvlm-skip`` console script.

Subcommands (one function each, heavy imports inside them so ``lvlm-skip --help`` is instant):

* ``trace``: greedy-generate one answer, record its layer-by-layer evolution (:func:`lvlm_skip.trace`)
  and draw the paper's figures 2/3, 4, 6 and 7.

Bad input (missing or corrupt image, unreadable model folder, unsupported architecture, options
out of range) ends with one line ``lvlm-skip: error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

logger = logging.getLogger("lvlm_skip.cli")

PROG = "lvlm-skip"
TINY_MODEL = "tiny"
DEMO_IMAGE = "demo"
#: Fig. 7 in the CLI: the input image in this many hue-shifted copies, asked this question.
FIG7_VARIANTS = 6
FIG7_QUESTION = "What color is it? Answer with one word."
FIGURE_NAMES = ("fig2_token_probabilities", "fig4_jsd_heatmap", "fig6_tsne_tokens", "fig7_tsne_images")
DTYPES = ("float32", "bfloat16", "float16")


class CliError(Exception):
    """A user error reported as one line and exit status 2."""


def _one_line(error: BaseException, limit: int = 600) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subparser per subcommand."""
    parser = argparse.ArgumentParser(prog=PROG, description="Layer-wise knowledge evolution and layer skipping in LVLMs.")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="Logging level.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_trace_parser(subparsers)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"has to be a positive int, got {value}")
    return value


def _add_trace_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "trace",
        help="Trace a greedy answer layer by layer and draw the paper's figures.",
        description="Greedy-generate an answer, read every layer out, detect critical/mutation layers, "
        "write trace.json/trace.npz, summary.txt and figures 2/3, 4, 6, 7 (PNG + SVG).",
    )
    p.add_argument("--model", required=True, help=f"A local Hugging Face model folder, or '{TINY_MODEL}' (random tiny LLaVA, no download).")
    p.add_argument("--image", default=None, help=f"An image file, or '{DEMO_IMAGE}' (a drawn demo image). Optional for text-only models.")
    p.add_argument("--prompt", default="Please describe this image in detail.", help="The question / instruction.")
    p.add_argument("--out", required=True, help="Output folder.")
    p.add_argument("--max-new-tokens", type=_positive_int, default=64, help="Generation length limit.")
    p.add_argument("--top-k", type=_positive_int, default=5, help="Tokens kept per layer and step (at most the vocabulary size).")
    p.add_argument("--watch", default="", help="Comma-separated words whose probability is recorded at every layer, e.g. red,black.")
    p.add_argument("--readout", default="normed", choices=("normed", "raw"),
                   help="normed: lm_head(norm(h_j)) (faithful, default); raw: lm_head(h_j) as the authors' code.")
    p.add_argument("--reduction", default="sum", choices=("sum", "mean"),
                   help="sum: the JSD (default); mean: averaged over the vocabulary as the authors' code.")
    p.add_argument("--layer", type=int, default=None, help="A layer (1..L) to highlight in the figures and print in the summary.")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: cuda when available.")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="Parameter dtype.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the t-SNE figures.")
    p.add_argument("--no-progress", action="store_true", help="No progress bars.")
    p.set_defaults(func=run_trace)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lvlm-skip`` console script; exits with status 2 on bad input."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(message)s")
    logging.getLogger("lvlm_skip").setLevel(args.log_level)
    try:
        return args.func(args)
    except CliError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        raise SystemExit(2) from None


# ------------------------------------------------------------------------------------ inputs


def demo_image(size: int = 336):
    """A simple drawn scene: a red ball and a black cup on a table under a blue sky."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (135, 190, 235))
    draw = ImageDraw.Draw(image)
    s = size / 336
    draw.rectangle((0, 220 * s, size, size), fill=(150, 100, 60))
    draw.ellipse((50 * s, 130 * s, 150 * s, 230 * s), fill=(210, 30, 30))
    draw.rectangle((200 * s, 140 * s, 280 * s, 230 * s), fill=(20, 20, 20))
    draw.arc((265 * s, 160 * s, 305 * s, 205 * s), -90, 90, fill=(20, 20, 20), width=max(1, int(8 * s)))
    return image


def load_image(spec: str):
    """The ``--image`` argument as an RGB PIL image."""
    if spec == DEMO_IMAGE:
        return demo_image()
    from PIL import Image, UnidentifiedImageError

    path = Path(spec)
    if not path.is_file():
        raise CliError(f"image {spec!r} does not exist")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise CliError(f"cannot read image {spec!r}: {_one_line(error)}") from None


def hue_variants(image, count: int = FIG7_VARIANTS) -> list:
    """``count`` copies of ``image`` with the hue rotated by ``k / count`` of a turn (``k = 0`` is the original)."""
    import numpy as np
    from PIL import Image

    hsv = np.asarray(image.convert("HSV")).copy()
    variants = []
    for k in range(count):
        shifted = hsv.copy()
        shifted[..., 0] = (shifted[..., 0].astype(np.int32) + round(256 * k / count)) % 256
        variants.append(Image.fromarray(shifted, "HSV").convert("RGB"))
    return variants


def _resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


def load_model(spec: str, dtype_name: str, device, progress: bool = True):
    """``(model, processor)`` for ``--model``: ``tiny`` or a local folder (never the hub)."""
    import torch

    from .anatomy import UnsupportedModelError
    from .loading import ModelLoadError
    from .loading import load_model as load_folder

    dtype = getattr(torch, dtype_name)
    if spec == TINY_MODEL:
        from .tiny import build_tiny_llava

        model, processor = build_tiny_llava(num_layers=16, hidden_size=64, intermediate_size=128, dtype=dtype)
        return model.to(device), processor
    try:
        return load_folder(spec, dtype=dtype, device=device, progress=progress)
    except (ModelLoadError, UnsupportedModelError) as error:
        raise CliError(_one_line(error)) from None


# ------------------------------------------------------------------------------------- trace


def run_trace(args) -> int:
    """The ``trace`` subcommand."""
    # 1. cheap checks first: the image, then the model and the options that depend on it
    image = load_image(args.image) if args.image else None
    device = _resolve_device(args.device)
    import torch

    from . import figures
    from .anatomy import ModelAnatomy
    from .loading import chat_prompt, encode_inputs, is_vision_language
    from .tracing import trace

    model, processor = load_model(args.model, args.dtype, device, progress=not args.no_progress)
    is_vision = is_vision_language(model)
    anatomy = ModelAnatomy.from_model(model)
    if args.top_k > anatomy.vocab_size:
        raise CliError(f"--top-k {args.top_k} is larger than the vocabulary size {anatomy.vocab_size}")
    if args.layer is not None:
        try:
            anatomy.check_layer(args.layer)
        except ValueError as error:
            raise CliError(f"--layer: {_one_line(error)}") from None
    if is_vision and image is None:
        raise CliError(f"{type(model).__name__} is a vision-language model: pass --image FILE or --image {DEMO_IMAGE}")
    if not is_vision and image is not None:
        logger.warning("%s is text-only: ignoring --image", type(model).__name__)
        image = None
    watch = [w.strip() for w in args.watch.split(",") if w.strip()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    # 2. the traced answer
    prompt = chat_prompt(processor, args.prompt, with_image=image is not None)
    inputs = encode_inputs(processor, [prompt], None if image is None else [image], model)
    logger.info("model %s: %d layers, vocabulary %d, device %s, %s", type(model).__name__, anatomy.num_layers,
                anatomy.vocab_size, device, args.dtype)
    try:
        result = trace(model, inputs, processor=processor, max_new_tokens=args.max_new_tokens, top_k=args.top_k,
                       watch_tokens=watch, readout=args.readout, reduction=args.reduction, keep_hidden=True,
                       progress=not args.no_progress)
    except ValueError as error:  # e.g. a watch word the tokenizer cannot encode
        raise CliError(_one_line(error)) from None
    result.meta["prompt"] = args.prompt
    result.meta["image"] = args.image
    result.save(out)
    (out / "cli_args.json").write_text(json.dumps({k: v for k, v in vars(args).items() if k != "func"}, indent=1))

    # 3. the figures
    paths = figures.plot_token_probabilities(result, out / FIGURE_NAMES[0], highlight_layer=args.layer)
    paths += figures.plot_jsd_heatmap(result, out / FIGURE_NAMES[1], highlight_layer=args.layer)
    if int(result.lengths[0]) * (anatomy.num_layers + 1) >= 3:
        paths += figures.plot_tsne_tokens(result, out / FIGURE_NAMES[2], seed=args.seed)
    if image is not None:
        paths += _across_images_figure(model, processor, image, device, args, out / FIGURE_NAMES[3])
    else:
        logger.info("text-only model: no across-images t-SNE (Fig. 7)")
    summary = format_summary(result, args.layer)
    (out / "summary.txt").write_text(summary)
    for line in summary.splitlines():
        logger.info("%s", line)
    logger.info("wrote %s", ", ".join(str(p) for p in [out / "trace.json", out / "trace.npz", out / "summary.txt", *paths]))
    return 0


def _across_images_figure(model, processor, image, device, args, out_path):
    """Fig. 7 for one input image: its hue-shifted copies asked :data:`FIG7_QUESTION`.

    The hidden vectors ``h_0..h_L`` of the position that predicts the first answer token, one row per
    copy, are embedded together by t-SNE.
    """
    from . import figures
    from .loading import chat_prompt, encode_inputs
    from .tracing import trace

    variants = hue_variants(image)
    prompt = chat_prompt(processor, FIG7_QUESTION, with_image=True)
    inputs = encode_inputs(processor, [prompt] * len(variants), variants, model)
    answers = trace(model, inputs, processor=processor, max_new_tokens=1, top_k=1, readout=args.readout,
                    reduction=args.reduction, keep_hidden=True)
    labels = [f"hue+{round(360 * k / len(variants))}°: {answers.tokens[k][0] if answers.tokens[k] else ''}"
              for k in range(len(variants))]
    return figures.plot_tsne_images(answers.hidden[:, 0], out_path, labels=labels, seed=args.seed)


def format_summary(result, layer: int | None = None, row: int = 0) -> str:
    """Generated text and, per token, the critical and mutation layers (and ``layer``'s values)."""
    num_layers = result.num_layers
    lines = [f"generated: {result.texts[row]!r}", f"layers: {num_layers}, readout: {result.meta['readout']}, "
             f"reduction: {result.meta['reduction']}"]
    header = f"{'step':>4}  {'token':<16} {'critical':>8}  {'p(L)':>6}"
    if layer is not None:
        header += f"  {f'p({layer})':>7}  {f'jsd({layer})':>9}"
    lines += [header + "  mutation layers"]
    for t in range(int(result.lengths[row])):
        mutation = [j + 1 for j in range(num_layers) if result.mutation[row, t, j]]
        line = f"{t:>4}  {result.tokens[row][t]!r:<16} {int(result.critical[row, t]):>8}  {result.token_probs[row, t, -1]:>6.3f}"
        if layer is not None:
            index = layer - result.first_layer
            line += f"  {result.token_probs[row, t, index]:>7.3f}  {result.jsd[row, t, layer - 1]:>9.2e}"
        lines.append(line + "  " + (",".join(map(str, mutation)) or "-"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
