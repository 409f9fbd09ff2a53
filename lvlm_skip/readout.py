"""Early-exit readout: the next-token distribution of every decoder layer (paper eq. 2).

``logits_j = lm_head(final_norm(h_j))`` for layer outputs ``j = 1..L`` (and the embeddings ``j = 0``
on request). The last one equals the model's own logits.

Two readouts:

* ``"normed"`` (default, faithful): the final norm is applied to every intermediate state, as the
  model applies it to the last one. transformers 5.x already returns the last hidden state after
  the norm, so it is not normed twice.
* ``"raw"``: ``lm_head(h_j)`` on the un-normed intermediate states, as the authors' released code
  does. Only for reproducing their figures: the scale of un-normed states makes these
  distributions much flatter or sharper than the model's.
"""

from __future__ import annotations

import torch

from .anatomy import ModelAnatomy

READOUTS = ("normed", "raw")


def check_readout(readout: str) -> str:
    if readout not in READOUTS:
        raise ValueError(f"`readout` (={readout!r}) has to be one of {READOUTS}")
    return readout


def readout_logits(
    anatomy: ModelAnatomy,
    hidden: torch.Tensor,
    *,
    normed: bool = True,
    vocab_rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """LM-head logits of un-normed hidden states.

    Args:
        anatomy: The model's anatomy.
        hidden: `(..., hidden)` residual-stream states (a layer's output, not yet normed).
        normed: Apply the final norm first (the faithful readout).
        vocab_rows: Optional `(k,)` token ids: compute only those logits (a candidate vocabulary).

    Returns:
        `(..., vocab)`, or `(..., k)` with ``vocab_rows``, in the head's dtype.
    """
    x = anatomy.final_norm(hidden) if normed else hidden
    head = anatomy.lm_head
    if vocab_rows is None:
        return head(x)
    bias = None if head.bias is None else head.bias[vocab_rows]
    return torch.nn.functional.linear(x, head.weight[vocab_rows], bias)


def layer_logits_from_hidden_states(
    anatomy: ModelAnatomy,
    hidden_states: tuple[torch.Tensor, ...] | list[torch.Tensor],
    *,
    readout: str = "normed",
    include_embeddings: bool = False,
) -> torch.Tensor:
    """Readout of every layer from transformers' ``output_hidden_states``.

    Args:
        anatomy: The model's anatomy.
        hidden_states: ``L + 1`` tensors `(batch, seq, hidden)` as transformers returns them: index 0
            the embeddings, index ``j`` layer ``j``'s output, the last one already after the final norm.
        readout: ``"normed"`` or ``"raw"`` (module docstring).
        include_embeddings: Also read out ``j = 0``.

    Returns:
        `(layers, batch, seq, vocab)` with ``layers = L + 1`` (``j = 0..L``) when
        ``include_embeddings``, else ``L`` (``j = 1..L``).
    """
    check_readout(readout)
    if len(hidden_states) != anatomy.num_layers + 1:
        raise ValueError(f"expected {anatomy.num_layers + 1} hidden states (embeddings + L layers), got {len(hidden_states)}")
    first = 0 if include_embeddings else 1
    last = anatomy.num_layers
    # 1. intermediate states get the norm (normed readout); the last one already has it
    rows = [readout_logits(anatomy, hidden_states[j], normed=readout == "normed") for j in range(first, last)]
    # 2. the last entry is post-norm in transformers 5.x: the head alone gives the model's logits
    rows.append(anatomy.lm_head(hidden_states[last]))
    return torch.stack(rows)  # shape: (layers, batch, seq, vocab)


def stack_layer_logprobs(
    anatomy: ModelAnatomy,
    layer_states: torch.Tensor,
    *,
    readout: str = "normed",
    vocab_rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`stack_layer_logits` as float32 log-probabilities over the vocabulary (or ``vocab_rows``)."""
    logits = stack_layer_logits(anatomy, layer_states, readout=readout, vocab_rows=vocab_rows)
    return torch.log_softmax(logits.float(), dim=-1)


def stack_layer_logits(
    anatomy: ModelAnatomy,
    layer_states: torch.Tensor,
    *,
    readout: str = "normed",
    vocab_rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Readout of a stack of un-normed residual states captured by hooks, the last row being layer ``L``.

    Args:
        anatomy: The model's anatomy.
        layer_states: `(layers, ..., hidden)` un-normed outputs of consecutive layers ending with the
            last layer ``L`` (e.g. ``j = 0..L``), none of them normed yet.
        readout: ``"normed"``: norm then head for every row. ``"raw"``: head on the raw rows, except the
            last row which is normed, because that is what the model (and transformers'
            ``output_hidden_states``) gives for layer ``L``; so both readouts agree at ``j = L``.
        vocab_rows: Optional `(k,)` candidate token ids.

    Returns:
        `(layers, ..., vocab or k)` logits.
    """
    check_readout(readout)
    if readout == "normed":
        return readout_logits(anatomy, layer_states, normed=True, vocab_rows=vocab_rows)
    raw = readout_logits(anatomy, layer_states[:-1], normed=False, vocab_rows=vocab_rows)
    last = readout_logits(anatomy, layer_states[-1:], normed=True, vocab_rows=vocab_rows)
    return torch.cat([raw, last])
