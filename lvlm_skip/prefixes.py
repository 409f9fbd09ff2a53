"""Rows of a batch that ask about the same image share its prefill: the layout of a batch whose prefixes run once.

POPE asks six questions per image and AMBER's discriminative task about fourteen, so a batch of questions sorted
by image holds several rows with the same image. A row's prompt is ``prefix + suffix``: the **prefix** runs through
the row's last image placeholder (the template's head and the image's features, hundreds of positions), the
**suffix** is the rest (the question and the template's tail, a few tokens). Rows whose prefixes have the same
tokens and the same pixels have the same prefix K/V (a causal decoder's K/V at a position depend on the positions
up to it only), so each distinct prefix runs once and its cache is copied to the rows of its group; ``generate``
then prefills only the suffixes. The prefix forward is the model's own (:func:`lvlm_skip.anatomy.shared_prefix_cache`).

Layout of the batch, `(batch, P + S)` with ``P`` the longest prefix and ``S`` the longest suffix::

    row b = [pad] * (P - p_b) + prefix_b + [pad] * (S - s_b) + suffix_b

with attention mask 0 on the pads. transformers' positions are ``cumsum(mask) - 1``, so every row's positions are
those of its unpadded prompt, as with left padding, and the first ``P`` columns are the cached ones.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SharedPrefixBatch:
    """A batch laid out for shared prefixes (see the module docstring).

    Attributes:
        input_ids: `(batch, P + S)` token ids, pads where ``attention_mask`` is 0.
        attention_mask: `(batch, P + S)`, 1 on real tokens.
        prefix_ids: `(G, P)` the distinct prefixes, left-padded.
        prefix_mask: `(G, P)`.
        prefix_rows: `(G,)` for each prefix, a batch row that has it (its image is the prefix's image).
        groups: `(batch,)` each row's prefix, an index into ``prefix_ids``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prefix_ids: torch.Tensor
    prefix_mask: torch.Tensor
    prefix_rows: torch.Tensor
    groups: torch.Tensor

    @property
    def prefix_length(self) -> int:
        """``P``: the cached columns."""
        return self.prefix_ids.shape[1]

    @property
    def prefix_positions(self) -> torch.Tensor:
        """`(G, P)` the prefixes' positions, as transformers derives them from the mask (pads at 0)."""
        return (self.prefix_mask.long().cumsum(-1) - 1).clamp(min=0)


def share_prefixes(input_ids: torch.Tensor, attention_mask: torch.Tensor, images: torch.Tensor,
                   placeholder_ids: Collection[int], pad_id: int) -> SharedPrefixBatch | None:
    """The shared-prefix layout of a left-padded batch, or ``None`` when no two rows share a prefix.

    Args:
        input_ids: `(batch, T)` left-padded prompts, image placeholders expanded (the processor's output).
        attention_mask: `(batch, T)`.
        images: `(batch, ...)` each row's pixel values; rows share a prefix only if these are equal.
        placeholder_ids: The model's image placeholder token ids.
        pad_id: The id written on pads.

    A row without a placeholder, or whose last placeholder is its last token, has no prefix to share: ``None``.
    """
    rows = [ids[mask.bool()] for ids, mask in zip(input_ids, attention_mask)]
    placeholders = torch.tensor(sorted(placeholder_ids), dtype=input_ids.dtype, device=input_ids.device)
    cuts = []
    for row in rows:
        where = torch.isin(row, placeholders).nonzero()
        cut = int(where.max()) + 1 if len(where) else len(row)
        if cut >= len(row):  # no placeholder, or no suffix after the last one
            return None
        cuts.append(cut)
    representatives: list[int] = []
    groups: list[int] = []
    for b, (row, cut) in enumerate(zip(rows, cuts)):
        for g, r in enumerate(representatives):
            if cuts[r] == cut and torch.equal(rows[r][:cut], row[:cut]) and torch.equal(images[r], images[b]):
                groups.append(g)
                break
        else:
            representatives.append(b)
            groups.append(len(representatives) - 1)
    if len(representatives) == len(rows):
        return None
    P = max(cuts)
    S = max(len(row) - cut for row, cut in zip(rows, cuts))
    ids = input_ids.new_full((len(rows), P + S), pad_id)
    mask = torch.zeros_like(ids, dtype=attention_mask.dtype)
    for b, (row, cut) in enumerate(zip(rows, cuts)):
        suffix = len(row) - cut
        ids[b, P - cut:P], ids[b, P + S - suffix:] = row[:cut], row[cut:]
        mask[b, P - cut:P], mask[b, P + S - suffix:] = 1, 1
    kept = torch.tensor(representatives, device=input_ids.device)
    return SharedPrefixBatch(input_ids=ids, attention_mask=mask, prefix_ids=ids[kept, :P], prefix_mask=mask[kept, :P],
                             prefix_rows=kept, groups=torch.tensor(groups, device=input_ids.device))
