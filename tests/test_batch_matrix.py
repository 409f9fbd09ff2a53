"""The batch matrix: every variant, in both modes, on batches of 1, 2 and 3 rows (equal and left-padded
prompt lengths), on LLaVA (GQA, an image per row) and Qwen2-VL (M-RoPE), equals its slow reference.

References: the model with the layers deleted (static ``positions="all"``), or a cache-free replay of
the whole prefix at every step applying the run's recorded per-row decisions (everything else). The
axes: static / online; ``decide="lagged" | "step"``; ``positions="generated" | "all"``;
``kv_fill="project" | "recompute"``; layer 1 and layer L inside skip sets; thresholds loose enough that
rows of one batch decide differently, which the online cases on several rows check.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import lvlm_skip
from lvlm_skip.inputs.models import chat_prompt
from references import deleted_layers_model, slow_reference_tokens
from tiny_models import LOOSE, make_llava, make_qwen2_vl

L = 8
STEPS = 6
GREEDY = dict(max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False)

#: batch shapes: rows and whether their prompts differ in length (left padding)
SHAPES = {"b1": (1, False), "b2-equal": (2, False), "b2-padded": (2, True), "b3-padded": (3, True)}

#: (case id, wrap options, reference): "deleted" = these layers removed, "replay" = cache-free replay
CASES = [
    ("static-layers-1-L-all", dict(variant="layers", layers=[1, 4, L], positions="all"), "deleted"),
    ("static-layers-1-L-generated", dict(variant="layers", layers=[1, 4, L]), "replay"),
    ("static-layers-1-L-generated-recompute", dict(variant="layers", layers=[1, L], kv_fill="recompute"), "replay"),
    ("static-skip1-all", dict(variant="skip1", critical_layer=2, mutation_layers=(7,), positions="all"), "deleted"),
    ("static-skip2-1-L-all", dict(variant="skip2", mutation_layers=(1, L), positions="all"), "deleted"),
    ("static-skip3-generated", dict(variant="skip3", critical_layer=2, keep_last=2), "replay"),
    ("static-exit", dict(variant="exit", exit_layer=6), "replay"),
    ("static-skip3-measured-all", dict(variant="skip3", keep_last=2, detection=LOOSE, positions="all"), "replay-all"),
    ("static-skip3-measured-generated", dict(variant="skip3", keep_last=2, detection=LOOSE), "replay"),
    ("online-skip1-lagged", dict(variant="skip1", mode="online", mutation_layers=(7,), detection=LOOSE), "replay"),
    ("online-skip1-step", dict(variant="skip1", mode="online", mutation_layers=(7,), detection=LOOSE, decide="step"), "replay"),
    ("online-skip2", dict(variant="skip2", mode="online", detection=LOOSE), "replay"),
    ("online-skip3-lagged", dict(variant="skip3", mode="online", keep_last=1, detection=LOOSE), "replay"),
    ("online-skip3-step-recompute", dict(variant="skip3", mode="online", keep_last=1, detection=LOOSE, decide="step",
                                         kv_fill="recompute"), "replay"),
    ("online-exit", dict(variant="exit", mode="online", detection=LOOSE), "replay"),
]


def _images(rows: int) -> list:
    return [Image.fromarray((np.random.RandomState(10 + r).rand(40, 40, 3) * 255).astype("uint8")) for r in range(rows)]


@pytest.fixture(scope="module")
def llava():
    model, processor = make_llava(L, hidden=64, intermediate=128, seed=1, dtype=torch.float64)
    questions = ["describe this image .", "what color is the cup on the table ?", "is there a dog ?"]

    def batch(shape: str) -> dict:
        rows, padded = SHAPES[shape]
        texts = [chat_prompt(processor, questions[r] if padded else questions[0]) for r in range(rows)]
        inputs = dict(processor(images=_images(rows), text=texts, return_tensors="pt", padding=True))
        inputs["pixel_values"] = inputs["pixel_values"].double()
        lengths = inputs["attention_mask"].sum(-1)
        assert (len(set(lengths.tolist())) > 1) == padded
        return inputs

    return model, batch, (model.config.image_token_id,)


@pytest.fixture(scope="module")
def qwen2_vl():
    model = make_qwen2_vl(L, seed=2, dtype=torch.float64)
    prompts = [[1, 5, 6, 7, 8, 9, 10], [1, 11, 12], [1, 20, 21, 22, 23]]

    def batch(shape: str) -> dict:
        rows, padded = SHAPES[shape]
        ids = [prompts[r] if padded else prompts[0][:5] + [30 + r] for r in range(rows)]
        width = max(map(len, ids))
        return {"input_ids": torch.tensor([[0] * (width - len(r)) + r for r in ids]),
                "attention_mask": torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in ids])}

    return model, batch, ()


def _rows_differ(report) -> bool:
    """Some step at which the rows of the batch skipped different layers or exited at different layers."""
    skipped = report.skipped  # shape: (steps, batch, L)
    exits = report.exit_layer  # shape: (steps, batch)
    return bool((skipped != skipped[:, :1]).any() or (exits != exits[:, :1]).any())


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("case,options,reference", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_batch_matrix(request, family, case, options, reference, shape):
    model, make_batch, suppress = request.getfixturevalue(family)
    inputs = make_batch(shape)
    generate = dict(GREEDY, suppress_tokens=list(suppress)) if suppress else GREEDY
    options = dict(options, candidates=0) if options.get("mode") == "online" else dict(options)
    with lvlm_skip.skipping(model, **options) as run, torch.no_grad():
        out = model.generate(**inputs, **generate)
    report = run.report
    acted = report.skipped.any() or (report.exit_layer < L).any()
    assert acted, f"{case} made no decision on this batch: the case would prove nothing"
    new = out[:, inputs["input_ids"].shape[1]:]
    if reference == "deleted":
        layers = report.skipped_layers(0)
        expected = deleted_layers_model(model, layers).generate(**inputs, **generate)[:, inputs["input_ids"].shape[1]:]
    else:
        expected = slow_reference_tokens(model, inputs, report, STEPS, static=reference == "replay-all",
                                         suppress=suppress)
    assert torch.equal(new, expected)
    rows, padded = SHAPES[shape]
    if options.get("mode") == "online" and rows == 3:
        assert _rows_differ(report), f"{case}: every row decided alike, so per-row decisions were not exercised"
