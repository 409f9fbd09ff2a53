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
    """Write skipped ``layer``'s K/V for `(batch, seq, hidden)` ``hidden`` into the step's cache (if any)."""
    cache = kwargs.get("past_key_values")
    if cache is None:
        return
    if kv_fill == "project":
        project_kv_into_cache_(anatomy.layers[layer - 1], hidden, kwargs["position_embeddings"], cache)
    else:
        forward(hidden, *args, **kwargs)


def keep_input_at_last_position(out: torch.Tensor, hidden: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``out`` with the last position of ``rows`` (`(batch,)` bool) replaced by the layer's input ``hidden``."""
    keep = rows.to(out.device)[:, None]
    last = torch.where(keep, hidden[:, -1], out[:, -1])
    return torch.cat([out[:, :-1], last[:, None]], dim=1)
