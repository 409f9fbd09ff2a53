"""Divergences between next-token distributions (paper eq. 3-4). Pure tensor math, no transformers.

Two reductions of the same pointwise terms, both in nats:

* ``"sum"`` (default): the Jensen-Shannon divergence of eq. 3-4,
  ``JSD(p || q) = 1/2 KL(p || m) + 1/2 KL(q || m)`` with ``m = (p + q) / 2``; symmetric, 0 for
  identical inputs, in ``[0, ln 2]``.
* ``"paper"``: exactly what the authors' released ``heatmap.py`` computes (MIT,
  github.com/XIAO4579/Vlm-interpretability)::

      0.5 * (F.kl_div(log p, m, reduction="none").mean(-1) + F.kl_div(log q, m, reduction="none").mean(-1))

  in float64. ``F.kl_div(input, target)`` is ``target * (log target - input)``, so this is
  ``1/2 (KL(m || p) + KL(m || q)) / V``: the *reverse* KL direction (mixture first), averaged over
  the ``V`` vocabulary entries instead of summed. It is not ``JSD / V``: with the raw readout, the
  two curves of one scene-llava step peak at different layers (2 against 14). It exists to
  reproduce their figures.
"""

from __future__ import annotations

import math
from typing import get_args

import torch

from .config import Reduction

LN2 = math.log(2.0)
REDUCTIONS: tuple[str, ...] = get_args(Reduction)


def check_reduction(reduction: Reduction) -> Reduction:
    """Validate a ``reduction`` name (one of :data:`REDUCTIONS`).

    Raises:
        ValueError: an unknown name; ``"mean"`` (``JSD / V``, which is not the authors' formula) is
            refused with a message naming ``"paper"`` and ``"sum"`` instead.
    """
    if reduction == "mean":
        raise ValueError(
            "`reduction` 'mean' was removed: it was JSD / vocabulary size, not the authors' formula; "
            "use 'paper' for their heatmap.py formula or 'sum' for the JSD"
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` (={reduction!r}) has to be one of {REDUCTIONS}")
    return reduction


def js_divergence(logp: torch.Tensor, logq: torch.Tensor, dim: int = -1, reduction: Reduction = "sum") -> torch.Tensor:
    """Divergence between distributions given as log-probabilities, in nats (module docstring).

    Args:
        logp: Log-probabilities, any shape; normalised along ``dim`` (e.g. ``log_softmax`` output).
        logq: Same shape as ``logp``.
        dim: The vocabulary axis.
        reduction: ``"sum"``: the JSD, computed in float32 in log space
            (``log m = logaddexp(log p, log q) - ln 2``), stable for near-one-hot inputs and
            half-precision models. ``"paper"``: the authors' ``1/2 (KL(m || p) + KL(m || q)) / V``,
            computed in float64 as their code does (pass float64 log-probabilities for bit parity).

    Returns:
        The divergence with ``dim`` reduced: float32 for ``"sum"``, float64 for ``"paper"``.
    """
    check_reduction(reduction)
    if reduction == "paper":
        return _paper_divergence(logp, logq, dim)
    logp = logp.float()
    logq = logq.float()
    # 1. log of the mixture m = (p + q) / 2, without leaving log space
    log_m = torch.logaddexp(logp, logq) - LN2  # shape: like logp
    # 2. pointwise KL(p || m) and KL(q || m) terms; p == 0 contributes 0 (where() avoids 0 * -inf = nan)
    p = logp.exp()
    q = logq.exp()
    kl_p = torch.where(p > 0, p * (logp - log_m), torch.zeros_like(p))
    kl_q = torch.where(q > 0, q * (logq - log_m), torch.zeros_like(q))
    # 3. sum over the vocabulary
    return (0.5 * (kl_p + kl_q)).sum(dim).clamp_min(0.0)


def _paper_divergence(logp: torch.Tensor, logq: torch.Tensor, dim: int) -> torch.Tensor:
    """``1/2 (mean_k m_k (log m_k - log p_k) + mean_k m_k (log m_k - log q_k))`` in float64."""
    logp = logp.double()
    logq = logq.double()
    # 1. the mixture m = (p + q) / 2 (their M = 0.5 * (softmax + softmax))
    m = 0.5 * (logp.exp() + logq.exp())  # shape: like logp
    log_m = m.log()
    # 2. F.kl_div(log p, m, reduction="none") = m * (log m - log p), 0 where m == 0 (xlogy)
    kl_m_p = torch.where(m > 0, m * (log_m - logp), torch.zeros_like(m))
    kl_m_q = torch.where(m > 0, m * (log_m - logq), torch.zeros_like(m))
    # 3. averaged (not summed) over the vocabulary, then the two halves averaged
    return 0.5 * (kl_m_p.mean(dim) + kl_m_q.mean(dim))


def adjacent_js_divergence(layer_logprobs: torch.Tensor, reduction: Reduction = "sum") -> torch.Tensor:
    """The divergence between every pair of adjacent layers' distributions.

    Args:
        layer_logprobs: `(layers, ..., vocab)` log-probabilities of readouts ``j = 0..J``.
        reduction: ``"sum"`` (the JSD) or ``"paper"`` (the authors' formula), see :func:`js_divergence`.

    Returns:
        `(layers - 1, ...)`: entry ``i`` is ``JSD(p_i || p_{i+1})``, the change made by layer ``i + 1``
        (``d_{i+1}`` in :mod:`lvlm_skip.anatomy`'s convention; the authors' heatmap column ``i``).
    """
    return js_divergence(layer_logprobs[:-1], layer_logprobs[1:], reduction=reduction)


def adjacent_top1_changes(layer_logprobs: torch.Tensor) -> torch.Tensor:
    """Whether the most likely token differs between adjacent layers.

    Args:
        layer_logprobs: `(layers, ..., vocab)` log-probabilities (or logits) of consecutive readouts.

    Returns:
        `(layers - 1, ...)` bool: entry ``i`` is True when the argmax of row ``i + 1`` differs from row ``i``'s.
    """
    top1 = layer_logprobs.argmax(-1)
    return top1[1:] != top1[:-1]
