"""Variable-length (varlen) attention for padding-free batches on SDPA: no dense block mask.

A padding-free batch is one row of concatenated examples (see `raytune_llm.data.attention`).
With plain ``sdpa`` the row needs a [T, T] block-diagonal mask, and the kernel then computes
the scores of every pair of tokens in the row -- T² for a row of four 207-token examples is
about four times the pairs that matter, and a masked call cannot skip the causal upper half.
FlashAttention's varlen kernel solves this on GPUs; it does not exist on CPUs.

``sdpa_varlen`` (registered with transformers' ``AttentionInterface`` and
``AttentionMaskInterface`` by :func:`register`) reads the batch's ``cu_seq_lens_q`` -- the
cumulative example lengths the collate already passes for flash attention -- and runs SDPA with
``is_causal=True`` on each example's slice of the row, so each example costs its own L² / 2 and
no mask is built or read. Without those kwargs (padded batches, generation, a KV cache), or
where a per-example causal window would be wrong (a sliding window shorter than an example), it
is exactly transformers' ``sdpa`` with the mask transformers builds for sdpa.

The per-example loop depends on the batch's lengths, which ``torch.compile`` would turn into
guards and a recompilation per batch: the function is excluded from compilation and always runs
eagerly, between the compiled parts of a layer (see `raytune_llm.model.compile`).
"""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

VARLEN_SDPA = "sdpa_varlen"


def _segment_lengths(kwargs: dict[str, Any], length: int) -> list[int] | None:
    """The example lengths of a padding-free row, or None when the call is not one."""
    cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    if cu_q is None or cu_k is None or not torch.equal(cu_q, cu_k):
        return None
    bounds = cu_q.tolist()
    if bounds[0] != 0 or bounds[-1] != length:
        return None
    window = kwargs.get("sliding_window")
    lens = [b - a for a, b in pairwise(bounds)]
    if window is not None and max(lens, default=0) > window:
        return None
    return lens


@torch.compiler.disable
def sdpa_varlen_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention over [batch, heads, seq, dim] tensors: per example for a padding-free row.

    Returns ``(output [batch, seq, heads, dim], None)``, as every transformers attention does.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    seq = query.shape[2]
    lens = None
    if query.shape[0] == 1 and key.shape[2] == seq and getattr(module, "is_causal", True):
        lens = _segment_lengths(kwargs, seq)
    if lens is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    outputs = []
    for q, k, v in zip(
        query.split(lens, dim=2), key.split(lens, dim=2), value.split(lens, dim=2), strict=True
    ):
        out, _ = sdpa_attention_forward(
            module, q, k, v, None, dropout=dropout, scaling=scaling, is_causal=True
        )
        outputs.append(out)
    return torch.cat(outputs, dim=1), None


def register() -> str:
    """Make ``sdpa_varlen`` a valid ``attn_implementation`` (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(VARLEN_SDPA, sdpa_varlen_attention)
    AttentionMaskInterface.register(VARLEN_SDPA, sdpa_mask)
    return VARLEN_SDPA


def use_varlen_sdpa(model: PreTrainedModel) -> str:
    """Switch a model that runs ``sdpa`` to ``sdpa_varlen``; returns its attention implementation.

    Other implementations (flash attention, which has its own varlen kernel; eager; flex) are
    left as they are.
    """
    current = model.config._attn_implementation
    if current != "sdpa":
        return current
    model.set_attn_implementation(register())
    return VARLEN_SDPA
