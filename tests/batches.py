"""Token batches shared by the generation tests."""

from __future__ import annotations

import torch


def left_padded_batch() -> dict[str, torch.Tensor]:
    """Three prompts of lengths 7, 3 and 5, left-padded with token 0 to ``[3, 7]`` (ids and mask)."""
    ids = [[1, 5, 6, 7, 8, 9, 10], [1, 11, 12], [1, 20, 21, 22, 23]]
    width = max(map(len, ids))
    return {"input_ids": torch.tensor([[0] * (width - len(r)) + r for r in ids]),
            "attention_mask": torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in ids])}
