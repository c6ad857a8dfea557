"""Keys that choose and load the model: weights, adapters, attention, quantization, inference."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from .base import CommaList, JsonDict, Section, doc

BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS = ("tiny-llama", "tiny-qwen2")
"""Models raytune-llm builds locally on first use (``model_name_or_path: builtin:tiny-llama``)."""


class ModelArgs(Section):
    """Which model to load and how."""

    model_name_or_path: str = doc(
        ...,
        "Hugging Face hub id (meta-llama/Meta-Llama-3-8B-Instruct), a local model directory, or a "
        "built-in tiny model built locally on first use: builtin:tiny-llama, builtin:tiny-qwen2.",
    )
    adapter_name_or_path: CommaList | None = doc(
        None,
        "LoRA adapter(s) to load on top of the model: a path or hub id, or several separated by "
        "commas (merged in order; the last one keeps training when do_train is set).",
    )
    adapter_folder: str | None = doc(None, "Folder holding adapter weights to load.")
    cache_dir: str | None = doc(None, "Where models downloaded from the hub are cached.")
    model_revision: str = doc("main", "Model version to use: a branch name, tag or commit id.")
    trust_remote_code: bool = doc(
        False, "Allow model and tokenizer code from the model's repository to run."
    )
    use_fast_tokenizer: bool = doc(True, "Use a fast (Rust) tokenizer when the model has one.")
    resize_vocab: bool = doc(False, "Resize the token embeddings to the tokenizer's size.")
    split_special_tokens: bool = doc(
        False, "Tokenize special tokens in text as plain text instead of single ids."
    )
    add_tokens: CommaList | None = doc(None, "Non-special tokens to add to the tokenizer.")
    add_special_tokens: CommaList | None = doc(None, "Special tokens to add to the tokenizer.")
    low_cpu_mem_usage: bool = doc(True, "Load the weights without a full extra copy in memory.")
    rope_scaling: Literal["linear", "dynamic", "yarn", "llama3"] | None = doc(
        None, "RoPE scaling method used to stretch the context beyond the model's native length."
    )
    flash_attn: Literal["auto", "disabled", "sdpa", "fa2", "fa3"] = doc(
        "auto",
        "Attention kernel: auto picks FlashAttention where installed on a GPU, else SDPA; "
        "disabled is eager attention.",
    )
    disable_gradient_checkpointing: bool = doc(
        False, "Turn off gradient checkpointing (on by default to save activation memory)."
    )
    use_reentrant_gc: bool = doc(True, "Use reentrant gradient checkpointing.")
    upcast_layernorm: bool = doc(False, "Keep layer-norm weights in float32 while training.")
    upcast_lmhead_output: bool = doc(False, "Compute the LM head's logits in float32.")
    train_from_scratch: bool = doc(False, "Initialise the weights randomly instead of loading.")
    moe_aux_loss_coef: float | None = doc(
        None, "Weight of the mixture-of-experts router's auxiliary loss.", ge=0
    )
    print_param_status: bool = doc(False, "Print each parameter's dtype, device and trainability.")
    hf_hub_token: str | None = doc(None, "Token for the Hugging Face hub (private models).")
    ms_hub_token: str | None = doc(None, "Token for the ModelScope hub.")
    om_hub_token: str | None = doc(None, "Token for the Modelers hub.")
    offload_folder: str = doc("offload", "Folder to offload weights to when memory is short.")
    use_kv_cache: bool = doc(True, "Use the KV cache when generating.")

    # Quantized loading (QLoRA).
    quantization_method: Literal["bnb", "bitsandbytes"] = doc(
        "bnb", "Library used to quantize the model on the fly: bitsandbytes (bnb)."
    )
    quantization_bit: Literal[4, 8] | None = doc(
        None, "Load the model quantized to 4 or 8 bits (QLoRA with finetuning_type: lora)."
    )
    quantization_type: Literal["nf4", "fp4"] = doc("nf4", "4-bit data type: nf4 or fp4.")
    double_quantization: bool = doc(True, "Quantize the 4-bit quantization constants again.")
    quantization_device_map: Literal["auto"] | None = doc(
        None, "Device map for inference with a quantized model (auto spreads it over devices)."
    )

    # Inference backend.
    infer_backend: Literal["huggingface", "vllm"] = doc(
        "huggingface",
        "Backend for chat, serve and predict: huggingface (transformers, CPU or GPU) or vllm "
        "(GPU, needs the vllm extra).",
    )
    infer_dtype: Literal["auto", "float16", "bfloat16", "float32"] = doc(
        "auto", "Data type of the weights at inference."
    )
    vllm_maxlen: int = doc(4096, "Longest sequence (prompt + answer) vLLM accepts.", gt=0)
    vllm_gpu_util: float = doc(0.7, "Share of GPU memory vLLM may use.", gt=0, le=1)
    vllm_enforce_eager: bool = doc(False, "Disable CUDA graphs in vLLM.")
    vllm_max_lora_rank: int = doc(32, "Largest LoRA rank vLLM serves.", gt=0)
    vllm_config: JsonDict | None = doc(
        None, "Extra vLLM engine arguments, e.g. {max_num_seqs: 64}."
    )

    @field_validator("model_name_or_path")
    @classmethod
    def _known_builtin(cls, value: str) -> str:
        if value.startswith(BUILTIN_PREFIX):
            name = value[len(BUILTIN_PREFIX) :]
            if name not in BUILTIN_MODELS:
                valid = ", ".join(BUILTIN_PREFIX + m for m in BUILTIN_MODELS)
                raise ValueError(f"unknown built-in model '{name}'; built-in models: {valid}")
        if not value.strip():
            raise ValueError("must name a model: a hub id, a local directory or builtin:NAME")
        return value


class ExportArgs(Section):
    """Keys of ``raytune-llm export``: merging adapters and writing a deployable model."""

    export_dir: str | None = doc(None, "Directory the merged (and maybe quantized) model goes to.")
    export_size: float = doc(
        5,
        "Largest size of one weight shard, in GB (10^9 bytes; fractions such as 0.5 allowed).",
        gt=0,
    )
    export_format: Literal["safetensors", "gguf"] = doc(
        "safetensors",
        "What export writes: safetensors (Hugging Face shards + index; .bin with "
        "export_legacy_format) or gguf (one .gguf file for llama.cpp and Ollama, Llama and Qwen2 "
        "architectures).",
    )
    export_gguf_type: Literal["f32", "f16", "bf16", "q8_0", "q4_0"] = doc(
        "f16",
        "Weight type of a gguf export: f32, f16, bf16, or the llama.cpp quantizations q8_0 and "
        "q4_0 (norms and other 1-D weights stay f32).",
    )
    export_device: Literal["cpu", "auto"] = doc(
        "cpu", "Device used to merge: cpu, or auto (GPU when there is one)."
    )
    export_quantization_bit: Literal[2, 3, 4, 8] | None = doc(
        None,
        "Quantize the exported model to this many bits with GPTQ (gptqmodel + optimum; needs "
        "export_quantization_dataset and a model without adapters: merge them first).",
    )
    export_quantization_dataset: str | None = doc(
        None,
        "Calibration data for export quantization: a .json/.jsonl/.txt file or a dataset named "
        "in dataset_info.json; its texts are cut into export_quantization_maxlen-token windows.",
    )
    export_quantization_nsamples: int = doc(128, "Calibration samples for quantization.", gt=0)
    export_quantization_maxlen: int = doc(1024, "Longest calibration sample, in tokens.", gt=0)
    export_legacy_format: bool = doc(False, "Write .bin (pickle) weights instead of .safetensors.")
    export_hub_model_id: str | None = doc(None, "Hub repository to push the exported model to.")
