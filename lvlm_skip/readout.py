"""Early-exit readout: the next-token distribution of every decoder layer (paper eq. 2).

``logits_j = lm_head(final_norm(h_j))`` for layer outputs ``j = 1..L`` (and the embeddings ``j = 0``
on request), followed by what the model itself does to its head's logits: Cohere's ``logit_scale``
(AyaVision) and Gemma's final soft-cap ``cap * tanh(z / cap)`` (PaliGemma), read from the model's
``forward`` (:meth:`~lvlm_skip.anatomy.ModelAnatomy.unembed`). The last one equals the model's own logits.

Two readouts:

* ``"normed"`` (default, faithful): the final norm is applied to every intermediate state, as the
  model applies it to the last one. transformers 5.x already returns the last hidden state after
  the norm, so it is not normed twice.
* ``"raw"``: ``lm_head(h_j)`` on the un-normed intermediate states, as the authors' released code
  does. Only for reproducing their figures: the scale of un-normed states makes these
  distributions much flatter or sharper than the model's.

A readout is a :class:`Lens` (as in tuned-lens): it maps layer ``j``'s un-normed residual state to
the input of the LM head, ``logits_j = lm_head(lens(h_j, j))``. :class:`NormedLens` and
:class:`RawLens` are the two above, named ``"normed"`` and ``"raw"`` wherever a readout is a string
(:class:`~lvlm_skip.config.SkipConfig`, the command line); any object with the protocol's ``name``
and ``head_input`` (e.g. a trained affine translator per layer) can be passed instead to the
functions here, :func:`lvlm_skip.trace` and the online window readout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from .anatomy import ModelAnatomy
from .config import READOUTS, ReadoutName


@runtime_checkable
class Lens(Protocol):
    """Maps the un-normed residual states of some layers to the LM head's input."""

    name: str
    """How reports and file names call it (``"normed"``, ``"raw"``)."""

    def head_input(self, anatomy: ModelAnatomy, states: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
        """`(n, ..., hidden)` un-normed outputs of the 1-based ``layers`` (length ``n``, 0 = the embeddings)
        -> `(n, ..., hidden)`, what ``lm_head`` reads."""
        ...


class NormedLens:
    """``final_norm(h_j)`` for every layer: the model's own readout applied early (the faithful one)."""

    name = "normed"

    def head_input(self, anatomy: ModelAnatomy, states: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
        return anatomy.final_norm(states)


class RawLens:
    """``h_j`` as is for ``j < L`` (the authors' code); layer ``L`` normed, as the model reads it out."""

    name = "raw"

    def head_input(self, anatomy: ModelAnatomy, states: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
        last = [i for i, j in enumerate(layers) if j == anatomy.num_layers]
        if not last:
            return states
        out = states.clone()
        out[last] = anatomy.final_norm(states[last])
        return out


#: The named lenses (``READOUTS`` of :mod:`lvlm_skip.config`).
LENSES: dict[str, Lens] = {"normed": NormedLens(), "raw": RawLens()}


def get_lens(readout: ReadoutName | Lens) -> Lens:
    """The lens named ``readout``, or ``readout`` itself when it is a :class:`Lens`; one-line ``ValueError`` otherwise."""
    if isinstance(readout, str):
        if readout not in LENSES:
            raise ValueError(f"`readout` (={readout!r}) has to be one of {READOUTS} or a Lens")
        return LENSES[readout]
    if isinstance(readout, Lens):
        return readout
    raise ValueError(f"`readout` (={readout!r}) has to be one of {READOUTS} or a Lens")


def check_readout(readout: ReadoutName | Lens) -> str | Lens:
    """``readout`` unchanged, after checking it names a lens or is one."""
    get_lens(readout)
    return readout


def lens_logits(anatomy: ModelAnatomy, lens: Lens, states: torch.Tensor, layers: Sequence[int], *,
                vocab_rows: torch.Tensor | None = None) -> torch.Tensor:
    """`(n, ..., vocab or k)` logits of `(n, ..., hidden)` un-normed ``states`` of ``layers`` through ``lens``."""
    return readout_logits(anatomy, lens.head_input(anatomy, states, layers), normed=False, vocab_rows=vocab_rows)


def readout_logits(
    anatomy: ModelAnatomy,
    hidden: torch.Tensor,
    *,
    normed: bool = True,
    vocab_rows: torch.Tensor | None = None,
    model_transform: bool = True,
) -> torch.Tensor:
    """LM-head logits of un-normed hidden states.

    Args:
        anatomy: The model's anatomy.
        hidden: `(..., hidden)` residual-stream states (a layer's output, not yet normed).
        normed: Apply the final norm first (the faithful readout).
        vocab_rows: Optional `(k,)` token ids: compute only those logits (a candidate vocabulary).
        model_transform: Then the model's own logit scale / soft-cap (:meth:`ModelAnatomy.unembed`).

    Returns:
        `(..., vocab)`, or `(..., k)` with ``vocab_rows``, in the head's dtype.
    """
    x = anatomy.final_norm(hidden) if normed else hidden
    return anatomy.unembed(x, vocab_rows, model_transform=model_transform)  # the head, then the model's own logit scale / soft-cap


def layer_logits_from_hidden_states(
    anatomy: ModelAnatomy,
    hidden_states: tuple[torch.Tensor, ...] | list[torch.Tensor],
    *,
    readout: ReadoutName | Lens = "normed",
    include_embeddings: bool = False,
) -> torch.Tensor:
    """Readout of every layer from transformers' ``output_hidden_states``.

    Args:
        anatomy: The model's anatomy.
        hidden_states: ``L + 1`` tensors `(batch, seq, hidden)` as transformers returns them: index 0
            the embeddings, index ``j`` layer ``j``'s output, the last one already after the final norm.
        readout: ``"normed"``, ``"raw"`` or a :class:`Lens` (module docstring).
        include_embeddings: Also read out ``j = 0``.

    Returns:
        `(layers, batch, seq, vocab)` with ``layers = L + 1`` (``j = 0..L``) when
        ``include_embeddings``, else ``L`` (``j = 1..L``).
    """
    lens = get_lens(readout)
    if len(hidden_states) != anatomy.num_layers + 1:
        raise ValueError(f"expected {anatomy.num_layers + 1} hidden states (embeddings + L layers), got {len(hidden_states)}")
    first = 0 if include_embeddings else 1
    last = anatomy.num_layers
    # 1. intermediate states through the lens; the last one is already normed
    rows = [lens_logits(anatomy, lens, hidden_states[j][None], [j])[0] for j in range(first, last)]
    # 2. the last entry is post-norm in transformers 5.x: the head alone gives the model's logits
    rows.append(anatomy.unembed(hidden_states[last]))
    return torch.stack(rows)  # shape: (layers, batch, seq, vocab)


def stack_layer_logprobs(
    anatomy: ModelAnatomy,
    layer_states: torch.Tensor,
    *,
    readout: ReadoutName | Lens = "normed",
    vocab_rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`stack_layer_logits` as float32 log-probabilities over the vocabulary (or ``vocab_rows``)."""
    logits = stack_layer_logits(anatomy, layer_states, readout=readout, vocab_rows=vocab_rows)
    return torch.log_softmax(logits.float(), dim=-1)


def stack_layer_logits(
    anatomy: ModelAnatomy,
    layer_states: torch.Tensor,
    *,
    readout: ReadoutName | Lens = "normed",
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
            Or any :class:`Lens`.
        vocab_rows: Optional `(k,)` candidate token ids.

    Returns:
        `(layers, ..., vocab or k)` logits.
    """
    num_layers = anatomy.num_layers
    layers = range(num_layers - layer_states.shape[0] + 1, num_layers + 1)
    return lens_logits(anatomy, get_lens(readout), layer_states, layers, vocab_rows=vocab_rows)
