"""Choice scoring: the letter whose token has the highest logit right after the prompt.

`ChoiceScorer` is the Ray Data actor of ``raytune-llm eval``: one backend per actor, loaded as chat
and predict load it (:func:`raytune_llm.infer.backend.build_backend`: ``adapter_name_or_path``
merged, ``quantization_bit`` honoured, the run's chat template), scoring a batch of questions in
one forward pass. `score_choices` is the pass itself, usable on any causal LM.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..utils.errors import UserError
from .prompts import encode_chat, encode_harness
from .tasks import CHOICES

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def score_choices(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    letters: Sequence[Sequence[int]],
    pad_id: int,
) -> list[str]:
    """The letter ("A".."D") each prompt's next-token logits rank highest among its letter ids.

    Prompts are left-padded with position ids that restart after the padding, so each row's
    logits are those of the prompt alone; only the last position goes through the output head.

    Args:
        model: A causal LM.
        prompts: Token ids of each prompt.
        letters: For each prompt, the ids of the tokens for A, B, C and D.
        pad_id: Id that fills the padding (never attended to).
    """
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            use_cache=False,
            logits_to_keep=1,
        )
    last = out.logits[:, -1, :].float().cpu()
    picked = last.gather(1, torch.tensor([list(x) for x in letters], dtype=torch.long))
    return [CHOICES[i] for i in picked.argmax(-1).tolist()]


class ChoiceScorer:
    """One backend per actor: a batch of question rows → (subject, index, predicted letter)."""

    def __init__(self, cfg: Config, threads: int):
        import torch
        from transformers.utils import logging as hf_logging

        from ..infer.backend import build_backend

        hf_logging.disable_progress_bar()
        if not torch.cuda.is_available():
            torch.set_num_threads(threads)  # Ray sets one thread per whole CPU held (DESIGN.md)
        self.backend = build_backend(cfg)
        self.style = cfg.eval.eval_style

    def encode(self, prompt: str) -> tuple[list[int], list[int]]:
        """(prompt ids, letter ids) of a row's prompt (JSON messages, or harness text)."""
        backend = self.backend
        if self.style == "harness":
            return encode_harness(prompt, backend.tokenizer)
        return encode_chat(json.loads(prompt), backend.template, backend.tokenizer)

    def __call__(self, batch: Any) -> dict[str, list]:
        rows = batch.to_pylist()
        encoded = [self.encode(r["prompt"]) for r in rows]
        for row, (ids, _) in zip(rows, encoded, strict=True):
            if len(ids) > self.backend.context_length:
                raise UserError(
                    f"subject {row['subject']}, question {row['index']}: the prompt is {len(ids)} "
                    f"tokens but the model's context is {self.backend.context_length}; "
                    "lower n_shot"
                )
        predicted = score_choices(self.backend.model, [e[0] for e in encoded],
                                  [e[1] for e in encoded], self.backend.pad_id)  # fmt: skip
        return {
            "subject": [r["subject"] for r in rows],
            "index": [r["index"] for r in rows],
            "predict": predicted,
        }
