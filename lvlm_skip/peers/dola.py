"""DoLa's per-step contrast: the final layer against the premature layer that differs most.

DoLa (Chuang et al., ICLR 2024, "Decoding by Contrasting Layers")
------------------------------------------------------------------
Reproduces transformers 4.x before 4.53 (read on v4.46.3, ``generation/utils.py``: ``_dola_decoding``,
``_dola_select_contrast``, ``_relative_top_filter``); later versions, 5.x included, dispatch DoLa to the
Hub's ``transformers-community/dola`` custom generate. Per step, with mature logits ``z_L`` (the model's
own logits) and the candidate premature logits ``z_c``:

1. Candidates (:func:`dola_candidate_layers`): ``"low"`` = ``range(s, L // 2, 2)`` and ``"high"`` =
   ``range(L // 2, L, 2)`` for ``L <= 40``; ``range(s, 20, 2)`` and ``range(L - 20, L, 2)`` for
   ``L > 40``. ``s = 0``, or with tied word embeddings ``s = 2`` (``1`` if ``L == 2``, ``0`` if
   ``L == 1``) since the embedding readout is then an identity. A list keeps its entries ``< L``.
2. Premature layer (:func:`dola_select_premature`): ``argmax_c D(p_L, p_c)`` with
   ``D = 1/2 (mean_v KL_v(m || p_L) + mean_v KL_v(m || p_c))``, ``m = (p_L + p_c) / 2``,
   ``KL_v(m || p) = m_v (log m_v - log p_v)``: transformers' ``F.kl_div(log p, m)``. Note the argument
   order (``KL(m || p)``, not the Jensen-Shannon ``KL(p || m)``) and the mean over the vocabulary:
   ``D`` is *not* the JSD of ``divergence.py``, and can rank candidates differently (tests).
3. Contrast (:func:`relative_top_filter`, :func:`dola_contrast`): ``log p_L(v) - log p_c(v)`` for the
   tokens with ``log p_L(v) >= log max p_L + log(relative_top)`` (lowered if needed to keep
   ``min_tokens_to_keep`` tokens); ``-inf`` for the others. ``relative_top = 0`` keeps every token.

Defaults: ``relative_top = 0.1`` (the paper's adaptive plausibility constraint ``alpha``; the 4.x
default and the DoLa repo's ``--relative_top`` default),
``min_tokens_to_keep = 1``. Recommended ``repetition_penalty = 1.2``: 4.x warns below it
(``GenerationConfig.validate``) and the DoLa repo's eval scripts (e.g. ``tfqa_eval.py``) default to it
in DoLa mode. Apply :data:`DOLA_REPETITION_PENALTY` to the
contrast output, as 4.x's logits processors do.
``"high"`` suits short answers, ``"low"`` long-answer reasoning (4.x docs).

What 4.x feeds in: the premature logits are ``lm_head(h_j)`` **without** the final norm (the
``"raw"`` readout of ``readout.py``); the mature logits are the model's logits (final norm applied).
The original repo (voidism/DoLa, its transformers-4.28.1 fork) does the same. Differences from 4.x:
(a) 4.x picks *one* premature layer for the whole batch, by the batch mean of ``D``; we pick per row
(``batch_mean=True`` gives 4.x's rule); identical for batch size 1. (b) 4.x runs the premature
softmaxes in the model's dtype (fp16/bf16); we use float32. The original repo additionally skipped
the log-softmax when ``relative_top == 0`` (contrasting raw logits) and gave filtered baseline tokens
-1e3 from row 0's mask only; 4.x (and we) always contrast log-probabilities; the filtered value is
``-inf`` either way.

Pure tensor functions on one decoding step's next-token logits, with the conventions of
:mod:`lvlm_skip.peers` (float32, layer numbering, no input modified).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..config import DOLA_RELATIVE_TOP, DOLA_REPETITION_PENALTY, check_int, check_number
from .checks import check_float_tensor, check_stack


def dola_candidate_layers(num_layers: int, layers: str | Sequence[int], tie_word_embeddings: bool = False) -> list[int]:
    """Candidate premature layers of DoLa, as transformers 4.x chose them (``_dola_decoding``).

    Args:
        num_layers: ``L``, the number of decoder layers (the mature layer is ``L``).
        layers: ``"low"``, ``"high"`` or explicit layer indices (``0`` = the embeddings).
            ``"low"`` = ``range(s, L // 2, 2)`` if ``L <= 40`` else ``range(s, 20, 2)``, and just
            ``[s]`` when ``s == L // 2``; ``"high"`` = ``range(L // 2, L, 2)`` if ``L <= 40`` else
            ``range(L - 20, L, 2)``. A list keeps, in order, its entries ``< L`` (4.x drops the rest
            silently; so do we).
        tie_word_embeddings: The model's ``config.tie_word_embeddings``. Then the embedding readout is
            an identity and ``s = 2`` (``1`` if ``L == 2``, ``0`` if ``L == 1``); else ``s = 0``.
            LLaVA-1.5 (Vicuna) does not tie.

    Returns:
        Layer indices in our numbering (= transformers' ``hidden_states`` indices), e.g. for
        ``L = 32``: ``"low"`` -> ``[0, 2, ..., 14]``, ``"high"`` -> ``[16, 18, ..., 30]``.

    Raises:
        ValueError: On a bad argument, or when no candidate is left (4.x would then fail on an
            empty stack, e.g. ``"low"`` for a 3-layer model with tied embeddings).
    """
    check_int("num_layers", num_layers, 1)
    # 1. the first usable layer: skip the embeddings (and layer 1) when the readout of j = 0 is trivial
    if not tie_word_embeddings:
        start = 0
    elif num_layers > 2:
        start = 2
    elif num_layers == 2:
        start = 1
    else:
        start = 0
    half = num_layers // 2
    # 2. the buckets
    if isinstance(layers, str):
        if layers == "low":
            if start == half:
                candidates = [start]
            else:
                candidates = list(range(start, half, 2) if num_layers <= 40 else range(start, 20, 2))
        elif layers == "high":
            candidates = list(range(half, num_layers, 2) if num_layers <= 40 else range(num_layers - 20, num_layers, 2))
        else:
            raise ValueError(f"`layers` (={layers!r}) has to be 'low', 'high' or a list of layer indices")
    elif isinstance(layers, Sequence) and all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
        if any(i < 0 for i in layers):
            raise ValueError(f"`layers` (={list(layers)!r}) has to hold layer indices >= 0")
        candidates = [i for i in layers if i < num_layers]
    else:
        raise ValueError(f"`layers` (={layers!r}) has to be 'low', 'high' or a list of layer indices")
    if not candidates:
        raise ValueError(
            f"`layers` (={layers!r}) leaves no candidate premature layer below the final layer {num_layers}"
            f" (tie_word_embeddings={tie_word_embeddings})"
        )
    return candidates


def dola_divergence(mature_logits: torch.Tensor, premature_logits: torch.Tensor) -> torch.Tensor:
    """The divergence transformers 4.x maximises to pick DoLa's premature layer.

    ``D(p, q) = 1/2 (mean_v m_v log(m_v / p_v) + mean_v m_v log(m_v / q_v))``, ``m = (p + q) / 2``,
    ``p = softmax(mature_logits)``, ``q = softmax(premature_logits)``: the two KL terms of
    ``F.kl_div(log p, m, reduction="none").mean(-1)``, i.e. ``KL(m || p)`` (not the JSD's
    ``KL(p || m)``), averaged over the vocabulary instead of summed. Symmetric, 0 iff ``p == q``, in
    nats per vocabulary entry.

    Args:
        mature_logits: `(batch, vocab)` final-layer logits.
        premature_logits: `(candidates, batch, vocab)` logits of the candidate layers.

    Returns:
        `(candidates, batch)` float32.
    """
    check_float_tensor("mature_logits", mature_logits, 2, "(batch, vocab)")
    check_stack("premature_logits", premature_logits, mature_logits, "(candidates, batch, vocab)")
    mature = mature_logits.float()
    premature = premature_logits.float()
    # 1. the mixture of the two distributions
    # shape: (candidates, batch, vocab)
    mixture = 0.5 * (torch.softmax(mature, dim=-1)[None] + torch.softmax(premature, dim=-1))
    # 2. pointwise m * (log m - log p), with 0 where m == 0 (torch.kl_div's convention)
    m_log_m = torch.xlogy(mixture, mixture)
    # shape: (candidates, batch)
    kl_mature = (m_log_m - mixture * torch.log_softmax(mature, dim=-1)[None]).mean(-1)
    kl_premature = (m_log_m - mixture * torch.log_softmax(premature, dim=-1)).mean(-1)
    return 0.5 * (kl_mature + kl_premature)


def dola_select_premature(
    mature_logits: torch.Tensor, premature_logits: torch.Tensor, *, batch_mean: bool = False
) -> torch.Tensor:
    """DoLa's dynamic premature layer: the candidate farthest from the mature layer.

    ``c* = argmax_c D(p_L, p_c)`` with :func:`dola_divergence`; ties go to the first candidate.

    Args:
        mature_logits: `(batch, vocab)` final-layer logits.
        premature_logits: `(candidates, batch, vocab)`, in the order of
            :func:`dola_candidate_layers` (4.x: ``lm_head(h_j)``, no final norm; module docstring).
        batch_mean: Pick one candidate for the whole batch by the batch mean of ``D``, as 4.x does.
            Default: per row (rows of a batch then equal the rows decoded alone).

    Returns:
        `(batch,)` int64 indices into ``candidates`` (map to layers with the candidate list).
    """
    # shape: (candidates, batch)
    divergence = dola_divergence(mature_logits, premature_logits)
    if batch_mean:
        best = divergence.mean(-1).argmax()
        return best.expand(divergence.shape[1]).clone()
    return divergence.argmax(0)


def relative_top_filter(
    scores: torch.Tensor,
    baseline_scores: torch.Tensor,
    relative_top: float = DOLA_RELATIVE_TOP,
    filter_value: float = -math.inf,
    base_filter_value: float = -1e-3,
    min_tokens_to_keep: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DoLa's adaptive plausibility constraint (transformers 4.x ``_relative_top_filter``).

    Both inputs are log-softmaxed. A token is dropped when
    ``log p(v) < min(log max p + log(relative_top), log p_(k))`` with ``p = softmax(scores)`` and
    ``p_(k)`` its ``min_tokens_to_keep``-th largest probability (ties at the threshold are kept);
    dropped tokens get ``filter_value`` in the scores and ``base_filter_value`` in the baseline.

    Args:
        scores: `(..., vocab)` mature logits; the threshold is computed on them.
        baseline_scores: `(..., vocab)` premature logits, same shape.
        relative_top: In ``[0, 1]``; ``0`` keeps every token. Default 0.1 (4.x and the DoLa repo).
        filter_value: Log-probability given to dropped tokens (4.x: ``-inf``).
        base_filter_value: Baseline value of dropped tokens (4.x: ``-1e-3``; it does not matter, the
            contrast is ``-inf`` there).
        min_tokens_to_keep: In ``[1, vocab]``.

    Returns:
        ``(log_p, log_q)``: the filtered log-probabilities, float32, shape of ``scores``.
    """
    check_float_tensor("scores", scores, None, "(..., vocab)")
    check_float_tensor("baseline_scores", baseline_scores, None, "(..., vocab)")
    if scores.dim() < 1 or baseline_scores.shape != scores.shape:
        raise ValueError(
            f"`baseline_scores` has to have the shape of `scores` {tuple(scores.shape)},"
            f" got {tuple(baseline_scores.shape)}"
        )
    check_number("relative_top", relative_top, 0.0, 1.0)
    check_int("min_tokens_to_keep", min_tokens_to_keep, 1, scores.shape[-1])
    # 1. normalise both
    # shape: (..., vocab)
    log_p = torch.log_softmax(scores.float(), dim=-1)
    log_q = torch.log_softmax(baseline_scores.float(), dim=-1)
    # 2. threshold: relative to the max, lowered to keep at least min_tokens_to_keep tokens
    log_relative_top = math.log(relative_top) if relative_top > 0 else -math.inf
    # shape: (...,)
    kth_largest = torch.topk(log_p, min_tokens_to_keep, dim=-1).values[..., -1]
    threshold = torch.minimum(kth_largest, log_p.amax(-1) + log_relative_top)
    # 3. drop the implausible tokens
    drop = log_p < threshold.unsqueeze(-1)
    return log_p.masked_fill(drop, filter_value), log_q.masked_fill(drop, base_filter_value)


def dola_contrast(
    mature_logits: torch.Tensor,
    premature_logits: torch.Tensor,
    relative_top: float = DOLA_RELATIVE_TOP,
    *,
    min_tokens_to_keep: int = 1,
    batch_mean: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DoLa step: pick the premature layer, then contrast log-probabilities.

    ``z(v) = log p_L(v) - log p_c*(v)`` on the plausible tokens of :func:`relative_top_filter`,
    ``-inf`` elsewhere; ``c*`` from :func:`dola_select_premature`. Decode from ``z`` after the
    repetition penalty (:data:`DOLA_REPETITION_PENALTY`), greedily or by sampling, as 4.x does.

    Args:
        mature_logits: `(batch, vocab)` the model's logits.
        premature_logits: `(candidates, batch, vocab)` (one candidate = static DoLa).
        relative_top: See :func:`relative_top_filter`; default 0.1.
        min_tokens_to_keep: See :func:`relative_top_filter`.
        batch_mean: See :func:`dola_select_premature`.

    Returns:
        ``(logits, index)``: `(batch, vocab)` float32 contrast, and `(batch,)` int64 chosen candidate.
    """
    # 1. premature layer per row (or one for the batch)
    index = dola_select_premature(mature_logits, premature_logits, batch_mean=batch_mean)
    rows = torch.arange(mature_logits.shape[0], device=index.device)
    # shape: (batch, vocab)
    chosen = premature_logits[index, rows]
    # 2. plausibility filter, then the contrast
    log_p, log_q = relative_top_filter(mature_logits, chosen, relative_top, min_tokens_to_keep=min_tokens_to_keep)
    return log_p - log_q, index
