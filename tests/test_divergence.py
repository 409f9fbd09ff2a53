"""js_divergence against scipy (``"sum"``) and the authors' formula (``"paper"``), and their properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from lvlm_skip.divergence import LN2, adjacent_js_divergence, js_divergence


def _scipy_jsd(p: torch.Tensor, q: torch.Tensor) -> np.ndarray:
    p64, q64 = p.double().numpy(), q.double().numpy()
    return np.array([jensenshannon(a, b) ** 2 for a, b in zip(p64, q64)])  # natural log base


def _random_logits(rows=16, vocab=50, scale=3.0, seed=0):
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("scale", [0.5, 3.0, 40.0])  # 40: near one-hot
def test_matches_scipy(scale):
    logp = torch.log_softmax(_random_logits(scale=scale, seed=1), -1)
    logq = torch.log_softmax(_random_logits(scale=scale, seed=2), -1)
    ours = js_divergence(logp, logq)
    assert ours.dtype == torch.float32 and ours.shape == (16,)
    np.testing.assert_allclose(ours.numpy(), _scipy_jsd(logp.exp(), logq.exp()), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_computed_in_float32(dtype):
    logp = torch.log_softmax(_random_logits(seed=3), -1).to(dtype)
    logq = torch.log_softmax(_random_logits(seed=4), -1).to(dtype)
    ours = js_divergence(logp, logq)
    assert ours.dtype == torch.float32
    # the reference sees the same rounded inputs (renormalised, as rounding breaks the sum to 1 slightly)
    p, q = logp.float().exp(), logq.float().exp()
    reference = _scipy_jsd(p / p.sum(-1, keepdim=True), q / q.sum(-1, keepdim=True))
    np.testing.assert_allclose(ours.numpy(), reference, rtol=2e-2, atol=2e-3)


def test_symmetric_zero_on_identical_and_bounded():
    logp = torch.log_softmax(_random_logits(seed=5), -1)
    logq = torch.log_softmax(_random_logits(seed=6), -1)
    torch.testing.assert_close(js_divergence(logp, logq), js_divergence(logq, logp))
    assert js_divergence(logp, logp).abs().max() < 1e-6
    assert (js_divergence(logp, logq) <= LN2 + 1e-6).all() and (js_divergence(logp, logq) >= 0).all()


def test_disjoint_supports_reach_ln2():
    p = torch.tensor([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    q = torch.tensor([[0.0, 0.0, 0.25, 0.75], [0.0, 0.0, 0.0, 1.0]])
    jsd = js_divergence(p.log(), q.log())  # -inf log-probabilities: zero terms must not give nan
    assert not jsd.isnan().any()
    torch.testing.assert_close(jsd, torch.full((2,), math.log(2.0)))


def _authors_formula(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """A literal re-derivation of heatmap.py's ``compute_js_divergence_between_layers`` for one pair of rows."""
    import torch.nn.functional as F

    p64, q64 = logits_p.double(), logits_q.double()
    M = 0.5 * (F.softmax(p64, dim=-1) + F.softmax(q64, dim=-1))
    kl1 = F.kl_div(F.log_softmax(p64, dim=-1), M, reduction="none").mean(-1)
    kl2 = F.kl_div(F.log_softmax(q64, dim=-1), M, reduction="none").mean(-1)
    return 0.5 * (kl1 + kl2)


@pytest.mark.parametrize("scale", [0.5, 3.0, 40.0])
def test_paper_reduction_is_the_authors_formula(scale):
    logits_p, logits_q = _random_logits(vocab=37, scale=scale, seed=7), _random_logits(vocab=37, scale=scale, seed=8)
    ours = js_divergence(torch.log_softmax(logits_p.double(), -1), torch.log_softmax(logits_q.double(), -1), reduction="paper")
    assert ours.dtype == torch.float64 and ours.shape == (16,)
    torch.testing.assert_close(ours, _authors_formula(logits_p, logits_q), rtol=1e-12, atol=1e-15)
    # float32 log-probabilities (what trace's readout gives) agree to float32 precision
    loose = js_divergence(torch.log_softmax(logits_p, -1), torch.log_softmax(logits_q, -1), reduction="paper")
    torch.testing.assert_close(loose, _authors_formula(logits_p, logits_q), rtol=1e-4, atol=1e-9)


def test_paper_reduction_is_reverse_kl_averaged_not_jsd_over_vocab():
    logp = torch.log_softmax(_random_logits(vocab=37, seed=7), -1).double()
    logq = torch.log_softmax(_random_logits(vocab=37, seed=8), -1).double()
    m = 0.5 * (logp.exp() + logq.exp())
    reverse_kl = lambda a: (m * (m.log() - a)).sum(-1)  # noqa: E731 - KL(m || a)
    torch.testing.assert_close(js_divergence(logp, logq, reduction="paper"), 0.5 * (reverse_kl(logp) + reverse_kl(logq)) / 37)
    jsd_over_vocab = js_divergence(logp, logq).double() / 37
    assert (js_divergence(logp, logq, reduction="paper") - jsd_over_vocab).abs().min() > 1e-6
    # symmetric, and 0 on identical inputs, like the JSD
    torch.testing.assert_close(js_divergence(logp, logq, reduction="paper"), js_divergence(logq, logp, reduction="paper"))
    assert js_divergence(logp, logp, reduction="paper").abs().max() < 1e-15


def test_unknown_and_removed_reductions():
    logp = torch.log_softmax(_random_logits(seed=7), -1)
    with pytest.raises(ValueError, match="'mean' was removed.*'paper'"):
        js_divergence(logp, logp, reduction="mean")
    with pytest.raises(ValueError, match="reduction"):
        js_divergence(logp, logp, reduction="max")


def test_dim_argument_and_adjacent_layers():
    logits = _random_logits(rows=5 * 3, vocab=11, seed=9).reshape(5, 3, 11)  # (layers, batch, vocab)
    logp = torch.log_softmax(logits, -1)
    adjacent = adjacent_js_divergence(logp)
    assert adjacent.shape == (4, 3)
    torch.testing.assert_close(adjacent[2], js_divergence(logp[2], logp[3]))
    torch.testing.assert_close(js_divergence(logp.transpose(0, 2), logp.flip(0).transpose(0, 2), dim=0), js_divergence(logp, logp.flip(0)).T)
    paper = adjacent_js_divergence(logp, reduction="paper")
    assert paper.shape == (4, 3) and paper.dtype == torch.float64
    torch.testing.assert_close(paper[2], _authors_formula(logits[2], logits[3]), rtol=1e-5, atol=1e-12)
