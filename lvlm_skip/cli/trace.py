"""``lvlm-skip trace``: read one greedy answer out layer by layer and draw the paper's figures.

Greedy-generate an answer, read every layer out, detect the critical / mutation layers, and write
``trace.json`` / ``trace.npz`` (:class:`lvlm_skip.Trace`), ``summary.txt`` and the figures (PNG + SVG).

With ``--image`` (or a text-only model): Fig. 2 (per step, the late-window competitors and the
``--watch`` tokens), Fig. 3 for every ``--contrast``, Fig. 4 and Fig. 6. With ``--images`` (a set of
images asked the same one-word question): Fig. 7, one point per image and layer, marked by answer.
``--paper`` switches every choice to the authors' (raw readout, their divergence formula, per-layer
max-abs heatmap on their axis, max-abs t-SNE with the post-norm last state).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from ..config import READOUTS, FigureAxis, LastState, Normalization, Reduction, TsneScaling
from ..errors import InputError

from .options import CliError, StageLines, add_model_arguments, add_output_arguments, positive_int, progress_enabled

logger = logging.getLogger("lvlm_skip.cli")

HELP = "Trace a greedy answer layer by layer and draw the paper's figures."
DEMO_IMAGE = "demo"
FIGURE_NAMES = ("fig2_token_probabilities", "fig3_contrast", "fig4_jsd_heatmap", "fig6_tsne_tokens", "fig7_tsne_images")
#: Option -> (our default, the authors' choice that ``--paper`` selects).
CHOICES = {
    "readout": ("normed", "raw"),
    "reduction": ("sum", "paper"),
    "normalize": ("none", "layer"),
    "axis": ("layer", "paper"),
    "tsne_scale": ("none", "maxabs"),
    "last_state": ("raw", "normed"),
}


def add_arguments(p) -> None:
    """The trace subcommand's options."""
    add_model_arguments(p)
    images = p.add_mutually_exclusive_group()
    images.add_argument("--image", default=None,
                        help=f"An image file, or '{DEMO_IMAGE}' (a drawn demo image). Optional for text-only models.")
    images.add_argument("--images", default=None, metavar="DIR_OR_LIST",
                        help="Fig. 7: a folder of images, a comma-separated list or a text file of image paths, "
                             "all asked --prompt (a one-word question).")
    p.add_argument("--prompt", default="Please describe this image in detail.", help="The question / instruction.")
    add_output_arguments(p, default="runs/trace", resumable=False)
    p.add_argument("--max-new-tokens", type=positive_int, default=64, help="Generation length limit.")
    p.add_argument("--top-k", type=positive_int, default=5, help="Tokens kept per layer and step (at most the vocabulary size).")
    p.add_argument("--watch", default="", help="Comma-separated words whose probability is recorded at every layer, e.g. red,black.")
    p.add_argument("--contrast", action="append", default=[], metavar="[STEP:]CORRECT,HALLUCINATED",
                   help="Fig. 3: the correct against the hallucinated token at a step (a number from 0, or the word "
                        "emitted there; default: the first step that emitted HALLUCINATED), e.g. camera,water or "
                        "7:black,red. Repeatable; both words are watched.")
    p.add_argument("--paper", action="store_true",
                   help="The authors' choices for every option left unset: --readout raw --reduction paper --normalize "
                        "layer --axis paper --tsne-scale maxabs --last-state normed.")
    p.add_argument("--readout", default=None, choices=READOUTS,
                   help="normed: lm_head(norm(h_j)) (faithful; default); raw: lm_head(h_j) as the authors' code.")
    p.add_argument("--reduction", default=None, choices=get_args(Reduction),
                   help="sum: the JSD in nats (default); paper: the authors' 1/2 (KL(m||p) + KL(m||q)) / V.")
    p.add_argument("--normalize", default=None, choices=get_args(Normalization),
                   help="Fig. 4 scale: none: absolute (default); layer: each layer column / its max, as the authors.")
    p.add_argument("--axis", default=None, choices=get_args(FigureAxis),
                   help="Fig. 4 columns: layer: our j = 1..L (default); paper: 0..L-1 as the authors (their i = our d_{i+1}).")
    p.add_argument("--tsne-scale", default=None, choices=get_args(TsneScaling),
                   help="Fig. 6/7 features: none (default) or maxabs (each feature / its max |value|, as the authors).")
    p.add_argument("--last-state", default=None, choices=get_args(LastState),
                   help="Fig. 6/7 layer L: raw (before the final norm, like every layer; default) or normed (after it, as the authors).")
    p.add_argument("--competitor-window", type=positive_int, default=None, metavar="J",
                   help="Fig. 2 late window: layers J..L (default: each step's detected critical layer).")
    p.add_argument("--max-competitors", type=positive_int, default=6, help="Fig. 2: competitors kept per step.")
    p.add_argument("--critical", type=positive_int, default=None,
                   help="Fig. 6/7 layer groups 1-2, 3-c, c+1..L-1, L: c (default: the most common detected critical layer).")
    p.add_argument("--layer", type=int, default=None, help="A layer (1..L) to highlight in the figures and print in the summary.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the t-SNE figures.")


# ------------------------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class Contrast:
    """One ``--contrast``: at ``step`` (an int, the word emitted there, or None: where ``hallucinated`` was emitted)."""

    step: int | str | None
    correct: str
    hallucinated: str


def parse_contrast(text: str) -> Contrast:
    """``"[STEP:]CORRECT,HALLUCINATED"`` -> :class:`Contrast`.

    Raises:
        CliError: anything else, with an example.
    """
    usage = f"--contrast {text!r}: expected [STEP:]CORRECT,HALLUCINATED, e.g. camera,water or 7:black,red"
    step, _, pair = text.rpartition(":")
    words = [w.strip() for w in pair.split(",")]
    if len(words) != 2 or not all(words) or (":" in text and not step.strip()):
        raise CliError(usage)
    step = step.strip()
    if not step:
        return Contrast(None, *words)
    if step.lstrip("-").isdigit():
        if int(step) < 0:
            raise CliError(f"{usage} (STEP counts from 0)")
        return Contrast(int(step), *words)
    return Contrast(step, *words)


def resolve_contrast_step(contrast: Contrast, result, row: int = 0) -> int:
    """The step a :class:`Contrast` names in a traced answer.

    Raises:
        CliError: a step number past the answer, or a word the answer never emitted.
    """
    n = int(result.lengths[row])
    if isinstance(contrast.step, int):
        if contrast.step >= n:
            raise CliError(f"--contrast step {contrast.step} is out of range: the answer has {n} tokens (steps 0..{n - 1})")
        return contrast.step
    word = contrast.step or contrast.hallucinated
    for t in range(n):
        if result.tokens[row][t].strip().lower() == word.lower():
            return t
    raise CliError(f"--contrast: the answer never emitted {word!r}; give the step, e.g. --contrast 7:{contrast.correct},{contrast.hallucinated}")


def resolve_choices(args) -> dict[str, str]:
    """Each option of :data:`CHOICES`: as given, else the authors' with ``--paper``, else ours."""
    return {name: getattr(args, name) or (paper if args.paper else ours) for name, (ours, paper) in CHOICES.items()}


def load_image(spec: str):
    """The ``--image`` argument as an RGB PIL image."""
    if spec == DEMO_IMAGE:
        from ..inputs.builtin_models import demo_image  # loads torch: this module is on the --help import path

        return demo_image()
    from ..inputs.models import load_image as read_image  # loads torch, as above

    return read_image(spec)


# ------------------------------------------------------------------------------------- trace


def run(args) -> int:
    """The ``trace`` subcommand."""
    from ..inputs.image_sets import resolve_images
    from ..inputs.paths import check_output_dir

    # 1. cheap checks first: the output folder, the options, the images; then the model
    stages = StageLines(args)
    out = check_output_dir(args.out)
    contrasts = [parse_contrast(text) for text in args.contrast]
    if args.images is not None and contrasts:
        raise CliError("--contrast needs --image (a described image), not --images")
    choices = resolve_choices(args)
    if args.images is not None:
        paths = resolve_images(args.images, minimum=2)
        images = [load_image(str(path)) for path in paths]
    else:
        paths, images = None, ([load_image(args.image)] if args.image else None)
    import torch

    from ..anatomy import ModelAnatomy
    from ..inputs.models import chat_prompt, encode_inputs, is_vision_language, load_model, resolve_device, resolve_dtype
    from ..tracing import trace

    watch = [w.strip() for w in args.watch.split(",") if w.strip()]
    watch += [w for c in contrasts for w in (c.correct, c.hallucinated) if w not in watch]
    _check_watch_before_loading(args.model, watch)
    device = resolve_device(args.device)
    model, processor = load_model(args.model, dtype=resolve_dtype(args.dtype, device), device=device,
                                  device_map=args.device_map, progress=progress_enabled(args))
    stages.done("load", 1, "model")
    is_vision = is_vision_language(model)
    anatomy = ModelAnatomy.from_model(model)
    _check_model_options(args, anatomy)
    if is_vision and images is None:
        raise CliError(f"{type(model).__name__} is a vision-language model: pass --image FILE, --image {DEMO_IMAGE} or --images")
    if not is_vision and images is not None:
        if args.images is not None:
            raise CliError(f"{type(model).__name__} is text-only: --images needs a vision-language model")
        logger.warning("%s is text-only: ignoring --image", type(model).__name__)
        images = None
    torch.manual_seed(0)

    # 2. the traced answer(s): one row per image
    prompt = chat_prompt(processor, args.prompt, with_image=images is not None)
    count = len(images) if images is not None else 1
    inputs = encode_inputs(processor, [prompt] * count, images, model)
    logger.info("model %s: %d layers, vocabulary %d, device %s, %s", type(model).__name__, anatomy.num_layers,
                anatomy.vocab_size, device, model.dtype)
    result = trace(model, inputs, processor=processor, max_new_tokens=args.max_new_tokens, top_k=args.top_k,
                   watch_tokens=watch, readout=choices["readout"], reduction=choices["reduction"], keep_hidden=True,
                   competitor_window=args.competitor_window, max_competitors=args.max_competitors,
                   progress=progress_enabled(args))
    result.meta.update(prompt=args.prompt, image=args.image, images=[str(p) for p in paths] if paths else None, choices=choices)
    result.save(out)
    stages.done("trace", int(result.lengths.sum()), "token(s)")
    triples = [(resolve_contrast_step(c, result), c.correct, c.hallucinated) for c in contrasts]
    (out / "cli_args.json").write_text(json.dumps({k: v for k, v in vars(args).items() if k != "run"}, indent=1))

    # 3. the figures and the summary
    if paths is not None:
        written = _image_set_figures(result, args, choices, out)
        summary = format_answers(result, paths)
    else:
        written = _answer_figures(result, args, choices, triples, out)
        summary = format_summary(result, args.layer)
    (out / "summary.txt").write_text(summary)
    stages.done("figures", len(written), "file(s)")
    for line in summary.splitlines():
        logger.info("%s", line)
    logger.info("wrote %s", ", ".join(str(p) for p in [out / "trace.json", out / "trace.npz", out / "summary.txt", *written]))
    return 0


def _check_model_options(args, anatomy) -> None:
    if args.top_k > anatomy.vocab_size:
        raise CliError(f"--top-k {args.top_k} is larger than the vocabulary size {anatomy.vocab_size}")
    for option in ("layer", "competitor_window", "critical"):
        value = getattr(args, option)
        if value is not None:
            try:
                anatomy.check_layer(value)
            except ValueError as error:
                raise CliError(f"--{option.replace('_', '-')}: {error}") from None


def _answer_figures(result, args, choices, triples, out) -> list:
    """Fig. 2, 3 (a panel per ``(step, correct, hallucinated)`` triple), 4 and 6 of one answer."""
    from .. import figures  # matplotlib

    paper = choices["normalize"] == "layer"
    paths = figures.plot_token_probabilities(result, out / FIGURE_NAMES[0], highlight_layer=args.layer)
    if triples:
        paths += figures.plot_contrasts(result, out / FIGURE_NAMES[1], triples)
    paths += figures.plot_jsd_heatmap(result, out / FIGURE_NAMES[2], highlight_layer=args.layer, normalize=choices["normalize"],
                                      axis=choices["axis"], annotate=paper, cmap="Purples" if paper else "viridis")
    if int(result.lengths[0]) * result.num_layers >= 3:
        paths += figures.plot_tsne_tokens(result, out / FIGURE_NAMES[3], seed=args.seed, critical=args.critical,
                                          scale=choices["tsne_scale"], last_state=choices["last_state"],
                                          paths=choices["tsne_scale"] == "none")
    return paths


def _image_set_figures(result, args, choices, out) -> list:
    """Fig. 7 over the images: the states predicting the first answer token."""
    from .. import figures  # matplotlib

    return figures.plot_tsne_images(result, out / FIGURE_NAMES[4], step=0, seed=args.seed, critical=args.critical,
                                    scale=choices["tsne_scale"], last_state=choices["last_state"],
                                    paths=choices["tsne_scale"] == "none")


def format_answers(result, paths) -> str:
    """One line per image: its answer and the critical layer of the first answer token."""
    from ..figures.tsne import answer_labels  # matplotlib

    lines = [f"layers: {result.num_layers}, readout: {result.meta['readout']}, reduction: {result.meta['reduction']}",
             f"{'image':<32} {'answer':<16} {'critical':>8}  text"]
    for b, (path, answer) in enumerate(zip(paths, answer_labels(result))):
        lines.append(f"{path.name:<32} {answer:<16} {int(result.critical[b, 0]):>8}  {result.texts[b]!r}")
    return "\n".join(lines) + "\n"


def format_summary(result, layer: int | None = None, row: int = 0) -> str:
    """Generated text and, per token, the critical and mutation layers, the competitors (and ``layer``'s values)."""
    num_layers = result.num_layers
    lines = [f"generated: {result.texts[row]!r}", f"layers: {num_layers}, readout: {result.meta['readout']}, "
             f"reduction: {result.meta['reduction']}"]
    header = f"{'step':>4}  {'token':<16} {'critical':>8}  {'p(L)':>6}"
    if layer is not None:
        header += f"  {f'p({layer})':>7}  {f'jsd({layer})':>9}"
    lines += [header + "  mutation layers  competitors"]
    for t in range(int(result.lengths[row])):
        mutation = [j + 1 for j in range(num_layers) if result.mutation[row, t, j]]
        line = f"{t:>4}  {result.tokens[row][t]!r:<16} {int(result.critical[row, t]):>8}  {result.token_probs[row, t, -1]:>6.3f}"
        if layer is not None:
            index = layer - result.first_layer
            line += f"  {result.token_probs[row, t, index]:>7.3f}  {result.jsd[row, t, layer - 1]:>9.2e}"
        others = [result.token_name(i) for i in result.competitor_ids[row, t].tolist()[1:] if i >= 0]
        lines.append(line + f"  {','.join(map(str, mutation)) or '-':<15}  " + (" ".join(map(repr, others)) or "-"))
    return "\n".join(lines) + "\n"


def _check_watch_before_loading(model: str, watch: list[str]) -> None:
    """Refuse a --watch (or --contrast) word outside the vocabulary from the tokenizer files alone, before any weights load."""
    if not watch or not Path(model).is_dir() or not (Path(model) / "tokenizer_config.json").is_file():
        return
    from transformers import AutoTokenizer  # loads torch: this module is on the --help import path

    from ..tracing import resolve_watch_tokens  # loads torch, as above

    tokenizer = AutoTokenizer.from_pretrained(model)
    try:
        resolve_watch_tokens(watch, tokenizer, len(tokenizer))
    except InputError as error:
        raise CliError(f"--watch: {error}") from None
