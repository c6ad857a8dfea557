"""Stages pt and sft: the next-token loss (pre-training on text, fine-tuning on answers)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F

from .base import IGNORE_INDEX, Stage, Terms


class CausalLM(Stage):
    """Summed cross-entropy of every target token (labels != -100), weighed by target tokens.

    Labels are aligned with input_ids (not shifted); each position predicts the next label, as
    Hugging Face models do. The sum (not the mean) lets the loop weigh every token of an
    optimiser step equally, however the tokens fall into micro-batches and workers.
    """

    name = "sft"

    def loss(self, model: Any, inputs: dict[str, Any]) -> Terms:
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        logits = model(**inputs, use_cache=False).logits
        shift_logits = logits[:, :-1, :].float()
        loss = F.cross_entropy(
            shift_logits.reshape(-1, shift_logits.size(-1)),
            labels[:, 1:].reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        return Terms(loss)


class Pretrain(CausalLM):
    """Stage pt: continued pre-training on plain text (every token a target)."""

    name = "pt"
