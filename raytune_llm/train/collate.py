"""Turn Ray Data batches into model inputs: padding-free, packed, or padded rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..data.attention import packed_batch, padded_batch, padding_free_batch, takes_varlen


def rows_of(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A Ray Data numpy batch (dict of columns) as a list of row dicts."""
    keys = list(batch)
    n = len(batch[keys[0]]) if keys else 0
    return [{k: batch[k][i] for k in keys} for i in range(n)]


@dataclass(frozen=True)
class Layout:
    """How a worker lays rows out for its model; calling it collates rows into model kwargs.

    Without packing the examples are concatenated into one padding-free row whose attention
    stays inside each example, so no compute goes to padding. Neat-packed rows keep their
    examples apart too: with a varlen attention (flash, ``sdpa_varlen``) their examples become
    one padding-free row, otherwise padded rows with a block-diagonal mask. Plainly packed rows
    are causal across the whole row (LLaMA-Factory's ``packing``).
    """

    packed: bool
    neat: bool
    pad_token_id: int
    attn_implementation: str
    dtype: torch.dtype
    device: torch.device

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not self.packed or (self.neat and takes_varlen(self.attn_implementation)):
            return self.padding_free(rows)
        if self.neat:
            out = packed_batch(rows, self.pad_token_id, dtype=self.dtype)
        else:
            out = padded_batch(rows, self.pad_token_id)
        return self._to_device(out)

    def padding_free(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """All rows as one padding-free row (what the preference stages always use)."""
        out = padding_free_batch(rows, attn_implementation=self.attn_implementation,
                                 dtype=self.dtype)  # fmt: skip
        return self._to_device(out)

    def _to_device(self, out: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in out.items()}
