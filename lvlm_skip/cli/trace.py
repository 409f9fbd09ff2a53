"""``lvlm-skip trace``: read one greedy answer out layer by layer and draw the paper's figures.

Greedy-generate an answer, read every layer out, detect the critical / mutation layers, and write
``trace.json`` / ``trace.npz`` (:class:`lvlm_skip.Trace`), ``summary.txt`` and the figures 2/3, 4, 6
and 7 (PNG + SVG).
"""

from __future__ import annotations

import json
import logging

from .options import CliError, add_model_arguments, add_output_arguments, positive_int, progress_enabled

logger = logging.getLogger("lvlm_skip.cli")

HELP = "Trace a greedy answer layer by layer and draw the paper's figures."
DEMO_IMAGE = "demo"
#: Fig. 7 in the CLI: the input image in this many hue-shifted copies, asked this question.
FIG7_VARIANTS = 6
FIG7_QUESTION = "What color is it? Answer with one word."
FIGURE_NAMES = ("fig2_token_probabilities", "fig4_jsd_heatmap", "fig6_tsne_tokens", "fig7_tsne_images")


def add_arguments(p) -> None:
    """The trace subcommand's options."""
    add_model_arguments(p)
    p.add_argument("--image", default=None, help=f"An image file, or '{DEMO_IMAGE}' (a drawn demo image). Optional for text-only models.")
    p.add_argument("--prompt", default="Please describe this image in detail.", help="The question / instruction.")
    add_output_arguments(p, default="runs/trace", resumable=False)
    p.add_argument("--max-new-tokens", type=positive_int, default=64, help="Generation length limit.")
    p.add_argument("--top-k", type=positive_int, default=5, help="Tokens kept per layer and step (at most the vocabulary size).")
    p.add_argument("--watch", default="", help="Comma-separated words whose probability is recorded at every layer, e.g. red,black.")
    p.add_argument("--readout", default="normed", choices=("normed", "raw"),
                   help="normed: lm_head(norm(h_j)) (faithful); raw: lm_head(h_j) as the authors' code.")
    p.add_argument("--reduction", default="sum", choices=("sum", "mean"),
                   help="sum: the JSD; mean: averaged over the vocabulary as the authors' code.")
    p.add_argument("--layer", type=int, default=None, help="A layer (1..L) to highlight in the figures and print in the summary.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the t-SNE figures.")


# ------------------------------------------------------------------------------------ inputs


def load_image(spec: str):
    """The ``--image`` argument as an RGB PIL image."""
    if spec == DEMO_IMAGE:
        from ..tiny import demo_image

        return demo_image()
    from ..loading import load_image as read_image

    return read_image(spec)


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


# ------------------------------------------------------------------------------------- trace


def run(args) -> int:
    """The ``trace`` subcommand."""
    from ..paths import check_output_dir

    # 1. cheap checks first: the output folder, the image, then the model and the options that depend on it
    out = check_output_dir(args.out)
    image = load_image(args.image) if args.image else None
    import torch

    from .. import figures
    from ..anatomy import ModelAnatomy
    from ..loading import chat_prompt, encode_inputs, is_vision_language, load_model, resolve_device, resolve_dtype
    from ..tracing import trace

    device = resolve_device(args.device)
    model, processor = load_model(args.model, dtype=resolve_dtype(args.dtype, device), device=device,
                                  device_map=args.device_map, progress=progress_enabled(args))
    is_vision = is_vision_language(model)
    anatomy = ModelAnatomy.from_model(model)
    if args.top_k > anatomy.vocab_size:
        raise CliError(f"--top-k {args.top_k} is larger than the vocabulary size {anatomy.vocab_size}")
    if args.layer is not None:
        try:
            anatomy.check_layer(args.layer)
        except ValueError as error:
            raise CliError(f"--layer: {error}") from None
    if is_vision and image is None:
        raise CliError(f"{type(model).__name__} is a vision-language model: pass --image FILE or --image {DEMO_IMAGE}")
    if not is_vision and image is not None:
        logger.warning("%s is text-only: ignoring --image", type(model).__name__)
        image = None
    watch = [w.strip() for w in args.watch.split(",") if w.strip()]
    torch.manual_seed(0)

    # 2. the traced answer
    prompt = chat_prompt(processor, args.prompt, with_image=image is not None)
    inputs = encode_inputs(processor, [prompt], None if image is None else [image], model)
    logger.info("model %s: %d layers, vocabulary %d, device %s, %s", type(model).__name__, anatomy.num_layers,
                anatomy.vocab_size, device, model.dtype)
    try:
        result = trace(model, inputs, processor=processor, max_new_tokens=args.max_new_tokens, top_k=args.top_k,
                       watch_tokens=watch, readout=args.readout, reduction=args.reduction, keep_hidden=True,
                       progress=progress_enabled(args))
    except ValueError as error:  # e.g. a watch word the tokenizer cannot encode
        raise CliError(str(error)) from None
    result.meta["prompt"] = args.prompt
    result.meta["image"] = args.image
    result.save(out)
    (out / "cli_args.json").write_text(json.dumps({k: v for k, v in vars(args).items() if k != "run"}, indent=1))

    # 3. the figures
    paths = figures.plot_token_probabilities(result, out / FIGURE_NAMES[0], highlight_layer=args.layer)
    paths += figures.plot_jsd_heatmap(result, out / FIGURE_NAMES[1], highlight_layer=args.layer)
    if int(result.lengths[0]) * (anatomy.num_layers + 1) >= 3:
        paths += figures.plot_tsne_tokens(result, out / FIGURE_NAMES[2], seed=args.seed)
    if image is not None:
        paths += _across_images_figure(model, processor, image, args, out / FIGURE_NAMES[3])
    else:
        logger.info("text-only model: no across-images t-SNE (Fig. 7)")
    summary = format_summary(result, args.layer)
    (out / "summary.txt").write_text(summary)
    for line in summary.splitlines():
        logger.info("%s", line)
    logger.info("wrote %s", ", ".join(str(p) for p in [out / "trace.json", out / "trace.npz", out / "summary.txt", *paths]))
    return 0


def _across_images_figure(model, processor, image, args, out_path):
    """Fig. 7 for one input image: its hue-shifted copies asked :data:`FIG7_QUESTION`.

    The hidden vectors ``h_0..h_L`` of the position that predicts the first answer token, one row per
    copy, are embedded together by t-SNE.
    """
    from .. import figures
    from ..loading import chat_prompt, encode_inputs
    from ..tracing import trace

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

