"""What every training stage gives the worker loop, and the pieces several stages share.

A stage is a small class (one per module) with four methods:

* ``prepare(model)`` -- before the engine wraps the model: add a value head, keep a reference;
* ``collate(batch, layout)`` -- a Ray Data batch to model inputs (padding-free rows by default);
* ``weight(inputs)`` -- how many units (target tokens, pairs, examples) the micro-batch holds;
* ``loss(model, inputs)`` -- :class:`Terms`: the loss summed over those units, and metrics.

The loop divides each micro-batch's summed loss by the units of the whole optimiser step over
all workers, so every unit weighs the same however the units fall into micro-batches and
workers, and it averages each metric by its own count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ...config import Config
from ..collate import Layout, rows_of

IGNORE_INDEX = -100

Metric = tuple[torch.Tensor | float, torch.Tensor | float]
"""(sum, count) of a metric over a micro-batch; the loop logs sum / count over the window."""


@dataclass
class Terms:
    """One micro-batch's loss (summed over its units) and its metrics as (sum, count) pairs."""

    loss: torch.Tensor
    metrics: dict[str, Metric] = field(default_factory=dict)


class Stage:
    """The causal-LM defaults: inputs as the data pipeline made them, weighed by target tokens."""

    name = "base"
    metrics: tuple[str, ...] = ()
    """The names of the metrics ``loss`` returns (every call returns all of them)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.engine: Any = None

    def prepare(self, model: Any, *, tokenizer: Any, device: Any) -> Any:
        """The model the engine wraps (called once, before wrapping)."""
        return model

    def bind(self, engine: Any) -> None:
        """Called once the engine has wrapped the model (its ``model`` and ``inner``)."""
        self.engine = engine

    def collate(self, batch: dict[str, Any], layout: Layout) -> dict[str, Any]:
        return layout(rows_of(batch))

    def weight(self, inputs: dict[str, Any]) -> int:
        """Target tokens: every label but the first of each row and the ignored ones."""
        return int((inputs["labels"][:, 1:] != IGNORE_INDEX).sum())

    def loss(self, model: Any, inputs: dict[str, Any]) -> Terms:  # pragma: no cover - abstract
        raise NotImplementedError


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-probability of each next label ([batch, tokens - 1]; 0 where the label is ignored)."""
    shift = logits[:, :-1, :].float()
    target = labels[:, 1:]
    nll = F.cross_entropy(
        shift.reshape(-1, shift.size(-1)), target.reshape(-1),
        ignore_index=IGNORE_INDEX, reduction="none",
    )  # fmt: skip
    return -nll.view(target.shape)


@dataclass
class SequenceLogps:
    """Per-sequence log-probabilities of a padding-free row of several sequences."""

    sums: torch.Tensor
    """Summed log-probability of each sequence's target tokens, [sequences]."""
    counts: torch.Tensor
    """Target tokens of each sequence, [sequences]."""
    tokens: torch.Tensor
    """Each next-label log-probability of the row, [tokens - 1] (0 where ignored)."""
    segment: torch.Tensor
    """The sequence each of those labels belongs to, [tokens - 1]."""
    targets: torch.Tensor
    """Whether each of those labels is a target, [tokens - 1]."""

    @property
    def means(self) -> torch.Tensor:
        """Length-averaged log-probabilities (IPO, ORPO, SimPO)."""
        return self.sums / self.counts.clamp(min=1)


def sequence_logps(logits: torch.Tensor, inputs: dict[str, Any]) -> SequenceLogps:
    """Split a padding-free row's token log-probabilities into its sequences.

    Args:
        logits: [1, tokens, vocab] for the row.
        inputs: the row's collated inputs: ``labels`` [1, tokens] and ``cu_seq_lens_q``.
    """
    labels = inputs["labels"]
    if labels.size(0) != 1:
        raise ValueError("sequence log-probs need one padding-free row (batch size 1)")
    tokens = token_logps(logits, labels)[0]
    targets = labels[0, 1:] != IGNORE_INDEX
    bounds = inputs["cu_seq_lens_q"].to(labels.device).long()
    positions = torch.arange(1, labels.size(1), device=labels.device)
    segment = torch.searchsorted(bounds[1:], positions, right=True)
    n = bounds.numel() - 1
    sums = torch.zeros(n, device=tokens.device, dtype=tokens.dtype)
    sums = sums.index_add(0, segment, tokens * targets)
    counts = torch.zeros(n, device=tokens.device).index_add(0, segment, targets.float())
    return SequenceLogps(sums, counts, tokens, segment, targets)


def paired_rows(batch: dict[str, Any], first: str, second: str) -> list[dict[str, Any]]:
    """The ``first`` sequences of a batch, then its ``second`` ones, as (input_ids, labels) rows.

    ``first="chosen"`` reads ``chosen_input_ids`` and ``chosen_labels``; the prefix ``""`` reads
    ``input_ids`` and ``labels``.
    """
    rows = rows_of(batch)
    out = []
    for prefix in (first, second):
        p = f"{prefix}_" if prefix else ""
        out += [{"input_ids": r[f"{p}input_ids"], "labels": r[f"{p}labels"]} for r in rows]
    return out


def mean_metric(values: torch.Tensor) -> Metric:
    """A metric averaged over the given values (detached)."""
    values = values.detach().float()
    return values.sum(), float(values.numel())


def length_desensitized(logps: SequenceLogps, pairs: int, alpha: float) -> torch.Tensor:
    """LD-DPO: each pair's tokens past the shorter answer's length weigh ``alpha``.

    Returns the weighted sum of each sequence (chosen sequences first, then rejected).
    """
    counts = logps.counts
    shared = torch.minimum(counts[:pairs], counts[pairs:]).repeat(2)
    before = torch.cumsum(counts, 0) - counts  # targets of the earlier sequences
    rank = torch.cumsum(logps.targets.float(), 0) - 1 - before[logps.segment]
    weight = torch.where(rank < shared[logps.segment], 1.0, alpha) * logps.targets
    n = counts.numel()
    sums = torch.zeros(n, device=counts.device, dtype=logps.tokens.dtype)
    return sums.index_add(0, logps.segment, logps.tokens * weight)
