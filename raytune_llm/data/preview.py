"""What the data pipeline makes of a config: rendered examples with the trained-on tokens marked,
and the counts that matter before training (examples, tokens, share trained on, examples cut by
cutoff_len, packing efficiency)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

IGNORE_INDEX = -100
TRAINED_OPEN, TRAINED_CLOSE = "\u27e6", "\u27e7"  # ⟦ trained text ⟧ when colour is off
GREEN, RESET = "\033[32m", "\033[0m"


@dataclass
class DataStats:
    """Counts over a whole tokenised dataset (one pass, computed by Ray Data tasks)."""

    examples: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    cut_examples: int = 0
    cut_tokens: int = 0
    rows: int | None = None  # packed rows, when packing is on
    cutoff_len: int = 0

    @property
    def trained_share(self) -> float:
        return self.trained_tokens / self.tokens if self.tokens else 0.0

    @property
    def packing_efficiency(self) -> float | None:
        if not self.rows:
            return None
        return self.tokens / (self.rows * self.cutoff_len)

    def lines(self) -> list[str]:
        out = [
            f"examples          {self.examples:,}",
            f"tokens            {self.tokens:,} (mean {self.tokens / max(self.examples, 1):.1f})",
            f"trained on        {self.trained_tokens:,} tokens ({self.trained_share:.1%})",
            f"cut by cutoff_len {self.cut_examples:,} examples, {self.cut_tokens:,} tokens "
            f"(cutoff_len {self.cutoff_len})",
        ]
        if self.rows is not None:
            efficiency = self.packing_efficiency or 0.0
            out.append(f"packed rows       {self.rows:,} (packing efficiency {efficiency:.1%})")
        return out


def _partial_counts(batch: dict[str, Any]) -> dict[str, list[int]]:
    """One row of partial sums per batch (summed by Ray Data afterwards)."""
    ids_col = "input_ids" if "input_ids" in batch else "chosen_input_ids"
    labels_col = "labels" if "labels" in batch else "chosen_labels"
    lengths = [len(ids) for ids in batch[ids_col]]
    trained = [int(np.count_nonzero(np.asarray(lab) != IGNORE_INDEX)) for lab in batch[labels_col]]
    cut = [int(c) for c in batch.get("cut_tokens", [0] * len(lengths))]
    return {
        "examples": [len(lengths)],
        "tokens": [sum(lengths)],
        "trained_tokens": [sum(trained)],
        "cut_examples": [sum(1 for c in cut if c > 0)],
        "cut_tokens": [sum(cut)],
    }


def dataset_stats(ds: Any, cutoff_len: int, packed: Any = None) -> DataStats:
    """Count a tokenised dataset (and the rows of its packed form, when given)."""
    sums = ds.map_batches(_partial_counts, batch_format="numpy").sum(
        ["examples", "tokens", "trained_tokens", "cut_examples", "cut_tokens"]
    )
    counts = {
        k.removeprefix("sum(").removesuffix(")"): int(v or 0) for k, v in (sums or {}).items()
    }
    stats = DataStats(cutoff_len=cutoff_len, **counts)
    if packed is not None:
        stats.rows = packed.count()
    return stats


def render_example(row: dict[str, Any], tokenizer: Any, *, color: bool) -> str:
    """The example's text, its trained-on spans in green (or between ⟦ ⟧ without colour)."""
    ids = [int(i) for i in row["input_ids"]]
    labels = [int(i) for i in row["labels"]]
    out, span, trained = [], [], False
    for token, label in zip(ids, labels, strict=True):
        now = label != IGNORE_INDEX
        if now != trained and span:
            out.append(_mark(tokenizer.decode(span), trained, color))
            span = []
        span.append(token)
        trained = now
    if span:
        out.append(_mark(tokenizer.decode(span), trained, color))
    return "".join(out)


def _mark(text: str, trained: bool, color: bool) -> str:
    if not trained:
        return text
    return f"{GREEN}{text}{RESET}" if color else f"{TRAINED_OPEN}{text}{TRAINED_CLOSE}"
