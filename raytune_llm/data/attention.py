"""Batch layouts that keep packed examples apart: block-diagonal masks and padding-free batches.

Three collators, all returning kwargs for ``model(**batch)``:

* `padded_batch` -- the classic right-padded batch with a 2-D padding mask (the baseline).
* `packed_batch` -- rows from `raytune_llm.data.packing.pack_examples(neat=True)`, padded to the
  longest row, with a 4-D block-diagonal causal mask and per-example position ids.
* `padding_free_batch` -- every example concatenated into ONE row (batch dim 1), no padding at all,
  with per-example position ids, the 4-D block mask (sdpa / eager / flex) or the flash-attention
  varlen kwargs (flash attention on GPU).

What transformers 5.24 does with these (read in ``masking_utils.py``,
``modeling_flash_attention_utils.py`` and ``integrations/{sdpa,flash}_attention.py``):

* A 4-D ``attention_mask`` tensor of shape [batch, 1, q, k] is used as-is (``create_causal_mask``
  returns an already 4-D mask untouched). It must be an *additive float* mask in the model's compute
  dtype (0 = attend, dtype min = blocked): eager attention adds it to the scores, so a boolean mask
  there silently adds 0/1 and leaks; sdpa accepts float or bool.
* Position ids alone do NOT keep examples apart under the default ``use_cache=True``: transformers
  infers a packed-sequence mask from restarting position ids only when ``attention_mask is None``
  and there is no cache, and the model builds a ``DynamicCache`` whenever ``config.use_cache`` is
  on. Hence the explicit block mask (the DESIGN.md trap; the tests measure it).
* Flash attention (``flash_attention_2``/``_3``, kernels-hub flash) takes the varlen kwargs
  ``cu_seq_lens_q``, ``cu_seq_lens_k`` (int32 cumulative lengths [0, n1, n1+n2, ...]) and
  ``max_length_q``, ``max_length_k`` (Python ints) -- the names of ``FlashAttentionKwargs`` and of
  ``DataCollatorWithFlattening(return_flash_attn_kwargs=True)`` -- with ``attention_mask=None``
  and batch size 1; it then calls ``flash_attn_varlen_func`` without any dense mask. A 4-D mask
  must not be given to flash attention (it is read as a 2-D padding mask). sdpa and eager ignore
  the varlen kwargs.
* ``sdpa_varlen`` (`raytune_llm.model.varlen`, what training uses on CPUs and wherever flash
  attention is missing) reads the same varlen kwargs and runs SDPA causally on each example's
  slice, so it gets no dense mask either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

IGNORE_INDEX = -100

Segment = tuple[list[int], list[int]]  # (input_ids, labels) of one example


def takes_varlen(attn_implementation: str | None) -> bool:
    """Whether an ``attn_implementation`` keeps examples apart from the varlen kwargs alone.

    Flash-attention flavours (their varlen kernel) and ``sdpa_varlen``
    (`raytune_llm.model.varlen`: SDPA per example) do; they need no dense mask.
    """
    return attn_implementation is not None and (
        "flash" in attn_implementation or attn_implementation.endswith("varlen")
    )


def block_causal_mask(
    seq_lens_per_row: Sequence[Sequence[int]],
    total_len: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A 4-D additive mask [batch, 1, total_len, total_len], causal within each example only.

    Token q may attend token k iff both belong to the same example and k <= q. Positions after
    ``sum(seq_lens)`` are padding: no token attends them; each padding query attends only itself,
    so every softmax row has one finite entry and no NaN can appear in any dtype.

    Args:
        seq_lens_per_row: For each row, the lengths of its examples in order.
        total_len: The (padded) row length; at least the longest row's total.
        dtype: The model's compute dtype (the mask holds 0 and ``torch.finfo(dtype).min``).
        device: Where to build the mask.

    Returns:
        The mask, ready to pass as ``attention_mask`` to a sdpa / eager / flex model.
    """
    segments = torch.zeros(len(seq_lens_per_row), total_len, dtype=torch.long)  # 0 = padding
    for row, lens in enumerate(seq_lens_per_row):
        lens_t = torch.as_tensor(list(lens), dtype=torch.long)
        used = int(lens_t.sum())
        if used > total_len or bool((lens_t < 1).any()):
            raise ValueError(f"row {row}: seq_lens {list(lens)} must be >= 1 and fit {total_len}")
        segments[row, :used] = torch.repeat_interleave(torch.arange(1, len(lens_t) + 1), lens_t)
    segments = segments.to(device)
    causal = torch.ones(total_len, total_len, dtype=torch.bool, device=device).tril()
    same = segments[:, :, None] == segments[:, None, :]
    allowed = same & causal & (segments[:, None, :] > 0)
    pad_self = (segments[:, :, None] == 0) & torch.eye(total_len, dtype=torch.bool, device=device)
    allowed |= pad_self
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def _ints(value: Any) -> list[int]:
    return value.tolist() if hasattr(value, "tolist") else list(value)


def _segments(example: Mapping[str, Any]) -> list[Segment]:
    """Split an example (or a packed row with "seq_lens") into per-example (ids, labels)."""
    ids = _ints(example["input_ids"])
    labels = _ints(example["labels"]) if "labels" in example else list(ids)
    if len(labels) != len(ids):
        raise ValueError(f"{len(ids)} input_ids but {len(labels)} labels; they must be aligned")
    lens = _ints(example["seq_lens"]) if "seq_lens" in example else [len(ids)]
    if sum(lens) != len(ids) or min(lens, default=0) < 1:
        raise ValueError(f"seq_lens {lens} must be positive and sum to {len(ids)} tokens")
    out, start = [], 0
    for n in lens:
        out.append((ids[start : start + n], labels[start : start + n]))
        start += n
    return out


def _flatten(segments: Sequence[Segment]) -> tuple[list[int], list[int], list[int]]:
    """Concatenate segments: ids, labels (-100 at each example's first token), position ids."""
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for seg_ids, seg_labels in segments:
        ids.extend(seg_ids)
        labels.append(IGNORE_INDEX)  # the previous example's last token must not predict this one
        labels.extend(seg_labels[1:])
        positions.extend(range(len(seg_ids)))
    return ids, labels, positions


def padding_free_batch(
    examples: Sequence[Mapping[str, Any]],
    *,
    attn_implementation: str = "sdpa",
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor | int]:
    """Concatenate variable-length examples into one row (batch dim 1) with no padding.

    Args:
        examples: Dicts with "input_ids" and optionally "labels" (default: input_ids); a packed
            row's "seq_lens" splits it into its examples.
        attn_implementation: The model's attention implementation. Flash flavours and
            ``sdpa_varlen`` get no ``attention_mask`` (the varlen kwargs keep examples apart);
            others get the 4-D mask.
        dtype: The model's compute dtype, for the 4-D mask.

    Returns:
        ``input_ids``, ``labels`` (-100 at each example's first token), ``position_ids``
        (restarting at 0), all [1, total]; ``cu_seq_lens_q`` / ``cu_seq_lens_k`` (int32
        [n_examples + 1]), ``max_length_q`` / ``max_length_k`` (int); and, unless the
        implementation `takes_varlen`, ``attention_mask`` [1, 1, total, total] from
        `block_causal_mask`.
    """
    segments = [seg for example in examples for seg in _segments(example)]
    if not segments:
        raise ValueError("padding_free_batch needs at least one non-empty example")
    ids, labels, positions = _flatten(segments)
    lens = [len(seg_ids) for seg_ids, _ in segments]
    cu_seq_lens = torch.tensor([0, *lens], dtype=torch.int32).cumsum(0, dtype=torch.int32)
    batch: dict[str, torch.Tensor | int] = {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "labels": torch.tensor([labels], dtype=torch.long),
        "position_ids": torch.tensor([positions], dtype=torch.long),
        "cu_seq_lens_q": cu_seq_lens,
        "cu_seq_lens_k": cu_seq_lens,
        "max_length_q": max(lens),
        "max_length_k": max(lens),
    }
    if not takes_varlen(attn_implementation):
        batch["attention_mask"] = block_causal_mask([lens], len(ids), dtype=dtype)
    return batch


def _right_pad(rows: Sequence[Sequence[int]], value: int, length: int) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out


def padded_batch(
    examples: Sequence[Mapping[str, Any]], pad_token_id: int
) -> dict[str, torch.Tensor]:
    """A classic right-padded batch: one example per row, 2-D padding mask (the baseline).

    Args:
        examples: Dicts with "input_ids" and optionally "labels" (default: input_ids).
        pad_token_id: The token id written into padding positions.

    Returns:
        ``input_ids`` and ``labels`` (-100 on padding) [batch, longest], ``attention_mask``
        [batch, longest] (1 = token, 0 = padding).
    """
    ids = [_ints(e["input_ids"]) for e in examples]
    labels = [
        _ints(e["labels"]) if "labels" in e else list(i) for e, i in zip(examples, ids, strict=True)
    ]
    length = max((len(i) for i in ids), default=0)
    return {
        "input_ids": _right_pad(ids, pad_token_id, length),
        "labels": _right_pad(labels, IGNORE_INDEX, length),
        "attention_mask": _right_pad([[1] * len(i) for i in ids], 0, length),
    }


def packed_batch(
    rows: Sequence[Mapping[str, Any]],
    pad_token_id: int,
    *,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Right-pad neat-packed rows into a batch whose mask keeps each row's examples apart.

    Args:
        rows: Packed rows with "input_ids", "labels" and "seq_lens" (a row without "seq_lens" is
            one example), e.g. from ``pack_examples(..., neat=True)``.
        pad_token_id: The token id written into padding positions.
        dtype: The model's compute dtype, for the 4-D mask.

    Returns:
        ``input_ids``, ``labels`` (-100 at each example's first token and on padding),
        ``position_ids`` (restarting per example, 0 on padding), all [batch, longest], and
        ``attention_mask`` [batch, 1, longest, longest] from `block_causal_mask`.
    """
    segments = [_segments(row) for row in rows]
    flat = [_flatten(segs) for segs in segments]
    seq_lens = [[len(ids) for ids, _ in segs] for segs in segments]
    length = max((len(ids) for ids, _, _ in flat), default=0)
    return {
        "input_ids": _right_pad([f[0] for f in flat], pad_token_id, length),
        "labels": _right_pad([f[1] for f in flat], IGNORE_INDEX, length),
        "position_ids": _right_pad([f[2] for f in flat], 0, length),
        "attention_mask": block_causal_mask(seq_lens, length, dtype=dtype),
    }
