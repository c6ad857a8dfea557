"""LLaMA-Factory and Hugging Face keys that are renamed, or that raytune-llm does not implement.

A YAML written for LLaMA-Factory must validate unchanged: renamed keys are mapped to their new
name with a warning, and keys for features raytune-llm leaves out are accepted while off
(``use_unsloth: false``) and refused, with the reason, when turned on.
"""

from __future__ import annotations

ALIASES: dict[str, str] = {
    "evaluation_strategy": "eval_strategy",
}
"""Old key → current key."""

UNSUPPORTED: dict[str, str] = {
    "use_unsloth": "Unsloth kernels patch single-GPU training; Ray Train runs standard models",
    "use_unsloth_gc": "Unsloth gradient checkpointing is not available; gradient checkpointing "
    "is on by default",
    "enable_liger_kernel": "Liger kernels are not wired in",
    "shift_attn": "shift short attention (LongLoRA) is not implemented",
    "mixture_of_depths": "mixture-of-depths conversion is not implemented",
    "use_galore": "GaLore is not implemented; use finetuning_type lora or full",
    "use_apollo": "APOLLO is not implemented; use finetuning_type lora or full",
    "use_badam": "BAdam is not implemented; use finetuning_type lora or full",
    "use_adam_mini": "Adam-mini is not implemented; use optim adamw_torch",
    "use_muon": "Muon is not implemented; use optim adamw_torch",
    "use_llama_pro": "LLaMA Pro block expansion is not implemented",
    "use_swanlab": "SwanLab logging is not wired in; use report_to: tensorboard, wandb or mlflow",
    "freeze_vision_tower": "multimodal models are not supported yet",
    "freeze_multi_modal_projector": "multimodal models are not supported yet",
    "train_mm_proj_only": "multimodal models are not supported yet",
    "image_max_pixels": "multimodal models are not supported yet",
    "image_min_pixels": "multimodal models are not supported yet",
    "video_max_pixels": "multimodal models are not supported yet",
    "video_fps": "multimodal models are not supported yet",
}
"""Key → why raytune-llm does not implement it."""
