"""The next-token loss shared by pre-training and supervised fine-tuning."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def causal_lm_loss_terms(model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy of every target token (labels != -100) and the number of them.

    Labels are aligned with input_ids (not shifted); each position predicts the next label, as
    Hugging Face models do. The sum (not the mean) lets the caller weigh every token of an
    optimiser step equally, however the tokens fall into micro-batches and workers.
    """
    labels = batch.pop("labels")
    logits = model(**batch, use_cache=False).logits
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    loss = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return loss, (shift_labels != IGNORE_INDEX).sum()
