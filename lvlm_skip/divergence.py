"""Divergences between next-token distributions (paper eq. 3-4). Pure tensor math, no transformers."""

from __future__ import annotations

import math

import torch

LN2 = math.log(2.0)


def js_divergence(logp: torch.Tensor, logq: torch.Tensor, dim: int = -1, reduction: str = "sum") -> torch.Tensor:
    """Jensen-Shannon divergence between distributions given as log-probabilities, in nats.

    ``JSD(p || q) = 1/2 KL(p || m) + 1/2 KL(q || m)`` with ``m = (p + q) / 2`` (eq. 3-4). Computed in
    float32 in log space (``log m = logsumexp(log p, log q) - ln 2``), so it is stable for near-one-hot
    inputs and for half-precision models.

    Args:
        logp: Log-probabilities, any shape; normalised along ``dim`` (e.g. ``log_softmax`` output).
        logq: Same shape as ``logp``.
        dim: The vocabulary axis.
        reduction: ``"sum"`` (default) is the JSD, symmetric, 0 for identical inputs and in
            ``[0, ln 2]``. ``"mean"`` averages the pointwise KL terms over the vocabulary instead of
            summing them, as the authors' released plotting code does (``F.kl_div(..., reduction="mean")``):
            it equals the JSD divided by the vocabulary size, and
            exists only to reproduce their figures.

    Returns:
        The divergence with ``dim`` reduced, float32.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"`reduction` (={reduction!r}) has to be 'sum' or 'mean'")
    logp = logp.float()
    logq = logq.float()
    # shape: like logp; log of the mixture m = (p + q) / 2
    log_m = torch.logaddexp(logp, logq) - LN2
    p = logp.exp()
    q = logq.exp()
    # xlogy-style: terms with p == 0 contribute 0 (where() avoids 0 * -inf = nan)
    kl_p = torch.where(p > 0, p * (logp - log_m), torch.zeros_like(p))
    kl_q = torch.where(q > 0, q * (logq - log_m), torch.zeros_like(q))
    pointwise = 0.5 * (kl_p + kl_q)
    jsd = pointwise.sum(dim) if reduction == "sum" else pointwise.mean(dim)
    return jsd.clamp_min(0.0)


def adjacent_js_divergence(layer_logprobs: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """JSD between every pair of adjacent layers' distributions.

    Args:
        layer_logprobs: `(layers, ..., vocab)` log-probabilities of readouts ``j = 0..J``.
        reduction: See :func:`js_divergence`.

    Returns:
        `(layers - 1, ...)`: entry ``i`` is ``JSD(p_i || p_{i+1})``, the change made by layer ``i + 1``.
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
