"""Sampling settings of one answer, and one decoding step for a batch whose rows differ."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ...config.generation import GenerationArgs


@dataclass(frozen=True)
class SamplingParams:
    """How one answer is generated (the generation keys of a config, per request overridable)."""

    max_new_tokens: int = 1024
    do_sample: bool = True
    temperature: float = 0.95
    top_p: float = 0.7
    top_k: int = 50
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None

    @classmethod
    def from_config(cls, gen: GenerationArgs) -> SamplingParams:
        return cls(
            max_new_tokens=gen.max_new_tokens,
            do_sample=gen.do_sample,
            temperature=gen.temperature,
            top_p=gen.top_p,
            top_k=gen.top_k,
            repetition_penalty=gen.repetition_penalty,
        )

    def with_overrides(self, **values: Any) -> SamplingParams:
        """A copy with the given values (None values are ignored); temperature 0 is greedy."""
        given = {k: v for k, v in values.items() if v is not None}
        if "stop" in given:
            stop = given["stop"]
            given["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
        if given.get("temperature") == 0:
            given["do_sample"] = False
            given.pop("temperature")
        return replace(self, **given)

    @property
    def greedy(self) -> bool:
        return not self.do_sample


def next_tokens(
    logits: torch.Tensor,
    params: list[SamplingParams],
    history: torch.Tensor,
    generators: list[torch.Generator | None],
) -> torch.Tensor:
    """One token per row from the last position's logits, each row with its own settings.

    Sampling runs on the CPU (seeded generators are CPU generators); the tokens come back on the
    logits' device.

    Args:
        logits: (batch, vocab) logits of the last position, on any device.
        params: each row's settings.
        history: (batch, length) ids seen so far by each row (prompt and answer; pads included,
            which only matters for the repetition penalty of pad tokens).
        generators: each row's random generator (seeded requests), or None.
    """
    import torch

    device, logits, history = logits.device, logits.float().cpu(), history.cpu()
    out = torch.empty(logits.size(0), dtype=torch.long)
    for row, p in enumerate(params):
        scores = logits[row]
        if p.repetition_penalty != 1.0:
            seen = torch.unique(history[row])
            picked = scores[seen]
            scores = scores.clone()
            scores[seen] = torch.where(
                picked > 0, picked / p.repetition_penalty, picked * p.repetition_penalty
            )
        if p.greedy:
            out[row] = torch.argmax(scores)
            continue
        scores = scores / max(p.temperature, 1e-5)
        if 0 < p.top_k < scores.numel():
            kth = torch.topk(scores, p.top_k).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if p.top_p < 1.0:
            ordered, order = torch.sort(scores, descending=True)
            mass = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
            drop = mass - torch.softmax(ordered, dim=-1) > p.top_p  # keep the token crossing p
            scores = scores.scatter(0, order[drop], float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out[row] = torch.multinomial(probs, 1, generator=generators[row])[0]
    return out.to(device)


def seeded(seed: int | None) -> torch.Generator | None:
    """A CPU generator for a seeded answer (None: torch's global one)."""
    if seed is None:
        return None
    import torch

    return torch.Generator().manual_seed(seed)
