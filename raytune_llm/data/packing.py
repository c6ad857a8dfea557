"""Pack tokenised examples into rows of at most `cutoff_len` tokens (LLaMA-Factory `packing`).

Inputs are tokenised examples ``{"input_ids": list[int], "labels": list[int]}`` (labels -100 where
masked, as long as input_ids, each example at most `cutoff_len` tokens). Every packed row is::

    {"input_ids": [...], "labels": [...], "position_ids": [...], "seq_lens": [n_1, n_2, ...]}

* ``seq_lens`` lists the lengths of the row's examples in order (they sum to the row's length).
  It is what a padding-free collator (``cu_seq_lens``) and a block-diagonal mask are built from
  (see `raytune_llm.data.attention`).
* ``position_ids`` restart at 0 for each example when ``neat=True`` (LLaMA-Factory's
  ``neat_packing``: examples must then be kept apart by the attention layout) and run 0..len-1
  across the whole row when ``neat=False`` (plain ``packing``: attention crosses examples).
* Rows are not padded: padding to a common length is the collator's job.

Label convention: ``labels[i]`` belongs to ``input_ids[i]`` (unshifted, as Hugging Face models
expect: they shift internally, so the logits at token t are scored against ``labels[t + 1]``). In a
packed row the last token of example k would therefore be scored against the first label of example
k + 1 -- a target across the boundary (for pretraining text, where every label is a token, it would
teach the model to guess the next document). So **the label of each example's first token is set to
-100** in every packed row, neat or not. This loses nothing: when an example runs alone, its first
label is never a target either, so the loss of a packed row equals the loss of its examples run
separately. transformers' `DataCollatorWithFlattening` does the same.

Strategies: ``"knapsack"`` is first-fit-decreasing bin packing -- it gives the same rows as
LLaMA-Factory's ``greedy_knapsack`` (fill one row at a time with the longest example that still
fits); ``"greedy"`` is next-fit in input order (keeps the order, usually more rows).

This module imports numpy only (no torch): it runs inside Ray Data tasks.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

IGNORE_INDEX = -100
STRATEGIES = ("knapsack", "greedy")
DEFAULT_WINDOW = 2048

Example = tuple[list[int], list[int]]  # (input_ids, labels)
Row = dict[str, list[int]]


def _as_int_list(value: Any) -> list[int]:
    """A Python list of ints from a list, numpy array or pyarrow/pandas list value."""
    if isinstance(value, list):
        return value
    if hasattr(value, "as_py"):  # a pyarrow scalar (batch_format="pyarrow")
        return value.as_py()
    return np.asarray(value).tolist()


def _check_args(cutoff_len: int, strategy: str) -> None:
    if not isinstance(cutoff_len, (int, np.integer)) or cutoff_len < 1:
        raise ValueError(f"cutoff_len must be a positive integer, got {cutoff_len!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown packing strategy {strategy!r}; choose one of {list(STRATEGIES)}")


def _example(input_ids: Any, labels: Any, cutoff_len: int, index: int) -> Example:
    ids, labs = _as_int_list(input_ids), _as_int_list(labels)
    if not isinstance(ids, list) or not isinstance(labs, list):
        raise ValueError(
            f"example {index}: input_ids and labels must be lists of ints, got {input_ids!r} "
            "(pack_stream takes an iterable of batches, not of single examples)"
        )
    if len(ids) != len(labs):
        raise ValueError(
            f"example {index}: {len(ids)} input_ids but {len(labs)} labels; they must be aligned"
        )
    if not 1 <= len(ids) <= cutoff_len:
        raise ValueError(
            f"example {index} has {len(ids)} tokens; packing needs 1..cutoff_len={cutoff_len} "
            "(truncate to cutoff_len when tokenising, and drop empty examples)"
        )
    return ids, labs


def _examples(examples: Iterable[Mapping[str, Any]], cutoff_len: int) -> list[Example]:
    return [_example(e["input_ids"], e["labels"], cutoff_len, i) for i, e in enumerate(examples)]


def knapsack_bins(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First-fit-decreasing bin packing: indices of `lengths` grouped into bins of `capacity`.

    Each bin is filled in turn with the longest remaining item that still fits (ties: the earlier
    item first), which is first-fit-decreasing and LLaMA-Factory's ``greedy_knapsack``. Indices in
    a bin are returned in ascending (input) order.
    """
    # Ascending by length; among equal lengths the earliest index sits last, so it is taken first.
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], -i))
    keys = [lengths[i] for i in order]
    bins: list[list[int]] = []
    while order:
        room, current = capacity, []
        while (pos := bisect.bisect_right(keys, room)) > 0:
            room -= keys.pop(pos - 1)
            current.append(order.pop(pos - 1))
        if not current:  # only items longer than capacity remain: callers validate lengths first
            raise ValueError(f"an item of length {keys[0]} exceeds the capacity {capacity}")
        bins.append(sorted(current))
    return bins


def sequential_bins(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Next-fit bin packing in input order: a new bin starts when the next item does not fit."""
    bins: list[list[int]] = []
    current: list[int] = []
    room = capacity
    for i, length in enumerate(lengths):
        if length > room and current:
            bins.append(current)
            current, room = [], capacity
        current.append(i)
        room -= length
    if current:
        bins.append(current)
    return bins


_BINNERS = {"knapsack": knapsack_bins, "greedy": sequential_bins}


def _build_row(examples: Sequence[Example], neat: bool) -> Row:
    input_ids: list[int] = []
    labels: list[int] = []
    position_ids: list[int] = []
    seq_lens: list[int] = []
    for ids, labs in examples:
        n = len(ids)
        input_ids.extend(ids)
        labels.append(IGNORE_INDEX)  # no target across the boundary (see the module docstring)
        labels.extend(labs[1:])
        position_ids.extend(range(n) if neat else range(len(position_ids), len(position_ids) + n))
        seq_lens.append(n)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": position_ids,
        "seq_lens": seq_lens,
    }


def _pack(examples: Sequence[Example], cutoff_len: int, neat: bool, strategy: str) -> list[Row]:
    bins = _BINNERS[strategy]([len(ids) for ids, _ in examples], cutoff_len)
    return [_build_row([examples[i] for i in b], neat) for b in bins]


def pack_examples(
    examples: Iterable[Mapping[str, Any]],
    cutoff_len: int,
    *,
    neat: bool = False,
    strategy: str = "knapsack",
) -> list[Row]:
    """Pack tokenised examples into rows of at most `cutoff_len` tokens.

    Args:
        examples: Dicts with "input_ids" and "labels" (lists or arrays of ints, same length,
            1..cutoff_len tokens each).
        cutoff_len: The most tokens in one row.
        neat: Restart position_ids at 0 for each example (LLaMA-Factory ``neat_packing``);
            otherwise they run continuously across the row.
        strategy: "knapsack" (first-fit-decreasing, as LLaMA-Factory) or "greedy" (next-fit in
            input order).

    Returns:
        Rows {"input_ids", "labels", "position_ids", "seq_lens"}; each example's first label is
        -100 (see the module docstring).

    Raises:
        ValueError: For a bad cutoff_len or strategy, or an empty, misaligned or too long example.
    """
    _check_args(cutoff_len, strategy)
    return _pack(_examples(examples, cutoff_len), cutoff_len, neat, strategy)


def _batch_examples(batch: Any, cutoff_len: int, offset: int = 0) -> list[Example]:
    """Examples of a batch: columnar (dict, DataFrame, pyarrow Table) or a list of example dicts."""
    columnar = hasattr(batch, "column_names") or (hasattr(batch, "keys") and "input_ids" in batch)
    if columnar:
        columns = zip(batch["input_ids"], batch["labels"], strict=True)
        return [
            _example(ids, labs, cutoff_len, offset + i) for i, (ids, labs) in enumerate(columns)
        ]
    return [
        _example(e["input_ids"], e["labels"], cutoff_len, offset + i) for i, e in enumerate(batch)
    ]


def pack_batch(
    batch: Mapping[str, Any],
    cutoff_len: int,
    neat: bool = False,
    *,
    strategy: str = "knapsack",
) -> dict[str, list[list[int]]]:
    """Pack one columnar Ray Data batch; the function to give `Dataset.map_batches`.

    With ``batch_format="numpy"`` Ray 2.60 hands a ``list<int64>`` column over as an object array
    of int64 arrays (a 2-D array if every list in the block has the same length); pandas and plain
    dicts of lists work too. The columns returned are lists of Python int lists, which Ray stores
    as ``list<int64>`` again (lists of numpy arrays would become tensor extension columns whose
    type changes with the block). Columns other than input_ids/labels are dropped: packing merges
    examples. Packing happens inside the batch only, so ``batch_size`` is the packing window::

        ds.map_batches(pack_batch, fn_kwargs={"cutoff_len": 1024, "neat": True},
                       batch_format="numpy", batch_size=2048)

    Args:
        batch: Columns "input_ids" and "labels", one entry per example.
        cutoff_len: The most tokens in one row.
        neat: Restart position_ids for each example (see `pack_examples`).
        strategy: "knapsack" or "greedy".

    Returns:
        Columns "input_ids", "labels", "position_ids", "seq_lens", one entry per packed row.
    """
    _check_args(cutoff_len, strategy)
    rows = _pack(_batch_examples(batch, cutoff_len), cutoff_len, neat, strategy)
    return {
        key: [row[key] for row in rows]
        for key in ("input_ids", "labels", "position_ids", "seq_lens")
    }


def _carry_index(rows: Sequence[Row], cutoff_len: int, strategy: str) -> int | None:
    """The row whose examples go on to the next window: the least filled (greedy: the open last)."""
    fills = [len(row["input_ids"]) for row in rows]
    index = len(rows) - 1 if strategy == "greedy" else min(range(len(rows)), key=fills.__getitem__)
    return None if fills[index] == cutoff_len else index


def pack_stream(
    batches: Iterable[Any],
    cutoff_len: int,
    *,
    neat: bool = False,
    window: int = DEFAULT_WINDOW,
    strategy: str = "knapsack",
) -> Iterator[Row]:
    """Pack a stream of batches in bounded windows, yielding rows as soon as a window is packed.

    Examples are buffered until `window` new ones have arrived; the buffer is then packed and every
    row is yielded except one that is not full -- the least filled one (for "greedy", the open last
    row) -- whose examples are carried into the next window, so underfull rows do not pile up at
    window edges. At the end of the stream everything left is packed and yielded. Memory stays
    bounded by `window` examples plus one row's worth of carried examples. For "greedy" the result
    equals `pack_examples` over the whole stream; for "knapsack" it equals it whenever the stream
    holds fewer than `window` examples.

    Args:
        batches: An iterable of batches, each a columnar batch (e.g. from
            ``Dataset.iter_batches``) or a sequence of example dicts.
        cutoff_len: The most tokens in one row.
        neat: Restart position_ids for each example (see `pack_examples`).
        window: New examples gathered before packing (>= 1).
        strategy: "knapsack" or "greedy".

    Yields:
        Packed rows, in the format of `pack_examples`.
    """
    _check_args(cutoff_len, strategy)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window!r}")
    buffer: list[Example] = []
    fresh = seen = 0
    for batch in batches:
        for example in _batch_examples(batch, cutoff_len, offset=seen):
            buffer.append(example)
            fresh += 1
            seen += 1
            if fresh < window:
                continue
            rows = _pack(buffer, cutoff_len, neat, strategy)
            carry = _carry_index(rows, cutoff_len, strategy)
            yield from (row for i, row in enumerate(rows) if i != carry)
            buffer = [] if carry is None else _split_row(rows[carry])
            fresh = 0
    if buffer:
        yield from _pack(buffer, cutoff_len, neat, strategy)


def _split_row(row: Row) -> list[Example]:
    """The examples of a packed row (first labels as packed: -100, which repacking keeps)."""
    examples, start = [], 0
    for n in row["seq_lens"]:
        examples.append((row["input_ids"][start : start + n], row["labels"][start : start + n]))
        start += n
    return examples


def packing_stats(rows: Iterable[Mapping[str, Sequence[int]]], cutoff_len: int) -> dict[str, Any]:
    """Counts of packed rows: examples, tokens, trained tokens, rows and packing efficiency.

    Args:
        rows: Packed rows (or `chunk_pretrain` blocks).
        cutoff_len: The row capacity the rows were packed to.

    Returns:
        {"examples", "tokens", "trained_tokens" (labels != -100), "rows", "efficiency"
        (tokens / (rows * cutoff_len), 0.0 without rows)}.
    """
    examples = tokens = trained = count = 0
    for row in rows:
        count += 1
        examples += len(row["seq_lens"])
        tokens += len(row["input_ids"])
        trained += int(np.count_nonzero(np.asarray(row["labels"]) != IGNORE_INDEX))
    efficiency = tokens / (count * cutoff_len) if count else 0.0
    return {
        "examples": examples,
        "tokens": tokens,
        "trained_tokens": trained,
        "rows": count,
        "efficiency": efficiency,
    }


def _block(input_ids: list[int], labels: list[int], bos_token_id: int | None) -> Row:
    if bos_token_id is not None:
        input_ids = [bos_token_id, *input_ids[1:]]
    n = len(input_ids)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": list(range(n)),
        "seq_lens": [n],
    }


def chunk_pretrain(
    examples: Iterable[Mapping[str, Any]],
    cutoff_len: int,
    *,
    keep_remainder: bool = False,
    bos_token_id: int | None = None,
) -> Iterator[Row]:
    """Concatenate pretraining texts and cut the stream into blocks of exactly `cutoff_len`.

    As LLaMA-Factory's ``stage: pt`` with ``packing``: texts (each already ending in eos) are
    joined and cut into blocks; attention runs across the documents inside a block, as in GPT-style
    pretraining. The remainder of each block is carried into the next one across the whole stream
    (LLaMA-Factory drops it at the end of every `datasets.map` batch); the final short block is
    dropped, as LLaMA-Factory does, unless `keep_remainder`. So the tokens lost are exactly
    ``total % cutoff_len``, all at the end. Labels are carried along unchanged ("labels" defaults to
    input_ids when absent); a block's first label is never a target (the shift drops it).

    Args:
        examples: Dicts with "input_ids" (and optionally "labels"), any length.
        cutoff_len: The block length.
        keep_remainder: Also yield the final block shorter than `cutoff_len`.
        bos_token_id: If set, each block's first token is replaced by it, as LLaMA-Factory does for
            tokenizers with ``add_bos_token`` (that token is then lost from the text).

    Yields:
        Rows {"input_ids", "labels", "position_ids" (0..n-1), "seq_lens" ([n])}.
    """
    _check_args(cutoff_len, "knapsack")
    ids_buf: list[int] = []
    labels_buf: list[int] = []
    for index, example in enumerate(examples):
        ids = _as_int_list(example["input_ids"])
        labels = _as_int_list(example["labels"]) if "labels" in example else list(ids)
        if len(ids) != len(labels):
            raise ValueError(f"example {index}: {len(ids)} input_ids but {len(labels)} labels")
        ids_buf.extend(ids)
        labels_buf.extend(labels)
        start = 0
        while len(ids_buf) - start >= cutoff_len:
            end = start + cutoff_len
            yield _block(ids_buf[start:end], labels_buf[start:end], bos_token_id)
            start = end
        del ids_buf[:start], labels_buf[:start]
    if keep_remainder and ids_buf:
        yield _block(ids_buf, labels_buf, bos_token_id)
