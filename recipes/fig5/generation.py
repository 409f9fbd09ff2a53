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
    from lvlm_skip.inputs.models import chat_prompt, encode_inputs

    return encode_inputs(processor, [chat_prompt(processor, prompt, with_image=True)], [image], model)


def describe(model, processor, inputs: dict, variant: str, options: dict, max_new_tokens: int) -> VariantResult:
    """Greedy description under ``lvlm_skip.skipping(model, variant, **options)``.

    The options are checked against the model before any generation
    (:meth:`~recipes.fig5.layers.Fig5Layers.check_model`).
    """
    import lvlm_skip

    with lvlm_skip.skipping(model, variant=variant, **options) as run:
        start = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        seconds = time.perf_counter() - start
    report = run.report
    new = out[0, inputs["input_ids"].shape[1]:]
    steps = report.num_steps
    return VariantResult(
        text=processor.decode(new, skip_special_tokens=True).strip(),
        num_tokens=int(new.numel()),
        seconds=round(seconds, 3),
        skipped_step0=report.skipped_layers(0) if steps else [],
        skipped_any=sorted({layer for t in range(steps) for layer in report.skipped_layers(t)}),
        mean_skipped=round(report.mean_layers_skipped(), 3),
        calibration=dict(report.calibration[0]) if report.calibration else {},
        notes=list(report.notes),
    )


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
