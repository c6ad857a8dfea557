"""``infer_backend: vllm``: the same ``serve:`` section, served by ``ray.serve.llm``.

:func:`llm_config_kwargs` translates a config into ``LLMConfig`` keyword arguments as a plain dict
(tested on CPU; ``ray.serve.llm`` itself imports only where vLLM is installed), and
:func:`build_vllm_app` builds ``build_openai_app`` from it.

ray.serve.llm loads LoRA adapters on demand from one remote folder (``dynamic_lora_loading_path``:
s3://, gs://, abfss://, azure://), each adapter a sub-folder, requested as ``MODEL:ADAPTER``.
"""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..config.serve import ServeArgs
from ..infer.vllm import require_vllm
from ..utils.errors import UserError
from .settings import api_key, base_name, scaling_options, served_adapters

REMOTE = ("s3://", "gs://", "abfss://", "azure://")


def _lora_folder(adapters: dict[str, str]) -> str:
    """The one remote folder holding every adapter, each in a sub-folder named as the adapter."""
    split = {name: path.rstrip("/").rsplit("/", 1) for name, path in adapters.items()}
    parents = {parts[0] for parts in split.values()}
    named = all(parts[-1] == name for name, parts in split.items())
    remote = all(path.startswith(REMOTE) for path in adapters.values())
    if len(parents) != 1 or not named or not remote:
        raise UserError(
            "with infer_backend vllm, ray.serve.llm loads adapters from one remote folder "
            f"({', '.join(REMOTE)}) where each adapter is a sub-folder named as the adapter, "
            f"e.g. serve.adapters: {{sql: s3://bucket/loras/sql}}; got {adapters}"
        )
    return parents.pop()


def llm_config_kwargs(cfg: Config, args: ServeArgs) -> dict[str, Any]:
    """``LLMConfig(**kwargs)`` arguments for a config and its ``serve:`` section."""
    m = cfg.model
    engine_kwargs: dict[str, Any] = {
        "max_model_len": m.vllm_maxlen,
        "gpu_memory_utilization": m.vllm_gpu_util,
        "enforce_eager": m.vllm_enforce_eager,
        "dtype": m.infer_dtype,
        "trust_remote_code": m.trust_remote_code,
    }
    gpus = args.num_gpus if args.num_gpus is not None else 1
    if gpus > 1:
        engine_kwargs["tensor_parallel_size"] = int(gpus)
    deployment: dict[str, Any] = {"max_ongoing_requests": args.max_ongoing_requests}
    deployment.update(scaling_options(args))
    kwargs: dict[str, Any] = {
        "model_loading_config": {
            "model_id": base_name(cfg, args),
            "model_source": m.model_name_or_path,
        },
        "engine_kwargs": engine_kwargs,
        "deployment_config": deployment,
    }
    adapters = served_adapters(cfg, args)
    if adapters:
        engine_kwargs.update(
            enable_lora=True,
            max_lora_rank=m.vllm_max_lora_rank,
            max_loras=min(len(adapters), args.max_adapters_per_replica),
        )
        kwargs["lora_config"] = {
            "dynamic_lora_loading_path": _lora_folder(adapters),
            "max_num_adapters_per_replica": args.max_adapters_per_replica,
        }
    engine_kwargs.update(m.vllm_config or {})  # the user's own vLLM engine arguments win
    if args.accelerator_type:
        kwargs["accelerator_type"] = args.accelerator_type
    return kwargs


def build_vllm_app(cfg: Config, args: ServeArgs) -> Any:
    """``ray.serve.llm.build_openai_app`` for the config (vLLM must be installed)."""
    require_vllm()
    if api_key(args):
        raise UserError(
            "serve.api_key (or $RAYTUNE_LLM_API_KEY / $API_KEY) is not enforced by ray.serve.llm's "
            "OpenAI app; unset it and put the service behind a gateway that checks keys, or use "
            "infer_backend: huggingface"
        )
    from ray.serve.llm import LLMConfig, build_openai_app

    return build_openai_app({"llm_configs": [LLMConfig(**llm_config_kwargs(cfg, args))]})
