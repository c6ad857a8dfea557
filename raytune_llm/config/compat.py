"""LLaMA-Factory and Hugging Face keys that are renamed, or that raytune-llm does not implement.

A YAML written for LLaMA-Factory must validate unchanged: a renamed key is mapped to its new name
with a warning; a feature raytune-llm leaves out is accepted while it is off (``use_galore:
false``) and refused, with the reason, when it is on; the settings of such a feature
(``galore_rank: 16``) are accepted with a warning that they have no effect.
"""

from __future__ import annotations

ALIASES: dict[str, str] = {
    "evaluation_strategy": "eval_strategy",
    "use_cache": "use_kv_cache",
    "dpo_beta": "pref_beta",
    "dpo_ftx": "pref_ftx",
    "dpo_loss": "pref_loss",
    "orpo_beta": "pref_beta",
}
"""Old key → current key."""

_MULTIMODAL = "multimodal (vision and audio) models are not supported yet"

SWITCHES: dict[str, str] = {
    "use_unsloth": "Unsloth kernels patch single-GPU training; Ray Train runs standard models",
    "use_unsloth_gc": "Unsloth gradient checkpointing is not available; gradient checkpointing is "
    "on by default",
    "enable_liger_kernel": "Liger kernels are not wired in",
    "use_liger_kernel": "Liger kernels are not wired in",
    "shift_attn": "shift short attention (LongLoRA) is not implemented",
    "mixture_of_depths": "mixture-of-depths conversion is not implemented",
    "use_galore": "GaLore is not implemented; use finetuning_type lora or full",
    "use_apollo": "APOLLO is not implemented; use finetuning_type lora or full",
    "use_badam": "BAdam is not implemented; use finetuning_type lora or full",
    "use_adam_mini": "Adam-mini is not implemented; use optim: adamw_torch",
    "use_muon": "Muon is not implemented; use optim: adamw_torch",
    "use_dft_loss": "the DFT loss is not implemented",
    "use_llama_pro": "LLaMA Pro block expansion is not implemented",
    "use_mca": "Megatron Core training is not implemented; use deepspeed or fsdp",
    "use_kt": "KTransformers is not supported; use infer_backend huggingface or vllm",
    "use_v1_kernels": "LLaMA-Factory's v1 kernels are not available",
    "fp8": "FP8 training is not implemented yet; use bf16",
    "use_swanlab": "SwanLab is not wired in; use report_to: tensorboard, wandb or mlflow",
    "freeze_language_model": _MULTIMODAL,
    "train_mm_proj_only": _MULTIMODAL,
    "image_do_pan_and_scan": _MULTIMODAL,
    "crop_to_patches": _MULTIMODAL,
    "use_audio_in_video": _MULTIMODAL,
}
"""Key of a feature raytune-llm does not implement → why. An error when turned on."""

# Multimodal freezing switches default to true in LLaMA-Factory, so true is their "off".
HARMLESS_TRUE = {"freeze_vision_tower", "freeze_multi_modal_projector"}

SETTING_PREFIXES: dict[str, str] = {
    "galore_": "GaLore",
    "apollo_": "APOLLO",
    "badam_": "BAdam",
    "swanlab_": "SwanLab",
    "oft_": "OFT adapters",
    "kt_": "KTransformers",
    "sglang_": "SGLang",
    "fp8_": "FP8 training",
    "image_": "multimodal inputs",
    "video_": "multimodal inputs",
    "audio_": "multimodal inputs",
}
"""Prefix of the settings of a feature raytune-llm does not implement → the feature."""

SETTINGS = {"cpu_infer": "KTransformers", "chunk_size": "KTransformers", "module_dropout": "OFT"}


def unsupported(key: str, value: object) -> tuple[str, str] | None:
    """Classify a key raytune-llm does not implement.

    Returns:
        ``("error", reason)`` for a feature switched on, ``("warning", text)`` for one that is off
        or for one of its settings, and None for a key that is simply unknown.
    """
    if key in SWITCHES:
        if value:
            return "error", f"not supported by raytune-llm: {SWITCHES[key]}"
        return "warning", f"{key} is a LLaMA-Factory key raytune-llm does not use"
    if key in HARMLESS_TRUE:
        if value is False:
            return "error", f"not supported by raytune-llm: {_MULTIMODAL}"
        return "warning", f"{key} is a LLaMA-Factory key raytune-llm does not use"
    feature = SETTINGS.get(key) or next(
        (name for prefix, name in SETTING_PREFIXES.items() if key.startswith(prefix)), None
    )
    if feature:
        return "warning", f"{key} has no effect: raytune-llm does not implement {feature}"
    return None
