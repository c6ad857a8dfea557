"""The optimiser and learning-rate schedule a config asks for."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..config import Config


def _param_groups(model: Any, cfg: Config) -> list[dict[str, Any]]:
    """Parameter groups: no weight decay on biases and norms; LoRA+ learning rates."""
    t, ft = cfg.train, cfg.finetuning
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = 0.0 if param.ndim < 2 or "norm" in name else t.weight_decay
        lr = t.learning_rate
        if ft.loraplus_lr_ratio and "lora_" in name:
            if "lora_embedding" in name:
                lr = ft.loraplus_lr_embedding
            elif "lora_B" in name:
                lr = t.learning_rate * ft.loraplus_lr_ratio
        groups.setdefault((lr, decay), []).append(param)
    return [{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()]


def build_optimizer(model: Any, cfg: Config) -> torch.optim.Optimizer:
    """SGD or AdamW, as ``optim`` names (one of config.train.OPTIMIZERS, checked at load)."""
    t = cfg.train
    groups = _param_groups(model, cfg)
    if t.optim == "sgd":
        return torch.optim.SGD(groups, lr=t.learning_rate)
    return torch.optim.AdamW(
        groups,
        lr=t.learning_rate,
        betas=(t.adam_beta1, t.adam_beta2),
        eps=t.adam_epsilon,
        fused=t.optim == "adamw_torch_fused" or None,
    )


def warmup_steps(cfg: Config, total_steps: int) -> int:
    """warmup_steps when set (below 1: a share of the steps), else warmup_ratio of the steps."""
    t = cfg.train
    if t.warmup_steps:
        return (
            int(t.warmup_steps) if t.warmup_steps >= 1 else math.ceil(t.warmup_steps * total_steps)
        )
    return math.ceil(t.warmup_ratio * total_steps)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config, total_steps: int) -> Any:
    from transformers import get_scheduler

    return get_scheduler(
        cfg.train.lr_scheduler_type,
        optimizer,
        num_warmup_steps=warmup_steps(cfg, total_steps),
        num_training_steps=total_steps,
        scheduler_specific_kwargs=cfg.train.lr_scheduler_kwargs or {},
    )
