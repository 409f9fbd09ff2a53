"""The online decisions themselves, recomputed from what the run observed.

A replay that applies the report's own skip sets checks execution only. Here the decisions are
recomputed independently: the recorded curve of every step (NaN where a layer was skipped or lies
outside the window) goes through :func:`lvlm_skip.detection.detect_layers`, and the variant's rule
from the paper turns the detection into what the run must have done:

* every variant: the critical and mutation layers the run recorded at step ``t`` are those of the
  recorded curve;
* skip3 (``decide="lagged"``): step ``t + 1`` skips ``k+1 .. L - keep_last`` of the row, where ``k``
  is the layer whose observation confirmed step ``t``'s critical layer; nothing when none was confirmed;
* exit: a row whose step ``t`` shows a mutation reads its distribution from the layer before the
  first one, ``m - 1``; the others from ``L``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lvlm_skip
from lvlm_skip.config import DetectionConfig
from lvlm_skip.detection import detect_layers

from batches import left_padded_batch
from tiny_models import LOOSE as SHARED_LOOSE
from tiny_models import make_llama

#: the shared loose thresholds with the default mutation rule (JSD spikes only): the recomputation
#: below sees the curves, not the top-1 tokens
LOOSE = dict(SHARED_LOOSE, mutation_rule="spike")
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def llama8():
    """The tiny Llama at 8 layers: deep enough for a critical layer, a span and a mutation."""
    return make_llama(8, vocab=99, max_positions=256)


def _run(model, variant: str, **options):
    with lvlm_skip.skipping(model, variant=variant, mode="online", detection=LOOSE, candidates=0, **options) as run, \
            torch.no_grad():
        model.generate(**left_padded_batch(), max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
    return run.report


def _recomputed(report):
    """Detection of every step's recorded curve: critical `(steps, batch)`, confirmed_at, mutation `(steps, batch, L)`."""
    found = detect_layers(torch.from_numpy(np.asarray(report.jsd, dtype=np.float32)), config=DetectionConfig(**LOOSE))
    return found.critical.numpy(), found.confirmed_at.numpy(), found.mutation.numpy()


@pytest.mark.parametrize("variant", ["skip3", "exit", "skip2"])
def test_recorded_layers_are_those_of_the_recorded_curves(llama8, variant):
    report = _run(llama8, variant, **({"keep_last": 2} if variant == "skip3" else {}))
    critical, _, mutation = _recomputed(report)
    assert report.num_steps == NEW_TOKENS
    np.testing.assert_array_equal(report.critical, critical)
    if variant != "skip2":  # skip2 drops a spiking layer: its recorded curve is the one after the drop
        np.testing.assert_array_equal(report.mutation, mutation)
    assert report.critical.any(), "the loose thresholds confirm critical layers: the test has something to check"


def test_skip3_lagged_skips_after_the_previous_steps_confirmation(llama8):
    report = _run(llama8, "skip3", keep_last=2)
    _, confirmed_at, _ = _recomputed(report)
    L = report.num_layers
    expected = np.zeros_like(report.skipped)
    for t in range(1, report.num_steps):
        for b, k in enumerate(confirmed_at[t - 1]):
            if k:
                expected[t, b, k: L - 2] = True  # layers k+1 .. L-2, 0-based k .. L-3
    np.testing.assert_array_equal(report.skipped, expected)
    assert expected.any(), "some step skips: the test has something to check"


def test_exit_reads_the_layer_before_the_first_mutation(llama8):
    report = _run(llama8, "exit")
    _, _, mutation = _recomputed(report)
    L = report.num_layers
    first = np.where(mutation.any(-1), mutation.argmax(-1) + 1, 0)  # 1-based first mutation layer, 0 = none
    expected = np.where(first > 0, first - 1, L)
    np.testing.assert_array_equal(report.exit_layer, expected)
    assert (expected < L).any(), "some step exits early: the test has something to check"
