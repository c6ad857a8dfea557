"""Load a tokenizer and a causal LM as a config describes: path, dtype, attention, quantization.

``builtin:NAME`` models are built locally on first use (see :mod:`raytune_llm.model.tiny`).
Adapters and trainable parameters are :mod:`raytune_llm.model.adapter`'s job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import Config
from ..config.model import BUILTIN_PREFIX, ModelArgs
from ..utils.errors import UserError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

ATTENTION = {"auto": None, "disabled": "eager", "sdpa": "sdpa", "fa2": "flash_attention_2",
             "fa3": "flash_attention_3"}  # fmt: skip


def resolve_model_path(name_or_path: str) -> str:
    """A hub id or local path as given; a ``builtin:`` name becomes its cached local folder."""
    if name_or_path.startswith(BUILTIN_PREFIX):
        from .tiny import ensure_builtin_model

        return str(ensure_builtin_model(name_or_path[len(BUILTIN_PREFIX) :]))
    return name_or_path


def _hub_kwargs(args: ModelArgs) -> dict[str, Any]:
    return {
        "revision": args.model_revision,
        "cache_dir": args.cache_dir,
        "trust_remote_code": args.trust_remote_code,
        "token": args.hf_hub_token,
    }


def _load_error(what: str, name: str, err: Exception) -> UserError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return UserError(
        f"cannot load the {what} of model_name_or_path '{name}': {first}. Give a local model "
        "directory, a reachable hub id, or builtin:tiny-llama"
    )


def load_tokenizer(args: ModelArgs) -> PreTrainedTokenizerBase:
    """The model's tokenizer, right-padded, with a pad token and any tokens the config adds."""
    from transformers import AutoTokenizer

    path = resolve_model_path(args.model_name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path,
            use_fast=args.use_fast_tokenizer,
            split_special_tokens=args.split_special_tokens,
            padding_side="right",
            **_hub_kwargs(args),
        )
    except (OSError, ValueError) as err:
        raise _load_error("tokenizer", args.model_name_or_path, err) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if args.add_tokens:
        tokenizer.add_tokens(args.add_tokens)
    if args.add_special_tokens:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": args.add_special_tokens},
            replace_additional_special_tokens=False,
        )
    return tokenizer


def load_model_config(args: ModelArgs) -> Any:
    """The model's Hugging Face config (config.json), without its weights."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(resolve_model_path(args.model_name_or_path),
                                          **_hub_kwargs(args))  # fmt: skip
    except (OSError, ValueError) as err:
        raise _load_error("config", args.model_name_or_path, err) from None


def compute_dtype(cfg: Config) -> torch.dtype:
    """The dtype weights are loaded in: bf16 or fp16 when the config asks, else fp32."""
    import torch

    if cfg.train.bf16 or cfg.finetuning.pure_bf16:
        return torch.bfloat16
    if cfg.train.fp16:
        return torch.float16
    return torch.float32


def _quantization(cfg: Config, dtype: torch.dtype) -> Any:
    bits = cfg.model.quantization_bit
    if not bits:
        return None
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.model.quantization_type,
        bnb_4bit_use_double_quant=cfg.model.double_quantization,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=dtype,
    )


def load_model(
    cfg: Config,
    tokenizer: PreTrainedTokenizerBase | None = None,
    *,
    for_training: bool,
    device: str | torch.device | None = None,
) -> PreTrainedModel:
    """Load the causal LM for training or inference.

    Args:
        cfg: the run's config (model, precision and quantization keys).
        tokenizer: when given, embeddings are resized to it if ``resize_vocab`` is set or tokens
            were added.
        for_training: disables the KV cache and turns on gradient checkpointing unless
            ``disable_gradient_checkpointing`` is set (as LLaMA-Factory does).
        device: where a quantized model is placed (quantized weights are created on it).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..utils.quiet import quiet_third_party

    quiet_third_party(torch.cuda.is_available())
    args = cfg.model
    path = resolve_model_path(args.model_name_or_path)
    dtype = compute_dtype(cfg)
    kwargs: dict[str, Any] = {"dtype": dtype, **_hub_kwargs(args)}
    if ATTENTION[args.flash_attn]:
        kwargs["attn_implementation"] = ATTENTION[args.flash_attn]
    quantization = _quantization(cfg, dtype)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        kwargs["device_map"] = {"": device or ("cuda" if torch.cuda.is_available() else "cpu")}
    try:
        if args.train_from_scratch:
            config = AutoConfig.from_pretrained(path, **_hub_kwargs(args))
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(
                path, low_cpu_mem_usage=args.low_cpu_mem_usage, **kwargs
            )
    except (OSError, ValueError) as err:
        raise _load_error("weights", args.model_name_or_path, err) from None
    grows = args.resize_vocab or args.add_tokens or args.add_special_tokens
    if (
        tokenizer is not None
        and grows
        and len(tokenizer) > model.get_input_embeddings().num_embeddings
    ):
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    if for_training:
        model.config.use_cache = False
        if not args.disable_gradient_checkpointing:
            options = {"use_reentrant": args.use_reentrant_gc}
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
                model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
            model.enable_input_require_grads()
        if args.upcast_layernorm:
            for name, param in model.named_parameters():
                if param.ndim == 1 and "norm" in name:
                    param.data = param.data.to(torch.float32)
    else:
        model.config.use_cache = args.use_kv_cache
        model.eval()
    return model
