"""Per-step math of the decoding-time peers: DoLa, DeCo and VCD. Pure tensor functions, torch only.

Each function takes the next-token logits of one decoding step (the last position) and returns the
logits to decode from; wiring them into ``generate`` lives elsewhere. Everything is computed in
float32 whatever the input dtype; returned logits are float32, layer indices int64, and
:func:`diffusion_noise` returns the input's dtype. No input is modified.

Checked once against the released functions themselves, run outside this repository on random
float32 inputs: :func:`dola_contrast` equals transformers 4.46.3's ``_dola_select_contrast`` bit for bit
(with ``batch_mean=True`` also for batches), :func:`deco_correct` equals the step of zjunlp/Deco's
``deco_greedy_search``, and :func:`diffusion_noise` equals VCD's ``add_diffusion_noise`` under the same
global seed. The tests re-derive each recipe with plain torch.

Layer numbering (the package's, see ``readout.py``): layer ``j`` is the output ``h_j`` of
``decoder.layers[j - 1]``, ``j = 0`` the embeddings, ``j = L`` the last layer. transformers'
``output_hidden_states[i]`` is our ``h_i``, so transformers' and the released codes' layer numbers
are ours unchanged.

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

VCD (Leng et al., CVPR 2024, "Visual Contrastive Decoding")
------------------------------------------------------------
Reproduces the released code (DAMO-NLP-SG/VCD, commit d6568ff, ``vcd_utils/vcd_sample.py``
("version 2" cutoff) and ``vcd_utils/vcd_add_noise.py``). Per step (:func:`vcd_contrast`), with logits
``z`` on the image and ``z'`` on the noised image (second forward pass, own KV cache):
``(1 + alpha) z - alpha z'`` for the tokens with ``z(v) >= log(beta) + max z`` (equivalently
``p(v) >= beta max p``, on the *clean* distribution), ``-inf`` for the others. The noised image
(:func:`diffusion_noise`) is the forward diffusion ``q(x_t | x_0)`` at ``t = noise_step`` of a
1000-step schedule ``beta_t = sigmoid(linspace(-6, 6, 1000))_t * (5e-3 - 1e-5) + 1e-5``:
``sqrt(abar_t) x + sqrt(1 - abar_t) eps``, ``abar_t = prod_{s <= t} (1 - beta_s)``, applied to the
already normalised pixel tensor (``abar_500 = 0.7448``). Defaults: ``alpha = 1``, ``beta = 0.1``,
``noise_step = 500`` (``experiments/eval/object_hallucination_vqa_llava.py``; its POPE script
``llava1.5_pope.bash`` passes ``cd_beta = 0.2``; ``vcd_sample.py`` falls back to ``alpha = 0.5``).
Their sampling then applies the usual processors and warpers (temperature, top-p) to this output.
Differences: the noise comes from an optional ``torch.Generator``, drawn in float32 for the whole
tensor at once (theirs: global RNG, one image at a time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

DOLA_RELATIVE_TOP = 0.1
DOLA_REPETITION_PENALTY = 1.2
DECO_ALPHA = 0.6
DECO_TOP_P = 0.9
DECO_TOP_K = 20
DECO_WINDOW_LLAVA_7B = (20, 28)  # inclusive, for L = 32
VCD_ALPHA = 1.0
VCD_BETA = 0.1
VCD_NOISE_STEP = 500
VCD_DIFFUSION_STEPS = 1000


# ------------------------------------------------------------------------------------------ checks


def _check_float_tensor(name: str, tensor: torch.Tensor, ndim: int | None, layout: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"`{name}` has to be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"`{name}` has to be a floating-point tensor, got {tensor.dtype}")
    if ndim is not None and tensor.dim() != ndim:
        raise ValueError(f"`{name}` has to have shape {layout}, got {tuple(tensor.shape)}")


def _check_stack(name: str, stack: torch.Tensor, rows: torch.Tensor, layout: str) -> None:
    """``stack`` `(n, batch, vocab)` with ``n >= 1`` and the ``(batch, vocab)`` of ``rows``."""
    _check_float_tensor(name, stack, 3, layout)
    if stack.shape[0] < 1 or stack.shape[1:] != rows.shape:
        raise ValueError(
            f"`{name}` has to have shape {layout} with (batch, vocab) = {tuple(rows.shape)}, got {tuple(stack.shape)}"
        )


def _check_number(name: str, value: float, low: float, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        bound = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise ValueError(f"`{name}` (={value!r}) has to be a number {bound}")


def _check_int(name: str, value: int, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"`{name}` (={value!r}) has to be an integer {bound}")


# -------------------------------------------------------------------------------------------- DoLa


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
    _check_int("num_layers", num_layers, 1)
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
    _check_float_tensor("mature_logits", mature_logits, 2, "(batch, vocab)")
    _check_stack("premature_logits", premature_logits, mature_logits, "(candidates, batch, vocab)")
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
    _check_float_tensor("scores", scores, None, "(..., vocab)")
    _check_float_tensor("baseline_scores", baseline_scores, None, "(..., vocab)")
    if scores.dim() < 1 or baseline_scores.shape != scores.shape:
        raise ValueError(
            f"`baseline_scores` has to have the shape of `scores` {tuple(scores.shape)},"
            f" got {tuple(baseline_scores.shape)}"
        )
    _check_number("relative_top", relative_top, 0.0, 1.0)
    _check_int("min_tokens_to_keep", min_tokens_to_keep, 1, scores.shape[-1])
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


# -------------------------------------------------------------------------------------------- DeCo


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
    _check_int("num_layers", num_layers, 2)
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
    _check_float_tensor("final_logits", final_logits, 2, "(batch, vocab)")
    _check_number("top_p", top_p, 0.0, 1.0)
    _check_int("top_k", top_k, 1)
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
    _check_float_tensor("layer_logits", layer_logits, 3, "(window, batch, vocab)")
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
    _check_number("alpha", alpha, 0.0)
    candidates = deco_candidates(final_logits, top_p, top_k)
    _check_stack("layer_logits", layer_logits, final_logits, "(window, batch, vocab)")
    anchor, weight = deco_select_anchor(layer_logits, candidates)
    rows = torch.arange(final_logits.shape[0], device=anchor.device)
    # shape: (batch, vocab)
    anchor_logits = layer_logits[anchor, rows].float()
    # alpha * w in float64 then rounded, as the code's Python-float product (alpha * max_prob.item())
    scale = (alpha * weight.double()).float()
    corrected = final_logits.float() + scale[:, None] * anchor_logits
    return corrected.masked_fill(~candidates, -math.inf), anchor


# --------------------------------------------------------------------------------------------- VCD


def vcd_contrast(
    logits: torch.Tensor, noised_logits: torch.Tensor, alpha: float = VCD_ALPHA, beta: float = VCD_BETA
) -> torch.Tensor:
    """One VCD step: contrast the clean and noised-image logits inside the plausible set.

    ``z(v) = (1 + alpha) z(v) - alpha z'(v)`` where ``z(v) >= log(beta) + max_u z(u)`` (i.e.
    ``p(v) >= beta max p`` on the clean distribution), ``-inf`` elsewhere.

    Args:
        logits: `(..., vocab)` logits ``z`` on the original image.
        noised_logits: `(..., vocab)` logits ``z'`` on the noised image, same shape.
        alpha: ``>= 0``; default 1 (released eval scripts). ``0`` returns ``z`` on the plausible set.
        beta: In ``[0, 1]``; default 0.1. ``0`` keeps every token.

    Returns:
        Float32, the shape of ``logits``.
    """
    _check_float_tensor("logits", logits, None, "(..., vocab)")
    _check_float_tensor("noised_logits", noised_logits, None, "(..., vocab)")
    if logits.dim() < 1 or noised_logits.shape != logits.shape:
        raise ValueError(
            f"`noised_logits` has to have the shape of `logits` {tuple(logits.shape)}, got {tuple(noised_logits.shape)}"
        )
    _check_number("alpha", alpha, 0.0)
    _check_number("beta", beta, 0.0, 1.0)
    clean = logits.float()
    # 1. the cutoff, in logit space of the clean distribution (log beta taken in float32 as they do)
    # shape: (..., 1)
    log_beta = torch.log(torch.tensor(float(beta), dtype=torch.float32, device=clean.device))
    cutoff = log_beta + clean.amax(-1, keepdim=True)
    # 2. the contrast, implausible tokens removed
    # shape: (..., vocab)
    contrast = (1 + alpha) * clean - alpha * noised_logits.float()
    return contrast.masked_fill(clean < cutoff, -math.inf)


def _alpha_bar(noise_step: int) -> torch.Tensor:
    """0-dim float32 ``abar_t``, computed as ``vcd_add_noise.py`` does (float32 linspace, cumprod)."""
    _check_int("noise_step", noise_step, 0, VCD_DIFFUSION_STEPS - 1)
    betas = torch.sigmoid(torch.linspace(-6.0, 6.0, VCD_DIFFUSION_STEPS)) * (0.5e-2 - 1e-5) + 1e-5
    return torch.cumprod(1 - betas, dim=0)[noise_step]


def diffusion_alpha_bar(noise_step: int = VCD_NOISE_STEP) -> float:
    """``abar_t = prod_{s <= t} (1 - beta_s)`` of VCD's schedule, in float32 as they compute it.

    ``beta_s = sigmoid(linspace(-6, 6, 1000))_s * (5e-3 - 1e-5) + 1e-5``; ``abar_0 = 0.99997766``,
    ``abar_500 = 0.7447987``, ``abar_999 = 0.0812492``.

    Args:
        noise_step: ``t`` in ``[0, 999]``; default 500.
    """
    return float(_alpha_bar(noise_step))


def diffusion_noise(
    pixel_values: torch.Tensor, noise_step: int = VCD_NOISE_STEP, generator: torch.Generator | None = None
) -> torch.Tensor:
    """VCD's distorted image: forward diffusion of the normalised pixels to step ``noise_step``.

    ``x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps``, ``eps ~ N(0, I)`` (:func:`diffusion_alpha_bar`;
    at ``t = 500``: ``0.8630 x + 0.5052 eps``). Applied to the tensor the image processor returns
    (already normalised), as ``vcd_add_noise.py`` does.

    Args:
        pixel_values: Any shape, e.g. `(batch, channels, height, width)`; floating point.
        noise_step: ``t`` in ``[0, 999]``; default 500.
        generator: Source of ``eps`` (on the device of ``pixel_values``), drawn in float32 with the
            shape of ``pixel_values``; ``None`` uses torch's global RNG.

    Returns:
        The noised tensor, dtype and shape of ``pixel_values``.
    """
    _check_float_tensor("pixel_values", pixel_values, None, "(...)")
    alpha_bar = _alpha_bar(noise_step).to(pixel_values.device)
    # shape: like pixel_values
    noise = torch.randn(pixel_values.shape, generator=generator, dtype=torch.float32, device=pixel_values.device)
    noised = torch.sqrt(alpha_bar) * pixel_values.float() + torch.sqrt(1 - alpha_bar) * noise
    return noised.to(pixel_values.dtype)
