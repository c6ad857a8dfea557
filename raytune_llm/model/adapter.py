"""Choose what trains: all weights (full), the last layers (freeze), or LoRA adapters (lora).

Follows LLaMA-Factory's semantics: ``lora_target: all`` is every linear layer but the output
head; earlier adapters in ``adapter_name_or_path`` are merged and the last one keeps training
unless ``create_new_adapter`` is set; trainable weights are kept in float32 (unless
``pure_bf16``) while frozen ones stay in the load dtype.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..config import Config
from ..utils.errors import UserError

if TYPE_CHECKING:
    from torch import nn


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts (whole parameters, also when ZeRO-3 partitioned them)."""

    def count(p: nn.Parameter) -> int:
        return int(getattr(p, "ds_numel", 0) or p.numel())

    trainable = sum(count(p) for p in model.parameters() if p.requires_grad)
    return trainable, sum(count(p) for p in model.parameters())


def _num_layers(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    layers = getattr(config, "num_hidden_layers", None)
    if not layers:
        raise UserError("freeze tuning needs a model whose config has num_hidden_layers")
    return layers


def setup_freeze(model: nn.Module, cfg: Config) -> nn.Module:
    """Train only the last (or first) ``freeze_trainable_layers`` decoder layers."""
    ft = cfg.finetuning
    total = _num_layers(model)
    n = ft.freeze_trainable_layers
    if abs(n) > total:
        raise UserError(f"freeze_trainable_layers is {n} but the model has {total} layers")
    ids = range(total - n, total) if n > 0 else range(-n)
    modules = ft.freeze_trainable_modules
    layer = re.compile(r"\.layers\.(\d+)\.")
    extra = tuple(ft.freeze_extra_modules or ())
    found_modules: set[str] = set()
    for name, param in model.named_parameters():
        match = layer.search(name)
        wanted = False
        if match and int(match.group(1)) in ids:
            sub = name[match.end() :].split(".")[0]
            found_modules.add(sub)
            wanted = "all" in modules or sub in modules
        param.requires_grad_(wanted or any(f".{m}." in f".{name}" for m in extra))
    unknown = [m for m in modules if m != "all" and m not in found_modules]
    if unknown:
        raise UserError(
            f"freeze_trainable_modules names {unknown}, which the layers do not have; "
            f"valid: all, {', '.join(sorted(found_modules))}"
        )
    return model


def _lora_config(model: nn.Module, cfg: Config):
    from peft import LoraConfig, TaskType

    ft = cfg.finetuning
    target = "all-linear" if ft.lora_target == ["all"] else ft.lora_target
    if target != "all-linear":
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        missing = [t for t in target if t not in names]
        if missing:
            raise UserError(f"lora_target names {missing}, which the model does not have")
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=ft.lora_rank,
        lora_alpha=ft.lora_alpha or 2 * ft.lora_rank,
        lora_dropout=ft.lora_dropout,
        target_modules=target,
        modules_to_save=ft.additional_target,
        use_rslora=ft.use_rslora,
        use_dora=ft.use_dora,
    )


def merge_adapters(model: nn.Module, paths: list[str]) -> nn.Module:
    """Merge LoRA adapters into the model's weights, in order (peft's ``merge_and_unload``).

    Raises:
        UserError: an adapter that does not fit the model (trained on another base).
    """
    from peft import PeftModel

    for path in paths:
        try:
            model = PeftModel.from_pretrained(model, path).merge_and_unload()
        except RuntimeError as err:
            if "size mismatch" not in str(err):
                raise
            detail = next((ln.strip() for ln in str(err).splitlines() if "size mismatch" in ln),
                          str(err))  # fmt: skip
            raise UserError(
                f"adapter_name_or_path {path} does not fit the model: {detail}; it was trained "
                "on another base model"
            ) from None
    return model


def setup_lora(model: nn.Module, cfg: Config, *, for_training: bool) -> nn.Module:
    """Load the config's adapters and/or add a new trainable one."""
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    adapters = cfg.model.adapter_name_or_path or []
    if cfg.model.quantization_bit and for_training:
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=not cfg.model.disable_gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": cfg.model.use_reentrant_gc},
        )
    resume_last = for_training and adapters and not cfg.finetuning.create_new_adapter
    to_merge = adapters[:-1] if resume_last else adapters
    if cfg.model.quantization_bit and to_merge and for_training:
        raise UserError("a quantized model can continue one adapter, not merge several")
    model = merge_adapters(model, to_merge)
    if resume_last:
        return PeftModel.from_pretrained(model, adapters[-1], is_trainable=True)
    if for_training:
        return get_peft_model(model, _lora_config(model, cfg))
    return model


def setup_finetuning(model: nn.Module, cfg: Config, *, for_training: bool) -> nn.Module:
    """Apply the config's finetuning_type; trainable weights end up in float32."""
    import torch

    kind = cfg.finetuning.finetuning_type
    if kind == "lora":
        model = setup_lora(model, cfg, for_training=for_training)
    elif not for_training:
        return model
    elif kind == "freeze":
        model = setup_freeze(model, cfg)
    else:
        model.requires_grad_(True)
    if not for_training:
        return model
    if not cfg.finetuning.pure_bf16 and not cfg.model.quantization_bit:
        for param in model.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.to(torch.float32)
    return model
