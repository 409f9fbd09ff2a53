"""What the toolkit sees in a scene model: critical / mutation layers, and mutations on hallucinated words.

    python -m recipes.layer_statistics [--model recipes/models/scene-llava] [--n-images 40] [--out DIR]

For ``--n-images`` generated scenes of each test split (prior-consistent and prior-breaking), the
model describes the image greedily under :func:`lvlm_skip.trace`. Every emitted object word (a
scene kind, singular or plural) and colour word is labelled *hallucinated* when the scene has no
such object / no object of that colour, else *correct*. Reported, per split:

* the distribution of the detected critical layer over all emitted tokens;
* how often each layer is a mutation layer;
* the share of hallucinated and of correct content words whose step shows a mutation layer
  (the paper links mutations to hallucinations: this measures it where the truth is known);
* the mean JSD curve.

Writes ``layer_statistics.json`` and ``layer_statistics.md`` into ``--out``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter

import numpy as np

from recipes.command import progress_enabled, recipe_parser, run_recipe

logger = logging.getLogger("recipes.layer_statistics")

DEFAULT_MODEL = "recipes/models/scene-llava"
PROMPT = "Please describe this image in detail."
SPLITS = ("test-consistent", "test-breaking")


def content_labels(words: list[str], scene) -> list[str | None]:
    """Per word: ``"hallucinated"`` / ``"correct"`` for object and colour words, ``None`` otherwise."""
    from lvlm_skip.scenes import COLORS, OBJECTS

    plural = {v[0]: k for k, v in OBJECTS.items()}
    kinds = {o.kind for o in scene.objects}
    colours = {o.color for o in scene.objects}
    labels = []
    for word in words:
        kind = word if word in OBJECTS else plural.get(word)
        if kind is not None:
            labels.append("correct" if kind in kinds else "hallucinated")
        elif word in COLORS:
            labels.append("correct" if word in colours else "hallucinated")
        else:
            labels.append(None)
    return labels


def collect(model, processor, split: str, n_images: int, seed: int, max_new_tokens: int, progress: bool = False,
            batch_size: int = 1) -> dict:
    """Trace ``n_images`` scenes of ``split``, ``batch_size`` at a time; return the aggregated statistics.

    The statistics do not depend on ``batch_size``: every row of a batch is cut to its own steps
    (:meth:`lvlm_skip.Trace.row`), which equal its prompt traced alone.
    """
    from tqdm.auto import tqdm

    import lvlm_skip
    from lvlm_skip.scenes import generate
    from lvlm_skip.inputs.models import chat_prompt, encode_inputs

    num_layers = lvlm_skip.ModelAnatomy.from_model(model).num_layers
    critical = Counter()
    mutation_counts = np.zeros(num_layers)
    words_by_label = {"hallucinated": [0, 0], "correct": [0, 0]}  # [with a mutation, total]
    curves = []
    tokens = 0
    scenes = list(generate(split, seed, n_images))
    bar = tqdm(total=len(scenes), desc=split, unit="image", disable=not progress)
    for start in range(0, len(scenes), batch_size):
        chunk = scenes[start:start + batch_size]
        inputs = encode_inputs(processor, [chat_prompt(processor, PROMPT)] * len(chunk), [s.image for s in chunk], model)
        batch = lvlm_skip.trace(model, inputs, processor=processor, max_new_tokens=max_new_tokens)
        for b, scene in enumerate(chunk):
            result = batch.row(b)
            n = int(result.lengths[0])
            words = [t.strip().lower() for t in result.tokens[0]]
            mutated = result.mutation[0, :n].any(-1)
            for step, label in enumerate(content_labels(words, scene)):
                if label is not None:
                    words_by_label[label][0] += int(mutated[step])
                    words_by_label[label][1] += 1
            critical.update(result.critical[0, :n].tolist())
            mutation_counts += result.mutation[0, :n].sum(0)
            curves.append(result.jsd[0, :n])
            tokens += n
        bar.update(len(chunk))
    bar.close()
    return {
        "split": split,
        "images": n_images,
        "tokens": tokens,
        "critical_layer_counts": {int(k): v for k, v in sorted(critical.items())},
        "mutation_rate_by_layer": (mutation_counts / max(tokens, 1)).round(4).tolist(),
        "mutation_share": {
            label: {"with_mutation": m, "words": t, "share": round(m / t, 4) if t else None}
            for label, (m, t) in words_by_label.items()
        },
        "mean_jsd": np.concatenate(curves).mean(0).round(5).tolist() if curves else [],
    }


def to_markdown(stats: list[dict]) -> str:
    from lvlm_skip.evaluation.report import markdown_table

    rows = []
    for s in stats:
        total = sum(s["critical_layer_counts"].values()) or 1
        crit = ", ".join(f"{k}: {v / total:.0%}" for k, v in s["critical_layer_counts"].items())
        rates = np.asarray(s["mutation_rate_by_layer"])
        top = ", ".join(f"{j + 1} ({rates[j]:.1%})" for j in np.argsort(-rates)[:3] if rates[j] > 0) or "none"
        share = s["mutation_share"]

        def fmt(label):
            entry = share[label]
            return f"{entry['with_mutation']}/{entry['words']}" + (f" ({entry['share']:.0%})" if entry["words"] else "")

        rows.append([s["split"], s["tokens"], crit, top, fmt("hallucinated"), fmt("correct")])
    headers = ["split", "tokens", "critical layer (share of tokens)", "layers most often mutating",
               "hallucinated words with a mutation", "correct words with a mutation"]
    return markdown_table(rows, headers=headers, pad=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Trace the scenes, write the statistics; bad input exits with status 2 and one line."""
    from lvlm_skip.cli.options import positive_int

    parser = recipe_parser("recipes.layer_statistics", __doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="A local model folder (default: the shipped scene-llava).")
    parser.add_argument("--n-images", type=positive_int, default=40, help="Scenes per split.")
    parser.add_argument("--seed", type=int, default=2000, help="Scene seed (held out from training).")
    parser.add_argument("--max-new-tokens", type=positive_int, default=48, help="Generation length limit.")
    parser.add_argument("--batch-size", type=positive_int, default=1,
                        help="Scenes traced per generate call (left-padded); the statistics do not depend on it.")
    parser.add_argument("--out", default="runs/layer_statistics", help="Output folder.")
    return run_recipe(parser, run, argv)


def run(args) -> int:
    """The recipe's work, after the output folder is checked."""
    from lvlm_skip.inputs.models import load_model
    from lvlm_skip.inputs.paths import check_output_dir

    out = check_output_dir(args.out)
    model, processor = load_model(args.model, progress=False)
    progress = progress_enabled(args)
    stats = [collect(model, processor, split, args.n_images, args.seed, args.max_new_tokens, progress, args.batch_size)
             for split in SPLITS]
    (out / "layer_statistics.json").write_text(json.dumps(stats, indent=1))
    table = to_markdown(stats)
    (out / "layer_statistics.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
