"""Decoding a batch of prompts together: a KV cache, each row with its own settings and stops.

:class:`Decoder` holds what decoding needs of a model (the model, a tokenizer for the text, the
tokens that end an answer, the padding id) and nothing else, so that anything holding a causal
LM can generate: the inference backends (which add chat templates and adapters), and training
stages that sample from the policy. Prompts are token ids; rows are left-padded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ...utils.errors import UserError
from .sampling import SamplingParams, next_tokens, seeded


class ContextLengthError(UserError):
    """A prompt that leaves no room for an answer in the model's context."""


@dataclass
class Completion:
    """One generated answer."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn or a stop string) or "length"
    token_ids: list[int] = field(default_factory=list)  # the answer's ids, the stop token left out


@dataclass
class Event:
    """A step of a streamed batch: row ``row`` grew by ``delta`` (and may have finished)."""

    row: int
    delta: str
    finish_reason: str | None = None
    tokens: int = 0  # tokens generated for this row so far


@dataclass(eq=False)
class Answer:
    """One row's answer as it grows: its ids, the text shown so far and why it ended."""

    params: SamplingParams
    token_ids: list[int] = field(default_factory=list)
    shown: str = ""
    finish_reason: str | None = None

    def add(self, token: int, decoder: Decoder, row: int = 0) -> Event | None:
        """Add a sampled token; the event it makes (None: nothing new to show yet)."""
        reason = None
        if token in decoder.stop_ids:
            reason = "stop"
        else:
            self.token_ids.append(token)
        text = decoder.text(self.token_ids)
        cut = stop_at(text, self.params.stop)
        if cut is not None:
            text, reason = text[:cut], "stop"
        elif reason is None and len(self.token_ids) >= self.params.max_new_tokens:
            reason = "length"
        if reason is None and text.endswith("\ufffd"):
            return None  # half a character: wait for the rest of its bytes
        delta, self.shown, self.finish_reason = text[len(self.shown) :], text, reason
        return Event(row, delta, reason, len(self.token_ids)) if delta or reason else None


class Decoder:
    """Batched generation from a causal LM (see the module docstring).

    Args:
        model: a transformers causal LM (its train/eval mode is the caller's business).
        tokenizer: turns answer ids into text (stop strings and streamed pieces are text).
        stop_ids: the tokens that end an answer (not part of it).
        pad_id: the id left-padding shorter prompts (default: the first stop id).
        skip_special_tokens: leave special tokens out of the text.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        stop_ids: Iterable[int],
        pad_id: int | None = None,
        skip_special_tokens: bool = True,
    ):
        self.model, self.tokenizer = model, tokenizer
        self.stop_ids = set(stop_ids)
        self.pad_id = pad_id if pad_id is not None else next(iter(self.stop_ids))
        self.skip_special_tokens = skip_special_tokens
        config = getattr(model, "config", None)
        self.context_length = int(getattr(config, "max_position_embeddings", 0) or 4096)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

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

    @contextmanager
    def session(self, adapter: str | None = None) -> Iterator[None]:
        """What one decoding run holds (here torch's inference mode; backends add adapters)."""
        import torch

        if adapter is not None:
            raise ValueError(f"this decoder holds no adapter {adapter!r}")
        with torch.inference_mode():
            yield

    def events(
        self,
        prompts: Sequence[Sequence[int]],
        params: Sequence[SamplingParams],
        adapter: str | None = None,
    ) -> Iterator[Event]:
        """Decode a batch together; yield each row's text as it grows, and when it ends."""
        answers = [Answer(self.check_prompt(p, s)) for p, s in zip(prompts, params, strict=True)]
        return self._decode(prompts, answers, adapter)

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: Sequence[SamplingParams] | SamplingParams,
        adapter: str | None = None,
    ) -> list[Completion]:
        """Answers to a batch of prompts (in order)."""
        if isinstance(params, SamplingParams):
            params = [params] * len(prompts)
        answers = [Answer(self.check_prompt(p, s)) for p, s in zip(prompts, params, strict=True)]
        for _ in self._decode(prompts, answers, adapter):
            pass
        return [
            Completion(a.shown, len(p), len(a.token_ids), a.finish_reason or "length", a.token_ids)
            for a, p in zip(answers, prompts, strict=True)
        ]

    def stream(
        self, prompt: Sequence[int], params: SamplingParams, adapter: str | None = None
    ) -> Iterator[Event]:
        """One prompt's answer, piece by piece."""
        return self.events([prompt], [params], adapter)

    def _decode(
        self, prompts: Sequence[Sequence[int]], answers: list[Answer], adapter: str | None
    ) -> Iterator[Event]:
        import torch

        params = [a.params for a in answers]
        rows = len(prompts)
        with self.session(adapter):
            ids, mask = left_padded(prompts, self.pad_id, self.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            generators = [seeded(p.seed) for p in params]
            history, step_ids, cache = ids, ids, None
            for _ in range(max(p.max_new_tokens for p in params)):
                out = self.model(input_ids=step_ids, attention_mask=mask, position_ids=positions,
                                 cache=cache, use_cache=True, logits_to_keep=1)  # fmt: skip
                cache = out.cache
                tokens = next_tokens(out.logits[:, -1, :], params, history, generators)
                for r, answer in enumerate(answers):
                    if answer.finish_reason is None:
                        event = answer.add(int(tokens[r]), self, r)
                        if event is not None:
                            yield event
                finished = [a.finish_reason is not None for a in answers]
                if all(finished):
                    return
                done = torch.tensor(finished, device=tokens.device)
                step_ids = torch.where(done, torch.full_like(tokens, self.pad_id), tokens)[:, None]
                mask = torch.cat([mask, mask.new_ones((rows, 1))], 1)
                positions = positions[:, -1:] + 1
                history = torch.cat([history, step_ids], dim=1)


def left_padded(seqs: Sequence[Sequence[int]], pad_id: int, device: Any = None) -> tuple[Any, Any]:
    """(ids, attention mask) of token sequences, left-padded to the longest."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, seq in enumerate(seqs):
        if seq:
            ids[i, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
            mask[i, width - len(seq) :] = 1
    return (ids, mask) if device is None else (ids.to(device), mask.to(device))


def stop_at(text: str, stops: Sequence[str]) -> int | None:
    """Where the first stop string starts in the text, or None."""
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None
