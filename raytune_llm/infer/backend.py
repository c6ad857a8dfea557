"""Inference backends (``infer_backend``) behind chat, serve, predict and eval.

* ``huggingface`` — :class:`TransformersBackend`, always available, CPU or GPU: the model (with
  ``adapter_name_or_path`` merged in, as LLaMA-Factory does for inference) plus any number of
  named LoRA adapters that a request picks by name. It decodes with
  :class:`raytune_llm.model.generate.decode.Decoder` (a batch of requests together with a KV
  cache, each row with its own sampling settings and stop conditions, streamed or collected).
* ``vllm`` — where vLLM is installed (GPU). Serving with vLLM goes through ``ray.serve.llm``;
  see :mod:`raytune_llm.infer.vllm`.

Prompts are rendered with the run's chat template exactly as training tokenised them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from ..config import Config
from ..data.templates import Message, get_template
from ..model.adapter import merge_adapters
from ..model.generate.decode import Decoder
from ..model.loader import load_model, load_tokenizer
from ..utils.errors import UserError


class UnknownModelError(UserError):
    """A request named a model (adapter) this backend does not hold."""


def adapter_names(paths: Sequence[str]) -> dict[str, str]:
    """Name → path for adapters given as paths (the folder name; repeated names get -2, -3...)."""
    names: dict[str, str] = {}
    for path in paths:
        base = Path(path.rstrip("/")).name or "adapter"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names[name] = path
    return names


class TransformersBackend(Decoder):
    """Generation with transformers (see the module docstring)."""

    def __init__(
        self, cfg: Config, adapters: dict[str, str] | None = None, name: str | None = None
    ):
        import torch

        self.cfg = cfg
        self.tokenizer = load_tokenizer(cfg.model)
        self.template = get_template(cfg.data.template, self.tokenizer,
                                     default_system=cfg.data.default_system)  # fmt: skip
        self.template.fix_tokenizer(self.tokenizer)
        model = load_model(cfg, self.tokenizer, for_training=False)
        if torch.cuda.is_available() and next(model.parameters()).device.type == "cpu":
            model = model.to("cuda")  # the GPU Ray gave this process (quantized: placed already)
        model = self._merge_config_adapters(model)
        self.adapters = dict(adapters or {})
        if self.adapters:
            model = self._attach(model, self.adapters)
        stops = self.template.stop_token_ids(self.tokenizer)
        skip = cfg.generation.skip_special_tokens
        super().__init__(model.eval(), self.tokenizer, stops, self.tokenizer.pad_token_id, skip)
        self.name = name or Path(cfg.model.model_name_or_path.rstrip("/")).name.removeprefix(
            "builtin:"
        )
        self._lock = threading.Lock()  # the model's active adapter is global state

    # ---- loading -------------------------------------------------------------------------------

    def _merge_config_adapters(self, model: Any) -> Any:
        # LLaMA-Factory merges every adapter of the config for inference
        return merge_adapters(model, self.cfg.model.adapter_name_or_path or [])

    def _attach(self, model: Any, adapters: dict[str, str]) -> Any:
        from peft import PeftModel

        items = list(adapters.items())
        try:
            model = PeftModel.from_pretrained(model, items[0][1], adapter_name=items[0][0])
            for name, path in items[1:]:
                model.load_adapter(path, adapter_name=name)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot load adapter: {err}") from None
        return model

    def add_adapter(self, name: str, path: str) -> None:
        """Load one more named LoRA adapter (serving loads adapters on demand)."""
        with self._lock:
            if name in self.adapters:
                return
            if self.adapters:
                try:
                    self.model.load_adapter(path, adapter_name=name)
                except (OSError, ValueError) as err:
                    raise UserError(f"cannot load adapter {name!r}: {err}") from None
            else:
                self.model = self._attach(self.model, {name: path}).eval()
            self.adapters[name] = path

    def remove_adapter(self, name: str) -> None:
        """Unload a named adapter; with the last one gone the plain base model remains."""
        with self._lock:
            if self.adapters.pop(name, None) is None:
                return
            if self.adapters:
                self.model.delete_adapter(name)
            else:
                self.model = self.model.unload().eval()

    # ---- prompts -------------------------------------------------------------------------------

    def models(self) -> list[str]:
        """What a request may name: the base model, then each adapter."""
        return [self.name, *self.adapters]

    def encode_chat(
        self, messages: Sequence[Message], system: str = "", tools: str = ""
    ) -> list[int]:
        """Prompt ids of a conversation that ends on the user's side."""
        return self.template.encode_prompt(self.tokenizer, list(messages), system, tools)

    def encode_text(self, text: str) -> list[int]:
        """Prompt ids of a raw text prompt (completions)."""
        return self.tokenizer.encode(text, add_special_tokens=True)

    # ---- decoding ------------------------------------------------------------------------------

    @contextmanager
    def session(self, adapter: str | None = None) -> Iterator[None]:
        """One decoding run: this backend's lock (the active adapter is global) and ``adapter``."""
        with self._lock, self._adapter(adapter), super().session():
            yield

    def _adapter(self, adapter: str | None):
        if adapter in (None, self.name):
            return self.model.disable_adapter() if self.adapters else nullcontext()
        if adapter not in self.adapters:
            raise UnknownModelError(
                f"model {adapter!r} is not served here; available: {', '.join(self.models())}"
            )
        self.model.set_adapter(adapter)
        return nullcontext()


def build_backend(
    cfg: Config, adapters: dict[str, str] | None = None, name: str | None = None
) -> TransformersBackend:
    """The backend ``infer_backend`` names: vllm refuses plainly where it cannot run."""
    if cfg.model.infer_backend == "vllm":
        from .vllm import require_vllm

        require_vllm()
        raise UserError(
            "infer_backend vllm runs inside Ray Serve (raytune-llm serve) through ray.serve.llm; "
            "for chat and predict use infer_backend: huggingface"
        )
    return TransformersBackend(cfg, adapters, name)
