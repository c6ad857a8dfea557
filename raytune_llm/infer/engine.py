"""Inference engines behind chat, serve, predict and eval: one interface, two implementations.

* ``TransformersEngine`` — always available, CPU or GPU: the model (with ``adapter_name_or_path``
  merged in, as LLaMA-Factory does for inference) plus any number of named LoRA adapters that a
  request picks by name. It decodes a batch of requests together with a KV cache, each row with
  its own sampling settings and stop conditions, and can stream every row's tokens as they come.
* ``vllm`` — ``infer_backend: vllm`` where vLLM is installed (GPU). Serving with vLLM goes
  through ``ray.serve.llm``; see :mod:`raytune_llm.infer.vllm`.

Prompts are rendered with the run's chat template exactly as training tokenised them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from ..data.templates import Message, get_template
from ..model.adapter import merge_adapters
from ..model.loader import load_model, load_tokenizer
from ..utils.errors import UserError
from .sampling import SamplingParams


class ContextLengthError(UserError):
    """A prompt that leaves no room for an answer in the model's context."""


class UnknownModelError(UserError):
    """A request named a model (adapter) this engine does not hold."""


@dataclass
class Completion:
    """One generated answer."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn or a stop string) or "length"


@dataclass
class Event:
    """A step of a streamed batch: row ``row`` grew by ``delta`` (and may have finished)."""

    row: int
    delta: str
    finish_reason: str | None = None
    tokens: int = 0  # tokens generated for this row so far


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


class TransformersEngine:
    """Generation with transformers (see the module docstring)."""

    backend = "huggingface"

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
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.name = name or Path(cfg.model.model_name_or_path.rstrip("/")).name.removeprefix(
            "builtin:"
        )
        self.stop_ids = set(self.template.stop_token_ids(self.tokenizer))
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else next(iter(self.stop_ids))
        config = getattr(model, "config", None)
        self.context_length = int(getattr(config, "max_position_embeddings", 0) or 4096)
        self._lock = threading.Lock()  # the model's active adapter is global state
        self._torch = torch

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

    def check_prompt(self, prompt: Sequence[int], params: SamplingParams) -> SamplingParams:
        """Refuse a prompt that fills the context; cap the answer to the room that is left."""
        room = self.context_length - len(prompt)
        if room <= 0:
            raise ContextLengthError(
                f"the prompt is {len(prompt)} tokens but the model's context is "
                f"{self.context_length} tokens; shorten the prompt"
            )
        return (
            params if params.max_new_tokens <= room else params.with_overrides(max_new_tokens=room)
        )

    # ---- decoding ------------------------------------------------------------------------------

    def _adapter(self, adapter: str | None):
        if adapter in (None, self.name):
            return self.model.disable_adapter() if self.adapters else nullcontext()
        if adapter not in self.adapters:
            raise UnknownModelError(
                f"model {adapter!r} is not served here; available: {', '.join(self.models())}"
            )
        self.model.set_adapter(adapter)
        return nullcontext()

    def events(
        self,
        prompts: Sequence[Sequence[int]],
        params: Sequence[SamplingParams],
        adapter: str | None = None,
    ) -> Iterator[Event]:
        """Decode a batch together; yield each row's text as it grows, and when it ends."""
        torch = self._torch
        params = [self.check_prompt(p, s) for p, s in zip(prompts, params, strict=True)]
        rows, width = len(prompts), max(len(p) for p in prompts)
        ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((rows, width), dtype=torch.long)
        for r, prompt in enumerate(prompts):
            ids[r, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
            mask[r, width - len(prompt) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        generators = [_generator(p.seed) for p in params]
        answers: list[list[int]] = [[] for _ in range(rows)]
        shown = [""] * rows
        done = [False] * rows
        history, step_ids, step_pos = ids, ids, positions
        cache = None
        with self._lock, self._adapter(adapter), torch.inference_mode():
            for _ in range(max(p.max_new_tokens for p in params)):
                out = self.model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos,
                                 cache=cache, use_cache=True, logits_to_keep=1)  # fmt: skip
                cache = out.cache
                tokens = _next(out.logits[:, -1, :], params, history, generators)
                for r in range(rows):
                    if done[r]:
                        continue
                    token = int(tokens[r])
                    reason = None
                    if token in self.stop_ids:
                        reason = "stop"
                    else:
                        answers[r].append(token)
                    text = self._decode(answers[r])
                    cut = _stop_at(text, params[r].stop)
                    if cut is not None:
                        text, reason = text[:cut], "stop"
                    elif reason is None and len(answers[r]) >= params[r].max_new_tokens:
                        reason = "length"
                    if reason is None and text.endswith("\ufffd"):
                        continue  # half a character: wait for the rest of its bytes
                    delta, shown[r] = text[len(shown[r]) :], text
                    if reason is not None:
                        done[r] = True
                    if delta or reason:
                        yield Event(r, delta, reason, len(answers[r]))
                if all(done):
                    return
                finished = torch.tensor(done, device=self.device)
                tokens = torch.where(finished, torch.full_like(tokens, self.pad_id), tokens)
                step_ids = tokens[:, None]
                mask = torch.cat(
                    [mask, torch.ones((rows, 1), dtype=mask.dtype, device=mask.device)], 1
                )
                step_pos = step_pos[:, -1:] + 1
                history = torch.cat([history, step_ids], dim=1)

    def _decode(self, ids: list[int]) -> str:
        skip = self.cfg.generation.skip_special_tokens
        return self.tokenizer.decode(ids, skip_special_tokens=skip)

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: Sequence[SamplingParams] | SamplingParams,
        adapter: str | None = None,
    ) -> list[Completion]:
        """Answers to a batch of prompts (in order)."""
        if isinstance(params, SamplingParams):
            params = [params] * len(prompts)
        texts = [""] * len(prompts)
        reasons = ["length"] * len(prompts)
        counts = [0] * len(prompts)
        for event in self.events(prompts, params, adapter):
            texts[event.row] += event.delta
            counts[event.row] = event.tokens
            if event.finish_reason:
                reasons[event.row] = event.finish_reason
        return [
            Completion(text, len(p), n, why)
            for text, p, n, why in zip(texts, prompts, counts, reasons, strict=True)
        ]

    def stream(
        self, prompt: Sequence[int], params: SamplingParams, adapter: str | None = None
    ) -> Iterator[Event]:
        """One prompt's answer, piece by piece."""
        return self.events([prompt], [params], adapter)


def _generator(seed: int | None) -> Any:
    if seed is None:
        return None
    import torch

    return torch.Generator().manual_seed(seed)


def _next(logits: Any, params: Sequence[SamplingParams], history: Any, generators: list) -> Any:
    from .sampling import next_tokens

    return next_tokens(logits.cpu(), list(params), history.cpu(), generators).to(logits.device)


def _stop_at(text: str, stops: Sequence[str]) -> int | None:
    """Where the first stop string starts in the text, or None."""
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None


def build_engine(
    cfg: Config, adapters: dict[str, str] | None = None, name: str | None = None
) -> TransformersEngine:
    """The engine ``infer_backend`` names: vllm refuses plainly where it cannot run."""
    if cfg.model.infer_backend == "vllm":
        from .vllm import require_vllm

        require_vllm()
        raise UserError(
            "infer_backend vllm runs inside Ray Serve (raytune-llm serve) through ray.serve.llm; "
            "for chat and predict use infer_backend: huggingface"
        )
    return TransformersEngine(cfg, adapters, name)
