"""Turn Ray Data batches into model inputs: padding-free, packed, or padded rows."""

from __future__ import annotations

from typing import Any

import torch

from ..data.attention import packed_batch, padded_batch, padding_free_batch, takes_varlen


def rows_of(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A Ray Data numpy batch (dict of columns) as a list of row dicts."""
    keys = list(batch)
    n = len(batch[keys[0]]) if keys else 0
    return [{k: batch[k][i] for k in keys} for i in range(n)]


def collate(
    batch: dict[str, Any],
    *,
    packed: bool,
    neat: bool,
    pad_token_id: int,
    attn_implementation: str,
    dtype: torch.dtype,
    device: torch.device,
) -> dict[str, Any]:
    """Model kwargs (with labels) for one micro-batch.

    Without packing the examples are concatenated into one padding-free row whose attention
    stays inside each example, so no compute goes to padding. Neat-packed rows keep their
    examples apart too: with a varlen attention (flash, ``sdpa_varlen``) their examples become
    one padding-free row, otherwise padded rows with a block-diagonal mask. Plainly packed rows
    are causal across the whole row (LLaMA-Factory's ``packing``).
    """
    rows = rows_of(batch)
    if not packed or (neat and takes_varlen(attn_implementation)):
        out = padding_free_batch(rows, attn_implementation=attn_implementation, dtype=dtype)
    elif neat:
        out = packed_batch(rows, pad_token_id, dtype=dtype)
    else:
        out = padded_batch(rows, pad_token_id)
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in out.items()}
