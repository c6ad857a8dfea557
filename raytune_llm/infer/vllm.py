"""vLLM: where it is installed, serving goes through ``ray.serve.llm`` (LLMConfig)."""

from __future__ import annotations

import importlib.util

from ..utils.errors import UserError

INSTALL = "pip install 'raytune-llm[vllm]' on a machine with an NVIDIA GPU"


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def require_vllm() -> None:
    """Refuse infer_backend vllm plainly where vLLM is not installed (never a silent fallback)."""
    if not vllm_available():
        raise UserError(
            f"infer_backend is vllm but vLLM is not installed; {INSTALL}, or set "
            "infer_backend: huggingface"
        )
