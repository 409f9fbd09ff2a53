"""Model work of a Fig. 5 run: one greedy description per variant, and the original model's trace.

Each description runs the model's own ``generate`` inside ``lvlm_skip.skipping(model, variant=...)``,
which restores the stock model afterwards (also on an exception) and keeps the variant's
:class:`~lvlm_skip.skips.SkipReport`; ``none`` is the stock model.
"""

from __future__ import annotations

import time
from pathlib import Path

from .results import VariantResult

#: The figures drawn per image from the original model's trace (Fig. 2/3 and Fig. 4).
ANALYSIS_FIGURES = ("fig2_token_probabilities", "fig4_jsd_heatmap")


def encode(processor, model, image, prompt: str) -> dict:
    """The processor's inputs for one image and one prompt (the processor's chat template), on the model's device."""
    return encode_batch(processor, model, [image], prompt)


def encode_batch(processor, model, images: list, prompt: str) -> dict:
    """The processor's inputs for images under one prompt, left-padded, on the model's device."""
    from lvlm_skip.inputs.models import chat_prompt, encode_inputs

    return encode_inputs(processor, [chat_prompt(processor, prompt, with_image=True)] * len(images), images, model)


def describe(model, processor, inputs: dict, variant: str, options: dict, max_new_tokens: int) -> VariantResult:
    """Greedy description of one image under ``lvlm_skip.skipping(model, variant, **options)``."""
    return describe_batch(model, processor, inputs, variant, options, max_new_tokens)[0]


def describe_batch(model, processor, inputs: dict, variant: str, options: dict, max_new_tokens: int) -> list[VariantResult]:
    """Greedy descriptions of a left-padded batch under ``lvlm_skip.skipping(model, variant, **options)``, one per row.

    Each row is cut at its own end of sequence and its own steps (layers skipped, calibration,
    notes renamed to ``row 0``), so it equals the image described alone; ``seconds`` is the batch's
    wall time divided among its rows. The options are checked against the model before any
    generation (:meth:`~recipes.fig5.layers.Fig5Layers.check_model`).
    """
    import lvlm_skip
    from lvlm_skip.anatomy import eos_token_ids
    from lvlm_skip.tracing import row_lengths

    with lvlm_skip.skipping(model, variant=variant, **options) as run:
        start = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        seconds = time.perf_counter() - start
    report = run.report
    new = out[:, inputs["input_ids"].shape[1]:].cpu()
    results = []
    for b, n in enumerate(row_lengths(new, eos_token_ids(model))):
        steps = min(report.num_steps, n)
        own = [note for note in report.notes if note.startswith(f"row {b}:")]
        results.append(VariantResult(
            text=processor.decode(new[b, :n], skip_special_tokens=True).strip(),
            num_tokens=n,
            seconds=round(seconds / len(new), 3),
            skipped_step0=report.skipped_layers(0, b) if steps else [],
            skipped_any=sorted({layer for t in range(steps) for layer in report.skipped_layers(t, b)}),
            mean_skipped=round(report.row_layers_skipped(b, n), 3),
            calibration=dict(report.calibration[b]) if report.calibration else {},
            notes=[note.replace(f"row {b}:", "row 0:", 1) for note in own]
            + [note for note in report.notes if not note.startswith("row ")],
        ))
    return results


def analyse(model, processor, inputs: dict, folder: Path, max_new_tokens: int, progress: bool = False) -> dict:
    """Trace the original model (``lvlm_skip.trace``) and draw Fig. 2/3 and Fig. 4 into ``folder``.

    Returns:
        The summary stored in ``results.json``: the folder, the figure files, the critical layer of
        every generated step (0 = none), their median over the steps that have one, and how often
        each layer is a mutation layer.
    """
    import numpy as np

    import lvlm_skip
    from lvlm_skip import figures

    result = lvlm_skip.trace(model, inputs, processor=processor, max_new_tokens=max_new_tokens, progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    result.save(folder)
    paths = figures.plot_token_probabilities(result, folder / ANALYSIS_FIGURES[0])
    paths += figures.plot_jsd_heatmap(result, folder / ANALYSIS_FIGURES[1])
    length = int(result.lengths[0])
    critical = result.critical[0, :length]
    mutation = result.mutation[0, :length]
    detected = critical[critical > 0]
    return {
        "folder": folder.as_posix(),
        "figures": [p.name for p in paths],
        "critical_per_step": critical.tolist(),
        "critical_median": int(np.median(detected)) if detected.size else 0,
        "mutation_counts": {str(j + 1): int(n) for j, n in enumerate(mutation.sum(0)) if n},
    }
