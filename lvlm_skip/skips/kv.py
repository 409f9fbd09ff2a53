"""The K/V a skipped layer leaves in the cache (one policy for static and online mode).

A layer skipped at a position is the identity there; if it runs again at a later position, its
attention reads the K/V of every earlier position, so the skipped position must have some. They
are the K/V projections of the layer's input at that position, i.e. of the hidden state that
entered the skipped span (CALM's propagation). ``kv_fill="project"`` computes just those two
projections (:func:`~lvlm_skip.anatomy.project_kv_into_cache_`, about 1/6 of a Llama layer);
``"recompute"`` runs the whole layer and drops its output (same K/V, no saving).
"""

from __future__ import annotations

import torch

from ..anatomy import ModelAnatomy, project_kv_into_cache_


def write_skipped_kv(anatomy: ModelAnatomy, kv_fill: str, layer: int, forward, hidden: torch.Tensor, args, kwargs) -> None:
    """Write skipped ``layer``'s K/V for `(batch, seq, hidden)` ``hidden`` into the step's cache (if any).

    A cross-attention layer (Mllama) caches the image's K/V, not the text's: it is written by running the layer
    on the step that hands it ``cross_attention_states`` (the prompt), so a later step that runs the layer finds
    them, and nothing is written at the other steps.
    """
    cache = anatomy.layer_cache(kwargs)
    if cache is None:
        return
    if layer in anatomy.cross_attention_layers:
        if kwargs.get("cross_attention_states") is not None:
            forward(hidden, *args, **kwargs)
        return
    if kv_fill == "project":
        project_kv_into_cache_(anatomy.layers[layer - 1], hidden, anatomy.position_embeddings(kwargs), cache)
    else:
        forward(hidden, *args, **kwargs)


def keep_input_at_last_position(out: torch.Tensor, hidden: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``out`` with the last position of ``rows`` (`(batch,)` bool) replaced by the layer's input ``hidden``."""
    keep = rows.to(out.device)[:, None]
    last = torch.where(keep, hidden[:, -1], out[:, -1])
    return torch.cat([out[:, :-1], last[:, None]], dim=1)


class DeferredKV:
    """Online mode's skipped-position K/V, written only when the layer runs again (or the sequence ends).

    A layer that every row skips at a decoding step needs K/V at that position only if it runs at a
    later step. Online skip1 / skip3 usually skip the same span step after step, so the projections
    are kept aside (the span's input state and the step's rotary embedding, ``2 * hidden`` floats per
    position) and written in one batched projection just before the layer next runs, or when the
    sequence ends, so the cache that ``generate`` returns is complete. Positions are written in order:
    a layer's cache never has a gap when it runs. The layers whose caches give transformers the
    sequence length and the mask sizes are never deferred (:attr:`~lvlm_skip.anatomy.ModelAnatomy.mask_size_layers`).
    """

    def __init__(self, anatomy: ModelAnatomy):
        self.anatomy = anatomy
        self._pending: dict[int, list] = {}  # layer -> [(hidden (batch, 1, d), cos, sin, cache), ...]

    def defer(self, layer: int, hidden: torch.Tensor, kwargs) -> None:
        """Keep aside what ``layer``'s K/V at this step's positions need."""
        cos, sin = self.anatomy.position_embeddings(kwargs)
        self._pending.setdefault(layer, []).append((hidden, cos, sin, self.anatomy.layer_cache(kwargs)))

    def flush(self, layer: int) -> None:
        """Write ``layer``'s pending K/V, oldest position first, in one projection."""
        pending = self._pending.pop(layer, None)
        if not pending or pending[0][3] is None:
            return
        hidden = torch.cat([p[0] for p in pending], dim=1)  # shape: (batch, positions, hidden)
        cos = torch.cat([p[1] for p in pending], dim=-2)
        sin = torch.cat([p[2] for p in pending], dim=-2)
        project_kv_into_cache_(self.anatomy.layers[layer - 1], hidden, (cos, sin), pending[0][3])

    def flush_all(self) -> None:
        """Write every pending K/V (end of a sequence)."""
        for layer in sorted(self._pending):
            self.flush(layer)

    def drop(self) -> None:
        """Forget pending K/V (a new sequence starts with a new cache)."""
        self._pending.clear()
