"""The peers against the authors' released code, as hand-checked numbers.

Each case holds fixed inputs (hand-written logits, vocabulary 8-10) and the outputs the released
function gives on them, rounded to 1e-6. Those outputs were computed once by running a transcription
of the released function (outside the repository) on these inputs; the sources:

* DoLa: voidism/DoLa @ 805230e57e63ca561cb759994681b122ff6f81f0,
  ``transformers-4.28.1/src/transformers/generation/utils.py``: ``relative_top_filter`` and the
  per-step scores of ``dola_greedy_decode`` (dynamic premature layer: ``js_divs`` from
  ``F.kl_div(..., reduction='none').mean(-1)``, batch mean, argmax; then ``final - base``).
* VCD: DAMO-NLP-SG/VCD @ d6568ff81b8fd306a49e630df44f2db5c2300191, ``vcd_utils/vcd_sample.py``
  (the "version 2" cutoff, ``cd_logits``) and ``vcd_utils/vcd_add_noise.py``
  (``add_diffusion_noise``, after ``torch.manual_seed(0)``).
* DeCo: zjunlp/Deco @ fee8d757c0a98036bc4e076b4ca6615350441ea7,
  ``transformers/generation/utils.py``: the per-step scores of ``deco_greedy_search``
  (``final_token_logits``, and the selected ``early_exit_layers`` entry).

Our functions must give the same numbers, except where their docstrings state a difference from
the original; those cases record both outputs and assert the documented difference.
"""

from __future__ import annotations

import math

import torch

from lvlm_skip.peers.deco import deco_candidates, deco_correct, deco_select_anchor
from lvlm_skip.peers.dola import dola_contrast, dola_divergence, relative_top_filter
from lvlm_skip.peers.vcd import diffusion_noise, vcd_contrast

INF = math.inf


def _close(actual: torch.Tensor, expected, atol: float = 1e-5) -> None:
    torch.testing.assert_close(actual.float(), torch.tensor(expected, dtype=torch.float32), atol=atol, rtol=0)


# ------------------------------------------------------------------------------------------ DoLa

#: `(batch 2, vocab 8)` mature logits and the candidate premature layers 0, 2, 4 (`(3, 2, 8)`).
DOLA_MATURE = torch.tensor([[3.2, 2.9, 1.0, 0.4, -0.5, 0.1, -1.2, 0.8],
                            [0.0, 2.0, -1.0, 0.5, 1.4, -0.5, 0.3, 0.2]])
DOLA_LAYERS = [0, 2, 4]
DOLA_PREMATURE = torch.tensor([
    [[0.1, 0.3, 0.2, 0.0, 0.1, -0.1, 0.2, 0.0], [0.0, 1.8, -0.9, 0.6, 1.4, -0.4, 0.2, 0.3]],  # layer 0
    [[1.5, 2.8, 0.2, 0.1, -0.3, 0.4, -0.8, 0.6], [2.5, -1.0, 0.0, 0.5, -1.5, 1.0, 0.3, 0.2]],  # layer 2
    [[3.0, 1.2, 1.4, 0.3, -0.2, 0.0, -1.0, 0.9], [0.1, 1.9, -1.0, 0.4, 1.6, -0.6, 0.3, 0.1]],  # layer 4
])
#: released ``js_divs`` before the batch mean, `(candidates, batch)`
DOLA_RELEASED_D = [[0.030257, 0.000233], [0.008636, 0.064169], [0.007293, 0.00026]]
#: released scores of each row decoded alone (relative_top 0.1): premature layer and ``final - base``
DOLA_RELEASED_ROW0 = (0, [1.352068, 0.852068, -0.947932, -INF, -INF, -INF, -INF, -INF])
DOLA_RELEASED_ROW1 = (2, [-2.33939, 3.16061, -INF, 0.16061, 3.06061, -INF, 0.16061, 0.16061])
#: released scores of the two rows as one batch: one premature layer (2) for both, by the batch mean
DOLA_RELEASED_BATCH = (2, [[1.088623, -0.511377, 0.188623, -INF, -INF, -INF, -INF, -INF],
                           [-2.33939, 3.16061, -INF, 0.16061, 3.06061, -INF, 0.16061, 0.16061]])
#: released ``relative_top_filter(DOLA_MATURE, 0.1)`` and ``(..., 0.5)``
DOLA_RELEASED_FILTER = {
    0.1: [[-0.734865, -1.034865, -2.934865, -INF, -INF, -INF, -INF, -INF],
          [-2.870092, -0.870092, -INF, -2.370092, -1.470092, -INF, -2.570092, -2.670092]],
    0.5: [[-0.734865, -1.034865, -INF, -INF, -INF, -INF, -INF, -INF],
          [-INF, -0.870092, -INF, -INF, -1.470092, -INF, -INF, -INF]],
}
#: released scores of row 0 with relative_top 0: raw ``mature - premature`` (layer 0), no log-softmax
DOLA_RELEASED_NO_FILTER = (0, [3.1, 2.6, 0.8, 0.4, -0.6, 0.2, -1.4, 0.8])


def test_dola_divergence_is_the_released_js_divs():
    _close(dola_divergence(DOLA_MATURE, DOLA_PREMATURE), DOLA_RELEASED_D, atol=1e-6)


def test_dola_relative_top_filter_equals_the_released_one():
    for relative_top, expected in DOLA_RELEASED_FILTER.items():
        log_p, _ = relative_top_filter(DOLA_MATURE, DOLA_PREMATURE[0], relative_top)
        _close(log_p, expected)


def test_dola_step_equals_the_released_scores_row_by_row():
    for row, (layer, scores) in enumerate([DOLA_RELEASED_ROW0, DOLA_RELEASED_ROW1]):
        logits, index = dola_contrast(DOLA_MATURE[row:row + 1], DOLA_PREMATURE[:, row:row + 1], 0.1)
        assert DOLA_LAYERS[int(index)] == layer
        _close(logits[0], scores)


def test_dola_batch_differs_as_documented_per_row_choice():
    """Difference (a): the release picks one premature layer for the batch (batch mean of D); we pick per
    row by default, so a batch equals its rows decoded alone; ``batch_mean=True`` is the release."""
    layer, scores = DOLA_RELEASED_BATCH
    logits, index = dola_contrast(DOLA_MATURE, DOLA_PREMATURE, 0.1, batch_mean=True)
    assert [DOLA_LAYERS[i] for i in index.tolist()] == [layer, layer]
    _close(logits, scores)
    ours, index = dola_contrast(DOLA_MATURE, DOLA_PREMATURE, 0.1)
    assert [DOLA_LAYERS[i] for i in index.tolist()] == [DOLA_RELEASED_ROW0[0], DOLA_RELEASED_ROW1[0]] == [0, 2]
    _close(ours, [DOLA_RELEASED_ROW0[1], DOLA_RELEASED_ROW1[1]])
    assert not torch.allclose(ours[0], torch.tensor(scores[0]))  # row 0 differs from the release's batch


def test_dola_without_filter_differs_as_documented_log_probabilities():
    """The release skips the log-softmax when relative_top == 0 (raw logits contrasted); we contrast
    log-probabilities: the two differ by a per-row constant, ``lse(premature) - lse(mature)``, and
    rank the tokens alike."""
    layer, released = DOLA_RELEASED_NO_FILTER
    logits, index = dola_contrast(DOLA_MATURE[:1], DOLA_PREMATURE[:, :1], 0.0)
    assert DOLA_LAYERS[int(index)] == layer
    shift = torch.logsumexp(DOLA_PREMATURE[0, 0], -1) - torch.logsumexp(DOLA_MATURE[0], -1)
    _close(logits[0], [value + float(shift) for value in released])
    assert abs(float(shift)) > 1  # a real difference of values, not of ranking
    assert torch.equal(logits[0].argsort(descending=True), torch.tensor(released).argsort(descending=True))


# ------------------------------------------------------------------------------------------ VCD

VCD_LOGITS = torch.tensor([[2.0, 1.5, -0.3, 0.7, 0.0, -1.2, 1.9, 0.4]])
VCD_NOISED_LOGITS = torch.tensor([[1.0, 1.8, 0.2, 0.9, -0.4, -1.0, 0.5, 0.6]])
#: released ``cd_logits`` for (cd_alpha, cd_beta)
VCD_RELEASED = {
    (1.0, 0.1): [3.0, 1.2, -0.8, 0.5, 0.4, -INF, 3.3, 0.2],
    (0.5, 0.2): [2.5, 1.35, -INF, 0.6, -INF, -INF, 2.6, 0.3],
}
#: a `(1, 3, 2, 2)` normalised image (under 16 values: torch's scalar normal sampler on every CPU)
VCD_IMAGE = torch.tensor([[[[0.5, -1.0], [1.5, 0.0]], [[-0.25, 2.0], [0.75, -1.5]], [[1.0, 0.3], [-0.6, 0.1]]]])
#: released ``add_diffusion_noise(VCD_IMAGE, step)`` after ``torch.manual_seed(0)``, flattened
VCD_RELEASED_NOISE = {
    0: [0.50728, -1.001376, 1.489683, 0.002687, -0.255125, 1.993366, 0.751899, -1.496021, 0.996588, 0.29809, -0.602814,
        0.10086],
    500: [1.209981, -1.01125, 0.193857, 0.287157, -0.763627, 1.0195, 0.851023, -0.871176, 0.499667, 0.055146, -0.819215,
          0.178262],
    999: [1.619589, -0.566298, -1.660838, 0.54485, -1.110791, -0.770489, 0.600396, 0.375697, -0.404377, -0.301098,
          -0.742909, 0.202989],
}


def test_vcd_contrast_equals_the_released_cd_logits():
    for (alpha, beta), expected in VCD_RELEASED.items():
        _close(vcd_contrast(VCD_LOGITS, VCD_NOISED_LOGITS, alpha, beta)[0], expected)


def test_vcd_noise_equals_the_released_noised_image():
    """Same draw: a generator seeded 0 gives the numbers of the release's global RNG seeded 0 (the
    documented difference is where eps comes from, not its values)."""
    for step, expected in VCD_RELEASED_NOISE.items():
        noised = diffusion_noise(VCD_IMAGE, step, generator=torch.Generator().manual_seed(0))
        _close(noised.flatten(), expected)
        torch.manual_seed(0)
        _close(diffusion_noise(VCD_IMAGE, step).flatten(), expected)


# ------------------------------------------------------------------------------------------ DeCo

DECO_FINAL = torch.tensor([[2.5, 2.2, 1.8, 0.4, -0.3, 1.0, -1.0, 0.2, 0.0, -0.5]])
DECO_WINDOW = [5, 6, 7]
DECO_LAYERS = torch.tensor([
    [[1.0, 0.2, 2.4, 0.1, 0.0, 0.3, -0.2, 0.1, 0.0, 0.0]],  # layer 5
    [[0.5, 3.1, 0.4, 0.2, 2.9, 0.0, 0.1, 0.0, -0.3, 0.2]],  # layer 6
    [[2.0, 1.9, 1.0, 0.5, 0.0, 0.8, -0.5, 0.3, 0.1, -0.2]],  # layer 7
])
#: released (alpha, threshold_top_p, threshold_top_k) -> selected layer, premature_max_probs,
#: candidate ids, final_token_logits
DECO_RELEASED = {
    (0.6, 0.9, 5): (5, 0.4933882, [0, 1, 2, 3, 5], [2.796033, 2.259207, 2.510479, 0.429603, -INF, 1.08881, -INF, -INF, -INF, -INF]),
    (0.6, 0.9, 3): (5, 0.4933882, [0, 1, 2], [2.796033, 2.259207, 2.510479, -INF, -INF, -INF, -INF, -INF, -INF, -INF]),
    (1.0, 0.5, 10): (6, 0.4457291, [0, 1], [2.722865, 3.58176, -INF, -INF, -INF, -INF, -INF, -INF, -INF, -INF]),
}


def test_deco_step_equals_the_released_final_token_logits():
    for (alpha, top_p, top_k), (layer, weight, candidates, expected) in DECO_RELEASED.items():
        mask = deco_candidates(DECO_FINAL, top_p, top_k)
        assert torch.nonzero(mask[0]).flatten().tolist() == candidates
        anchor, w = deco_select_anchor(DECO_LAYERS, mask)
        assert DECO_WINDOW[int(anchor)] == layer
        assert abs(float(w) - weight) < 1e-6
        logits, anchor = deco_correct(DECO_FINAL, DECO_LAYERS, alpha, top_p, top_k)
        assert DECO_WINDOW[int(anchor)] == layer
        _close(logits[0], expected)
