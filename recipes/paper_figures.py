"""Every figure of the paper for one model, both the authors' way and ours, in one command.

    python -m recipes.paper_figures [--model M] [--images DIR] [--out runs/paper_figures]

For each image group (a sub-folder of ``--images``, e.g. the authors' ``image/animal``, ``flower``,
``fruit``, ``sport``; or, without ``--images``, scenes generated for scene-llava):

* every image is described (``--describe-prompt``, the paper's "Please describe this image in
  detail.") and traced: Fig. 2 (competitors per step), Fig. 3 (correct vs hallucinated, for generated
  scenes whose truth is known), Fig. 4 (divergence heatmap), Fig. 6 (t-SNE of its tokens' states), and
  the §6 text-only control beside Fig. 4: the same prompt given to the language model alone;
* the whole group is asked one one-word question (``--question GROUP=TEXT``; built in: "What is the
  color of the flower? ..." for ``flower``, "What is the main object of the image? ..." otherwise):
  Fig. 7 (t-SNE of the first answer token's states, one point per image and layer), and the step-0
  divergence curves of the images beside the text-only model's.

Every figure is made in two modes, one folder each:

* ``paper/``: the authors' released code: raw readout ``lm_head(h_j)``, their divergence
  ``1/2 (KL(m||p) + KL(m||q)) / V``, heatmap columns scaled to max-abs 1 on their axis (``0..L-1``),
  t-SNE on MaxAbs-scaled states with layer ``L`` after the final norm;
* ``default/``: the faithful readout ``lm_head(norm(h_j))``, the JSD in nats, absolute heatmaps on our
  axis (``1..L``), t-SNE on the un-normed residual stream at every layer.

Layout of ``--out``: ``<mode>/describe/<group>/<image>/`` (figures and trace of one description),
``<mode>/fig7_<group>.png`` and ``<mode>/control_<group>.png`` (with the traces in ``<mode>/vqa/<group>/``),
``<mode>/text_only/`` (the control's traces), ``images/`` (generated scenes), ``settings.json`` and
``index.md`` (what each figure computes). The text-only control runs the same model without the
image token and pixel values, or ``--text-model`` (a text-only model folder) when given.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger("recipes.paper_figures")

PROG = "python -m recipes.paper_figures"
DEFAULT_MODEL = "recipes/models/scene-llava"
DEFAULT_OUT = "runs/paper_figures"
DESCRIBE_PROMPT = "Please describe this image in detail."
MAIN_OBJECT_QUESTION = "What is the main object of the image? Answer with one word."
QUESTIONS = {"flower": "What is the color of the flower? Answer with one word."}
"""The paper's two Fig. 7 questions: the colour one for the flower group, the main-object one otherwise."""
SCENE_DESCRIBE = (("test-consistent", 2), ("test-breaking", 2))
"""Generated scenes described by default: prior-consistent ones, and prior-breaking ones that scene-llava hallucinates on."""
SCENE_QUESTIONS = {"flower": "What color is the flower?", "apple": "Where is the apple?"}
"""Generated Fig. 7 groups: scenes of the prior-free split with one object of the kind, asked in scene-llava's VQA format."""
SCENE_SEED = 0


@dataclass(frozen=True)
class Mode:
    """The choices that differ between the authors' figures and ours."""

    readout: str
    reduction: str
    normalize: str
    axis: str
    tsne_scale: str
    last_state: str
    tsne_paths: bool
    annotate: bool
    cmap: str


MODES = {
    "paper": Mode("raw", "paper", "layer", "paper", "maxabs", "normed", False, True, "Purples"),
    "default": Mode("normed", "sum", "none", "layer", "none", "raw", True, False, "viridis"),
}


@dataclass
class Item:
    """One image: a unique stem, its file, the PIL image, and the generated scene (truth) if any."""

    stem: str
    path: Path
    image: object
    scene: object = None


def scene_generator():
    """The scene benchmark (:mod:`lvlm_skip.scenes`): the one import of it in this recipe."""
    from lvlm_skip import scenes

    return scenes


# ------------------------------------------------------------------------------------ inputs


def parse_questions(pairs: list[str]) -> dict[str, str]:
    """``["flower=What color ...?"]`` -> ``{"flower": "What color ...?"}``."""
    from lvlm_skip.cli.options import CliError

    questions = {}
    for pair in pairs:
        group, sep, text = pair.partition("=")
        if not sep or not group.strip() or not text.strip():
            raise CliError(f"--question {pair!r}: expected GROUP=TEXT, e.g. flower=What is the color of the flower?")
        questions[group.strip()] = text.strip()
    return questions


def image_items(spec: str) -> dict[str, list[Item]]:
    """``--images``: groups of read images (one-line errors on a bad path or image)."""
    from lvlm_skip.inputs.image_sets import image_groups
    from lvlm_skip.inputs.models import load_image

    return {group: [Item(p.stem, p, load_image(p)) for p in paths] for group, paths in image_groups(spec).items()}


def generated_items(out: Path, n_describe: int, n_scenes: int) -> tuple[list[Item], dict[str, list[Item]]]:
    """Generated scenes (saved under ``out/images``): the described ones, and one Fig. 7 group per kind."""
    generator = scene_generator()
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)

    def item(scene, group):
        path = folder / group / f"{scene.split}-{scene.index}.png"
        path.parent.mkdir(exist_ok=True)
        scene.image.save(path)
        return Item(path.stem, path, scene.image, scene)

    # 1. descriptions: half prior-consistent, half prior-breaking scenes
    describe = []
    for (split, _), count in zip(SCENE_DESCRIBE, (n_describe - n_describe // 2, n_describe // 2)):
        describe += [item(scene, "scenes") for scene in generator.generate(split, SCENE_SEED, count)]
    # 2. Fig. 7: scenes of the prior-free split holding exactly one object of the group's kind
    groups = {}
    for kind in SCENE_QUESTIONS:
        chosen, index = [], 0
        while len(chosen) < n_scenes and index < 100 * n_scenes:
            scene = generator.make_scene("uniform", SCENE_SEED, index)
            found = scene.get(kind)
            if found is not None and found.count == 1:
                chosen.append(item(scene, kind))
            index += 1
        groups[kind] = chosen
    return describe, groups


def in_vocabulary(tokenizer, word: str) -> bool:
    """Whether ``word`` encodes to tokens other than the unknown token."""
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    return bool(ids) and getattr(tokenizer, "unk_token_id", None) not in ids


def scene_watch_words(scene, tokenizer) -> list[str]:
    """The words of a scene's truth (kinds, singular and plural, and their colours) that the vocabulary has."""
    objects = scene_generator().OBJECTS
    words = []
    for obj in scene.objects:
        for word in (obj.kind, objects[obj.kind][0], obj.color):
            if word not in words and in_vocabulary(tokenizer, word):
                words.append(word)
    return words


def scene_contrasts(result, scene, limit: int = 4) -> list[tuple[int, str, str]]:
    """Fig. 3 pairs from a scene's truth: ``(step, correct, hallucinated)`` for each wrong object or colour word.

    Descriptions follow the scenes' caption form "<count> <colour> <object> <position phrase>", so the
    object a word is about is the scene's object at the next position word (left, top, ...). A wrong
    object word is paired with that object's kind (in the emitted number), a wrong colour word with
    that object's colour. Where no position follows, a wrong object word is paired with the present
    kind likeliest at some layer of its step, and a colour word with the next object word's colour.
    Only recorded tokens (watch words) qualify.
    """
    generator = scene_generator()
    objects = generator.OBJECTS
    kind_of = {w: k for k, (plural, _, _) in objects.items() for w in (k, plural)}
    words = [t.strip().lower() for t in result.tokens[0]]
    by_position = {o.position: o for o in scene.objects}

    def described(t):
        """The scene object that the phrase around step ``t`` describes (next position word), or None."""
        position = next((w for w in words[t + 1: t + 5] if w in generator.POSITIONS), None)
        if position is not None:
            return by_position.get(position)
        noun = next((w for w in words[t + 1:] if w in kind_of), None)
        return scene.get(kind_of[noun]) if noun else None

    pairs = []
    for t, word in enumerate(words):
        if word in kind_of and scene.get(kind_of[word]) is None:
            plural = word != kind_of[word]
            truth = described(t)
            options = [truth] if truth is not None else list(scene.objects)
            recorded = [w for w in (objects[o.kind][0] if plural else o.kind for o in options) if w in result.watch_tokens]
            if recorded:
                best = max(recorded, key=lambda w: float(result.probabilities(w, t).max()))
                pairs.append((t, best, word))
        elif word in generator.COLORS:
            truth = described(t)
            if truth is not None and truth.color != word and truth.color in result.watch_tokens:
                pairs.append((t, truth.color, word))
    return pairs[:limit]


# ------------------------------------------------------------------------------------ tracing


def vision_inputs(processor, model, question: str, images: list) -> dict:
    from lvlm_skip.inputs.models import chat_prompt, encode_inputs

    return encode_inputs(processor, [chat_prompt(processor, question)] * len(images), images, model)


def text_only_inputs(processor, model, question: str) -> dict:
    """The prompt without the image: the LVLM's own chat format with a text-only message, or a text model's
    (:func:`lvlm_skip.inputs.models.chat_prompt` with ``with_image=False``)."""
    from lvlm_skip.inputs.models import chat_prompt, tokenizer_of

    prompt = chat_prompt(processor, question, with_image=False)
    inputs = tokenizer_of(processor)([prompt], return_tensors="pt")  # special tokens as the processor adds them to the LVLM's prompt
    return {k: v.to(model.device) for k, v in inputs.items()}


def trace_modes(model, processor, inputs: dict, max_new_tokens: int, watch=()) -> dict:
    """One generation read out once per mode: ``{mode name: Trace}``."""
    from lvlm_skip.tracing import trace_readouts

    settings = [(m.readout, m.reduction) for m in MODES.values()]
    traces = trace_readouts(model, inputs, settings=settings, processor=processor, max_new_tokens=max_new_tokens,
                            watch_tokens=list(watch), keep_hidden=True)
    return dict(zip(MODES, traces))


# ------------------------------------------------------------------------------------ figures


def describe_figures(item: Item, traces: dict, controls: dict, out: Path, group: str, critical: int | None) -> None:
    """Fig. 2, 3, 4, 6 and the text-only control of one description, in every mode."""
    from lvlm_skip import figures

    for name, mode in MODES.items():
        folder = out / name / "describe" / group / item.stem
        result = traces[name]
        result.save(folder)
        figures.plot_token_probabilities(result, folder / "fig2_token_probabilities")
        pairs = scene_contrasts(result, item.scene) if item.scene is not None else []
        if pairs:
            figures.plot_contrasts(result, folder / "fig3_contrast", pairs)
        figures.plot_jsd_heatmap(result, folder / "fig4_jsd_heatmap", normalize=mode.normalize, axis=mode.axis,
                                 annotate=mode.annotate, cmap=mode.cmap)
        figures.plot_jsd_comparison([result, controls[name]], [f"LVLM: {item.stem}", "text only (no image)"],
                                    folder / "fig4_vs_text_only", normalize=mode.normalize, axis=mode.axis, cmap=mode.cmap)
        if int(result.lengths[0]) * result.num_layers >= 3:
            figures.plot_tsne_tokens(result, folder / "fig6_tsne_tokens", critical=critical, scale=mode.tsne_scale,
                                     last_state=mode.last_state, paths=mode.tsne_paths)


def group_figures(group: str, question: str, traces: dict, controls: dict, out: Path, critical: int | None) -> None:
    """Fig. 7 of one group, and its step-0 curves beside the text-only model's, in every mode."""
    from lvlm_skip import figures
    from lvlm_skip.figures.common import divergence_name

    for name, mode in MODES.items():
        result = traces[name]
        result.meta["question"] = question
        result.save(out / name / "vqa" / group)
        figures.plot_tsne_images(result, out / name / f"fig7_{group}", critical=critical, scale=mode.tsne_scale,
                                 last_state=mode.last_state, paths=mode.tsne_paths)
        curves = {f"{group}: {result.token_ids.shape[0]} images": result.jsd[:, 0], "text only (no image)": controls[name].jsd[0, 0]}
        figures.plot_jsd_curves(curves, out / name / f"control_{group}", axis=mode.axis, ylabel=divergence_name(mode.reduction),
                                title=f"First answer token, {question!r} ({mode.readout} readout)")


INDEX = """# Paper figures: {model}

Two modes: `paper/` (the authors' released code: raw readout, their divergence formula, per-layer
max-abs heatmap on their 0-based axis, max-abs t-SNE with the post-norm last state) and `default/`
(normed readout, JSD in nats, absolute heatmap on our 1..L axis, t-SNE of the un-normed residual stream).

| file | paper | what it computes |
|---|---|---|
| `describe/<group>/<image>/fig2_token_probabilities.png` | Fig. 2 | per step, the probability at every layer of each token that is top-1 at some layer of the late window (layers >= the step's critical layer), and the watched truth words |
| `describe/<group>/<image>/fig3_contrast.png` | Fig. 3 | correct vs hallucinated word at the steps where the description contradicts a generated scene's truth |
| `describe/<group>/<image>/fig4_jsd_heatmap.png` | Fig. 4 | adjacent-layer divergence per token (rows) and layer (columns); critical layers as squares, mutation layers as crosses |
| `describe/<group>/<image>/fig4_vs_text_only.png` | §6 | the same heatmap beside the language model's without the image, and both mean curves |
| `describe/<group>/<image>/fig6_tsne_tokens.png` | Fig. 6 | t-SNE of every token's states at layers 1..L, coloured by layer group 1-2, 3-c, c+1..L-1, L |
| `fig7_<group>.png` | Fig. 7 | t-SNE across the group's images of the states predicting the first answer token, marked by answer |
| `control_<group>.png` | §6 | the first answer token's divergence curve for every image, and the text-only model's |

Prompts: description {describe!r}; questions {questions}.
"""


# ------------------------------------------------------------------------------------ driver


def build_parser():
    from lvlm_skip.cli.options import OneLineArgumentParser, add_model_arguments, positive_int

    p = OneLineArgumentParser(prog=PROG, description="Every figure of the paper for one model, the authors' way and ours.")
    add_model_arguments(p, default=DEFAULT_MODEL)
    p.add_argument("--images", default=None, help="A folder of images, or of image folders (one group each, e.g. the "
                   "authors' image/); also a comma list or text file of paths. Default: generated scenes.")
    p.add_argument("--out", default=DEFAULT_OUT, help="Output folder.")
    p.add_argument("--describe-prompt", default=DESCRIBE_PROMPT, help="The description prompt (Fig. 2-4, 6).")
    p.add_argument("--question", action="append", default=[], metavar="GROUP=TEXT",
                   help=f"Fig. 7 question of a group (repeatable). Default: {QUESTIONS['flower']!r} for 'flower', "
                        f"{MAIN_OBJECT_QUESTION!r} otherwise; generated scenes: {SCENE_QUESTIONS}.")
    p.add_argument("--describe-limit", type=positive_int, default=None, help="Describe only the first N images of each group.")
    p.add_argument("--max-new-tokens", type=positive_int, default=64, help="Description length limit.")
    p.add_argument("--answer-tokens", type=positive_int, default=4, help="Length limit of the one-word answers.")
    p.add_argument("--batch-size", type=positive_int, default=1,
                   help="Descriptions traced per generate call (left-padded); each figure is its image's alone.")
    p.add_argument("--n-describe", type=positive_int, default=4, help="Generated scenes to describe (without --images).")
    p.add_argument("--n-scenes", type=positive_int, default=12, help="Generated scenes per Fig. 7 group (without --images).")
    p.add_argument("--text-model", default=None, help="A text-only model folder for the §6 control (default: --model without the image).")
    p.add_argument("--critical", type=positive_int, default=None, help="c of the t-SNE layer groups (default: detected).")
    p.add_argument("--no-progress", action="store_true", help="No progress bars.")
    return p


def run(args) -> Path:
    """Make every figure; returns the output folder."""
    from lvlm_skip.anatomy import ModelAnatomy
    from lvlm_skip.cli.options import CliError
    from lvlm_skip.inputs.models import is_vision_language, load_model, resolve_device, resolve_dtype, tokenizer_of
    from lvlm_skip.inputs.paths import check_output_dir

    # 1. everything checkable before loading: output folder, questions, images
    out = check_output_dir(args.out)
    questions = parse_questions(args.question)
    if args.images is not None:
        groups = image_items(args.images)
        describe = {g: items[: args.describe_limit] for g, items in groups.items()}
        asked = {g: (questions.get(g) or QUESTIONS.get(g, MAIN_OBJECT_QUESTION), items) for g, items in groups.items()}
    else:
        described, groups = generated_items(out, args.n_describe, args.n_scenes)
        describe = {"scenes": described[: args.describe_limit]}
        asked = {g: (questions.get(g) or SCENE_QUESTIONS[g], items) for g, items in groups.items()}
    unknown = sorted(set(questions) - set(asked))
    if unknown:
        raise CliError(f"--question names group(s) {unknown} that do not exist; groups: {sorted(asked)}")

    # 2. the model(s)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    model, processor = load_model(args.model, dtype=dtype, device=device, device_map=args.device_map, progress=not args.no_progress)
    if not is_vision_language(model):
        raise CliError(f"{type(model).__name__} is text-only: the paper's figures need a vision-language --model")
    if args.critical is not None:
        try:
            ModelAnatomy.from_model(model).check_layer(args.critical)
        except ValueError as error:
            raise CliError(f"--critical: {error}") from None
    text_model, text_processor = (model, processor) if args.text_model is None else load_model(
        args.text_model, dtype=dtype, device=device, progress=not args.no_progress)
    settings = {"model": args.model, "text_model": args.text_model or f"{args.model} without the image",
                "images": args.images or "generated scenes", "describe_prompt": args.describe_prompt,
                "questions": {g: q for g, (q, _) in asked.items()}, "max_new_tokens": args.max_new_tokens,
                "answer_tokens": args.answer_tokens, "critical": args.critical, "modes": {k: asdict(m) for k, m in MODES.items()}}
    (out / "settings.json").write_text(json.dumps(settings, indent=1))
    tokenizer = tokenizer_of(processor)

    # 3. the text-only control of the description prompt, then every description
    control = trace_modes(text_model, text_processor, text_only_inputs(text_processor, text_model, args.describe_prompt),
                          args.max_new_tokens)
    for name in MODES:
        control[name].save(out / name / "text_only" / "describe")
    for group, items in describe.items():
        for start in range(0, len(items), args.batch_size):  # a batch watches the union of its rows' words
            chunk = items[start:start + args.batch_size]
            logger.info("describing %s/%s", group, ", ".join(item.stem for item in chunk))
            watches = [scene_watch_words(item.scene, tokenizer) if item.scene is not None else [] for item in chunk]
            batch = trace_modes(model, processor, vision_inputs(processor, model, args.describe_prompt, [i.image for i in chunk]),
                                args.max_new_tokens, list(dict.fromkeys(w for watch in watches for w in watch)))
            for b, (item, watch) in enumerate(zip(chunk, watches)):
                traces = {name: result.row(b, watch) for name, result in batch.items()}  # as if traced alone
                describe_figures(item, traces, control, out, group, args.critical)

    # 4. Fig. 7 and the step-0 control of every group
    for group, (question, items) in asked.items():
        if len(items) < 2:
            logger.warning("group %s has %d image(s): no Fig. 7 (it needs at least 2)", group, len(items))
            continue
        logger.info("asking %d images of %s: %r", len(items), group, question)
        traces = trace_modes(model, processor, vision_inputs(processor, model, question, [i.image for i in items]), args.answer_tokens)
        group_control = trace_modes(text_model, text_processor, text_only_inputs(text_processor, text_model, question),
                                    args.answer_tokens)
        for name in MODES:
            group_control[name].save(out / name / "text_only" / group)
        group_figures(group, question, traces, group_control, out, args.critical)
    questions_text = "; ".join(f"{g}: {q!r}" for g, (q, _) in asked.items())
    (out / "index.md").write_text(INDEX.format(model=args.model, describe=args.describe_prompt, questions=questions_text))
    logger.info("wrote %s", out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; bad input exits with status 2 and one line."""
    from lvlm_skip.cli.options import CliError
    from lvlm_skip.errors import InputError, one_line

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        args = build_parser().parse_args(argv)
        run(args)
    except (CliError, InputError) as error:
        sys.stderr.write(f"{PROG}: error: {one_line(error)}\n")
        raise SystemExit(2) from None
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
