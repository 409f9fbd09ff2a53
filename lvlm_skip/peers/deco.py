"""DeCo's per-step correction: the final logits plus an anchor layer's, weighted by its confidence.

DeCo (Wang et al., ICLR 2025, "MLLM can see? Dynamic Correction Decoding")
-------------------------------------------------------------------------
Reproduces the released code (zjunlp/Deco, commit fee8d75, ``transformers/generation/utils.py``:
``deco_greedy_search``, ``deco_sample_search``, ``deco_beam_search``; readouts in
``transformers/models/llama/modeling_llama.py``). Per step (:func:`deco_correct`):

1. Candidates ``C``: the final layer's ``top_k`` most probable tokens, cut to the shortest prefix
   whose cumulative probability reaches ``top_p`` (the token that crosses ``top_p`` is included).
2. Anchor layer ``a = argmax_{l in window} max_{v in C} p_l(v)``: the preceding layer that puts the
   most probability on any candidate (ties: the earliest layer of the window).
3. Dynamic soft modulation ``w = max_{v in C} p_a(v)``, and
   ``z(v) = z_L(v) + alpha * w * z_a(v)`` on raw logits for ``v in C``, ``-inf`` outside ``C``.

Defaults (released eval scripts ``chair_llava.py``/``pope_llava.py``/``amber_llava.py`` and README):
``alpha = 0.6``, ``top_p = 0.9``, ``top_k = 20``, window = layers ``20..28``
(``early_exit_layers=range(20, 29)``) for LLaVA-1.5-7B (``L = 32``). The window readouts are
``lm_head(final_norm(h_j))`` (the ``"normed"`` readout); the final logits are the model's. The code
gives no rule for other depths: :func:`deco_default_window` scales ``[20, 28]`` by ``L / 32``
(our choice). Differences: we batch (the greedy and sampling code handle one row; the beam code loops
over rows exactly as we vectorise); window softmaxes in float32 (the code: model dtype); ``top_k`` is
clamped to the vocabulary size (the code would raise).

Pure tensor functions on one decoding step's next-token logits, with the conventions of
:mod:`lvlm_skip.peers` (float32, layer numbering, no input modified).
"""

from __future__ import annotations

import math

import torch

from ..config import DECO_ALPHA, DECO_TOP_P, DECO_TOP_K, DECO_WINDOW_LLAVA_7B, check_int, check_number
from .checks import check_float_tensor, check_stack


def deco_default_window(num_layers: int) -> list[int]:
    """DeCo's preceding-layer window: ``[20, 28]`` for ``L = 32``, scaled by ``L / 32`` otherwise.

    ``range(max(1, round(20 L / 32)), min(L - 1, round(28 L / 32)) + 1)`` with half-up rounding. The
    released scripts give ``range(20, 29)`` for LLaVA-1.5-7B and the README says to adjust the
    interval to the model; the scaling is our choice. E.g. ``L = 40`` -> ``25..35``, ``L = 60`` ->
    ``38..53``.

    Args:
        num_layers: ``L >= 2`` decoder layers.

    Returns:
        Layer indices (our numbering; ``h_j`` read out as ``lm_head(final_norm(h_j))``).
    """
    check_int("num_layers", num_layers, 2)
    first, last = DECO_WINDOW_LLAVA_7B
    start = max(1, math.floor(first * num_layers / 32 + 0.5))
    end = min(num_layers - 1, math.floor(last * num_layers / 32 + 0.5))
    return list(range(start, end + 1))


def deco_candidates(final_logits: torch.Tensor, top_p: float = DECO_TOP_P, top_k: int = DECO_TOP_K) -> torch.Tensor:
    """DeCo's candidate tokens: top-p inside the final layer's top-k.

    Sort the final probabilities, keep the first ``n = min(k, 1 + #{i : P_i < top_p})`` tokens with
    ``P_i`` the cumulative probability of the ``i + 1`` most probable (``searchsorted(..., right=False)
    + 1`` in the code): the token whose cumulative probability reaches ``top_p`` is kept.

    Args:
        final_logits: `(batch, vocab)` the model's logits.
        top_p: In ``[0, 1]``; default 0.9. ``0`` keeps only the top token.
        top_k: ``>= 1``, clamped to the vocabulary size; default 20.

    Returns:
        `(batch, vocab)` bool mask of the candidates.
    """
    check_float_tensor("final_logits", final_logits, 2, "(batch, vocab)")
    check_number("top_p", top_p, 0.0, 1.0)
    check_int("top_k", top_k, 1)
    k = min(top_k, final_logits.shape[-1])
    # 1. the k most probable tokens, sorted
    # shape: (batch, k)
    top_probs, top_ids = torch.topk(torch.softmax(final_logits.float(), dim=-1), k, dim=-1)
    # 2. how many to keep: up to and including the one whose cumulative probability reaches top_p
    # shape: (batch,)
    kept = ((top_probs.cumsum(-1) < top_p).sum(-1) + 1).clamp(max=k)
    # shape: (batch, k)
    keep_sorted = torch.arange(k, device=final_logits.device)[None] < kept[:, None]
    empty = torch.zeros(final_logits.shape, dtype=torch.bool, device=final_logits.device)
    return empty.scatter(-1, top_ids, keep_sorted)


def deco_select_anchor(layer_logits: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DeCo's anchor layer and its soft modulation coefficient.

    ``a = argmax_l max_{v in C} p_l(v)`` (ties: the earliest window layer) and
    ``w = max_{v in C} p_a(v)``, ``p_l = softmax(layer_logits[l])``.

    Args:
        layer_logits: `(window, batch, vocab)` readouts of the window layers.
        candidates: `(batch, vocab)` bool mask from :func:`deco_candidates` (at least one per row).

    Returns:
        ``(anchor, weight)``: `(batch,)` int64 indices into ``window``, `(batch,)` float32 in ``(0, 1]``.
    """
    check_float_tensor("layer_logits", layer_logits, 3, "(window, batch, vocab)")
    if candidates.dtype != torch.bool or candidates.shape != layer_logits.shape[1:]:
        raise ValueError(
            f"`candidates` has to be a bool mask of shape {tuple(layer_logits.shape[1:])},"
            f" got {candidates.dtype} {tuple(candidates.shape)}"
        )
    # 1. probability of each candidate at each window layer; -1 hides the other tokens
    # shape: (window, batch, vocab)
    probs = torch.softmax(layer_logits.float(), dim=-1).masked_fill(~candidates[None], -1.0)
    # 2. best candidate probability per layer, then the first layer reaching the overall best
    # shape: (window, batch)
    per_layer = probs.amax(-1)
    # shape: (batch,)
    anchor = per_layer.argmax(0)
    weight = per_layer.gather(0, anchor[None]).squeeze(0)
    return anchor, weight


def deco_correct(
    final_logits: torch.Tensor,
    layer_logits: torch.Tensor,
    alpha: float = DECO_ALPHA,
    top_p: float = DECO_TOP_P,
    top_k: int = DECO_TOP_K,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DeCo step: correct the final logits with the anchor layer's.

    ``z(v) = z_L(v) + alpha * w * z_a(v)`` for the candidates ``v in C`` (:func:`deco_candidates`),
    ``-inf`` elsewhere, with anchor ``a`` and weight ``w`` from :func:`deco_select_anchor`. Raw
    logits are added, not log-probabilities.

    Args:
        final_logits: `(batch, vocab)` the model's logits ``z_L``.
        layer_logits: `(window, batch, vocab)` readouts ``lm_head(final_norm(h_j))`` of the window
            layers (:func:`deco_default_window`; ``20..28`` for LLaVA-1.5-7B).
        alpha: ``>= 0``; default 0.6 (released scripts; the paper's ablation, Fig. 7a, peaks there).
            ``0`` leaves ``z_L`` on ``C``.
        top_p: See :func:`deco_candidates`; default 0.9.
        top_k: See :func:`deco_candidates`; default 20.

    Returns:
        ``(logits, anchor)``: `(batch, vocab)` float32, and `(batch,)` int64 indices into ``window``.
    """
    check_number("alpha", alpha, 0.0)
    candidates = deco_candidates(final_logits, top_p, top_k)
    check_stack("layer_logits", layer_logits, final_logits, "(window, batch, vocab)")
    anchor, weight = deco_select_anchor(layer_logits, candidates)
    rows = torch.arange(final_logits.shape[0], device=anchor.device)
    # shape: (batch, vocab)
    anchor_logits = layer_logits[anchor, rows].float()
    # alpha * w in float64 then rounded, as the code's Python-float product (alpha * max_prob.item())
    scale = (alpha * weight.double()).float()
    corrected = final_logits.float() + scale[:, None] * anchor_logits
    return corrected.masked_fill(~candidates, -math.inf), anchor
