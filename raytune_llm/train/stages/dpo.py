"""Stage dpo (and orpo): preference optimisation on chosen / rejected pairs.

``pref_loss`` picks the loss, each a plain function of per-sequence log-probabilities:

* sigmoid (DPO): ``-(1-ε)·logσ(β·Δ) - ε·logσ(-β·Δ)``, ε = ``dpo_label_smoothing``, where
  ``Δ = (log π(c) - log π_ref(c)) - (log π(r) - log π_ref(r))``;
* hinge: ``relu(1 - β·Δ)``;
* ipo: ``(Δ - 1/(2β))²`` on length-averaged log-probabilities;
* kto_pair: the paired KTO loss, each reward measured against the batch's clamped KL estimate;
* orpo (no reference): ``-avg log π(c) + β·(-logσ(log odds(c) - log odds(r)))``;
* simpo (no reference): ``-logσ(β·(avg log π(c) - avg log π(r)) - γ)``, γ = ``simpo_gamma``.

``pref_ftx`` adds ftx times the chosen answers' (length-averaged) NLL, ``pref_bco_weight`` mixes
in the BCO loss, ``ld_alpha`` weighs the policy's tokens past the shorter answer's length (LD-
DPO), all as LLaMA-Factory does. Chosen and rejected sequences go through the model in one
padding-free forward; the reference (see :mod:`.reference`) in another, without gradients.
Metrics carry TRL's names: rewards/chosen, rewards/rejected, rewards/accuracies,
rewards/margins, logps/chosen, logps/rejected.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..collate import Layout
from .base import Stage, Terms, length_desensitized, mean_metric, paired_rows, sequence_logps
from .reference import Reference

AVERAGED = ("ipo", "orpo", "simpo")
"""Losses computed on length-averaged log-probabilities (LLaMA-Factory)."""
REFERENCE_FREE = ("orpo", "simpo")


def dpo_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    loss_type: str = "sigmoid",
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair losses and the chosen / rejected rewards (β times the log-ratios, detached)."""
    chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
    delta = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * delta)
        losses = losses - label_smoothing * F.logsigmoid(-beta * delta)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * delta)
    elif loss_type == "ipo":
        losses = (delta - 1 / (2 * beta)) ** 2
    elif loss_type == "kto_pair":
        chosen_kl = chosen_ratio.mean().clamp(min=0)
        rejected_kl = rejected_ratio.mean().clamp(min=0)
        losses = (
            1 - torch.sigmoid(beta * (chosen_ratio - rejected_kl))
            + 1 - torch.sigmoid(beta * (chosen_kl - rejected_ratio))
        ) / 2  # fmt: skip
    else:
        raise ValueError(f"unknown reference-based preference loss {loss_type!r}")
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def orpo_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, *, beta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ORPO on length-averaged log-probabilities: the chosen NLL plus β times the odds-ratio
    loss; rewards are β times the averaged log-probabilities."""
    log_odds = (chosen - rejected) - (torch.log1p(-torch.exp(chosen)) -
                                      torch.log1p(-torch.exp(rejected)))  # fmt: skip
    losses = -chosen - beta * F.logsigmoid(log_odds)
    return losses, beta * chosen.detach(), beta * rejected.detach()


def simpo_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, *, beta: float, gamma: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SimPO on length-averaged log-probabilities, with target margin γ."""
    losses = -F.logsigmoid(beta * (chosen - rejected) - gamma)
    return losses, beta * chosen.detach(), beta * rejected.detach()


def bco_loss(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, delta: float
) -> torch.Tensor:
    """BCO's loss of the rewards around the running reward mean ``delta``."""
    return -F.logsigmoid(chosen_rewards - delta) - F.logsigmoid(-(rejected_rewards - delta))


def preference_metrics(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
) -> dict[str, Any]:
    """TRL's metrics of a batch of pairs, as (sum, count)."""
    return {
        "rewards/chosen": mean_metric(chosen_rewards),
        "rewards/rejected": mean_metric(rejected_rewards),
        "rewards/accuracies": mean_metric((chosen_rewards > rejected_rewards).float()),
        "rewards/margins": mean_metric(chosen_rewards - rejected_rewards),
        "logps/chosen": mean_metric(chosen_logps),
        "logps/rejected": mean_metric(rejected_logps),
    }


class DPO(Stage):
    """Pairs in, one forward for both answers, the configured preference loss out."""

    name = "dpo"
    metrics = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
               "logps/chosen", "logps/rejected")  # fmt: skip

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        ft = cfg.finetuning
        self.loss_type = "orpo" if ft.stage == "orpo" else ft.pref_loss
        self.reference: Reference | None = None
        self.reward_sum, self.reward_count = 0.0, 0  # BCO's running mean of the rewards

    def prepare(self, model: Any, *, tokenizer: Any, device: Any) -> Any:
        if self.loss_type not in REFERENCE_FREE:
            self.reference = Reference.for_policy(self.cfg, model, tokenizer, device)
        return model

    def bind(self, engine: Any) -> None:
        super().bind(engine)
        if self.reference is not None:
            self.reference.bind(engine)

    def collate(self, batch: dict[str, Any], layout: Layout) -> dict[str, Any]:
        return layout.padding_free(paired_rows(batch, "chosen", "rejected"))

    def weight(self, inputs: dict[str, Any]) -> int:
        """Pairs."""
        return (inputs["cu_seq_lens_q"].numel() - 1) // 2

    def _logps(self, logits: torch.Tensor, inputs: dict[str, Any], *, policy: bool):
        lp = sequence_logps(logits, inputs)
        pairs = self.weight(inputs)
        ld = self.cfg.finetuning.ld_alpha
        sums = length_desensitized(lp, pairs, ld) if policy and ld is not None else lp.sums
        values = sums / lp.counts.clamp(min=1) if self.loss_type in AVERAGED else sums
        return values[:pairs], values[pairs:], lp

    def loss(self, model: Any, inputs: dict[str, Any]) -> Terms:
        ft = self.cfg.finetuning
        kwargs = {k: v for k, v in inputs.items() if k != "labels"}
        logits = model(**kwargs, use_cache=False).logits
        chosen, rejected, lp = self._logps(logits, inputs, policy=True)
        if self.loss_type == "orpo":
            losses, c_rew, r_rew = orpo_loss(chosen, rejected, beta=ft.pref_beta)
        elif self.loss_type == "simpo":
            losses, c_rew, r_rew = simpo_loss(chosen, rejected, beta=ft.pref_beta,
                                              gamma=ft.simpo_gamma)  # fmt: skip
        else:
            ref_c, ref_r, _ = self._logps(self.reference.logits(inputs), inputs, policy=False)
            losses, c_rew, r_rew = dpo_loss(chosen, rejected, ref_c, ref_r,
                                            loss_type=self.loss_type, beta=ft.pref_beta,
                                            label_smoothing=ft.dpo_label_smoothing)  # fmt: skip
            if ft.pref_bco_weight > 0:
                rewards = (ft.pref_beta * (chosen - ref_c), ft.pref_beta * (rejected - ref_r))
                losses = self._with_bco(losses, *rewards, ft.pref_bco_weight)
        if ft.pref_ftx > 0:
            pairs = chosen.numel()
            losses = losses + ft.pref_ftx * -(lp.sums[:pairs] / lp.counts[:pairs].clamp(min=1))
        return Terms(losses.sum(), preference_metrics(c_rew, r_rew, chosen.detach(),
                                                      rejected.detach()))  # fmt: skip

    def _with_bco(self, losses, c_rew, r_rew, weight: float) -> torch.Tensor:
        """Mix in BCO around the mean of every reward this worker has seen (TRL's running
        moments), updated with this batch first."""
        rewards = torch.cat([c_rew, r_rew]).detach()
        self.reward_sum += float(rewards.sum())
        self.reward_count += rewards.numel()
        bco = bco_loss(c_rew, r_rew, self.reward_sum / self.reward_count)
        return (losses + weight * bco) / (1 + weight)
