"""A causal LM with a scalar value head: the reward model of stage rm (and PPO's critic).

The head is one linear layer from the last hidden state to a scalar per token, saved as LLaMA-
Factory and TRL save it: ``value_head.safetensors`` beside the adapter or model, with the keys
``v_head.summary.weight`` and ``v_head.summary.bias``. A sequence's score is the value at its last
token.

    model = ValueHeadLM(load_model(...))         # a new head, initialised small
    values = model(input_ids=..., position_ids=...)  # [batch, tokens]
    model.save_pretrained(folder)                # the LM (or adapter) + value_head.safetensors
    model = load_value_head(ValueHeadLM(lm), folder)  # scoring again
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

VALUE_HEAD_FILE = "value_head.safetensors"
PREFIX = "v_head.summary."


def _backbone(lm: nn.Module) -> nn.Module:
    """The decoder stack under the LM head (through a PEFT wrapper; LoRA layers stay active)."""
    hf = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    return hf.base_model


class ValueHeadLM(nn.Module):
    """``lm`` plus ``v_head``; its forward returns one value per token, skipping the LM head."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm
        hidden = lm.config.hidden_size
        self.v_head = nn.Linear(hidden, 1)
        nn.init.normal_(self.v_head.weight, std=1.0 / (hidden + 1))
        nn.init.zeros_(self.v_head.bias)
        self.v_head.to(torch.float32)

    @property
    def config(self) -> Any:
        return self.lm.config

    def forward(self, **inputs: Any) -> torch.Tensor:
        inputs.pop("labels", None)
        hidden = _backbone(self.lm)(**inputs, use_cache=False).last_hidden_state
        return self.v_head(hidden.to(self.v_head.weight.dtype)).squeeze(-1)

    def head_state(self, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The head's weights under LLaMA-Factory's names (from ``state`` when given)."""
        if state is None:
            state = {f"v_head.{k}": v for k, v in self.v_head.state_dict().items()}
        return {PREFIX + k[len("v_head.") :]: v.detach().cpu().contiguous()
                for k, v in state.items() if k.startswith("v_head.")}  # fmt: skip

    def save_pretrained(
        self, folder: str | Path, state_dict: dict[str, torch.Tensor] | None = None, **kwargs: Any
    ) -> None:
        """The LM (or its adapter) as Hugging Face saves it, and the head beside it.

        Args:
            folder: where to write.
            state_dict: this module's whole state (``lm.*`` and ``v_head.*`` keys), for engines
                that gather it themselves; default: the module's own weights.
            **kwargs: passed to the LM's ``save_pretrained``.
        """
        from safetensors.torch import save_file

        folder = Path(folder)
        if state_dict is not None:
            lm_state = {k[3:]: v for k, v in state_dict.items() if k.startswith("lm.")}
            self.lm.save_pretrained(folder, state_dict=lm_state, **kwargs)
        else:
            self.lm.save_pretrained(folder, **kwargs)
        save_file(self.head_state(state_dict), str(folder / VALUE_HEAD_FILE))


def load_value_head(model: ValueHeadLM, folder: str | Path) -> ValueHeadLM:
    """Load ``value_head.safetensors`` of ``folder`` into ``model``'s head.

    Raises:
        FileNotFoundError: when the folder holds no value head.
    """
    from safetensors.torch import load_file

    path = Path(folder) / VALUE_HEAD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {VALUE_HEAD_FILE}: it is not a reward model")
    saved = load_file(str(path))
    head = {k[len(PREFIX) :]: v for k, v in saved.items() if k.startswith(PREFIX)}
    model.v_head.load_state_dict(head)
    return model


def has_value_head(folder: str | Path) -> bool:
    """Whether a model or adapter folder is a reward model (holds a value head)."""
    return (Path(folder) / VALUE_HEAD_FILE).is_file()


def last_token_values(values: torch.Tensor, cu_seq_lens: torch.Tensor) -> torch.Tensor:
    """Each sequence's score in a padding-free row: the value at its last token."""
    return values.reshape(-1)[cu_seq_lens[1:].long() - 1]


def reward_model_folder(cfg: Any) -> str:
    """The folder whose value head a reward-model config scores with (checked, no loading).

    Raises:
        UserError: naming the key, when that folder holds no value head.
    """
    from ..utils.errors import UserError
    from .loader import resolve_model_path

    adapters = cfg.model.adapter_name_or_path or []
    folder = adapters[-1] if adapters else resolve_model_path(cfg.model.model_name_or_path)
    if not has_value_head(folder):
        key = "adapter_name_or_path" if adapters else "model_name_or_path"
        raise UserError(
            f"{key} {folder} has no {VALUE_HEAD_FILE}: stage rm serves a reward model trained "
            "with stage: rm (its adapter or model folder holds the value head)"
        )
    return folder


def load_reward_model(cfg: Any, device: Any = None) -> tuple[ValueHeadLM, Any]:
    """A trained reward model for scoring: (ValueHeadLM in eval mode, tokenizer).

    The value head is read from the last of ``adapter_name_or_path`` (a LoRA reward model,
    loaded on the base) or from ``model_name_or_path`` itself (a full one).

    Raises:
        UserError: when that folder holds no value head.
    """
    from .adapter import setup_finetuning
    from .loader import load_model, load_tokenizer

    folder = reward_model_folder(cfg)
    tokenizer = load_tokenizer(cfg.model)
    lm = load_model(cfg, tokenizer, for_training=False, device=device)
    lm = setup_finetuning(lm, cfg, for_training=False)  # merges the adapters
    model = load_value_head(ValueHeadLM(lm), folder)
    if device is not None:
        model.to(device)
    return model.eval(), tokenizer


@torch.no_grad()
def score_texts(
    model: ValueHeadLM, tokenizer: Any, texts: list[str], max_length: int = 1024
) -> list[float]:
    """Each text's reward: the value at its last token (LLaMA-Factory's scoring: the texts are
    tokenised as they are, without special tokens added, truncated to ``max_length``)."""
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_length] or
           [tokenizer.eos_token_id] for t in texts]  # fmt: skip
    longest = max(len(i) for i in ids)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(ids), longest), pad, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    values = model(input_ids=input_ids.to(device), attention_mask=mask.to(device))
    last = mask.sum(-1).to(device) - 1
    return values.gather(-1, last[:, None]).squeeze(-1).float().tolist()
