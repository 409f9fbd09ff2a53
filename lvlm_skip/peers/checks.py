"""Argument checks shared by the peers' tensor functions: one-line ``TypeError`` / ``ValueError``."""

from __future__ import annotations

import torch


def check_float_tensor(name: str, tensor: torch.Tensor, ndim: int | None, layout: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"`{name}` has to be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"`{name}` has to be a floating-point tensor, got {tensor.dtype}")
    if ndim is not None and tensor.dim() != ndim:
        raise ValueError(f"`{name}` has to have shape {layout}, got {tuple(tensor.shape)}")


def check_stack(name: str, stack: torch.Tensor, rows: torch.Tensor, layout: str) -> None:
    """``stack`` `(n, batch, vocab)` with ``n >= 1`` and the ``(batch, vocab)`` of ``rows``."""
    check_float_tensor(name, stack, 3, layout)
    if stack.shape[0] < 1 or stack.shape[1:] != rows.shape:
        raise ValueError(
            f"`{name}` has to have shape {layout} with (batch, vocab) = {tuple(rows.shape)}, got {tuple(stack.shape)}"
        )
