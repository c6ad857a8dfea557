"""Stage rm: a reward model, the causal LM with a scalar value head, trained on pairs.

Each sequence's score is the head's value at its last token; the pairwise loss is
``-logσ(score(chosen) - score(rejected))`` per pair (LLaMA-Factory and TRL's RewardTrainer).
Metrics: ``accuracy`` (share of pairs whose chosen answer scores higher), ``margin`` and the
mean scores. The head is saved beside the adapter or model as ``value_head.safetensors``.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F

from ...model.value_head import ValueHeadLM, last_token_values
from ..collate import Layout
from .base import Stage, Terms, mean_metric, paired_rows


class RewardModel(Stage):
    name = "rm"
    metrics = ("accuracy", "margin", "scores/chosen", "scores/rejected")

    def prepare(self, model: Any, *, tokenizer: Any, device: Any) -> Any:
        return ValueHeadLM(model).to(device)

    def collate(self, batch: dict[str, Any], layout: Layout) -> dict[str, Any]:
        return layout.padding_free(paired_rows(batch, "chosen", "rejected"))

    def weight(self, inputs: dict[str, Any]) -> int:
        """Pairs."""
        return (inputs["cu_seq_lens_q"].numel() - 1) // 2

    def loss(self, model: Any, inputs: dict[str, Any]) -> Terms:
        values = model(**inputs)
        scores = last_token_values(values, inputs["cu_seq_lens_q"]).float()
        pairs = self.weight(inputs)
        chosen, rejected = scores[:pairs], scores[pairs:]
        losses = -F.logsigmoid(chosen - rejected)
        return Terms(losses.sum(), {
            "accuracy": mean_metric((chosen > rejected).float()),
            "margin": mean_metric(chosen - rejected),
            "scores/chosen": mean_metric(chosen),
            "scores/rejected": mean_metric(rejected),
        })  # fmt: skip
