"""Stage kto: Kahneman-Tversky optimisation on single answers labelled desirable or not.

Each example's reward is ``β·(log π(y|x) - log π_ref(y|x))``; the KL estimate ``z`` is the mean
log-ratio of mismatched pairs (each prompt with another example's answer, built by the data
pipeline as ``kl_input_ids``), clamped at 0 and detached, as in the KTO paper and TRL. Losses:
desirable ``w_d·(1 - σ(β·(ratio - z)))``, undesirable ``w_u·(1 - σ(β·(z - ratio)))``, weights
``kto_chosen_weight`` / ``kto_rejected_weight``; ``pref_ftx`` adds the desirable answers' NLL.
The examples and their KL pairs go through the model in one padding-free forward.
"""

from __future__ import annotations

from typing import Any

import torch

from ..collate import Layout
from .base import Stage, Terms, mean_metric, paired_rows, sequence_logps
from .reference import Reference


def kto_loss(
    ratios: torch.Tensor,
    desirable: torch.Tensor,
    kl: torch.Tensor,
    *,
    beta: float,
    chosen_weight: float = 1.0,
    rejected_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example KTO losses and rewards, given log-ratios and the clamped KL estimate."""
    z = kl.detach().clamp(min=0)
    desired = chosen_weight * (1 - torch.sigmoid(beta * (ratios - z)))
    undesired = rejected_weight * (1 - torch.sigmoid(beta * (z - ratios)))
    return torch.where(desirable, desired, undesired), beta * ratios.detach()


class KTO(Stage):
    name = "kto"
    metrics = ("kl", "rewards/chosen", "logps/chosen", "rewards/rejected", "logps/rejected")

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.reference: Reference | None = None

    def prepare(self, model: Any, *, tokenizer: Any, device: Any) -> Any:
        self.reference = Reference.for_policy(self.cfg, model, tokenizer, device)
        return model

    def bind(self, engine: Any) -> None:
        super().bind(engine)
        self.reference.bind(engine)

    def collate(self, batch: dict[str, Any], layout: Layout) -> dict[str, Any]:
        inputs = layout.padding_free(paired_rows(batch, "", "kl"))
        tags = torch.as_tensor([bool(t) for t in batch["kto_tag"]], device=layout.device)
        return inputs | {"kto_tag": tags}

    def weight(self, inputs: dict[str, Any]) -> int:
        """Examples."""
        return int(inputs["kto_tag"].numel())

    def _ratios(self, model: Any, inputs: dict[str, Any]):
        kwargs = {k: v for k, v in inputs.items() if k not in ("labels", "kto_tag")}
        policy = sequence_logps(model(**kwargs, use_cache=False).logits, inputs)
        ref = sequence_logps(self.reference.logits(kwargs), inputs)
        n = self.weight(inputs)
        ratios = policy.sums - ref.sums
        return ratios[:n], ratios[n:], policy, n

    def loss(self, model: Any, inputs: dict[str, Any]) -> Terms:
        ft = self.cfg.finetuning
        ratios, kl_ratios, policy, n = self._ratios(model, inputs)
        tags = inputs["kto_tag"]
        kl = kl_ratios.mean()
        losses, rewards = kto_loss(ratios, tags, kl, beta=ft.pref_beta,
                                   chosen_weight=ft.kto_chosen_weight,
                                   rejected_weight=ft.kto_rejected_weight)  # fmt: skip
        if ft.pref_ftx > 0:
            nll = -policy.sums[:n] / policy.counts[:n].clamp(min=1)
            losses = losses + ft.pref_ftx * nll * tags
        logps = policy.sums[:n].detach()
        metrics = {"kl": (kl.detach().clamp(min=0), 1.0)}
        for name, mask in (("chosen", tags), ("rejected", ~tags)):
            metrics[f"rewards/{name}"] = mean_metric(rewards[mask])
            metrics[f"logps/{name}"] = mean_metric(logps[mask])
        return Terms(losses.sum(), metrics)
